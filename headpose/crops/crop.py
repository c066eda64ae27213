"""Face crops: what every crop protocol shares — the looseness and margins, the face boxes built
from landmarks, and the pixel helpers that cut and scale crops.

A crop protocol (:mod:`headpose.crops.protocols`: one registered object per protocol, chosen once
from ``crop_protocol`` and passed as a value) says how a face is framed for the network: its face
box, how the margins move the box's edges, how the box becomes whole pixels and how those pixels
become the network's square input, its random training crop and its training blur. This module
holds the rules and helpers those protocols share:

* the looseness ``k`` (uniform in :data:`TRAIN_K_RANGE` for training, :data:`EVAL_K` for
  evaluation, :data:`PREDICT_K` for prediction) and the margins of each crop mode, (left, top,
  right, bottom) multiples of ``k`` (:data:`MARGINS`: (2, 2, 2, 0.6) k for evaluation, (0.6, 2,
  0.6, 0.6) k for training);
* the face box of the visible landmarks (:func:`landmark_box`);
* the pixels: :func:`cut` (black outside the image, as PIL's crop), :func:`resize_square`,
  :func:`shrunk_cut` (the two at the cost of the image's part of a large canvas),
  :func:`scaled_size` and :func:`scale_and_center_crop` (torchvision's ``Resize(int)`` +
  ``CenterCrop`` on PIL images) and :func:`rounded_outwards`;
* the side of the crop store's cached training regions (:func:`cache_side`).

Everything is in the pixel coordinates of the full image (origin at the top-left corner, boxes
``(x_min, y_min, x_max, y_max)``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image
from torchvision.transforms import functional as tvf

from headpose.datasets.labels import Box, visible_landmarks
from headpose.errors import HeadposeError

TRAIN_K_RANGE = (0.2, 0.4)  # looseness drawn uniformly per training sample
EVAL_K = 0.2  # fixed looseness of evaluation crops
PREDICT_K = sum(TRAIN_K_RANGE) / 2  # detector boxes: the middle of the training range

# Margins per mode as multiples of k, each times the box size: (left, top, right, bottom).
MARGINS = {"train": (0.6, 2.0, 0.6, 0.6), "eval": (2.0, 2.0, 2.0, 0.6)}
CROP_MODES = tuple(MARGINS)

# The cached training region is this much larger than image_size, so even the tightest crop it
# holds keeps about image_size pixels.
CACHE_SCALE = 1.5

PixelBox = tuple[int, int, int, int]


def margins(k: float, mode: str) -> Box:
    """The (left, top, right, bottom) margins of crop ``mode`` ("train" or "eval") at looseness
    ``k``, as fractions of the box's size."""
    if mode not in MARGINS:
        raise HeadposeError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    left, top, right, bottom = (factor * k for factor in MARGINS[mode])
    return left, top, right, bottom


# --- The face box of landmarks ------------------------------------------------------------------


def widened(box: Box, left: float, top: float, right: float, bottom: float) -> Box:
    """``box`` with each edge moved out by its share of the box's width (``left``, ``right``) or
    height (``top``, ``bottom``), all measured on ``box`` itself (simultaneous margins; the
    published protocol's margins in running order are its own)."""
    x_min, y_min, x_max, y_max = box
    width, height = x_max - x_min, y_max - y_min
    return (
        x_min - left * width,
        y_min - top * height,
        x_max + right * width,
        y_max + bottom * height,
    )


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


# --- Pixels -------------------------------------------------------------------------------------


def rounded_outwards(box: Box) -> PixelBox:
    """The whole pixels covering ``box``: its edges rounded outwards."""
    return math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3])


def cut(image: np.ndarray, bounds: PixelBox) -> np.ndarray:
    """The pixels ``bounds`` (left, top, right, bottom; right/bottom exclusive) of ``image``,
    black where they lie outside it (as PIL's ``Image.crop``)."""
    left, top, right, bottom = bounds
    if right <= left or bottom <= top:
        raise HeadposeError(f"empty crop box {bounds}")
    height, width = image.shape[:2]
    out = np.zeros((bottom - top, right - left) + image.shape[2:], image.dtype)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if x1 > x0 and y1 > y0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def resize_square(crop: np.ndarray, size: int) -> np.ndarray:
    """``crop`` resized to ``size`` x ``size`` (OpenCV: area interpolation when shrinking, else
    bilinear)."""
    shrinking = crop.shape[0] > size or crop.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def shrunk_cut(image: np.ndarray, bounds: PixelBox, size: int) -> np.ndarray:
    """``resize_square(cut(image, bounds), size)`` at the cost of the image's part of ``bounds``
    rather than of all of it (a framing context's canvas is mostly black outside the image).

    When ``bounds`` is larger than ``size`` both ways, only the output pixels that see the image
    are resampled (area interpolation), from the source pixels they cover: each edge of that
    block is placed at the nearest source pixel, so its cells may sit up to half a source pixel
    (a small part of a cell) off the exact resampling of the whole canvas; the other output
    pixels are black, as they would be.
    Otherwise the exact ``resize_square(cut(...))``."""
    left, top, right, bottom = bounds
    width, height = right - left, bottom - top
    if width <= size or height <= size:
        return resize_square(cut(image, bounds), size)
    image_height, image_width = image.shape[:2]
    columns = _seen_cells(left, width, image_width, size)
    rows = _seen_cells(top, height, image_height, size)
    if columns is None or rows is None:
        return np.zeros((size, size) + image.shape[2:], image.dtype)
    if columns == (0, size) and rows == (0, size):
        return resize_square(cut(image, bounds), size)
    (first_column, end_column), (first_row, end_row) = columns, rows
    source = (
        left + round(first_column * width / size),
        top + round(first_row * height / size),
        left + round(end_column * width / size),
        top + round(end_row * height / size),
    )
    out = np.zeros((size, size) + image.shape[2:], image.dtype)
    out[first_row:end_row, first_column:end_column] = cv2.resize(
        cut(image, source),
        (end_column - first_column, end_row - first_row),
        interpolation=cv2.INTER_AREA,
    ).reshape((end_row - first_row, end_column - first_column) + image.shape[2:])
    return out


def _seen_cells(start: int, length: int, image_length: int, size: int) -> tuple[int, int] | None:
    """The output cells ``[first, end)`` of ``size`` cells over the source span ``[start, start +
    length)`` that hold some of the image's ``[0, image_length)``; None when none does."""
    inside_from, inside_to = max(start, 0), min(start + length, image_length)
    if inside_to <= inside_from:
        return None
    cell = length / size
    first = max(math.floor((inside_from - start) / cell), 0)
    end = min(math.ceil((inside_to - start) / cell), size)
    return first, end


def scaled_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to ``shorter`` pixels, as torchvision's
    ``Resize(int)`` computes it (the longer side truncated)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def scale_and_center_crop(crop: np.ndarray, shorter: int, size: int) -> np.ndarray:
    """The shorter side scaled to ``shorter`` (PIL bilinear, through torchvision) and the centre
    ``size`` x ``size`` crop (torchvision's ``CenterCrop``)."""
    scaled = tvf.resize(
        Image.fromarray(crop), shorter, interpolation=tvf.InterpolationMode.BILINEAR
    )
    return np.array(tvf.center_crop(scaled, [size, size]))


def cache_side(image_size: int) -> int:
    """Side in pixels of the cached training regions for a model input of ``image_size``."""
    return math.ceil(image_size * CACHE_SCALE)
