"""HopeNet's binned angle head: the bin layout, the labels and the soft-argmax expectation.

Angles in [-99, 99) degrees are split into ``198 / width_deg`` classes; labels at or beyond the
ends (an angle of exactly +-99) are clamped into the end bins. The regression value is the softmax
expectation over the bins' **centres**; the original HopeNet code used the bins' lower edges
(``sum(p * idx) * 3 - 99``), a systematic -width/2 bias, kept as ``expectation="lower_edges"`` so
the original snapshots can be evaluated exactly as published.

A :class:`Bins` is the registered ``bins`` head (:mod:`headpose.models.heads`): the range, the
width and the expectation mode travel together (and are stored in checkpoints as
:meth:`Bins.meta`, checked against the three angle layers by :meth:`Bins.validate_meta`). It owns
the params.yaml keys ``bin_width``, ``expectation`` and ``alpha`` and the bin-width rule
(:func:`check_bin_width`, the one place it is checked). Everything that turns outputs into
degrees calls :meth:`Bins.angles_deg`; the loss (:func:`binned_loss`: per angle, cross-entropy
over the bins plus ``alpha`` x MSE of the expectation) reads :meth:`Bins.labels` and
:meth:`Bins.expectation_deg`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from headpose.errors import HeadposeError, shorten
from headpose.models.heads.base import Head, register_head

RANGE_DEG = 198  # HopeNet bins cover [-99, 99)
RANGE_START_DEG = -RANGE_DEG / 2  # -99
EXPECTATION_MODES = ("centers", "lower_edges")


def valid_bin_widths() -> list[int]:
    """Bin widths (degrees) that divide the 198-degree range into whole bins."""
    return [width for width in range(1, RANGE_DEG + 1) if RANGE_DEG % width == 0]


def check_bin_width(width_deg: Any) -> None:
    """Refuse a bin width that does not split the range into at least two whole bins."""
    if width_deg not in valid_bin_widths():
        raise HeadposeError(
            f"bin_width {width_deg!r} does not divide 198; valid widths: "
            + ", ".join(map(str, valid_bin_widths()))
        )
    if RANGE_DEG // width_deg < 2:
        raise HeadposeError(f"a bins head needs at least 2 bins, got {RANGE_DEG // width_deg}")


LAYERS = ("fc_yaw", "fc_pitch", "fc_roll")  # one classifier per angle


@register_head
@dataclass(frozen=True)
class Bins(Head):
    """The bin layout for one bin width (degrees), the expectation mode over it, and the weight
    ``alpha`` of the regression term in the loss (a training setting: not stored, not compared)."""

    width_deg: int
    expectation: str = "centers"
    alpha: float = dataclasses.field(default=0.1, compare=False)
    name = "bins"  # the params.yaml ``head`` value (a class attribute, not a field)
    params_defaults = {"bin_width": 3, "expectation": "centers", "alpha": 0.1}
    meta_keys = ("num_bins", "bin_width", "expectation")
    options = ("expectation",)

    def __post_init__(self) -> None:
        check_bin_width(self.width_deg)
        if self.expectation not in EXPECTATION_MODES:
            raise HeadposeError(
                f"expectation must be one of {', '.join(EXPECTATION_MODES)}, "
                f"got {shorten(self.expectation)}"
            )

    @classmethod
    def validate_params(cls, params: dict) -> None:
        allowed = {  # key: (what it must be, the values)
            "bin_width": (f"a bin width in degrees that divides {RANGE_DEG}:", valid_bin_widths()),
            "expectation": ("one of", EXPECTATION_MODES),
        }
        for key, (expected, values) in allowed.items():
            if params[key] not in values:
                raise HeadposeError(
                    f"params.yaml: {key} is {shorten(params[key])}; expected {expected} "
                    + ", ".join(map(str, values))
                )

    @classmethod
    def from_params(cls, params: dict) -> Bins:
        return cls(params["bin_width"], params["expectation"], params["alpha"])

    @classmethod
    def from_meta(cls, meta: dict) -> Bins:
        """The bins a checkpoint's meta describes."""
        bins = cls(int(meta["bin_width"]), meta["expectation"])
        if int(meta["num_bins"]) != bins.count:
            raise HeadposeError(
                f"checkpoint meta: num_bins {meta['num_bins']} does not match bin_width "
                f"{meta['bin_width']} ({bins.count} bins)"
            )
        return bins

    @classmethod
    def validate_meta(cls, meta: dict, state_dict: dict, source: str) -> None:
        """The bins meta agrees with itself and with the three angle layers' output counts."""
        if meta["expectation"] not in EXPECTATION_MODES:
            raise HeadposeError(
                f"{source}: expectation {meta['expectation']!r} is none of "
                + ", ".join(EXPECTATION_MODES)
            )
        layers = [state_dict.get(f"{layer}.weight") for layer in LAYERS]
        if not all(isinstance(layer, torch.Tensor) and layer.ndim == 2 for layer in layers):
            raise HeadposeError(f"{source}: no 2-D fc_yaw/fc_pitch/fc_roll weights")
        counts = {int(layer.shape[0]) for layer in layers}
        if len(counts) != 1:
            raise HeadposeError(f"{source}: the three heads hold {sorted(counts)} bins")
        weight_bins = counts.pop()
        num_bins, bin_width = meta["num_bins"], meta["bin_width"]
        if num_bins != weight_bins:
            raise HeadposeError(
                f"{source}: meta says num_bins {num_bins!r}, but its head weights hold "
                f"{weight_bins} bins"
            )
        is_number = isinstance(bin_width, (int, float)) and not isinstance(bin_width, bool)
        if not (is_number and math.isfinite(bin_width)) or bin_width * weight_bins != RANGE_DEG:
            raise HeadposeError(
                f"{source}: meta says bin_width {bin_width!r} with {weight_bins} bins; "
                f"{weight_bins} bins of the {RANGE_DEG}-degree range are "
                f"{RANGE_DEG / weight_bins:g} degrees wide"
            )

    def layer_sizes(self) -> dict[str, int]:
        """The network's output layers for this head: one classifier per angle."""
        return dict.fromkeys(LAYERS, self.count)

    def meta(self) -> dict:
        """What a checkpoint stores about the bins."""
        return {
            "head": self.name,
            "num_bins": self.count,
            "bin_width": self.width_deg,
            "expectation": self.expectation,
        }

    def label(self) -> str:
        return f"{self.count} bins of {self.width_deg} deg, {self.expectation} expectation"

    def loss(self, outputs: Sequence[torch.Tensor], angles_deg: torch.Tensor) -> torch.Tensor:
        return binned_loss(outputs, angles_deg, self, self.alpha)

    @property
    def count(self) -> int:
        """Number of classes per angle."""
        return RANGE_DEG // int(self.width_deg)

    def labels(self, angles_deg: torch.Tensor) -> torch.Tensor:
        """Class index of each angle, clamped into [0, count - 1]."""
        index = torch.floor((angles_deg - RANGE_START_DEG) / self.width_deg).long()
        return index.clamp_(0, self.count - 1)

    def values_deg(self) -> torch.Tensor:
        """The angle each class stands for: its centre, or its lower edge (original HopeNet)."""
        offset = self.width_deg / 2 if self.expectation == "centers" else 0.0
        return (
            torch.arange(self.count, dtype=torch.float32) * self.width_deg
            + RANGE_START_DEG
            + offset
        )

    def expectation_deg(self, logits: torch.Tensor) -> torch.Tensor:
        """Soft-argmax: the softmax-weighted mean of the class values, in degrees (per row).

        Always float32, also under autocast (CUDA AMP): autocast would run the matmul in half
        precision (about 0.05 degree steps near +-99), in the loss and in validation alike."""
        values = self.values_deg().to(device=logits.device, dtype=torch.float32)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return torch.softmax(logits.float(), dim=-1) @ values

    def angles_deg(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The (N, 3) yaw, pitch, roll degrees of a network's three logit tensors."""
        return torch.stack([self.expectation_deg(angle_logits) for angle_logits in logits], dim=1)


def binned_loss(
    logits: Sequence[torch.Tensor], angles_deg: torch.Tensor, bins: Bins, alpha: float
) -> torch.Tensor:
    """Sum over yaw, pitch, roll of cross-entropy(bin) + alpha x MSE(expectation, angle)."""
    labels = bins.labels(angles_deg)
    total = angles_deg.new_zeros(())
    for index, angle_logits in enumerate(logits):
        classification = nn.functional.cross_entropy(angle_logits.float(), labels[:, index])
        regression = nn.functional.mse_loss(
            bins.expectation_deg(angle_logits), angles_deg[:, index]
        )
        total = total + classification + alpha * regression
    return total
