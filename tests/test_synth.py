"""Synthetic datasets: label convention, landmark visibility, pose percentiles, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from headpose.datasets.mat import find_sample_stems, read_mat, read_mat_labels, write_sample
from headpose.errors import HeadposeError
from headpose.geometry import flip_pose_horizontally, project_points, rotation_matrix
from headpose.params import load_params
from headpose.synth import render as synth
from headpose.synth.head import MIRRORED_68

SIZE = 160
POSES_DEG = [(0.0, 0.0, 0.0), (-70.0, 15.0, -10.0), (45.0, -30.0, 25.0), (88.0, 5.0, 0.0)]


@pytest.fixture(scope="module")
def settings() -> dict:
    return load_params().synth.as_dict()


def _render(index: int, pose_deg, size: int = SIZE) -> synth.RenderedSample:
    return synth.render_sample(0, (99, index), (99, index, 0), pose_deg, size)


@pytest.mark.parametrize("index", range(len(POSES_DEG)))
def test_stored_training_labels_are_the_projection_of_the_3d_landmarks(tmp_path, index):
    sample = _render(index, POSES_DEG[index])
    write_sample(tmp_path / "s", sample.image, synth.w300lp_labels(sample))
    mat = read_mat(tmp_path / "s.mat")
    assert mat["Pose_Para"].shape == (1, 7) and mat["Pose_Para"].dtype == np.float32
    assert mat["pt2d"].shape == (2, 68) and mat["roi"].shape == (1, 4)
    projected = project_points(sample.landmarks_68, mat["Pose_Para"], SIZE)[:, :2]
    np.testing.assert_allclose(mat["pt2d"].T, projected, atol=1e-3)
    stored_deg = np.degrees(mat["Pose_Para"][0, [1, 0, 2]])  # yaw, pitch, roll
    np.testing.assert_allclose(stored_deg, POSES_DEG[index], atol=1e-4)


@pytest.mark.parametrize("index", range(len(POSES_DEG)))
def test_stored_test_labels_follow_aflw2000(tmp_path, index):
    sample = _render(index, POSES_DEG[index])
    write_sample(tmp_path / "image00000", sample.image, synth.aflw2000_labels(sample))
    mat = read_mat(tmp_path / "image00000.mat")
    pose = mat["Pose_Para"]
    assert mat["pt2d"].shape == (2, 21) and mat["pt3d_68"].shape == (3, 68)
    np.testing.assert_allclose(
        mat["pt3d_68"].T, project_points(sample.landmarks_68, pose, SIZE), rtol=1e-6, atol=1e-3
    )
    pt2d = mat["pt2d"].T
    visible = sample.aflw_visible
    projected = project_points(sample.landmarks_aflw, pose, SIZE)[:, :2]
    np.testing.assert_allclose(pt2d[visible], projected[visible], atol=1e-3)
    assert np.all(pt2d[~visible] == [-1.0, SIZE + 2.0])  # AFLW2000's (-1, 452) placeholder
    assert visible.sum() >= synth.MIN_VISIBLE
    labels = read_mat_labels(tmp_path / "image00000.mat")
    assert labels.visible_points_xy.shape == (visible.sum(), 2)


def test_profile_hides_the_far_side_landmarks():
    yaw_deg = 80.0  # positive yaw turns the image-left side (AFLW points 0-2, 6-8, 12) away
    visible = _render(7, (yaw_deg, 0.0, 0.0)).aflw_visible
    assert not visible[[0, 1, 6, 7, 12]].any()
    assert visible[[4, 5, 10, 11, 16]].all()
    assert _render(7, (0.0, 0.0, 0.0)).aflw_visible[:12].all()


def test_landmarks_sit_on_the_rendered_features():
    sample = _render(3, (0.0, 0.0, 0.0), size=450)
    gray = sample.image.astype(float).mean(axis=2)
    points = project_points(sample.landmarks_aflw, sample.pose_para, 450)[:, :2] - 1
    pupils = [gray[int(round(y)), int(round(x))] for x, y in points[[7, 10]]]
    # cheeks: halfway between each eye centre and the mouth corner below it
    cheeks = [
        gray[int(round(y)), int(round(x))]
        for x, y in (points[[7, 17]].mean(axis=0), points[[10, 19]].mean(axis=0))
    ]
    assert max(pupils) < 0.6 * min(cheeks)


def test_mirrored_labels_are_the_mirrored_head_under_the_flipped_pose():
    sample = _render(2, POSES_DEG[2])
    mirrored = synth.mirrored_labels(synth.w300lp_labels(sample), SIZE)
    pose = mirrored["Pose_Para"].ravel()
    np.testing.assert_allclose(pose, flip_pose_horizontally(sample.pose_para, SIZE), rtol=1e-6)
    mirrored_head = (sample.landmarks_68 * [-1.0, 1.0, 1.0])[MIRRORED_68]
    projected = project_points(mirrored_head, pose, SIZE)[:, :2]
    np.testing.assert_allclose(mirrored["pt2d"].T, projected, atol=1e-3)
    assert sorted(MIRRORED_68) == list(range(68))
    assert all(MIRRORED_68[MIRRORED_68[i]] == i for i in range(68))


@pytest.mark.parametrize("block", ["train_pose", "test_pose"])
def test_pose_percentiles_match_the_targets(settings, block):
    targets = settings[block]
    outliers = settings["test_outlier_fraction"] if block == "test_pose" else 0.0
    poses = synth.sample_poses(np.random.default_rng(5), 20000, targets, block, outliers)
    beyond = np.abs(poses).max(axis=1) > synth.LABEL_LIMIT_DEG
    assert beyond.mean() == pytest.approx(outliers, abs=1e-4)
    for column, name in enumerate(synth.ANGLE_NAMES):
        produced = np.percentile(poses[:, column], [5, 95])
        np.testing.assert_allclose(produced, targets[name], atol=1.5, err_msg=f"{block}.{name}")


def test_outliers_are_regular_poses_written_on_the_other_euler_branch(settings):
    poses = synth.sample_poses(
        np.random.default_rng(6), 1000, settings["test_pose"], "t", outlier_fraction=0.02
    )
    outliers = poses[np.abs(poses).max(axis=1) > synth.LABEL_LIMIT_DEG]
    assert len(outliers) == 20
    for yaw_deg, pitch_deg, roll_deg in outliers:
        twin = (np.array([180.0 - yaw_deg, pitch_deg - 180.0, roll_deg - 180.0]) + 180) % 360 - 180
        assert np.all(np.abs(twin) <= synth.LABEL_LIMIT_DEG)
        np.testing.assert_allclose(
            rotation_matrix(*np.radians([pitch_deg, yaw_deg, roll_deg])),
            rotation_matrix(*np.radians(twin[[1, 0, 2]])),
            atol=1e-12,
        )


def test_too_many_outliers_is_one_clear_error(settings):
    with pytest.raises(HeadposeError, match="synth.test_outlier_fraction"):
        synth.sample_poses(np.random.default_rng(0), 10, settings["test_pose"], "t", 0.1)


def test_unreachable_percentiles_name_the_key():
    with pytest.raises(HeadposeError, match="synth.train_pose.yaw"):
        synth.fit_angle_distribution(-95.0, 95.0, "synth.train_pose.yaw")


def test_fitted_distribution_is_flat_for_wide_yaw(settings):
    wide = synth.fit_angle_distribution(*settings["train_pose"]["yaw"], "yaw")
    assert wide.sd_deg > 60  # much flatter than a normal that puts 90% inside +-81.8
    narrow = synth.fit_angle_distribution(*settings["train_pose"]["pitch"], "pitch")
    assert narrow.mean_deg < 0 and narrow.sd_deg < 15


def _tiny_settings(settings: dict) -> dict:
    tiny = dict(settings, train_faces=3, variants_per_face=2, mirror=True, test_images=12)
    return dict(tiny, image_size=96, test_outlier_fraction=0.09)


def _file_bytes(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_generation_is_deterministic_and_independent_of_workers(tmp_path, settings):
    tiny = _tiny_settings(settings)
    first = synth.generate(tiny, 3, tmp_path / "a/train", tmp_path / "a/test", workers=1).metrics
    synth.generate(tiny, 3, tmp_path / "b/train", tmp_path / "b/test", workers=2)
    files_a, files_b = _file_bytes(tmp_path / "a"), _file_bytes(tmp_path / "b")
    assert files_a == files_b
    assert (
        first["train_images"] == 12 and first["test_images"] == 12 and first["test_outliers"] == 1
    )
    train_stems, _ = find_sample_stems(tmp_path / "a/train", recursive=True)
    assert "AFW/AFW_0_1_1" in train_stems or "HELEN/HELEN_0_1_1" in train_stems
    assert sum(stem.split("/")[0].endswith("_Flip") for stem in train_stems) == 6
    test_stems, _ = find_sample_stems(tmp_path / "a/test", recursive=False)
    assert test_stems == [f"image{index:05d}" for index in range(12)]
    synth.generate(tiny, 4, tmp_path / "c/train", tmp_path / "c/test", workers=1)
    assert _file_bytes(tmp_path / "c") != files_a  # another seed, other images

    sheet = synth.write_contact_sheet(tmp_path / "a/train", tmp_path / "a/test", tmp_path / "s.png")
    assert sheet.read_bytes()[:4] == b"\x89PNG"


def test_variants_share_the_face_but_not_the_pose(settings):
    tiny = dict(_tiny_settings(settings), mirror=False)
    jobs = synth.w300lp_jobs(tiny, 0)
    assert jobs[0].face_key == jobs[1].face_key and jobs[0].pose_deg != jobs[1].pose_deg
    assert jobs[0].face_key != jobs[2].face_key


def test_a_variant_renders_the_same_after_its_face_was_built_for_another(settings):
    """Variants of one face reuse its built head, background and stream (one worker renders
    them in a row); an image must not depend on which variant came first."""
    jobs = synth.w300lp_jobs(dict(_tiny_settings(settings), mirror=False), 0)
    first, second = jobs[0], jobs[1]
    assert first.face_key == second.face_key

    def render(job):
        return synth.render_sample(
            job.seed, job.face_key, job.image_key, job.pose_deg, job.image_size
        ).image

    synth._face.cache_clear()
    alone = render(second)
    synth._face.cache_clear()
    render(first)
    assert synth._face.cache_info().currsize == 1
    after_first = render(second)
    assert synth._face.cache_info().hits >= 1
    assert np.array_equal(alone, after_first)
    assert not np.array_equal(render(first), after_first)


def test_real_files_read_with_the_expected_shapes_and_units(aflw2000_dir, w300lp_sample_dir):
    """The reader handles the real formats; the synthetic files copy their shapes and types."""
    real = read_mat(aflw2000_dir / "image00002.mat")
    assert real["pt2d"].shape == (2, 21) and real["pt3d_68"].shape == (3, 68)
    annotation = read_mat_labels(aflw2000_dir / "image00004.mat")
    assert annotation.visible_points_xy.shape[1] == 2 and len(annotation.visible_points_xy) < 21
    assert np.all((annotation.visible_points_xy > 0) & (annotation.visible_points_xy < 451))
    yaw_deg, _, _ = annotation.angles_deg  # radians on disk, degrees here
    assert 60 < yaw_deg < 75 and abs(annotation.pose[1]) < math.pi
    hidden = real["pt2d"].T[np.any(real["pt2d"].T < 0, axis=1)]
    assert np.all(hidden == [-1.0, 452.0])  # the placeholder synth.aflw2000_labels copies
    lp = read_mat(w300lp_sample_dir / "IBUG" / "IBUG_image_008_1_0.mat")
    assert lp["pt2d"].shape == (2, 68)
    sample = _render(0, (0.0, 0.0, 0.0), size=450)
    for labels, reference in (
        (synth.aflw2000_labels(sample), real),
        (synth.w300lp_labels(sample), lp),
    ):
        for key, value in labels.items():
            assert value.shape == reference[key].shape, key
            assert value.dtype == reference[key].dtype, key
