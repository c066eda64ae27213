"""The ``hopenet`` crop protocol: the published one, as the original HopeNet code (and 6DRepNet,
which copies it) measured every published AFLW2000 number (``docs/conventions.md``, "Face
crops").

* Face box: the min/max of **all** landmarks as stored (``pt2d``; no 1-based shift;
  AFLW2000's negative placeholders of invisible points included).
* Margins: one edge after the other, each measured on the box as already moved (so the right
  margin is ``m_right * k * (1 + m_left * k)`` of the width).
* Pixels: the box truncated to ``int`` (towards zero), cut with black outside the image, then the
  shorter side scaled (bilinear, as torchvision does on PIL images) and a crop of ``image_size``
  pixels: the centre one for evaluation (``Scale(224)`` + ``CenterCrop(224)`` at 224 px), a
  random one of a ``240/224`` larger scale for training (``Scale(240)`` + ``RandomCrop(224)``).
* Training blur: PIL's ``ImageFilter.BLUR`` (a 5x5 ring of ones over 16; PIL leaves the 2-pixel
  edge as it was).
* It frames the stored 1-based points as they are, so a box in pixel coordinates moves one pixel
  right and down.
"""

from __future__ import annotations

import math

import numpy as np

from headpose.crops.crop import Box, PixelBox, margins, scale_and_center_crop, scaled_size
from headpose.crops.protocols.registry import CropProtocol, TrainingDraw, register_protocol
from headpose.datasets.labels import Labels

# Training scales the shorter side to 240/224 of the crop it then cuts at random.
TRAIN_SCALE = 240 / 224

_RING = np.ones((5, 5), dtype=np.float32)
_RING[1:4, 1:4] = 0.0


def train_scale(image_size: int) -> int:
    """The shorter side training crops are scaled to before the random crop."""
    return round(image_size * TRAIN_SCALE)


def _scaled_grid(bounds: PixelBox, shorter: int) -> tuple[float, float, float, float, int, int]:
    """(left, top, step x, step y, scaled width, scaled height) of ``bounds`` scaled to
    ``shorter`` pixels on its shorter side: where each scaled pixel lies in the full image."""
    left, top, right, bottom = (float(v) for v in bounds)
    width, height = right - left, bottom - top
    scaled_w, scaled_h = scaled_size(int(width), int(height), shorter)
    return left, top, width / scaled_w, height / scaled_h, scaled_w, scaled_h


@register_protocol
class HopeNet(CropProtocol):
    """The published crop (see the module docstring)."""

    name = "hopenet"
    blur_kernel = _RING / np.float32(16.0)
    blur_border = "keep"

    def face_box(self, labels: Labels) -> Box:
        # the format's reader checked the stored points are finite and near the image
        points = labels.points_xy
        x_min, y_min = points.min(axis=0)
        x_max, y_max = points.max(axis=0)
        return float(x_min), float(y_min), float(x_max), float(y_max)

    def loosen_box(self, box: Box, k: float, mode: str) -> Box:
        left, top, right, bottom = margins(k, mode)
        x_min, y_min, x_max, y_max = box
        x_min -= left * abs(x_max - x_min)
        y_min -= top * abs(y_max - y_min)
        x_max += right * abs(x_max - x_min)
        y_max += bottom * abs(y_max - y_min)
        return x_min, y_min, x_max, y_max

    def pixel_box(self, box: Box) -> PixelBox:
        # int() of each edge (towards zero), as PIL's crop of the original code
        return math.trunc(box[0]), math.trunc(box[1]), math.trunc(box[2]), math.trunc(box[3])

    def finish(self, pixels: np.ndarray, size: int, mode: str) -> np.ndarray:
        shorter = size if mode == "eval" else train_scale(size)
        return scale_and_center_crop(pixels, shorter, size)

    def evaluation_rectangle(self, box: Box, size: int) -> Box:
        """The centre square that ``CenterCrop`` keeps of the ``int()`` box scaled to ``size``
        on its shorter side."""
        left, top, step_x, step_y, scaled_w, scaled_h = _scaled_grid(
            self.evaluation_bounds(box), size
        )
        # torchvision's CenterCrop: the offset int(round((scaled - size) / 2)) in each direction
        x0 = left + int(round((scaled_w - size) / 2.0)) * step_x
        y0 = top + int(round((scaled_h - size) / 2.0)) * step_y
        return x0, y0, x0 + size * step_x, y0 + size * step_y

    def draw_training_crop(self, rng: np.random.Generator) -> TrainingDraw:
        """k, then where the random crop lies (x, y)."""
        k = super().draw_training_crop(rng).k
        return TrainingDraw(k, (float(rng.random()), float(rng.random())))

    def training_rectangle(self, box: Box, draw: TrainingDraw, size: int) -> Box:
        """The ``int()`` box of the train margins, scaled to :func:`train_scale` on its shorter
        side, and the ``size`` crop at integer offset ``floor(offset * (room + 1))`` of the room
        left in each direction (torchvision's ``RandomCrop``)."""
        left, top, step_x, step_y, scaled_w, scaled_h = _scaled_grid(
            self.crop_bounds(box, draw.k, "train"), train_scale(size)
        )
        column = min(int(draw.offset[0] * (scaled_w - size + 1)), scaled_w - size)
        row = min(int(draw.offset[1] * (scaled_h - size + 1)), scaled_h - size)
        x0, y0 = left + column * step_x, top + row * step_y
        return x0, y0, x0 + size * step_x, y0 + size * step_y

    def from_pixel_coordinates(self, box: Box) -> Box:
        return box[0] + 1.0, box[1] + 1.0, box[2] + 1.0, box[3] + 1.0
