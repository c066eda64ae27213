"""Inverses and shortcuts the tests use to check the library (not needed by the library)."""

from __future__ import annotations

import numpy as np
from protocol_fixtures import VISIBLE

from headpose.crops.crop import Box, landmark_box
from headpose.geometry import PITCH, ROLL, SCALE, TRANSLATION, YAW, rotation_matrix


def unproject_points(
    image_points: np.ndarray, pose_para: np.ndarray, image_height: float
) -> np.ndarray:
    """Invert :func:`headpose.geometry.project_points`: image (x, y, depth) points (N, 3) back to
    model space."""
    pose = np.asarray(pose_para, dtype=np.float64).ravel()
    rotation = rotation_matrix(pose[PITCH], pose[YAW], pose[ROLL])
    points = np.asarray(image_points, dtype=np.float64)
    camera = np.stack([points[:, 0], image_height + 1.0 - points[:, 1], points[:, 2]], axis=1)
    return ((camera - pose[TRANSLATION]) / pose[SCALE]) @ rotation


def loose_box(landmarks_xy: np.ndarray, k: float, mode: str) -> Box:
    """The ``visible`` protocol's loose face box: the visible landmarks' min/max box loosened by
    ``k``."""
    return VISIBLE.loosen_box(landmark_box(landmarks_xy), k, mode)
