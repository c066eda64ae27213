"""300W_AUG: rotated labels agree with the rotated pixels and with the 3D geometry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from geometry_helpers import unproject_points

from headpose.datasets.augment import build_augmentation, choose_samples, rotate_sample
from headpose.datasets.filelists import read_angles_table
from headpose.datasets.labels import Labels
from headpose.datasets.mat import find_sample_stems, read_mat, read_mat_labels, write_sample
from headpose.datasets.registry import Sample, resolve, resolve_all
from headpose.geometry import (
    apply_affine,
    in_plane_rotation_affine,
    pose_angles_deg,
    project_points,
)
from headpose.io.images import read_image
from headpose.io.lists import read_list

IMAGE_SIZE = 120


def synthetic_head(yaw_deg=30.0, pitch_deg=-10.0, roll_deg=5.0) -> tuple[np.ndarray, np.ndarray]:
    """68 points of a head-sized cloud (model units) and a Pose_Para placing it mid-image."""
    vertices = np.random.default_rng(0).uniform(-60, 60, size=(68, 3))
    angles_rad = [math.radians(a) for a in (pitch_deg, yaw_deg, roll_deg)]
    pose = np.array([*angles_rad, 62.0, 57.0, 0.0, 0.4])
    return vertices, pose


def blob_image(center_xy_1based: np.ndarray, sigma_px: float = 2.5) -> np.ndarray:
    """Black RGB image with one bright Gaussian dot centred on a 1-based image point."""
    rows, columns = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    x0, y0 = center_xy_1based - 1.0  # pixel (column, row) of a 1-based coordinate
    dot = np.exp(-((columns - x0) ** 2 + (rows - y0) ** 2) / (2 * sigma_px**2))
    return np.repeat((255 * dot).astype(np.uint8)[:, :, None], 3, axis=2)


def head_labels(pose: np.ndarray, landmarks: np.ndarray) -> Labels:
    """The labels of a sample with a 7-value pose and 2D landmarks, as a .mat reader gives them."""
    return Labels(pose_angles_deg(pose), landmarks_2d=landmarks, pose=pose.ravel())


def bright_centroid_1based(image_rgb: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the bright pixels, as a 1-based image point."""
    weight = np.clip(image_rgb[:, :, 0].astype(np.float64) - 20, 0, None)
    rows, columns = np.mgrid[0 : image_rgb.shape[0], 0 : image_rgb.shape[1]]
    return np.array([(weight * columns).sum(), (weight * rows).sum()]) / weight.sum() + 1.0


def test_written_sample_rotates_pixels_landmarks_and_pose_together(tmp_path):
    vertices, pose = synthetic_head()
    landmarks = project_points(vertices, pose, IMAGE_SIZE)[:, :2]
    source = tmp_path / "lp" / "AFW" / "AFW_7_1_0"
    write_sample(
        source,
        blob_image(landmarks[0]),
        {"Pose_Para": pose[None, :].astype(np.float32), "pt2d": landmarks.T},
    )
    out = tmp_path / "aug"
    angle_deg = 40.0  # large, so a half-pixel origin slip is measurable
    result = build_augmentation(
        [resolve(source.as_posix())], tmp_path / "lp", out, True, 1.0, [angle_deg], 99, seed=0
    )
    entry = (out / "AFW" / "AFW_7_1_0_rot40").as_posix()
    assert result.combined == [source.as_posix(), entry]
    mat = read_mat(entry + ".mat")
    new_pose = mat["Pose_Para"].ravel().astype(np.float64)
    assert new_pose.size == 7
    # (a) projecting the 3D head with the recomputed pose gives the saved, rotated landmarks ...
    projected = project_points(vertices, new_pose, IMAGE_SIZE)[:, :2]
    np.testing.assert_allclose(projected, mat["pt2d"].T, atol=1e-3)
    # ... which are the original landmarks rotated counter-clockwise on screen about the face.
    center = (landmarks.min(axis=0) + landmarks.max(axis=0)) / 2
    expected = apply_affine(in_plane_rotation_affine(angle_deg, tuple(center)), landmarks)
    np.testing.assert_allclose(mat["pt2d"].T, expected, atol=1e-6)
    # The pixels turned the same way: the dot drawn on landmark 0 sits on rotated landmark 0.
    dot = bright_centroid_1based(read_image(entry + ".jpg"))
    np.testing.assert_allclose(dot, mat["pt2d"].T[0], atol=0.2)
    assert np.linalg.norm(dot - landmarks[0]) > 5  # it did move
    [(sample, dataset, angles)] = read_angles_table(out / "angles.tsv")
    assert (sample, dataset) == (entry, "300W_AUG")
    np.testing.assert_allclose(angles, pose_angles_deg(new_pose), atol=1e-5)


@pytest.mark.parametrize("angle_deg", [-20, 10, 20])
def test_real_aflw2000_3d_landmarks_reproject_with_the_new_pose(aflw2000_dir, angle_deg):
    """(b) Unproject pt3d_68 with the original pose, reproject with the rotated pose: the
    result is the rotated landmarks, over real poses (large yaw included)."""
    stems, _ = find_sample_stems(aflw2000_dir, recursive=False)
    checked = 0
    for stem in stems[:400:20]:
        path = aflw2000_dir / stem
        mat = read_mat(f"{path}.mat")
        pose = mat["Pose_Para"].ravel().astype(np.float64)
        if max(abs(a) for a in pose_angles_deg(pose)) > 99:
            continue
        image = np.zeros((450, 450, 3), np.uint8)  # pixels are checked in the test above
        rotated = rotate_sample(image, read_mat_labels(f"{path}.mat"), angle_deg).labels
        head = unproject_points(mat["pt3d_68"].T.astype(np.float64), pose, 450)
        reprojected = project_points(head, rotated.pose, 450)
        np.testing.assert_allclose(reprojected[:, :2], rotated.landmarks_3d[:, :2], atol=0.01)
        np.testing.assert_allclose(reprojected[:, 2], mat["pt3d_68"][2], atol=0.01)
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("yaw_deg", "pitch_deg", "roll_deg"), [(30, -10, 5), (95, 20, 85), (-60, 40, -80)]
)
def test_rotating_there_and_back_restores_the_angles(yaw_deg, pitch_deg, roll_deg):
    """(c) +a then -a (about the new face centre) gives the original angles back, also past
    +-90 degrees of yaw and roll."""
    vertices, pose = synthetic_head(yaw_deg, pitch_deg, roll_deg)
    landmarks = project_points(vertices, pose, IMAGE_SIZE)[:, :2]
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    there = rotate_sample(image, head_labels(pose, landmarks), 20)
    back = rotate_sample(there.image_rgb, there.labels, -20)
    np.testing.assert_allclose(back.angles_deg, (yaw_deg, pitch_deg, roll_deg), atol=1e-4)
    assert abs(there.angles_deg[2] - roll_deg) > 5  # the rotation did change the pose


@pytest.mark.parametrize("angle_deg", [-20, -10, 10, 20])
def test_frontal_face_rotation_changes_roll_only(angle_deg):
    """(d) For a frontal face the in-plane rotation is pure roll; CCW on screen is -roll."""
    vertices, pose = synthetic_head(0, 0, 0)
    landmarks = project_points(vertices, pose, IMAGE_SIZE)[:, :2]
    rotated = rotate_sample(
        np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8), head_labels(pose, landmarks), angle_deg
    )
    yaw, pitch, roll = rotated.angles_deg
    assert abs(yaw) < 1e-4 and abs(pitch) < 1e-4
    assert roll == pytest.approx(-angle_deg, abs=1e-4)


def _fixture_training_set(root: Path, count: int, height: int = IMAGE_SIZE) -> list[Sample]:
    vertices, pose = synthetic_head()
    entries = []
    for index in range(count):
        landmarks = project_points(vertices, pose, IMAGE_SIZE)[:, :2]
        landmarks[:, 1] *= height / IMAGE_SIZE
        stem = root / "AFW" / f"AFW_{index}_1_0"
        image = np.full((height, IMAGE_SIZE, 3), 100, np.uint8)
        write_sample(stem, image, {"Pose_Para": pose[None, :], "pt2d": landmarks.T})
        entries.append(stem.as_posix())
    return resolve_all(entries)


def test_choice_is_seeded_and_off_switch_keeps_only_originals(tmp_path):
    train = _fixture_training_set(tmp_path / "lp", 20)
    chosen = choose_samples(train, 0.25, seed=1)
    assert len(chosen) == 5 and chosen == choose_samples(train, 0.25, seed=1)
    assert chosen != choose_samples(train, 0.25, seed=2)
    for enabled, fraction in ((False, 0.25), (True, 0.0)):
        out = tmp_path / f"off_{enabled}"
        result = build_augmentation(train, tmp_path / "lp", out, enabled, fraction, [10], 99, 0)
        assert read_list(out / "train.txt") == [sample.entry for sample in train]
        assert result.metrics["rotated_written"] == 0 and not result.metrics["enabled"]
        assert sorted(p.name for p in out.iterdir()) == ["angles.tsv", "skipped.tsv", "train.txt"]


def test_rotation_pushing_landmarks_out_is_skipped_and_reported(tmp_path):
    """A wide, flat image: turning the face by 90 degrees would push landmarks off it."""
    train = _fixture_training_set(tmp_path / "lp", 4, height=40)
    out = tmp_path / "aug"
    result = build_augmentation(train, tmp_path / "lp", out, True, 1.0, [5, 90], 99, 0, workers=2)
    assert result.metrics["rotated_written"] == 4
    assert result.metrics["rotated_skipped"] == 4
    assert all("_rot5" in entry for entry in read_list(out / "train.txt")[4:])
    skipped = (out / "skipped.tsv").read_text().splitlines()[1:]
    assert len(skipped) == 4 and all("landmarks out of the" in row for row in skipped)
    assert all("_rot90" in row.split("\t")[0] for row in skipped)


def test_rotated_copy_beyond_max_angle_is_skipped_and_reported(tmp_path):
    """The head (yaw 30, pitch -10, roll 5) turned by 60 degrees gets roll -54: beyond 50."""
    train = _fixture_training_set(tmp_path / "lp", 2)
    out = tmp_path / "aug"
    result = build_augmentation(train, tmp_path / "lp", out, True, 1.0, [5, 60], 50, seed=0)
    assert result.metrics["rotated_written"] == 2 and result.metrics["rotated_skipped"] == 2
    skipped = (out / "skipped.tsv").read_text().splitlines()[1:]
    assert all("_rot60" in row and "beyond +-50 deg" in row for row in skipped)
    assert not (out / "AFW" / "AFW_0_1_0_rot60.jpg").exists()
    assert (out / "AFW" / "AFW_0_1_0_rot5.jpg").exists()


def test_pose_of_angles_alone_rotates_them_and_a_partial_pose_is_a_reported_skip(tmp_path):
    """A pose of the 3 angles alone (no translation, as a landmark format without a 3DDFA pose
    gives it) gets its angles rotated; 5 values (a translation cut short) cannot be rotated
    exactly and are skipped with the reason."""
    train = _fixture_training_set(tmp_path / "lp", 2)
    full = build_augmentation(train[:1], tmp_path / "lp", tmp_path / "full", True, 1.0, [10], 99, 0)
    for sample, size in zip(train, (3, 5), strict=True):
        mat = read_mat(sample.entry + ".mat")
        write_sample(
            Path(sample.entry),
            read_image(sample.entry + ".jpg"),
            {"Pose_Para": mat["Pose_Para"][:, :size], "pt2d": mat["pt2d"]},
        )
    result = build_augmentation(train, tmp_path / "lp", tmp_path / "aug", True, 1.0, [10], 99, 0)
    assert result.metrics["rotated_written"] == 1 and result.metrics["rotated_skipped"] == 1
    [(entry, _, angles)] = result.angles
    written = read_mat(entry + ".mat")["Pose_Para"]
    assert written.shape == (1, 3)
    np.testing.assert_allclose(angles, full.angles[0][2], atol=1e-4)  # the angles of the full pose
    assert "the pose has 5 values" in result.skipped[0][2]


def test_output_is_byte_identical_when_run_again(tmp_path):
    train = _fixture_training_set(tmp_path / "lp", 6)
    folders = []
    for run in range(2):
        out = tmp_path / f"aug{run}"
        build_augmentation(train, tmp_path / "lp", out, True, 0.5, [-10, 10], 99, seed=3)
        folders.append(
            {
                p.relative_to(out): p.read_bytes().replace(out.name.encode(), b"OUT")
                for p in out.rglob("*")
                if p.is_file()
            }
        )
    assert len(folders[0]) == 3 + 3 * 2 * 2 and folders[0] == folders[1]
