"""BIWI: the raw reader on the genuine frame, the benchmark angle formula against our Pose_Para
convention, the calibration, the protocol-1 frame list and its guard, and the FSA-Net ``.npz``
format (channel order checked against the raw frame)."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from headpose.datasets import registry
from headpose.datasets.biwi import (
    FSANET_FRAME_COUNT,
    FormatBIWI,
    benchmark_angles_deg,
    biwi_matrix,
    read_calibration,
    read_frame_list,
    read_pose_file,
    write_calibration,
    write_pose_file,
)
from headpose.datasets.biwi_npz import FormatFSANetNpz, load_arrays
from headpose.errors import HeadposeError
from headpose.evaluation.test_sets import evaluation_samples
from headpose.geometry import pose_angles_deg, rotation_matrix

LISTED_ANGLES_DEG = (3.29099, 7.60722, -1.56663)  # 01/frame_00003, as biwi.md lists them
# Frames per sequence kept by FSA-Net's protocol 1 (biwi.md, section 1, last column).
FSANET_FRAMES_PER_SEQUENCE = [
    431, 362, 569, 689, 881, 399, 699, 738, 831, 688, 570, 727,
    484, 653, 475, 692, 315, 476, 335, 471, 450, 530, 395, 359,
]  # fmt: skip
FSA_BOX = (270, 177, 146, 180)  # 01/frame_00003 in Biwi_FSA-Net.npz: x, y, w, h


@pytest.fixture
def hpdb(biwi_sample_dir) -> Path:
    return biwi_sample_dir / "hpdb"


@pytest.fixture
def frame_list(biwi_sample_dir) -> Path:
    return biwi_sample_dir / "lists" / "Biwi_FSA-Net.npz"


def test_the_genuine_frame_reads_to_its_listed_angles(hpdb):
    (entry,) = FormatBIWI.scan(hpdb).entries
    assert entry == f"{hpdb.as_posix()}/01/frame_00003"
    labels = registry.resolve(entry).header()
    assert labels.angles_deg == pytest.approx(LISTED_ANGLES_DEG, abs=5e-6)
    assert registry.recognise(hpdb) is FormatBIWI
    assert registry.recognise(hpdb.parent) is FormatBIWI  # the folder holding hpdb/ too
    assert registry.resolve(entry).group_key() == "F01"


@pytest.mark.parametrize("angles_deg", [(30.0, -20.0, 10.0), (-70.0, 45.0, -35.0), (5, 80, 60)])
def test_one_rotation_gives_the_same_angles_as_biwi_matrix_and_as_pose_para(tmp_path, angles_deg):
    yaw, pitch, roll = angles_deg
    matrix = biwi_matrix(yaw, pitch, roll)
    assert benchmark_angles_deg(matrix) == pytest.approx(angles_deg, abs=1e-9)
    write_pose_file(tmp_path / "frame_00000_pose.txt", matrix, np.array([10.0, -5.0, 900.0]))
    read_matrix, centre = read_pose_file(tmp_path / "frame_00000_pose.txt")
    assert benchmark_angles_deg(read_matrix) == pytest.approx(angles_deg, abs=1e-3)  # 6 digits
    assert centre.tolist() == [10.0, -5.0, 900.0]
    pose_para = np.array([*np.radians([pitch, yaw, roll]), 0, 0, 0, 1])
    assert pose_angles_deg(pose_para) == pytest.approx(angles_deg, abs=1e-9)
    flip = np.diag([1.0, -1.0, -1.0])  # the same rotation, read in the Kinect camera frame
    assert np.allclose(matrix, flip @ rotation_matrix(*pose_para[:3]) @ flip)


def test_pose_and_calibration_files_are_written_byte_for_byte_as_the_dataset_has_them(
    hpdb, tmp_path
):
    sequence = hpdb / "01"
    matrix, centre = read_pose_file(sequence / "frame_00003_pose.txt")
    write_pose_file(tmp_path / "pose.txt", matrix, centre)
    assert (tmp_path / "pose.txt").read_bytes() == (sequence / "frame_00003_pose.txt").read_bytes()
    for name in ("rgb.cal", "depth.cal"):
        write_calibration(tmp_path / name, read_calibration(sequence / name))
        assert (tmp_path / name).read_bytes() == (sequence / name).read_bytes()


def test_the_head_centre_projects_onto_the_face_through_the_rgb_calibration(hpdb):
    calibration = read_calibration(hpdb / "01" / "rgb.cal")
    assert calibration.intrinsics[0, 0] == 517.679 and calibration.size_wh == (640, 480)
    _, centre = read_pose_file(hpdb / "01" / "frame_00003_pose.txt")
    assert calibration.project(centre) == pytest.approx((341.65, 274.63), abs=0.01)
    depth = read_calibration(hpdb / "01" / "depth.cal")
    assert np.array_equal(depth.rotation, np.eye(3))


def test_the_fsanet_frame_list_holds_its_13219_frames_and_boxes(hpdb, frame_list):
    frames = read_frame_list(frame_list)
    assert len(frames) == FSANET_FRAME_COUNT
    per_sequence = Counter(name[:2] for name in frames)
    assert [per_sequence[f"{n:02d}"] for n in range(1, 25)] == FSANET_FRAMES_PER_SEQUENCE
    assert frames["01/frame_00003"] == FSA_BOX
    with np.load(frame_list) as arrays:  # the list's own labels: the benchmark formula's
        assert tuple(arrays["ypr"][0]) == pytest.approx(
            registry.resolve(f"{hpdb.as_posix()}/01/frame_00003").header().angles_deg, abs=1e-9
        )

    scan = FormatBIWI.scan(hpdb, frame_list=frame_list)

    assert scan.entries == [f"{hpdb.as_posix()}/01/frame_00003@270,177,146,180"]
    assert len(scan.unpaired) == FSANET_FRAME_COUNT - 1  # listed, not in the one-frame sample
    assert all("not found" in reason for _, reason in scan.unpaired)
    image, labels = registry.resolve(scan.entries[0]).read()
    assert image.shape == (480, 640, 3)
    assert labels.crop_box == (270, 177, 416, 357)  # pixels 270..415 and 177..356


def test_the_fsanet_frame_guard_recognises_exactly_its_frames(frame_list):
    boxed = [f"/d/hpdb/{name}@1,2,3,4" for name in read_frame_list(frame_list)]
    check = registry.check_test_set
    assert check(registry.resolve_all(boxed), "list")
    assert not check(registry.resolve_all(boxed[:-1]), "list")  # one frame short: another set
    unboxed = registry.resolve_all(e.split("@")[0] for e in boxed)
    assert not check(unboxed, "list")  # no boxes


def test_a_bad_pose_file_is_one_line_naming_it(hpdb, tmp_path):
    sequence = tmp_path / "hpdb" / "01"
    shutil.copytree(hpdb / "01", sequence)
    pose = sequence / "frame_00003_pose.txt"
    entry = f"{(tmp_path / 'hpdb').as_posix()}/01/frame_00003"
    for text, expected in [
        ("1 0 0\n0 1 0\n", "expected 3 rows of 3 numbers"),
        ("1 0 0\n0 1 0\n0 0 x\n\n1 2 3\n", "not a number"),
        ("2 0 0\n0 1 0\n0 0 1\n\n1 2 3\n", "not a rotation"),
        ("1 0 0\n0 1 0\n0 0 1\n\n1 nan 3\n", "not finite"),
    ]:
        pose.write_text(text)
        with pytest.raises(HeadposeError, match=f"^{pose}: .*{expected}"):
            registry.resolve(entry).header()
    pose.unlink()
    scan = FormatBIWI.scan(tmp_path / "hpdb")
    assert scan.entries == [] and scan.unpaired == [(entry, "no _pose.txt beside the image")]


def two_sequences(hpdb: Path, root: Path) -> Path:
    """An hpdb of the genuine frame in sequences 01 and 02."""
    for sequence in ("01", "02"):
        shutil.copytree(hpdb / "01", root / "hpdb" / sequence)
    return root / "hpdb"


def set_focal_length(calibration: Path, fx: str, fy: str) -> None:
    lines = calibration.read_text().splitlines()
    lines[0] = f"{fx} 0 320 "
    lines[1] = f"0 {fy} 240.5 "
    calibration.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("fx", "fy", "what"),
    [
        ("0", "0", "fx 0 px"),
        ("0.01", "517.679", "fx 0.01 px"),
        ("-517.679", "517.679", "fx -517.679 px"),
        ("517.679", "1e7", "fy 1e\\+07 px"),
    ],
)
def test_a_bad_calibration_skips_its_sequences_frames_naming_the_file(hpdb, tmp_path, fx, fy, what):
    """Focal length 0 gave an empty projected box and the whole set stopped at the crop with
    "empty crop box (320, 240, 320, 240)"; now that sequence's frames are skipped and the
    reason names its rgb.cal, the other sequences are evaluated."""
    root = two_sequences(hpdb, tmp_path)
    calibration = root / "02" / "rgb.cal"
    set_focal_length(calibration, fx, fy)

    samples, skipped = evaluation_samples(root)

    assert [sample.entry for sample in samples] == [f"{root.as_posix()}/01/frame_00003"]
    ((entry, reason),) = skipped
    assert entry == f"{root.as_posix()}/02/frame_00003"
    assert re.fullmatch(f"{calibration}: the focal length {what} is not a plausible .*", reason)
    samples[0].read()  # the good sequence reads


@pytest.mark.parametrize(
    ("line", "value", "expected"),
    [
        (0, "517.679 0 9000 ", "principal point"),
        (12, "0 480", "image size 0 x 480"),
        (12, "640.5 480", "whole pixels"),
        (6, "0.999947 0.00432361 5", "rotation is not a rotation"),
    ],
)
def test_every_implausible_calibration_value_is_one_line_naming_the_file(
    hpdb, tmp_path, line, value, expected
):
    calibration = tmp_path / "rgb.cal"
    lines = (hpdb / "01" / "rgb.cal").read_text().splitlines()
    lines[line] = value
    calibration.write_text("\n".join(lines) + "\n")
    with pytest.raises(HeadposeError, match=f"^{calibration}: .*{expected}"):
        read_calibration(calibration)


def test_a_projected_box_of_no_pixels_is_a_skipped_frame_not_an_empty_crop(hpdb, tmp_path):
    """A head centre far beyond the camera projects to a box that rounds to 0 x 0 pixels."""
    root = two_sequences(hpdb, tmp_path)
    pose = root / "02" / "frame_00003_pose.txt"
    matrix, _ = read_pose_file(pose)
    write_pose_file(pose, matrix, np.array([0.0, 0.0, 5e6]))

    samples, skipped = evaluation_samples(root)

    assert len(samples) == 1
    ((entry, reason),) = skipped
    assert entry.endswith("/02/frame_00003") and reason == (
        "the box projected from the head centre is 0 x 0 px (empty)"
    )


def fsa_net_npz(path: Path, crops_bgr: list[np.ndarray], angles: list[tuple]) -> Path:
    """An .npz as FSA-Net's protocol-1 script writes one."""
    np.savez(path, image=np.array(crops_bgr), pose=np.array(angles), img_size=64)
    return path


def test_an_fsa_net_npz_reads_as_the_raw_frame_cropped_by_its_list_box(hpdb, tmp_path):
    """Made as FSA-Net's script makes it from the genuine frame: OpenCV (BGR) read, the list's
    box, resized to 64 px."""
    bgr = cv2.imread(str(hpdb / "01" / "frame_00003_rgb.png"))
    x, y, width, height = FSA_BOX
    crop_bgr = cv2.resize(bgr[y : y + height, x : x + width], (64, 64))
    path = fsa_net_npz(tmp_path / "BIWI_noTrack.npz", [crop_bgr], [LISTED_ANGLES_DEG])

    assert registry.recognise(path) is FormatFSANetNpz
    (entry,) = FormatFSANetNpz.scan(path).entries
    image, labels = registry.resolve(entry).read()

    raw, raw_labels = registry.resolve(f"{hpdb.as_posix()}/01/frame_00003@270,177,146,180").read()
    x0, y0, x1, y1 = raw_labels.crop_box
    assert np.array_equal(image, cv2.resize(raw[y0:y1, x0:x1], (64, 64)))  # RGB, as raw
    assert labels.angles_deg == pytest.approx(raw_labels.angles_deg, abs=1e-5)
    assert labels.crop_box == (0, 0, 64, 64)
    (swapped,) = FormatFSANetNpz.scan(path, channel_order="rgb").entries
    assert np.array_equal(registry.resolve(swapped).read()[0], crop_bgr)  # 6DRepNet's quirk
    assert registry.resolve(entry).digest() != registry.resolve(swapped).digest()


def test_a_malformed_npz_is_one_line_naming_it(tmp_path):
    load_arrays.cache_clear()
    np.savez(tmp_path / "a.npz", image=np.zeros((2, 8, 8, 3), np.float32), pose=np.zeros((2, 3)))
    np.savez(tmp_path / "b.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    for name, expected in [("a", "expected uint8"), ("b", "holds 'image' and 'pose'"),
                           ("c", "not a readable .npz")]:  # fmt: skip
        with pytest.raises(HeadposeError, match=f"{name}.npz: .*{expected}"):
            FormatFSANetNpz.scan(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "d.npz", image=np.zeros((1, 8, 8, 3), np.uint8), pose=[[1e9, 0, 0]])
    with pytest.raises(HeadposeError, match=r"d.npz#0: pose .* is no \(yaw, pitch, roll\)"):
        registry.resolve(f"{tmp_path.as_posix()}/d.npz#0").header()
    with pytest.raises(HeadposeError, match="holds 1 rows"):
        registry.resolve(f"{tmp_path.as_posix()}/d.npz#5").header()


def test_unknown_formats_and_layouts_are_one_line(tmp_path):
    with pytest.raises(HeadposeError, match="unknown dataset format 'biwii'; expected one of "):
        registry.get_format("biwii")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(HeadposeError, match=f"{tmp_path}: no known dataset layout"):
        registry.recognise(tmp_path)


def test_the_fsanet_frames_digest_constant_is_the_lists(frame_list):
    text = "".join(f"{name}\n" for name in sorted(read_frame_list(frame_list)))
    from headpose.datasets.biwi import FSANET_FRAMES_SHA256

    assert hashlib.sha256(text.encode()).hexdigest() == FSANET_FRAMES_SHA256
