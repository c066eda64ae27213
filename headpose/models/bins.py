"""HopeNet's binned angle head: the bin layout, the labels and the soft-argmax expectation.

Angles in [-99, 99) degrees are split into ``198 / width_deg`` classes; labels at or beyond the
ends (an angle of exactly +-99) are clamped into the end bins. The regression value is the softmax
expectation over the bins' **centres**; the original HopeNet code used the bins' lower edges
(``sum(p * idx) * 3 - 99``), a systematic -width/2 bias, kept as ``expectation="lower_edges"`` so
the original snapshots can be evaluated exactly as published.

A :class:`Bins` is the whole description of how a network's outputs become angles: the range,
the width and the expectation mode travel together (and are stored in checkpoints as
:meth:`Bins.meta`). Everything that turns outputs into degrees calls :meth:`Bins.angles_deg`;
the loss reads :meth:`Bins.labels` and :meth:`Bins.expectation_deg`. The other head, the 6D
rotation (:mod:`headpose.models.rotation`), offers the same ``name``, ``layer_sizes``, ``meta``
and ``angles_deg``; :mod:`headpose.models.heads` picks one from params or a checkpoint's meta.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from headpose.errors import HeadposeError

RANGE_DEG = 198  # HopeNet bins cover [-99, 99)
RANGE_START_DEG = -RANGE_DEG / 2  # -99
EXPECTATION_MODES = ("centers", "lower_edges")


def valid_bin_widths() -> list[int]:
    """Bin widths (degrees) that divide the 198-degree range into whole bins."""
    return [width for width in range(1, RANGE_DEG + 1) if RANGE_DEG % width == 0]


@dataclass(frozen=True)
class Bins:
    """The bin layout for one bin width (degrees) and the expectation mode over it."""

    width_deg: int
    expectation: str = "centers"
    name = "bins"  # the params.yaml ``head`` value (a class attribute, not a field)

    def __post_init__(self) -> None:
        if self.width_deg not in valid_bin_widths():
            raise HeadposeError(
                f"bin_width {self.width_deg!r} does not divide 198; valid widths: "
                + ", ".join(map(str, valid_bin_widths()))
            )
        if self.expectation not in EXPECTATION_MODES:
            raise HeadposeError(
                f"expectation must be one of {', '.join(EXPECTATION_MODES)}, "
                f"got {self.expectation!r}"
            )

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

    def layer_sizes(self) -> dict[str, int]:
        """The network's output layers for this head: one classifier per angle."""
        return {"fc_yaw": self.count, "fc_pitch": self.count, "fc_roll": self.count}

    def meta(self) -> dict:
        """What a checkpoint stores about the bins."""
        return {
            "head": self.name,
            "num_bins": self.count,
            "bin_width": self.width_deg,
            "expectation": self.expectation,
        }

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
