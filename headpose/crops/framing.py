"""Framing: where a face sits in the network's input, and the training augmentation that varies it.

A crop protocol (:mod:`headpose.crops.protocols`) frames each face the same way up to its random
looseness ``k``; a test set or a detector may frame it quite differently. AFLW2000's published
crop runs to the placeholders of invisible points, so its faces fill far less of the input than
any 300W_LP training crop, off centre. This module owns both sides of that gap:

* **Measuring it.** :func:`face_framing` says how a face box sits in a crop rectangle: its
  ``scale`` (the face box's side over the crop's side, the geometric mean of the x and y ratios)
  and its centre's ``offset`` from the crop's centre (x and y, in crop sides). The analyze stage
  reports these for train, 300W_AUG and test (:mod:`headpose.crops.framing_stats`), with the face
  box of the visible landmarks, whatever the protocol frames.
* **Closing it** (:class:`FramingAugmentation`, params ``framing_*``). With probability
  ``probability`` a training crop is re-framed: its rectangle (the protocol's random crop,
  unchanged) grows about its centre by a factor drawn log-uniformly from ``scale`` and moves by up
  to ``shift`` of its side in x and y, so the face appears smaller and off centre. The draws come
  after the protocol's own (k, offset, flip, blur) from the same per-item generator, so with
  ``probability: 0`` every crop is exactly the protocol's and nothing else changes.

A re-framed crop reaches beyond the cached training region (the loosest crop the protocol makes).
The store keeps that region sharp at its usual size and, beside it, a **context** image of the
same pixel size covering the region grown by :meth:`FramingAugmentation.context_extent` (every
framing fits inside it); the device crop takes each pixel from the sharp region where the region
covers it and from the context elsewhere (:mod:`headpose.crops.training_batches`). The face stays
sharp, only the surroundings come at the context's lower resolution, and a sample costs twice the
bytes of an unframed store, not the square of the extent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from headpose.crops.crop import Box, PixelBox, rounded_outwards

# The keys of params.yaml this module reads (all read by the train stage and the analyze stage).
FRAMING_KEYS = ("framing_probability", "framing_scale", "framing_shift")


@dataclass(frozen=True)
class FramingAugmentation:
    """How training crops are re-framed: with ``probability``, the crop grown by a factor drawn
    log-uniformly from ``scale`` (low, high; 1 = the protocol's crop) and moved by a fraction of
    its new side drawn uniformly from [-``shift``, ``shift``] in x and in y."""

    probability: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shift: float = 0.0

    @classmethod
    def from_params(cls, params: dict) -> FramingAugmentation:
        """The augmentation ``params.yaml`` asks for (validated by :mod:`headpose.params`)."""
        low, high = params["framing_scale"]
        return cls(float(params["framing_probability"]), (float(low), float(high)),
                   float(params["framing_shift"]))  # fmt: skip

    @property
    def enabled(self) -> bool:
        """Whether any crop can differ from the protocol's."""
        return self.probability > 0 and (self.scale != (1.0, 1.0) or self.shift > 0)

    def context_extent(self) -> float:
        """How many times larger than the cached training region (about its centre) the context
        image must be to hold every framing: a crop lies within the region, so its centre is at
        most half the region from the region's centre, and a re-framed crop reaches
        ``scale[1] * (0.5 + shift)`` of at most the region's side beyond its own centre. 0 when
        the augmentation is off (no context is stored)."""
        if not self.enabled:
            return 0.0
        return 1.0 + max(self.scale[1], 1.0) * (1.0 + 2.0 * self.shift)

    def describe(self) -> str:
        """One line for logs and reports."""
        if not self.enabled:
            return "framing augmentation off (the crop protocol's training crops)"
        low, high = self.scale
        return (
            f"framing augmentation: {self.probability:.0%} of crops {low:g}-{high:g}x looser, "
            f"face moved up to {self.shift:g} of the crop"
        )


NO_FRAMING = FramingAugmentation()


@dataclass(frozen=True)
class FramingDraw:
    """One crop's framing: grown ``scale`` times about its centre, the face moved by
    ``shift_x``, ``shift_y`` crop sides (the crop moves the other way)."""

    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    @property
    def reframed(self) -> bool:
        return self.scale != 1.0 or self.shift_x != 0.0 or self.shift_y != 0.0


UNCHANGED = FramingDraw()


def draw_framing(rng: np.random.Generator, augmentation: FramingAugmentation) -> FramingDraw:
    """One crop's framing, drawn from ``rng`` after the protocol's own draws (nothing is drawn
    when the augmentation is off, so the generator's later use is unchanged too)."""
    if not augmentation.enabled:
        return UNCHANGED
    if rng.random() >= augmentation.probability:
        return UNCHANGED
    low, high = augmentation.scale
    scale = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    shift_x, shift_y = (float(v) for v in rng.uniform(-augmentation.shift, augmentation.shift, 2))
    return FramingDraw(scale, shift_x, shift_y)


def reframe(rectangle: Box, draw: FramingDraw) -> Box:
    """``rectangle`` grown ``draw.scale`` times about its centre and moved so that what was at
    its centre sits ``draw.shift_x``, ``draw.shift_y`` of its new size from the new centre."""
    if not draw.reframed:
        return rectangle
    x0, y0, x1, y1 = rectangle
    width, height = (x1 - x0) * draw.scale, (y1 - y0) * draw.scale
    centre_x = (x0 + x1) / 2 - draw.shift_x * width
    centre_y = (y0 + y1) / 2 - draw.shift_y * height
    return centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2


def context_bounds(region: Box, extent: float) -> PixelBox:
    """The full-image pixels a sample's context image holds: its training ``region`` grown
    ``extent`` times about its centre, rounded outwards."""
    x0, y0, x1, y1 = region
    half_w, half_h = (x1 - x0) * extent / 2, (y1 - y0) * extent / 2
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    grown = (centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h)
    return rounded_outwards(grown)


# --- Measuring -----------------------------------------------------------------------------------

FRAMING_NAMES = ("scale", "offset_x", "offset_y")


def face_framing(face: Box, rectangle: Box) -> tuple[float, float, float]:
    """How face box ``face`` sits in crop ``rectangle`` (both full-image pixels): (scale, offset
    x, offset y). ``scale``: the face's side over the crop's, the geometric mean of the x and y
    ratios (a square crop of a square face gives their side ratio); offsets: the face centre
    minus the crop centre, in crop sides (positive: right of, below the centre)."""
    face_w, face_h = face[2] - face[0], face[3] - face[1]
    crop_w, crop_h = rectangle[2] - rectangle[0], rectangle[3] - rectangle[1]
    scale = math.sqrt((face_w / crop_w) * (face_h / crop_h))
    offset_x = ((face[0] + face[2]) - (rectangle[0] + rectangle[2])) / 2 / crop_w
    offset_y = ((face[1] + face[3]) - (rectangle[1] + rectangle[3])) / 2 / crop_h
    return scale, offset_x, offset_y
