"""Face crops: HopeNet's loose box around the landmarks, and cropping it out of an image.

The original HopeNet crops the face from the min/max box of the 2D landmarks, loosened by a factor
``k`` of the box size (see ``docs/conventions.md``, "Face crops"):

* ``mode="train"`` (300W_LP): ``k`` random in [0.2, 0.4]; left and right by ``0.6 k``, top by
  ``2 k``, bottom by ``0.6 k``.
* ``mode="eval"`` (AFLW2000 testing): ``k = 0.2``; left, right and top by ``2 k``, bottom by
  ``0.6 k``.

Boxes are ``(x_min, y_min, x_max, y_max)`` floats in pixel coordinates whose origin is the
top-left corner of the image. Dataset landmarks are 1-based (MATLAB), so convert them with
``landmarks_xy - 1`` first (:mod:`headpose.data.store` does). :func:`crop_resized` pads the
parts of a box outside the image with black, as the original's PIL crop does, and resizes the crop
to a square; training, evaluation and prediction (on detector boxes) all use it.

The crop store keeps, per sample, the :func:`cache_region` of its face (the widest region any
training or evaluation crop can need) at :func:`cache_side` pixels; the datasets cut the actual
crops out of that small image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from headpose.errors import HeadposeError
from headpose.io.formats import visible_landmarks

TRAIN_K_RANGE = (0.2, 0.4)  # looseness drawn uniformly per training sample
EVAL_K = 0.2  # fixed looseness of evaluation crops

# Margins per mode as multiples of k: (left/right, top, bottom), each times the box size.
_MARGINS = {"train": (0.6, 2.0, 0.6), "eval": (2.0, 2.0, 0.6)}
CROP_MODES = tuple(_MARGINS)

# The cached region is this much larger than image_size, so even the tightest crop it holds
# (k = 0.2 train margins: 69% of the cached width) keeps about image_size pixels.
CACHE_SCALE = 1.5

Box = tuple[float, float, float, float]


def landmark_box(landmarks_xy: np.ndarray) -> Box:
    """Min/max box of the visible landmarks; points with a negative coordinate are dropped.

    AFLW2000 stores invisible landmarks as negative placeholders such as ``(-1, 452)``.
    """
    points = np.asarray(landmarks_xy, dtype=np.float64).reshape(-1, 2)
    visible = points[visible_landmarks(points)]
    if len(visible) < 2:
        raise HeadposeError(f"need at least 2 visible landmarks for a face box, got {len(visible)}")
    x_min, y_min = visible.min(axis=0)
    x_max, y_max = visible.max(axis=0)
    return float(x_min), float(y_min), float(x_max), float(y_max)


def loosen_box(box: Box, k: float, mode: str) -> Box:
    """Loosen a tight face box by factor ``k`` with the margins of ``mode`` ("train" or "eval")."""
    if mode not in _MARGINS:
        raise HeadposeError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    side_factor, top_factor, bottom_factor = _MARGINS[mode]
    x_min, y_min, x_max, y_max = box
    width, height = x_max - x_min, y_max - y_min
    return (
        x_min - side_factor * k * width,
        y_min - top_factor * k * height,
        x_max + side_factor * k * width,
        y_max + bottom_factor * k * height,
    )


def _pixel_bounds(box: Box) -> tuple[int, int, int, int]:
    """``box`` rounded outwards to whole pixels: the pixels :func:`crop_resized` cuts."""
    return math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3])


def box_in_crop(box: Box, region: Box, size: int) -> Box:
    """``box`` in the pixel coordinates of ``crop_resized(image, region, size)``."""
    left, top, right, bottom = _pixel_bounds(region)
    scale_x = size / (right - left)
    scale_y = size / (bottom - top)
    return (
        (box[0] - left) * scale_x,
        (box[1] - top) * scale_y,
        (box[2] - left) * scale_x,
        (box[3] - top) * scale_y,
    )


def crop_resized(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Cut ``box`` out of ``image`` (black outside the image) and resize it to ``size`` x ``size``.

    The box is rounded outwards to whole pixels. Shrinking uses area interpolation (no aliasing),
    enlarging bilinear.
    """
    height, width = image.shape[:2]
    x_min, y_min, x_max, y_max = _pixel_bounds(box)
    if x_max <= x_min or y_max <= y_min:
        raise HeadposeError(f"empty crop box {box}")
    inside = image[max(y_min, 0) : min(y_max, height), max(x_min, 0) : min(x_max, width)]
    if inside.size == 0:  # the box lies wholly outside the image
        crop = np.zeros((y_max - y_min, x_max - x_min) + image.shape[2:], image.dtype)
    else:
        crop = cv2.copyMakeBorder(
            inside,
            top=max(-y_min, 0),
            bottom=max(y_max - height, 0),
            left=max(-x_min, 0),
            right=max(x_max - width, 0),
            borderType=cv2.BORDER_CONSTANT,
            value=0,
        )
    shrinking = crop.shape[0] > size or crop.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def cache_region(face_box: Box) -> Box:
    """The widest region any crop of this face can need: the union of the loosest train crop
    (k = 0.4) and the evaluation crop (k = 0.2)."""
    train = loosen_box(face_box, TRAIN_K_RANGE[1], "train")
    evaluation = loosen_box(face_box, EVAL_K, "eval")
    return (
        min(train[0], evaluation[0]),
        min(train[1], evaluation[1]),
        max(train[2], evaluation[2]),
        max(train[3], evaluation[3]),
    )


def cache_side(image_size: int) -> int:
    """Side in pixels of the cached crops for a model input of ``image_size``."""
    return math.ceil(image_size * CACHE_SCALE)
