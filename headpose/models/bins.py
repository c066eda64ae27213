"""HopeNet's binned angle classification: bin layout, labels and the soft-argmax expectation.

Angles in [-99, 99) degrees are split into ``198 / bin_width`` classes. Labels at or beyond the
ends (an angle of exactly +-99) are clamped into the end bins. The regression value is the
softmax expectation over bin **centres**; the original HopeNet code used the bins' lower edges
(``sum(p * idx) * 3 - 99``), a systematic -width/2 bias, kept as ``mode="lower_edges"`` so the
original snapshots can be evaluated exactly as published.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headpose.errors import HeadposeError
from headpose.params import FULL_RANGE_DEG, valid_bin_widths

RANGE_START_DEG = -FULL_RANGE_DEG / 2  # -99
EXPECTATION_MODES = ("centers", "lower_edges")


@dataclass(frozen=True)
class Bins:
    """The bin layout for one bin width (degrees)."""

    width_deg: int

    def __post_init__(self) -> None:
        if self.width_deg not in valid_bin_widths():
            raise HeadposeError(
                f"bin_width {self.width_deg!r} does not divide 198; valid widths: "
                + ", ".join(map(str, valid_bin_widths()))
            )

    @property
    def count(self) -> int:
        """Number of classes per angle."""
        return FULL_RANGE_DEG // int(self.width_deg)

    def labels(self, angles_deg: torch.Tensor) -> torch.Tensor:
        """Class index of each angle, clamped into [0, count - 1]."""
        index = torch.floor((angles_deg - RANGE_START_DEG) / self.width_deg).long()
        return index.clamp_(0, self.count - 1)

    def values_deg(self, mode: str = "centers") -> torch.Tensor:
        """The angle each class stands for: its centre, or its lower edge (original HopeNet)."""
        if mode not in EXPECTATION_MODES:
            raise HeadposeError(
                f"expectation must be one of {', '.join(EXPECTATION_MODES)}, got {mode!r}"
            )
        offset = self.width_deg / 2 if mode == "centers" else 0.0
        return (
            torch.arange(self.count, dtype=torch.float32) * self.width_deg
            + RANGE_START_DEG
            + offset
        )

    def expectation_deg(self, logits: torch.Tensor, mode: str = "centers") -> torch.Tensor:
        """Soft-argmax: the softmax-weighted mean of the class values, in degrees (per row)."""
        values = self.values_deg(mode).to(device=logits.device, dtype=torch.float32)
        return torch.softmax(logits.float(), dim=-1) @ values
