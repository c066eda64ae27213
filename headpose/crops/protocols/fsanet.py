"""The ``fsanet`` crop protocol: FSA-Net's own "type 1" crop (``data/type1/TYY_create_db_type1.py``
of github.com/shamangary/FSA-Net, run with ``--img_size 64 --ad 0.6``), the crop its published
AFLW2000 figures and the public FSA-Net ONNX files (``fsanet`` in
:mod:`headpose.inference.published`) were measured on.

* Face box: the stored ``pt2d`` points with both coordinates positive (no 1-based shift), each
  edge truncated to ``int``.
* Margins: 0.6 of the box's width and height on each side, whatever the looseness ``k`` (the
  crop has one looseness; training, evaluation and prediction crops are the same crop), each
  edge truncated to ``int`` again.
* Pixels: the box clipped to the image (``0`` to ``width - 1`` and ``height - 1``, as the
  original code clips), the slice ``image[y0:y1, x0:x1]`` (no black border) resized to a square
  with OpenCV's default (bilinear) interpolation.
* Training blur: a 3x3 box, the border reflected (this project's choice; FSA-Net's own
  training is not reproduced here).

It differs from ``visible`` (the visible landmarks shifted by -1, margins of ``k``, rounded
outwards, black outside the image, area interpolation when shrinking) and from ``hopenet`` (all
points, placeholders included, scaled and centre-cropped). It is not scored beside other
protocols by default (:attr:`~headpose.crops.protocols.registry.CropProtocol.among_others`):
it is the crop of one published model, not one this project trains on.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from headpose.crops.crop import Box, PixelBox, widened
from headpose.crops.protocols.registry import CropProtocol, register_protocol
from headpose.datasets.labels import Labels
from headpose.errors import HeadposeError

# FSA-Net's ``--ad``: the margin on each side, a fraction of the box's width and height.
MARGIN = 0.6


@register_protocol
class FsaNet(CropProtocol):
    """FSA-Net's type-1 crop (see the module docstring)."""

    name = "fsanet"
    blur_kernel = np.ones((3, 3), dtype=np.float32) / np.float32(9.0)
    blur_border = "reflect"
    among_others = False

    def face_box(self, labels: Labels) -> Box:
        points = np.asarray(labels.points_xy, dtype=np.float64).reshape(-1, 2)
        positive = points[(points[:, 0] > 0) & (points[:, 1] > 0)]
        if len(positive) < 2:
            raise HeadposeError(
                f"need at least 2 landmarks with positive coordinates, got {len(positive)}"
            )
        x_min, y_min = positive.min(axis=0)
        x_max, y_max = positive.max(axis=0)
        return (
            float(math.trunc(x_min)),
            float(math.trunc(y_min)),
            float(math.trunc(x_max)),
            float(math.trunc(y_max)),
        )

    def loosen_box(self, box: Box, k: float, mode: str) -> Box:
        return widened(box, MARGIN, MARGIN, MARGIN, MARGIN)

    def pixel_box(self, box: Box) -> PixelBox:
        return math.trunc(box[0]), math.trunc(box[1]), math.trunc(box[2]), math.trunc(box[3])

    def finish(self, pixels: np.ndarray, size: int, mode: str) -> np.ndarray:
        return cv2.resize(pixels, (size, size))

    def framed_crop(
        self, image: np.ndarray, box: Box, k: float, mode: str, size: int
    ) -> np.ndarray:
        """The box's pixels clipped to the image (no black border), resized to a square."""
        left, top, right, bottom = self.crop_bounds(box, k, mode)
        height, width = image.shape[:2]
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right, width - 1), min(bottom, height - 1)
        if right <= left or bottom <= top:
            raise HeadposeError(
                f"empty crop box ({left}, {top}, {right}, {bottom}) inside a {width}x{height} image"
            )
        return self.finish(np.ascontiguousarray(image[top:bottom, left:right]), size, mode)

    def from_pixel_coordinates(self, box: Box) -> Box:
        return box[0] + 1.0, box[1] + 1.0, box[2] + 1.0, box[3] + 1.0
