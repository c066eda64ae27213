"""Rotation convention, Euler round trips, projection, flip and in-plane rotation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_helpers import unproject_points

from headpose import geometry as g
from headpose.datasets.labels import angles_within
from headpose.datasets.mat import find_sample_stems, read_mat


def test_elementary_matrices_follow_the_convention():
    c, s = math.cos(0.3), math.sin(0.3)
    np.testing.assert_allclose(g.rotation_matrix(0.3, 0, 0), [[1, 0, 0], [0, c, s], [0, -s, c]])
    np.testing.assert_allclose(g.rotation_matrix(0, 0.3, 0), [[c, 0, -s], [0, 1, 0], [s, 0, c]])
    np.testing.assert_allclose(g.rotation_matrix(0, 0, 0.3), [[c, s, 0], [-s, c, 0], [0, 0, 1]])
    composed = (
        g.rotation_matrix(0.1, 0, 0) @ g.rotation_matrix(0, 0.2, 0) @ g.rotation_matrix(0, 0, 0.3)
    )
    np.testing.assert_allclose(g.rotation_matrix(0.1, 0.2, 0.3), composed)


@pytest.mark.parametrize("pitch_deg", np.arange(-179, 180, 17))
@pytest.mark.parametrize("yaw_deg", [-89.5, -60, -30, 0, 15, 45, 89.5])
@pytest.mark.parametrize("roll_deg", np.arange(-178, 180, 23))
def test_euler_round_trip_over_the_whole_range(pitch_deg, yaw_deg, roll_deg):
    angles = tuple(math.radians(a) for a in (pitch_deg, yaw_deg, roll_deg))
    recovered = g.euler_from_matrix(g.rotation_matrix(*angles))
    np.testing.assert_allclose(recovered, angles, atol=1e-9)


@pytest.mark.parametrize("yaw_deg", [95.0, -97.0, 120.0])
def test_yaw_beyond_90_stays_on_the_branch_near_the_reference(yaw_deg):
    angles = (math.radians(-10), math.radians(yaw_deg), math.radians(5))
    rotation = g.rotation_matrix(*angles)
    np.testing.assert_allclose(g.euler_from_matrix(rotation, near_rad=angles), angles, atol=1e-9)
    # Without a reference the |yaw| <= 90 twin is returned; it is the same rotation.
    twin = g.euler_from_matrix(rotation)
    assert abs(twin[1]) <= math.pi / 2
    np.testing.assert_allclose(g.rotation_matrix(*twin), rotation, atol=1e-12)


def test_gimbal_lock_gives_an_equivalent_rotation():
    rotation = g.rotation_matrix(0.4, math.pi / 2, 0.1)
    np.testing.assert_allclose(
        g.rotation_matrix(*g.euler_from_matrix(rotation)), rotation, atol=1e-9
    )


def test_projection_round_trip():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(50, 3)) * 1000
    pose = np.array([0.2, -0.7, 0.1, 200.0, 230.0, -90.0, 0.0015])
    projected = g.project_points(vertices, pose, image_height=450)
    np.testing.assert_allclose(unproject_points(projected, pose, 450), vertices, atol=1e-6)


def test_horizontal_flip_negates_yaw_and_roll_and_mirrors_the_projection():
    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(30, 3)) * 1000
    pose = np.array([0.2, -0.7, 0.3, 200.0, 230.0, -90.0, 0.0015])
    flipped = g.flip_pose_horizontally(pose, image_width=450)
    np.testing.assert_allclose(flipped[:3], [0.2, 0.7, -0.3])
    mirrored_vertices = vertices * [-1, 1, 1]  # the mirrored head
    original = g.project_points(vertices, pose, 450)
    mirrored = g.project_points(mirrored_vertices, flipped, 450)
    np.testing.assert_allclose(mirrored[:, 0], 451 - original[:, 0], atol=1e-9)
    np.testing.assert_allclose(mirrored[:, 1:], original[:, 1:], atol=1e-9)


def test_in_plane_rotation_matches_rotated_projection():
    rng = np.random.default_rng(2)
    vertices = rng.normal(size=(40, 3)) * 1000
    pose = np.array([0.3, 1.2, -0.4, 210.0, 240.0, -90.0, 0.0015])
    center = (225.5, 225.5)
    for angle_deg in (-20, -10, 10, 20, 75):
        rotated_pose = g.rotate_pose_in_plane(pose, angle_deg, center, image_height=450)
        expected = g.apply_affine(
            g.in_plane_rotation_affine(angle_deg, center),
            g.project_points(vertices, pose, 450)[:, :2],
        )
        np.testing.assert_allclose(
            g.project_points(vertices, rotated_pose, 450)[:, :2], expected, atol=1e-6
        )


def test_in_plane_rotation_of_a_frontal_face_changes_roll_only():
    pose = np.array([0.0, 0.0, 0.0, 225.0, 225.0, 0.0, 0.001])
    rotated = g.rotate_pose_in_plane(pose, 20, (225.5, 225.5), 450)
    yaw_deg, pitch_deg, roll_deg = g.pose_angles_deg(rotated)
    assert abs(yaw_deg) < 1e-9 and abs(pitch_deg) < 1e-9
    assert abs(abs(roll_deg) - 20) < 1e-9


def test_rotating_back_restores_the_angles():
    pose = np.array([-0.5, 1.4, 1.5, 200.0, 220.0, -50.0, 0.002])
    there = g.rotate_pose_in_plane(pose, 20, (100.0, 300.0), 450)
    back = g.rotate_pose_in_plane(there, -20, (100.0, 300.0), 450)
    np.testing.assert_allclose(back, pose, atol=1e-9)


def _model_space_spread(mats, unproject) -> float:
    """Median landmark disagreement across images of un-projected pt3d_68, relative to head size."""
    heads = []
    for mat in mats:
        pose = mat["Pose_Para"].ravel().astype(np.float64)
        points = unproject(mat["pt3d_68"].T.astype(np.float64), pose)
        heads.append(points - points.mean(axis=0))
    heads = np.array(heads)
    typical = np.median(heads, axis=0)
    return float(
        np.median(np.linalg.norm(heads - typical, axis=2))
        / np.median(np.linalg.norm(heads, axis=2))
    )


def test_real_aflw2000_follows_the_convention(aflw2000_dir):
    """Un-projecting pt3d_68 with its own Pose_Para gives one consistent 3D face shape only
    under the documented convention, not under a flipped sign or the usual rotation order."""
    stems, _ = find_sample_stems(aflw2000_dir, recursive=False)
    mats = []
    for stem in stems[:300]:
        mat = read_mat(aflw2000_dir / f"{stem}.mat")
        if angles_within(g.pose_angles_deg(mat["Pose_Para"]), 99):
            mats.append(mat)

    def documented(points, pose):
        return unproject_points(points, pose, 450)

    def yaw_sign_flipped(points, pose):
        return unproject_points(points, pose * [1, -1, 1, 1, 1, 1, 1], 450)

    def usual_rotation_order(points, pose):
        camera = np.stack([points[:, 0], 451 - points[:, 1], points[:, 2]], axis=1)
        return ((camera - pose[3:6]) / pose[6]) @ g.rotation_matrix(*pose[:3]).T

    spread = _model_space_spread(mats, documented)
    assert spread < 0.1
    assert _model_space_spread(mats, yaw_sign_flipped) > 3 * spread
    assert _model_space_spread(mats, usual_rotation_order) > 3 * spread
