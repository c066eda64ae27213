"""The crop of a sample whose dataset stores its final crop box, and the one place it is chosen.

Some datasets store the final crop of each face instead of landmarks (BIWI's protocol-1 boxes, the
arrays of an FSA-Net ``.npz``: their format's ``stores_crop_box``, see
:class:`headpose.datasets.registry.DatasetFormat`). No crop protocol frames such a face: its crop is
its box, for training as for evaluation. That crop is :class:`StoredBox`, a crop protocol in every
respect but its name's registration (it is never chosen in params.yaml): its face box is the stored
box, which no margin loosens, whose pixels are cut exactly (black beyond the image) and resized to a
square with OpenCV's default bilinear interpolation, as FSA-Net's preprocessing made the published
protocol-1 crops; its training crop is the box itself, with the random draws of the protocol chosen
for the run made all the same (so the flip, blur and framing draws after them come from the same
places of each item's stream).

:func:`sample_protocol` is the one place that decides which crop a sample gets: the protocol
chosen for the run, or :class:`StoredBox` for a sample that stores its box.
"""

from __future__ import annotations

import cv2
import numpy as np

from headpose.crops.crop import Box, PixelBox, cut
from headpose.crops.protocols.registry import CropProtocol, TrainingDraw
from headpose.datasets.labels import Labels
from headpose.datasets.registry import Sample

STORED_BOX_NAME = "stored_box"  # how reports and metrics name this crop


class StoredBox(CropProtocol):
    """The crop of a stored crop box (see the module docstring); ``chosen`` is the protocol
    chosen for the run, whose random draws and training blur it keeps."""

    name = STORED_BOX_NAME

    def __init__(self, chosen: CropProtocol) -> None:
        self.chosen = chosen

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredBox) and other.chosen == self.chosen

    def __hash__(self) -> int:
        return hash((STORED_BOX_NAME, self.chosen))

    @property
    def blur_kernel(self) -> np.ndarray:  # type: ignore[override]
        return self.chosen.blur_kernel

    @property
    def blur_border(self) -> str:  # type: ignore[override]
        return self.chosen.blur_border

    def face_box(self, labels: Labels) -> Box:
        if labels.crop_box is None:
            raise ValueError("a stored-box crop needs labels with a crop box")
        x0, y0, x1, y1 = (float(edge) for edge in labels.crop_box)
        return x0, y0, x1, y1

    def loosen_box(self, box: Box, k: float, mode: str) -> Box:
        return box  # the dataset's protocol made the box: no margin applies

    def pixel_box(self, box: Box) -> PixelBox:
        return int(box[0]), int(box[1]), int(box[2]), int(box[3])

    def finish(self, pixels: np.ndarray, size: int, mode: str) -> np.ndarray:
        return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)

    def training_region_pixels(self, image: np.ndarray, region: PixelBox, side: int) -> np.ndarray:
        return self.finish(cut(image, region), side, "train")

    def draw_training_crop(self, rng: np.random.Generator) -> TrainingDraw:
        return self.chosen.draw_training_crop(rng)

    def training_rectangle(self, box: Box, draw: TrainingDraw, size: int) -> Box:
        return box


def sample_protocol(chosen: CropProtocol, sample: Sample) -> CropProtocol:
    """The crop ``sample`` gets when ``chosen`` is the run's protocol: ``chosen`` itself, or
    :class:`StoredBox` when its dataset stores its final crop box."""
    return StoredBox(chosen) if sample.stores_crop_box else chosen
