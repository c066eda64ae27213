"""The ``visible`` crop protocol: the tighter crop of the visible landmarks this project used
before crop protocols existed (what a checkpoint without ``crop_protocol`` was trained on).
Numbers measured this way do not compare with published tables.

* Face box: the visible landmarks only (AFLW2000's negative placeholders dropped), shifted from
  1-based to pixel coordinates by -1.
* Margins: all four applied to the original box at once.
* Pixels: the box rounded outwards, cut with black outside the image and resized to a square
  (OpenCV); a training crop is the loosened box itself (no random position).
* Training blur: a 3x3 box (OpenCV's ``blur``, the border reflected).
"""

from __future__ import annotations

import numpy as np

from headpose.crops.crop import Box, landmark_box, margins, widened
from headpose.crops.protocols.registry import CropProtocol, register_protocol
from headpose.datasets.labels import Labels


@register_protocol
class Visible(CropProtocol):
    """The visible-landmark crop (see the module docstring)."""

    name = "visible"
    blur_kernel = np.ones((3, 3), dtype=np.float32) / np.float32(9.0)
    blur_border = "reflect"

    def face_box(self, labels: Labels) -> Box:
        return landmark_box(labels.visible_points_xy - 1.0)

    def loosen_box(self, box: Box, k: float, mode: str) -> Box:
        return widened(box, *margins(k, mode))
