"""The training losses of the two heads (:mod:`headpose.models.heads`).

* ``bins`` (HopeNet): per angle, cross-entropy over the bins + ``alpha`` x MSE between the bins'
  soft-argmax (:meth:`headpose.models.bins.Bins.expectation_deg`, over bin centres or, with
  ``expectation: lower_edges``, the original lower edges) and the true angle in degrees; summed
  over yaw, pitch and roll. Computed in float32 whatever the logits' precision, also inside
  autocast (CUDA AMP): the cross-entropy takes the logits cast to float32 and the expectation
  runs with autocast off, so mixed precision rounds only the network's outputs.
* ``rotation_6d`` (6DRepNet): the geodesic distance in radians between the predicted rotation
  matrix and the label's, built from the label's angles with the datasets' convention
  (:func:`headpose.models.rotation.label_rotations`); averaged over the batch. A horizontally
  flipped training sample carries flipped angles (yaw and roll negated), so its matrix is the
  flipped rotation.
"""

from __future__ import annotations

import torch
from torch import nn

from headpose.models.bins import Bins
from headpose.models.heads import Head
from headpose.models.rotation import Rotation6D, label_rotations

# acos is clamped just inside [-1, 1]: its gradient is infinite at the ends.
ACOS_CLAMP = 1.0 - 1e-7


def binned_loss(
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


def geodesic_distance_rad(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """The angle (radians, in [0, pi]) of the rotation taking each ``true`` matrix to the
    ``predicted`` one: acos((trace(P^T T) - 1) / 2), per matrix of (..., 3, 3) batches."""
    trace = (predicted * true).sum(dim=(-2, -1))  # trace(P^T T) without forming the product
    return torch.acos(((trace - 1.0) / 2.0).clamp(-ACOS_CLAMP, ACOS_CLAMP))


def pose_loss(
    outputs: tuple[torch.Tensor, ...], angles_deg: torch.Tensor, head: Head, alpha: float
) -> torch.Tensor:
    """The loss of a network's ``outputs`` against (N, 3) yaw, pitch, roll labels for ``head``
    (``alpha`` weighs the bins' regression term; the rotation head has none)."""
    if isinstance(head, Rotation6D):
        true = label_rotations(angles_deg.float())
        return geodesic_distance_rad(head.rotations(outputs), true).mean()
    return binned_loss(outputs, angles_deg, head, alpha)
