"""Drawing predictions: the three head axes (HopeNet style) and the face box on an image.

The axes are the head model's unit axes (x to the face's left-to-right, y up, z out of the face
toward the camera for a frontal pose) rotated by the pose and projected orthographically with the
dataset convention of :mod:`headpose.geometry` (``p = R @ v``, image y = -p_y), so a drawing
agrees with the labels: the blue z axis points where the nose points. Colours: x red, y green,
z blue.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from headpose.geometry import rotation_matrix

AXIS_COLORS_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # x red, y green, z blue
BOX_COLOR_RGB = (255, 255, 0)


def axis_endpoints(
    yaw_deg: float,
    pitch_deg: float,
    roll_deg: float,
    center_xy: tuple[float, float],
    length_px: float,
) -> np.ndarray:
    """Image positions (3, 2) of the tips of the x, y and z head axes drawn from ``center_xy``."""
    rotation = rotation_matrix(
        math.radians(pitch_deg), math.radians(yaw_deg), math.radians(roll_deg)
    )
    rotated_axes = rotation @ np.eye(3)  # column i: axis i in camera space (y up)
    offsets = np.stack([rotated_axes[0], -rotated_axes[1]], axis=1)  # image y points down
    return np.asarray(center_xy, dtype=np.float64) + length_px * offsets


def draw_pose(
    image_rgb: np.ndarray,
    box: tuple[float, float, float, float],
    yaw_deg: float,
    pitch_deg: float,
    roll_deg: float,
) -> None:
    """Draw the face box and the head axes from its centre onto ``image_rgb`` (in place)."""
    x_min, y_min, x_max, y_max = box
    center = ((x_min + x_max) / 2, (y_min + y_max) / 2)
    length_px = 0.5 * max(x_max - x_min, y_max - y_min)
    thickness = max(1, round(min(image_rgb.shape[:2]) / 200))
    cv2.rectangle(
        image_rgb, (round(x_min), round(y_min)), (round(x_max), round(y_max)), BOX_COLOR_RGB, 1
    )
    start = (round(center[0]), round(center[1]))
    tips = axis_endpoints(yaw_deg, pitch_deg, roll_deg, center, length_px)
    for tip, color in zip(tips, AXIS_COLORS_RGB, strict=True):
        cv2.line(image_rgb, start, (round(tip[0]), round(tip[1])), color, thickness, cv2.LINE_AA)
    label = f"y{yaw_deg:+.0f} p{pitch_deg:+.0f} r{roll_deg:+.0f}"
    cv2.putText(
        image_rgb,
        label,
        (round(x_min), max(round(y_min) - 4, 10)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4 * thickness,
        BOX_COLOR_RGB,
        thickness,
        cv2.LINE_AA,
    )
