"""HopeNet's loss: per angle, cross-entropy over the bins + ``alpha`` x MSE of the expectation.

The expectation is the bins' soft-argmax (:meth:`headpose.models.bins.Bins.expectation_deg`, over
bin centres or, with ``expectation: lower_edges``, the original lower edges), compared with the
true angle in degrees.
"""

from __future__ import annotations

import torch
from torch import nn

from headpose.models.bins import Bins


def pose_loss(
    logits: tuple[torch.Tensor, ...], angles_deg: torch.Tensor, bins: Bins, alpha: float
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
