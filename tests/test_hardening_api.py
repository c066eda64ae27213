"""Hardening round 4 (issue 38, items 1, 2, 3, 8 and 12): the Python API and the sizes taken from
input under hostile and clumsy use.

Each class of case is checked where its one guard lives: the API's arguments by the rules
params.yaml and the CLI apply (:func:`headpose.params.check_argument`); a model shared by threads
gives the serial results (each detector runs one ``detect`` at a time); face boxes wholly outside
the image or beyond one image size of it refused for the API and ``headpose predict --boxes``
alike (:func:`headpose.datasets.labels.check_box`); sizes read from files and options bounded
before anything is allocated (the ``.npz`` reader, the BIWI calibration, the sweep's scales).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_fixtures import run_cli as exit_status
from helpers import REPO_ROOT
from model_fixtures import write_checkpoint
from numpy.lib import format as npy_format

import headpose
from headpose.app.api import HeadPoseModel
from headpose.cli.sweep import SCALE_LIST
from headpose.datasets import biwi
from headpose.datasets.biwi_npz import FormatFSANetNpz, load_arrays
from headpose.errors import HeadposeError
from headpose.evaluation.framing_sweep import check_scales
from headpose.params import SCHEMA, option

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE_SIZE = 32
# AFLW2000 images the Haar and YuNet detectors find a face in, and the sizes they are scaled
# to (different sizes: YuNet's input size is the state threads fight over).
THREAD_IMAGES = {"image00013": 1.0, "image00040": 0.7, "image00052": 1.3, "image00070": 0.5}
THREADS, CALLS = 4, 5


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("api_model")
    return write_checkpoint(folder / "model.pt", "resnet18", image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def model(model_file) -> HeadPoseModel:
    return headpose.load(model_file)


@pytest.fixture(scope="module")
def thread_images(aflw2000_dir) -> list[np.ndarray]:
    images = []
    for name, scale in THREAD_IMAGES.items():
        bgr = cv2.imread(str(aflw2000_dir / f"{name}.jpg"))
        images.append(cv2.cvtColor(cv2.resize(bgr, None, fx=scale, fy=scale), cv2.COLOR_BGR2RGB))
    return images


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``headpose ARGS`` run in this process."""
    code = exit_status(args)
    return code, capsys.readouterr().err


# --- Item 1: image_size by the CLI's rule, one validator -----------------------------------------

SIZES_REFUSED = [8, True, False, 2000, 64.5, "64", 31, 1025]


@pytest.mark.parametrize("size", SIZES_REFUSED, ids=repr)
def test_load_refuses_an_image_size_the_cli_refuses(size, model_file):
    with pytest.raises(HeadposeError, match=rf"image_size {size!r}; expected an integer in \[32"):
        headpose.load(model_file, image_size=size)
    if not isinstance(size, str):  # the CLI's --image-size, the same rule on its text
        with pytest.raises(argparse.ArgumentTypeError):
            option(SCHEMA["image_size"])(str(size))


def test_load_takes_an_image_size_the_cli_takes(model_file):
    assert option(SCHEMA["image_size"])("64") == 64
    assert headpose.load(model_file, image_size=64).image_size == 64


# --- Item 2: one model from several threads gives the serial results ------------------------------


def predict_from_threads(predict, images: list[np.ndarray]) -> list[list]:
    """``predict(image)`` for every image, ``CALLS`` times each, from ``THREADS`` threads
    started together (thread ``t`` takes image ``t % len(images)``); the results, per thread,
    or the exception a call raised."""
    barrier = threading.Barrier(THREADS)
    results: list[list] = [[] for _ in range(THREADS)]

    def work(index: int) -> None:
        barrier.wait()
        for _ in range(CALLS):
            try:
                results[index].append(predict(images[index % len(images)]))
            except Exception as error:  # noqa: BLE001 - recorded: the test names it
                results[index].append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_one_model_used_from_threads_gives_the_serial_results_with_haar(model, thread_images):
    def predict(image):
        return model.predict(image, detector="haar")

    serial = [predict(image) for image in thread_images]
    assert sum(bool(poses) for poses in serial) >= 3, "the detector found too few faces"
    for index, calls in enumerate(predict_from_threads(predict, thread_images)):
        assert calls == [serial[index % len(serial)]] * CALLS, index


THREAD_SCRIPT = """
import json, sys, threading
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1)
import headpose
from headpose.app.detect import make_detector
from test_hardening_api import predict_from_threads, THREAD_IMAGES
images = [np.load(path) for path in sys.argv[4:]]
model = headpose.load(sys.argv[2])
detector = make_detector("yunet", sys.argv[3])
predict = lambda image: model.predict(image, detector=detector)
serial = [predict(image) for image in images]
threaded = predict_from_threads(predict, images)
same = all(calls == [serial[i % len(serial)]] * len(calls) for i, calls in enumerate(threaded))
print(json.dumps({"faces": [len(poses) for poses in serial], "same": same}))
"""


def test_one_model_used_from_threads_gives_the_serial_results_with_yunet(
    model_file, thread_images, yunet_model, tmp_path
):
    """Run in a child process: unguarded, cv2.FaceDetectorYN shared by threads kills the
    process (segmentation fault or abort)."""
    paths = []
    for index, image in enumerate(thread_images):
        paths.append(str(tmp_path / f"image{index}.npy"))
        np.save(paths[-1], image)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}
    result = subprocess.run(
        [sys.executable, "-c", THREAD_SCRIPT, str(REPO_ROOT / "tests"), str(model_file)]
        + [str(yunet_model), *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sum(faces > 0 for faces in report["faces"]) >= 3, report
    assert report["same"], report


# --- Item 3: a box wholly outside the image, an image without pixels -----------------------------


@pytest.mark.parametrize(
    "box",
    [(1000, 1000, 1100, 1100), (110, 10, 150, 50), (-60, -60, -10, -10), (100, 0, 140, 40)],
    ids=["far", "right", "above-left", "touching"],
)
def test_a_face_box_wholly_outside_the_image_is_refused_naming_it(box, model):
    image = np.full((100, 100, 3), 128, np.uint8)
    with pytest.raises(HeadposeError, match=r"face box \(.*\) lies (wholly|far) outside the 100x"):
        model.predict(image, boxes=[box])


def test_a_face_box_partly_outside_the_image_still_gets_a_pose(model):
    image = np.full((100, 100, 3), 128, np.uint8)
    (pose,) = model.predict(image, boxes=[(-20, -20, 50, 50)])
    assert np.isfinite([pose.yaw_deg, pose.pitch_deg, pose.roll_deg]).all()
    assert pose.box == (-20.0, -20.0, 50.0, 50.0)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 40, 3), (40, 0, 3)])
def test_an_image_without_pixels_is_refused(shape, model):
    for boxes in ([(0, 0, 1, 1)], None):  # given boxes, and the detector
        with pytest.raises(HeadposeError, match=r"has no pixels"):
            model.predict(np.zeros(shape, np.uint8), boxes=boxes, detector="haar")


def test_predict_boxes_refuses_a_box_wholly_outside_its_image(model_file, tmp_path, capsys):
    image = tmp_path / "face.jpg"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,x0,y0,x1,y1\nface.jpg,50,5,70,30\n")
    code, err = run_cli(
        ["predict", str(image), "--checkpoint", str(model_file), "--boxes", str(boxes)]
        + ["--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 1 and "Traceback" not in err
    assert f"{image}: face box (50, 5, 70, 30) lies wholly outside the 40x40 image" in err


# --- Item 8: sizes from input and options bounded, no MemoryError ---------------------------------


def test_a_huge_face_box_is_refused_before_any_canvas_is_allocated(model):
    image = np.zeros((100, 100, 3), np.uint8)
    for box in [(0, 0, 1e5, 1e5), (-1e9, 10, 50, 50), (10, 10, 50, 1e12)]:
        with pytest.raises(HeadposeError, match=r"far outside the 100x100 image"):
            model.predict(image, boxes=[box])


@pytest.mark.parametrize("scale", ["1e9", "9", "0.01", "nan"])
def test_sweep_scales_outside_a_sane_range_are_one_line(scale, capsys):
    with pytest.raises(argparse.ArgumentTypeError, match="from 0.1 to 8"):
        SCALE_LIST(f"1,{scale}")
    with pytest.raises(HeadposeError, match=r"framing scale .*: expected a number from 0.1 to 8"):
        check_scales([1.0, float(scale)])
    code, err = run_cli(["sweep", "model.pt", "--data", "x", "--scales", scale], capsys)
    assert code == 2 and "argument --scales" in err and "Traceback" not in err


def npz_declaring(path: Path, arrays: dict[str, tuple[str, tuple[int, ...], bytes]], deflate: bool):
    """An ``.npz`` whose members' headers declare ``(dtype, shape)`` over the bytes given."""
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, (dtype, shape, data) in arrays.items():
            member = io.BytesIO()
            header = {"descr": dtype, "fortran_order": False, "shape": shape}
            npy_format.write_array_header_1_0(member, header)
            archive.writestr(f"{name}.npy", member.getvalue() + data)
    return path


@pytest.mark.parametrize("deflate", [False, True], ids=["stored", "deflated"])
def test_an_npz_header_declaring_more_than_the_file_holds_is_refused(deflate, tmp_path):
    huge = ("|u1", (1_000_000, 1000, 1000, 3), bytes(100))
    path = npz_declaring(
        tmp_path / "BIWI_test.npz", {"image": huge, "pose": ("<f8", (1, 3), bytes(24))}, deflate
    )
    load_arrays.cache_clear()
    with pytest.raises(HeadposeError, match=r"BIWI_test.npz: array 'image' declares uint8"):
        FormatFSANetNpz.scan(path)
    frame_list = npz_declaring(
        tmp_path / "list.npz",
        {"images": ("<U26", (1, 26), bytes(8)), "bbox": ("<i8", (10**12, 4), bytes(32))},
        deflate,
    )
    with pytest.raises(HeadposeError, match=r"list.npz: array 'images' declares"):
        biwi.read_frame_list(frame_list)


def test_an_honest_npz_still_reads(tmp_path):
    load_arrays.cache_clear()
    crops = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    np.savez_compressed(tmp_path / "set.npz", image=crops, pose=np.ones((2, 3)))
    images, poses = load_arrays(str(tmp_path / "set.npz"))
    assert np.array_equal(images, crops) and poses.shape == (2, 3)


def test_a_calibration_with_a_huge_focal_length_is_one_line_naming_it(biwi_sample_dir, tmp_path):
    real = biwi.read_calibration(biwi_sample_dir / "hpdb" / "01" / "rgb.cal")
    intrinsics = real.intrinsics.copy()
    intrinsics[0, 0] = intrinsics[1, 1] = 1e7
    path = tmp_path / "rgb.cal"
    biwi.write_calibration(path, dataclasses.replace(real, intrinsics=intrinsics))
    with pytest.raises(
        HeadposeError, match=rf"{path}: the focal length fx 1e\+07 px is not a plausible"
    ):
        biwi.read_calibration(path)


def test_a_biwi_crop_box_far_outside_its_frame_is_refused(tmp_path):
    frame = tmp_path / "hpdb" / "01" / "frame_00003"
    frame.parent.mkdir(parents=True)
    biwi.write_pose_file(f"{frame}{biwi.POSE_SUFFIX}", np.eye(3), np.array([0.0, 0.0, 900.0]))
    entry = f"{frame.as_posix()}@0,0,1000000000,1000000000"
    with pytest.raises(HeadposeError, match=r"frame_00003@.*: crop box .* far outside the 640x"):
        biwi.frame_labels(entry, (640, 480))


# --- Item 12: the API's argument types -----------------------------------------------------------


class BytesPath(os.PathLike):
    def __fspath__(self) -> bytes:
        return b"models/model.pt"


@pytest.mark.parametrize(
    "path",
    [b"models/model.pt", BytesPath(), 5, None],
    ids=["bytes", "bytes-fspath", "number", "none"],
)
def test_load_refuses_a_path_that_is_no_str_path(path):
    with pytest.raises(HeadposeError, match=r"^path .*; expected a model file's path"):
        headpose.load(path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mean": 0.5}, r"^mean 0.5; expected 3 numbers"),
        ({"mean": "0.5,0.5,0.5"}, r"^mean '0.5,0.5,0.5'; expected 3 numbers"),
        ({"mean": [0.5, 0.5, "a"]}, r"^mean \[0.5, 0.5, 'a'\]; expected 3 numbers"),
        ({"std": [0.5, True, 0.5]}, r"^std \[0.5, True, 0.5\]; expected 3 numbers"),
        ({"std": [0.5, 0.5]}, r"std \[0.5, 0.5\]; expected 3 finite numbers"),
        ({"runtime": 5}, r"^runtime 5: expected one of"),
        ({"crop_protocol": 5}, r"unknown crop protocol 5"),
    ],
    ids=[
        "mean-number",
        "mean-text",
        "mean-text-item",
        "std-bool",
        "std-two",
        "runtime",
        "protocol",
    ],
)
def test_load_arguments_of_the_wrong_kind_are_one_line(arguments, message, model_file):
    with pytest.raises(HeadposeError, match=message):
        headpose.load(model_file, **arguments)


@pytest.mark.parametrize("batch_size", ["4", 1.5, True, 0, -3, 5000, None], ids=repr)
def test_a_batch_size_the_cli_refuses_is_refused_at_load(batch_size, model_file):
    with pytest.raises(HeadposeError, match=rf"^batch_size {batch_size!r}; expected an integer"):
        headpose.load(model_file, batch_size=batch_size)
    if not isinstance(batch_size, str):  # the CLI's --batch-size, the same rule on its text
        with pytest.raises(argparse.ArgumentTypeError):
            option(SCHEMA["batch_size"])(str(batch_size))


@pytest.mark.parametrize(
    ("crops", "message"),
    [
        (None, r"got NoneType"),
        ("crops.png", r"got str"),
        (42, r"got int"),
        ([np.zeros((32, 32, 3), np.uint8), np.zeros((34, 32, 3), np.uint8)], r"crops\[1\] is "),
        ([np.zeros((64, 64, 3), np.uint8), np.zeros((66, 64, 3), np.uint8)], r"crops\[0\] is "),
        ([np.zeros((32, 32, 3), np.uint8), None], r"crops\[1\] is object \(\)"),
        (np.zeros((2, 32, 32, 3), np.float32), r"got float32"),
        (np.zeros((2, 1, 32, 32, 3), np.uint8), r"got uint8 \(2, 1, 32, 32, 3\)"),
        (np.uint8(3), r"got uint8 \(HeadPoseModel"),
    ],
    ids=["none", "str", "int", "mixed", "mixed-other-side", "none-in-list", "float", "5d", "0d"],
)
def test_predict_crops_refuses_what_is_no_batch_of_crops_in_one_line(crops, message, model):
    with pytest.raises(HeadposeError, match=message):
        model.predict_crops(crops)


def test_predict_crops_takes_a_list_of_crops_as_the_batch_they_make(model):
    crops = [np.full((32, 32, 3), value, np.uint8) for value in (0, 100, 200)]
    assert np.array_equal(model.predict_crops(crops), model.predict_crops(np.stack(crops)))
    assert model.predict_crops([]).shape == (0, 3)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((40, 40, 3), np.float32), r"must be RGB uint8 of shape \(H, W, 3\), got float32"),
        (np.zeros((40, 40), np.uint8), r"got uint8 \(40, 40\)"),
        (np.zeros((40, 40, 4), np.uint8), r"got uint8 \(40, 40, 4\)"),
        (np.zeros((2, 40, 40, 3), np.uint8), r"got uint8 \(2, 40, 40, 3\)"),
        (b"face.jpg", r"expected an image file or an RGB array, got bytes"),
        (None, r"expected an image file or an RGB array, got NoneType"),
    ],
    ids=["float", "2d", "rgba", "4d", "bytes", "none"],
)
def test_an_image_of_the_wrong_kind_is_one_line(image, message, model):
    with pytest.raises(HeadposeError, match=message):
        model.predict(image, boxes=[(0, 0, 10, 10)])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"boxes": 5}, r"^boxes 5; expected face boxes"),
        ({"boxes": [(0, 0, "a", 5)]}, r"^a face box is 4 finite numbers"),
        ({"boxes": [5]}, r"^a face box is 4 finite numbers"),
        ({"detector": 5}, r"^detector 5; expected a detector's name or an object"),
        ({"detector": "haar", "min_score": "high"}, r"^min_score 'high'; expected a number"),
    ],
    ids=["boxes-int", "box-text", "box-number", "detector-int", "min-score-text"],
)
def test_predict_arguments_of_the_wrong_kind_are_one_line(arguments, message, model):
    with pytest.raises(HeadposeError, match=message):
        model.predict(np.zeros((40, 40, 3), np.uint8), **arguments)


def test_a_non_contiguous_image_predicts_as_its_copy(model):
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    mirrored = image[:, ::-1]
    box = [(10, 10, 50, 50)]
    assert model.predict(mirrored, boxes=box) == model.predict(mirrored.copy(), boxes=box)
