"""The crop protocol interface and its registry.

A crop protocol is one object (:class:`CropProtocol`; protocols hold no settings, so each is
registered once as an instance) that owns everything about how it frames a face: its tight face
box (:meth:`~CropProtocol.face_box`), how the margins move the box's edges
(:meth:`~CropProtocol.loosen_box`), how a box becomes whole pixels
(:meth:`~CropProtocol.pixel_box`) and those pixels the network's square input
(:meth:`~CropProtocol.finish`), which rectangle of the image a crop then shows
(:meth:`~CropProtocol.evaluation_rectangle`, :meth:`~CropProtocol.training_rectangle`), its
random training crop (:meth:`~CropProtocol.draw_training_crop`), its training blur
(:attr:`~CropProtocol.blur_kernel`, :attr:`~CropProtocol.blur_border`) and the coordinates it
frames (:meth:`~CropProtocol.from_pixel_coordinates`). The crops every caller uses are made here
from those, once for all protocols (:meth:`~CropProtocol.evaluation_crop`,
:meth:`~CropProtocol.prediction_crop`, :meth:`~CropProtocol.training_region`). The shared rules
and pixel helpers are :mod:`headpose.crops.crop`'s.

A protocol registers itself with :func:`register_protocol` in its own module (in :data:`PROTOCOLS`,
a :class:`headpose.registry.Registry`: a name is taken once; a plugin may register one);
:func:`get_protocol` finds it by name. The built-in protocols, the default and the one rule that
chooses a protocol are in :mod:`headpose.crops.protocols`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from headpose.crops.crop import (
    EVAL_K,
    PREDICT_K,
    TRAIN_K_RANGE,
    Box,
    PixelBox,
    cut,
    resize_square,
    rounded_outwards,
)
from headpose.datasets.labels import Labels
from headpose.errors import HeadposeError
from headpose.registry import Registry


@dataclass(frozen=True)
class TrainingDraw:
    """The random choices of one training crop: looseness ``k`` and, for a protocol that crops
    at random within its scaled box, where the crop lies (fractions in [0, 1) of the free room,
    x then y)."""

    k: float
    offset: tuple[float, float] = (0.0, 0.0)


class CropProtocol(ABC):
    """How faces are framed for the network (see the module docstring). Subclasses set
    :attr:`name`, :attr:`blur_kernel` and :attr:`blur_border` and implement the abstract
    methods; protocols of the same class are equal."""

    name: ClassVar[str]
    # The training blur: a square kernel (float32, odd side) convolved with each channel, and the
    # border: "keep" (the pixels the kernel does not fit leave unchanged) or "reflect".
    blur_kernel: ClassVar[np.ndarray]
    blur_border: ClassVar[str]
    BLUR_BORDERS: ClassVar[tuple[str, ...]] = ("keep", "reflect")
    # Whether the evaluate stage and ``--compare-protocols`` score a model under this protocol
    # beside the chosen one (False for the crop of one published model, such as ``fsanet``).
    among_others: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"CropProtocol({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, self.name))

    # --- What each protocol decides -------------------------------------------------------------

    @abstractmethod
    def face_box(self, labels: Labels) -> Box:
        """The tight face box of a sample's landmark labels (full-image pixel coordinates)."""

    @abstractmethod
    def loosen_box(self, box: Box, k: float, mode: str) -> Box:
        """A tight face box loosened by ``k`` with the margins of ``mode`` ("train" or "eval",
        :func:`headpose.crops.crop.margins`)."""

    # The pixels: by default the whole loosened box, rounded outwards and resized to a square
    # (a training crop is the loosened box itself); a protocol that cuts part of the box (the
    # published one scales and crops) overrides these four together.

    def pixel_box(self, box: Box) -> PixelBox:
        """The whole pixels (left, top, right, bottom; right and bottom exclusive) it cuts for
        a loosened ``box`` (default: rounded outwards)."""
        return rounded_outwards(box)

    def finish(self, pixels: np.ndarray, size: int, mode: str) -> np.ndarray:
        """The cut ``pixels`` of a deterministic crop of ``mode`` as the ``size`` x ``size``
        uint8 input (for "train", the centre of its random crops; default: resized to a
        square)."""
        return resize_square(pixels, size)

    def training_region_pixels(self, image: np.ndarray, region: PixelBox, side: int) -> np.ndarray:
        """The pixels of a :meth:`training_region` as the crop store caches them: ``side`` x
        ``side`` (default: cut, black outside the image, and resized to a square)."""
        return resize_square(cut(image, region), side)

    def evaluation_rectangle(self, box: Box, size: int) -> Box:
        """The rectangle of the full image that the evaluation crop of face ``box`` shows (edges
        of the outer pixels; default: its whole pixel box)."""
        left, top, right, bottom = (float(v) for v in self.evaluation_bounds(box))
        return left, top, right, bottom

    def training_rectangle(self, box: Box, draw: TrainingDraw, size: int) -> Box:
        """The rectangle of the full image that the training crop ``draw`` of face ``box``
        shows (edges of the outer pixels; default: its whole pixel box); the training batches
        cut it on the device."""
        left, top, right, bottom = (float(v) for v in self.crop_bounds(box, draw.k, "train"))
        return left, top, right, bottom

    def draw_training_crop(self, rng: np.random.Generator) -> TrainingDraw:
        """The random choices of one training crop, from ``rng``: ``k`` uniform in
        :data:`~headpose.crops.crop.TRAIN_K_RANGE` (a protocol that draws more draws it after)."""
        return TrainingDraw(float(rng.uniform(*TRAIN_K_RANGE)))

    def from_pixel_coordinates(self, box: Box) -> Box:
        """A tight landmark box in pixel coordinates (a detector's calibrated box) in the
        coordinates the protocol frames (default: the same)."""
        return box

    # --- Made from those, the same for every protocol -------------------------------------------

    def crop_bounds(self, box: Box, k: float, mode: str) -> PixelBox:
        """The whole pixels of face ``box`` loosened by ``k`` with the margins of ``mode``."""
        return self.pixel_box(self.loosen_box(box, k, mode))

    def framed_crop(
        self, image: np.ndarray, box: Box, k: float, mode: str, size: int
    ) -> np.ndarray:
        """The deterministic crop of face ``box`` (looseness ``k``, margins of ``mode``) of
        ``image`` at ``size`` x ``size``."""
        return self.finish(cut(image, self.crop_bounds(box, k, mode)), size, mode)

    def evaluation_bounds(self, box: Box) -> PixelBox:
        """The pixels the evaluation crop of face ``box`` is made from (k = 0.2, eval margins)."""
        return self.crop_bounds(box, EVAL_K, "eval")

    def evaluation_crop(self, image: np.ndarray, box: Box, size: int) -> np.ndarray:
        """The evaluation crop of face ``box`` (k = 0.2, eval margins) at ``size`` x ``size``."""
        return self.framed_crop(image, box, EVAL_K, "eval", size)

    def prediction_crop(self, image: np.ndarray, box: Box, size: int) -> np.ndarray:
        """The crop of a detected face's landmark ``box`` for prediction: framed as training
        framed faces, at the middle of its looseness range and the centre of its random crops."""
        return self.framed_crop(image, box, PREDICT_K, "train", size)

    def training_region(self, box: Box) -> PixelBox:
        """The pixels every training crop of face ``box`` lies within: the loosest one (k at the
        top of its range), rounded outwards."""
        return rounded_outwards(self.loosen_box(box, TRAIN_K_RANGE[1], "train"))


PROTOCOLS: Registry[CropProtocol] = Registry("crop protocol")


def register_protocol(cls: type[CropProtocol]) -> type[CropProtocol]:
    """Register an instance of ``cls`` under ``cls.name`` (usable as a class decorator)."""
    kernel = np.asarray(cls.blur_kernel)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 != 1:
        raise HeadposeError(f"crop protocol {cls.name}: blur_kernel must be square, odd-sized")
    if cls.blur_border not in CropProtocol.BLUR_BORDERS:
        raise HeadposeError(
            f"crop protocol {cls.name}: blur_border {cls.blur_border!r}; expected one of "
            + ", ".join(CropProtocol.BLUR_BORDERS)
        )
    PROTOCOLS.register(cls())
    return cls


def protocol_names() -> tuple[str, ...]:
    """The names of the registered crop protocols, in registration order."""
    return PROTOCOLS.names()


def get_protocol(name: object, source: str = "crop_protocol") -> CropProtocol:
    """The registered protocol called ``name``; else one line naming ``source`` and the known
    protocols."""
    return PROTOCOLS.get(name, source)
