"""The random choices of one training crop: the crop protocol's, the flip, the blur, the framing.

Every training crop is decided by a handful of numbers drawn from its own generator, seeded by
``(train_seed, epoch, index)``, in a fixed order: the protocol's looseness ``k`` and random-crop
offset (:meth:`~headpose.crops.protocols.CropProtocol.draw_training_crop`), the flip, the blur, then
the framing augmentation's draws (:func:`headpose.crops.framing.draw_framing`, none when it is off).
The choices therefore do not depend on the batch, the loader's workers or the device, and an
interrupted run replays them exactly. The training batches (:mod:`headpose.crops.training_batches`)
cut the crops these draws describe; the analyze stage's framing statistics
(:mod:`headpose.crops.framing_stats`) measure them without cutting a pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from headpose.crops.crop import Box
from headpose.crops.framing import FramingAugmentation, draw_framing, reframe
from headpose.crops.protocols import CropProtocol

FLIP_PROBABILITY = 0.5
BLUR_PROBABILITY = 0.05


class ItemDraw(NamedTuple):
    """One item's random choices: the rectangle of the full image its crop shows (re-framed
    when ``reframed``), whether it is flipped and whether it is blurred."""

    rectangle: Box
    flipped: bool
    blurred: bool
    reframed: bool


def draw_item(
    seed: tuple[int, ...],
    face_box: Box,
    image_size: int,
    protocol: CropProtocol,
    framing: FramingAugmentation,
) -> ItemDraw:
    """The random choices of one training crop of ``face_box`` (the tight box of the sample's
    crop ``protocol``: a stored-box sample's is its box, cropped exactly as it is evaluated), from
    a generator seeded by ``seed`` ((train seed, epoch, index) in training): the protocol's k
    and offset, the flip, the blur, then the framing augmentation's draws."""
    rng = np.random.default_rng(seed)
    choice = protocol.draw_training_crop(rng)
    rectangle = protocol.training_rectangle(face_box, choice, image_size)
    flipped = bool(rng.random() < FLIP_PROBABILITY)
    blurred = bool(rng.random() < BLUR_PROBABILITY)
    framing_draw = draw_framing(rng, framing)
    return ItemDraw(reframe(rectangle, framing_draw), flipped, blurred, framing_draw.reframed)
