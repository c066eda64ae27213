"""Head-pose geometry: rotation matrices, Euler decomposition, projection, flips, in-plane rotation.

This module owns the one rotation/projection convention the datasets use (the 3DDFA convention
of 300W_LP and AFLW2000, see ``docs/conventions.md``)::

    Rx(pitch) = [[1, 0, 0], [0, c, s], [0, -s, c]]
    Ry(yaw)   = [[c, 0, -s], [0, 1, 0], [s, 0, c]]
    Rz(roll)  = [[c, s, 0], [-s, c, 0], [0, 0, 1]]
    R = Rx(pitch) @ Ry(yaw) @ Rz(roll)
    p = f * R @ v + t
    image_x = p_x ;  image_y = H + 1 - p_y     (MATLAB 1-based image coordinates)

``Pose_Para`` is ``[pitch, yaw, roll, tx, ty, tz, f]`` with angles in radians. Everything else in
the project (synthetic rendering, augmentation, crops) goes through these functions, so the
convention lives in exactly one place. Angles carry their unit in their name.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# The order of every (yaw, pitch, roll) triple in the project (arrays, metrics, file columns).
ANGLE_NAMES = ("yaw", "pitch", "roll")

# Pose_Para layout: indices of the parts of the 7-vector.
PITCH, YAW, ROLL = 0, 1, 2
TRANSLATION = slice(3, 6)
SCALE = 6

# Below this cos(yaw) a rotation is at gimbal lock (|yaw| = 90 degrees): roll is not defined.
GIMBAL_LOCK_COS = 1e-9


def _array_module(values):
    """torch for tensors, else numpy: the rotation functions below serve both (one convention for
    the data code's float64 arrays and for the networks' batched tensors, ONNX export included)."""
    return torch if isinstance(values, torch.Tensor) else np


def rotation_matrices(pitch_rad, yaw_rad, roll_rad):
    """R = Rx(pitch) @ Ry(yaw) @ Rz(roll) in the dataset convention, for arrays or tensors of
    angles of one shape (...): returns (..., 3, 3) of the same kind (numpy array or torch tensor).
    """
    xp = _array_module(pitch_rad)
    cp, sp = xp.cos(pitch_rad), xp.sin(pitch_rad)
    cy, sy = xp.cos(yaw_rad), xp.sin(yaw_rad)
    cr, sr = xp.cos(roll_rad), xp.sin(roll_rad)
    zero, one = xp.zeros_like(cp), xp.ones_like(cp)

    def matrix(rows):
        return xp.stack([xp.stack(row, -1) for row in rows], -2)

    rx = matrix([[one, zero, zero], [zero, cp, sp], [zero, -sp, cp]])
    ry = matrix([[cy, zero, -sy], [zero, one, zero], [sy, zero, cy]])
    rz = matrix([[cr, sr, zero], [-sr, cr, zero], [zero, zero, one]])
    return rx @ ry @ rz


def rotation_matrix(pitch_rad: float, yaw_rad: float, roll_rad: float) -> np.ndarray:
    """Return R = Rx(pitch) @ Ry(yaw) @ Rz(roll) in the dataset convention (3x3 float64)."""
    angles = np.asarray([pitch_rad, yaw_rad, roll_rad], dtype=np.float64)
    return rotation_matrices(*angles)


def _wrap_rad(angle_rad):
    """Wrap angles to (-pi, pi] (``math.remainder`` semantics; arrays, tensors or floats)."""
    xp = _array_module(angle_rad)
    wrapped = angle_rad - 2.0 * math.pi * xp.round(angle_rad / (2.0 * math.pi))
    return xp.where(wrapped == -math.pi, -wrapped, wrapped)


def euler_from_matrices(rotations, near_rad=None):
    """Decompose rotations (..., 3, 3) into (pitch_rad, yaw_rad, roll_rad), each (...), with
    atan2 only (no asin branch errors); numpy arrays or torch tensors.

    Every rotation has two Euler triples in this convention: (p, y, r) and
    (p + pi, pi - y, r + pi). Without ``near_rad`` the one with |yaw| <= 90 degrees is returned.
    With ``near_rad`` (a reference triple of numbers or arrays broadcasting to (...)) the triple
    closest to it is returned (sum of wrapped absolute differences; ties: |yaw| <= 90). At gimbal
    lock (|yaw| = 90) roll is set to 0 and pitch - sign(yaw) * roll is all put in pitch.
    """
    xp = _array_module(rotations)
    r = rotations
    cos_yaw = xp.sqrt(r[..., 0, 0] ** 2 + r[..., 0, 1] ** 2)  # hypot: not an ONNX operator
    yaw = xp.arctan2(-r[..., 0, 2], cos_yaw)
    locked = cos_yaw <= GIMBAL_LOCK_COS
    sign_yaw = xp.where(r[..., 0, 2] > 0, -xp.ones_like(yaw), xp.ones_like(yaw))
    pitch = xp.where(
        locked,
        xp.arctan2(r[..., 1, 0] * sign_yaw, r[..., 1, 1]),
        xp.arctan2(r[..., 1, 2], r[..., 2, 2]),
    )
    roll = xp.where(locked, xp.zeros_like(yaw), xp.arctan2(r[..., 0, 1], r[..., 0, 0]))
    if near_rad is None:
        return pitch, yaw, roll
    primary = (pitch, yaw, roll)
    alternate = (_wrap_rad(pitch + math.pi), _wrap_rad(math.pi - yaw), _wrap_rad(roll + math.pi))

    def distance(candidate):
        return sum(abs(_wrap_rad(a - b)) for a, b in zip(candidate, near_rad, strict=True))

    use_alternate = distance(alternate) < distance(primary)
    return tuple(
        xp.where(use_alternate, other, first)
        for first, other in zip(primary, alternate, strict=True)
    )


def euler_from_matrix(
    rotation: np.ndarray, near_rad: tuple[float, float, float] | None = None
) -> tuple[float, float, float]:
    """Decompose one R (3x3) into (pitch_rad, yaw_rad, roll_rad) floats: :func:`euler_from_matrices`
    (``near_rad``: the triple to stay nearest to, e.g. the angles before an augmentation, so a yaw
    of 95 degrees stays 95 instead of jumping to 85 with pitch and roll flipped by 180)."""
    angles = euler_from_matrices(np.asarray(rotation, dtype=np.float64), near_rad)
    return tuple(float(angle) for angle in angles)


def pose_angles_deg(pose_para: np.ndarray) -> tuple[float, float, float]:
    """Return (yaw_deg, pitch_deg, roll_deg) from a Pose_Para vector (radians inside)."""
    pose = np.asarray(pose_para, dtype=np.float64).ravel()
    return (math.degrees(pose[YAW]), math.degrees(pose[PITCH]), math.degrees(pose[ROLL]))


def project_points(vertices: np.ndarray, pose_para: np.ndarray, image_height: float) -> np.ndarray:
    """Project model-space points (N, 3) to image coordinates, returning (N, 3): x, y, depth.

    x and y are MATLAB 1-based image coordinates (origin top-left, y down); depth is the
    camera-space z of ``f * R @ v + t`` (larger is closer to the camera).
    """
    pose = np.asarray(pose_para, dtype=np.float64).ravel()
    rotation = rotation_matrix(pose[PITCH], pose[YAW], pose[ROLL])
    camera = pose[SCALE] * (np.asarray(vertices, dtype=np.float64) @ rotation.T) + pose[TRANSLATION]
    return np.stack([camera[:, 0], image_height + 1.0 - camera[:, 1], camera[:, 2]], axis=1)


def flip_pose_horizontally(pose_para: np.ndarray, image_width: float) -> np.ndarray:
    """Pose of the mirrored image: yaw and roll negate, tx mirrors about the image centre.

    Mirroring x in camera space is R -> M R M with M = diag(-1, 1, 1), which keeps pitch and
    negates yaw and roll in this convention. The x translation maps to ``W + 1 - tx``.
    """
    flipped = np.asarray(pose_para, dtype=np.float64).ravel().copy()
    flipped[[YAW, PITCH, ROLL]] = flip_angles(flipped[[YAW, PITCH, ROLL]])
    flipped[3] = image_width + 1.0 - flipped[3]
    return flipped


def flip_angles(angles: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) (..., 3) of the horizontally mirrored image: yaw and roll negate (any
    unit, same dtype)."""
    return angles * np.array([-1.0, 1.0, -1.0], dtype=angles.dtype)


def in_plane_rotation_affine(angle_deg: float, center_xy: tuple[float, float]) -> np.ndarray:
    """2x3 affine matrix rotating image points by ``angle_deg`` counter-clockwise on screen.

    Same matrix as ``cv2.getRotationMatrix2D(center, angle_deg, 1.0)``: apply it to (x, y, 1)
    image coordinates (y down). Points and the pixel grid must use the same origin: for 1-based
    landmark coordinates, warp the pixel array about ``center - 1``.
    """
    angle_rad = math.radians(angle_deg)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    cx, cy = center_xy
    return np.array([[c, s, (1 - c) * cx - s * cy], [-s, c, s * cx + (1 - c) * cy]])


def apply_affine(affine: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    points = np.asarray(points_xy, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def rotate_pose_in_plane(
    pose_para: np.ndarray, angle_deg: float, center_xy: tuple[float, float], image_height: float
) -> np.ndarray:
    """Pose_Para of the image rotated in-plane by ``angle_deg`` (CCW on screen) about ``center_xy``.

    The image rotation is a rotation about the camera's viewing axis. In the y-up projection
    space it is the standard CCW matrix Q, so the new pose has R' = Q @ R and t' = Q (t - c) + c
    (c: the centre in projection space). The new Euler angles are decomposed from R' and chosen
    on the branch nearest the original ones. Scale and depth translation are unchanged; a
    ``pose_para`` of the 3 angles alone gets its angles rotated.
    """
    pose = np.asarray(pose_para, dtype=np.float64).ravel()
    angle_rad = math.radians(angle_deg)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    q = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    rotation = q @ rotation_matrix(pose[PITCH], pose[YAW], pose[ROLL])
    pitch, yaw, roll = euler_from_matrix(rotation, near_rad=(pose[PITCH], pose[YAW], pose[ROLL]))
    rotated = pose.copy()
    rotated[[PITCH, YAW, ROLL]] = (pitch, yaw, roll)
    if pose.size > 3:  # a pose of the angles alone has no translation to move
        center = np.array([center_xy[0], image_height + 1.0 - center_xy[1], 0.0])
        rotated[TRANSLATION] = q @ (pose[TRANSLATION] - center) + center
    return rotated
