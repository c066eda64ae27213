"""Face crops: the crop protocols, their face boxes and margins, and the pixels they cut.

A crop protocol says how a face is framed for the network. Two exist (``crop_protocol`` in
``params.yaml``; see ``docs/conventions.md``, "Face crops"):

* ``hopenet`` (default): the published protocol, as the original HopeNet code (and 6DRepNet,
  which copies it) measured every published AFLW2000 number. The face box is the min/max of
  **all** ``pt2d`` points as stored (no 1-based shift; AFLW2000's negative placeholders of
  invisible points included). The margins move one edge after the other, each measured on the box
  as already moved (so the right margin is ``m_right * k * (1 + m_left * k)`` of the width).
  Pixels: the box truncated to ``int`` (towards zero), cut with black outside the image, then the
  shorter side scaled to the target (bilinear, as torchvision does on PIL images) and a crop of
  ``image_size`` pixels: the centre one for evaluation (``Scale(224)`` + ``CenterCrop(224)`` at
  224 px), a random one of a ``240/224`` larger scale for training (``Scale(240)`` +
  ``RandomCrop(224)``).
* ``visible``: the box of the visible landmarks only (1-based points shifted by -1), all four
  margins applied to the original box at once, the box rounded outwards and resized to a square.
  Numbers measured this way do not compare with published tables.

Both use k = 0.2 with margins (left, top, right, bottom) of (2, 2, 2, 0.6) k for evaluation, and
k uniform in [0.2, 0.4] with (0.6, 2, 0.6, 0.6) k for training.

Everything in this module is in the pixel coordinates of the full image (origin at the top-left
corner, boxes ``(x_min, y_min, x_max, y_max)``). The crop store (:mod:`headpose.data.store`) keeps
evaluation crops final (:func:`evaluation_crop`) and, for training, the :func:`training_region`
of each face at :func:`cache_side` pixels, from which the training batches
(:mod:`headpose.data.training_batches`) cut, on the model's device, the exact
:func:`training_rectangle` the protocol's random crop covers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from torchvision.transforms import functional as tvf

from headpose.errors import HeadposeError
from headpose.io.formats import Annotation, visible_landmarks
from headpose.params import CROP_PROTOCOLS

PUBLISHED_CROP_PROTOCOL = CROP_PROTOCOLS[0]  # hopenet: the protocol of published tables
# Checkpoints saved before crop protocols existed were trained on the visible-landmark crop.
LEGACY_CROP_PROTOCOL = "visible"

TRAIN_K_RANGE = (0.2, 0.4)  # looseness drawn uniformly per training sample
EVAL_K = 0.2  # fixed looseness of evaluation crops
PREDICT_K = sum(TRAIN_K_RANGE) / 2  # detector boxes: the middle of the training range

# Margins per mode as multiples of k, each times the box size: (left, top, right, bottom).
MARGINS = {"train": (0.6, 2.0, 0.6, 0.6), "eval": (2.0, 2.0, 2.0, 0.6)}
CROP_MODES = tuple(MARGINS)

# hopenet training scales the shorter side to 240/224 of the crop it then cuts at random.
TRAIN_SCALE = 240 / 224

# The cached training region is this much larger than image_size, so even the tightest crop it
# holds keeps about image_size pixels.
CACHE_SCALE = 1.5

Box = tuple[float, float, float, float]


def trained_protocol(meta: dict) -> str:
    """The crop protocol a checkpoint's model was trained on (its meta's ``crop_protocol``)."""
    return meta.get("crop_protocol", LEGACY_CROP_PROTOCOL)


def check_protocol_name(protocol: str, source: str = "crop_protocol") -> str:
    """``protocol`` if it is a known crop protocol, else a HeadposeError naming ``source``."""
    if protocol not in CROP_PROTOCOLS:
        raise HeadposeError(
            f"{source}: {protocol!r} is no crop protocol; expected one of "
            f"{', '.join(CROP_PROTOCOLS)}"
        )
    return protocol


# --- Face boxes ---------------------------------------------------------------------------------


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


def stored_points(annotation: Annotation) -> np.ndarray:
    """Every 2D landmark as stored, ``(N, 2)``: ``pt2d`` (``pt3d_68[:2]`` when it is absent)."""
    arrays = annotation.arrays
    points = arrays["pt2d"] if "pt2d" in arrays else arrays["pt3d_68"][:2]
    return np.asarray(points, dtype=np.float64).T


def face_box(annotation: Annotation, protocol: str) -> Box:
    """The tight face box of a sample under ``protocol`` (pixel coordinates).

    ``hopenet``: min/max over all stored points, placeholders included
    (:func:`headpose.io.formats.read_annotation` checked they are finite and near the image);
    ``visible``: the visible landmarks, shifted from 1-based to pixel coordinates.
    """
    if protocol == "visible":
        return landmark_box(annotation.landmarks_xy - 1.0)
    check_protocol_name(protocol)
    points = stored_points(annotation)
    x_min, y_min = points.min(axis=0)
    x_max, y_max = points.max(axis=0)
    return float(x_min), float(y_min), float(x_max), float(y_max)


def loosen_box(box: Box, k: float, mode: str, protocol: str) -> Box:
    """Loosen a tight face box by factor ``k`` with the margins of ``mode`` ("train" or "eval").

    ``hopenet`` moves left, top, right, bottom in that order, each by its margin times the size
    of the box as already moved; ``visible`` moves all four by the original box's size.
    """
    if mode not in MARGINS:
        raise HeadposeError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    left, top, right, bottom = (factor * k for factor in MARGINS[mode])
    x_min, y_min, x_max, y_max = box
    if protocol == "visible":
        width, height = x_max - x_min, y_max - y_min
        return (
            x_min - left * width,
            y_min - top * height,
            x_max + right * width,
            y_max + (bottom * height),
        )
    check_protocol_name(protocol)
    x_min -= left * abs(x_max - x_min)
    y_min -= top * abs(y_max - y_min)
    x_max += right * abs(x_max - x_min)
    y_max += bottom * abs(y_max - y_min)
    return x_min, y_min, x_max, y_max


def from_pixel_coordinates(box: Box, protocol: str) -> Box:
    """A tight landmark box given in pixel coordinates (a detector's calibrated box) in the
    coordinates ``protocol`` frames: ``hopenet`` frames the stored 1-based points as they are
    (one pixel further right and down), ``visible`` pixel coordinates."""
    if protocol == "visible":
        return box
    check_protocol_name(protocol)
    return box[0] + 1.0, box[1] + 1.0, box[2] + 1.0, box[3] + 1.0


def pixel_box(box: Box, protocol: str) -> tuple[int, int, int, int]:
    """The whole pixels a protocol cuts for ``box``: ``int()`` of each edge (towards zero, as
    PIL's crop of the original code) for ``hopenet``, rounded outwards for ``visible``."""
    if protocol == "visible":
        return math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3])
    return math.trunc(box[0]), math.trunc(box[1]), math.trunc(box[2]), math.trunc(box[3])


# --- Pixels -------------------------------------------------------------------------------------


def cut(image: np.ndarray, bounds: tuple[int, int, int, int]) -> np.ndarray:
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
    """``crop`` resized to ``size`` x ``size`` (area interpolation when shrinking, else
    bilinear): the ``visible`` protocol's pixels."""
    shrinking = crop.shape[0] > size or crop.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def scaled_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to ``shorter`` pixels, as torchvision's
    ``Resize(int)`` computes it (the longer side truncated)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def scale_and_center_crop(crop: np.ndarray, shorter: int, size: int) -> np.ndarray:
    """The shorter side scaled to ``shorter`` (PIL bilinear, through torchvision) and the centre
    ``size`` x ``size`` crop (torchvision's ``CenterCrop``): the ``hopenet`` protocol's pixels."""
    scaled = tvf.resize(
        Image.fromarray(crop), shorter, interpolation=tvf.InterpolationMode.BILINEAR
    )
    return np.array(tvf.center_crop(scaled, [size, size]))


def train_scale(image_size: int) -> int:
    """The shorter side hopenet's training crops are scaled to before the random crop."""
    return round(image_size * TRAIN_SCALE)


def framed_crop(
    image: np.ndarray, box: Box, k: float, mode: str, size: int, protocol: str
) -> np.ndarray:
    """The deterministic crop of face ``box`` (looseness ``k``, margins of ``mode``) at ``size``:
    under ``hopenet`` scaled to ``size`` (eval) or :func:`train_scale` (train) and centre-cropped,
    under ``visible`` resized to a square."""
    bounds = pixel_box(loosen_box(box, k, mode, protocol), protocol)
    pixels = cut(image, bounds)
    if protocol == "visible":
        return resize_square(pixels, size)
    shorter = size if mode == "eval" else train_scale(size)
    return scale_and_center_crop(pixels, shorter, size)


def evaluation_rectangle(box: Box, size: int, protocol: str) -> Box:
    """The rectangle of the full image that the evaluation crop of face ``box`` shows (pixel
    coordinates, edges of the outer pixels): under ``hopenet`` the centre square that
    ``CenterCrop`` keeps of the ``int()`` box scaled to ``size`` on its shorter side, under
    ``visible`` the box rounded outwards (resized to a square)."""
    left, top, right, bottom = (
        float(v) for v in pixel_box(loosen_box(box, EVAL_K, "eval", protocol), protocol)
    )
    if protocol == "visible":
        return left, top, right, bottom
    width, height = right - left, bottom - top
    scaled_w, scaled_h = scaled_size(int(width), int(height), size)
    step_x, step_y = width / scaled_w, height / scaled_h
    # torchvision's CenterCrop: the offset int(round((scaled - size) / 2)) in each direction
    x0 = left + int(round((scaled_w - size) / 2.0)) * step_x
    y0 = top + int(round((scaled_h - size) / 2.0)) * step_y
    return x0, y0, x0 + size * step_x, y0 + size * step_y


def evaluation_crop(image: np.ndarray, box: Box, size: int, protocol: str) -> np.ndarray:
    """The evaluation crop of face ``box`` (k = 0.2, eval margins) at ``size`` x ``size``: under
    ``hopenet`` exactly the pixels the original test code feeds its network."""
    return framed_crop(image, box, EVAL_K, "eval", size, protocol)


def box_crop(image: np.ndarray, crop_box: Box, size: int) -> np.ndarray:
    """The crop of a dataset's stored crop box (whole pixels ``x0, y0, x1, y1``, x1 and y1
    exclusive; BIWI's protocol-1 boxes, the arrays of an FSA-Net ``.npz``): those pixels, black
    beyond the image, resized to ``size`` x ``size`` with OpenCV's default bilinear
    interpolation, as FSA-Net's preprocessing made the published protocol-1 crops. No crop
    protocol applies: the dataset's protocol made the box."""
    bounds = tuple(int(edge) for edge in crop_box)
    return cv2.resize(cut(image, bounds), (size, size), interpolation=cv2.INTER_LINEAR)


def prediction_crop(image: np.ndarray, box: Box, size: int, protocol: str) -> np.ndarray:
    """The crop of a detected face's landmark ``box`` for prediction: framed as training framed
    faces, at the middle of its looseness range and the centre of its random crops."""
    return framed_crop(image, box, PREDICT_K, "train", size, protocol)


# --- Training crops from a cached region --------------------------------------------------------


@dataclass(frozen=True)
class TrainingDraw:
    """The random choices of one training crop: looseness ``k`` and, for ``hopenet``, where in
    the scaled box the crop lies (fractions in [0, 1) of the free room, x then y)."""

    k: float
    offset: tuple[float, float] = (0.0, 0.0)


def draw_training_crop(rng: np.random.Generator, protocol: str) -> TrainingDraw:
    """The random choices of one training crop, drawn from ``rng`` (k first, then the offset)."""
    k = float(rng.uniform(*TRAIN_K_RANGE))
    if protocol == "visible":
        return TrainingDraw(k)
    return TrainingDraw(k, (float(rng.random()), float(rng.random())))


def training_rectangle(box: Box, draw: TrainingDraw, size: int, protocol: str) -> Box:
    """The rectangle of the full image that a training crop of face ``box`` shows, in pixel
    coordinates (edges of the outer pixels).

    ``hopenet``: the ``int()`` box of the train margins, scaled to :func:`train_scale` on its
    shorter side, and the ``size`` crop at integer offset ``floor(offset * (room + 1))`` of the
    room left in each direction (torchvision's ``RandomCrop``); ``visible``: the box rounded
    outwards.
    """
    bounds = pixel_box(loosen_box(box, draw.k, "train", protocol), protocol)
    left, top, right, bottom = (float(v) for v in bounds)
    if protocol == "visible":
        return left, top, right, bottom
    width, height = right - left, bottom - top
    scaled_w, scaled_h = scaled_size(int(width), int(height), train_scale(size))
    step_x, step_y = width / scaled_w, height / scaled_h
    column = min(int(draw.offset[0] * (scaled_w - size + 1)), scaled_w - size)
    row = min(int(draw.offset[1] * (scaled_h - size + 1)), scaled_h - size)
    x0, y0 = left + column * step_x, top + row * step_y
    return x0, y0, x0 + size * step_x, y0 + size * step_y


def training_region(box: Box, protocol: str) -> tuple[int, int, int, int]:
    """The pixels every training crop of face ``box`` lies within: the loosest one (k = 0.4),
    rounded outwards."""
    return pixel_box(loosen_box(box, TRAIN_K_RANGE[1], "train", protocol), "visible")


def cache_side(image_size: int) -> int:
    """Side in pixels of the cached training regions for a model input of ``image_size``."""
    return math.ceil(image_size * CACHE_SCALE)
