"""The 6D-rotation head (Zhou et al. 2019, as in 6DRepNet): the network outputs two 3-vectors,
Gram-Schmidt turns them into a rotation matrix, and the Euler angles are read off that matrix.

The two vectors become the first two columns of the matrix (normalised, the second made
orthogonal to the first), the third column is their cross product, so the result is always a
proper rotation (orthonormal, determinant +1). Angles come back through the project's one rotation
convention (:func:`headpose.geometry.euler_from_matrices`, the 3DDFA convention of the labels), on
the branch nearest the frontal pose, so a yaw of 95 degrees stays 95 with small pitch and roll.
The labels' matrices (:func:`label_rotations`) are built with the same convention, which is what
the loss compares against: the geodesic distance in radians between the predicted matrix and the
label's, averaged over the batch (a flipped training sample carries flipped angles, so its matrix
is the flipped rotation).

The head has no parameters of its own beyond the network's one linear layer ``fc_rotation``
(6 outputs), and owns no params.yaml key; :class:`Rotation6D` is the registered ``rotation_6d``
head (:mod:`headpose.models.heads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from headpose.geometry import euler_from_matrices, rotation_matrices
from headpose.models.heads.base import Head, register_head

# acos is clamped just inside [-1, 1]: its gradient is infinite at the ends.
ACOS_CLAMP = 1.0 - 1e-7
NORM_EPS = 1e-8  # keeps Gram-Schmidt finite for a zero vector
FRONTAL_RAD = (0.0, 0.0, 0.0)  # the reference the Euler branch is chosen nearest to


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product of (..., 3) vectors, written out (exports to plain ONNX arithmetic)."""
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def gram_schmidt(vectors: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) rotation matrices whose columns are the orthonormalised first
    3-vector, the orthonormalised second one, and their cross product."""
    first, second = vectors[..., :3], vectors[..., 3:]
    column_x = torch.nn.functional.normalize(first, dim=-1, eps=NORM_EPS)
    along_x = (column_x * second).sum(dim=-1, keepdim=True) * column_x
    column_y = torch.nn.functional.normalize(second - along_x, dim=-1, eps=NORM_EPS)
    column_z = _cross(column_x, column_y)
    return torch.stack([column_x, column_y, column_z], dim=-1)


def label_rotations(angles_deg: torch.Tensor) -> torch.Tensor:
    """The rotation matrices (N, 3, 3) of (N, 3) yaw, pitch, roll labels in degrees."""
    yaw, pitch, roll = torch.deg2rad(angles_deg).unbind(-1)
    return rotation_matrices(pitch, yaw, roll)


def rotation_angles_deg(rotations: torch.Tensor) -> torch.Tensor:
    """(N, 3) yaw, pitch, roll degrees of rotation matrices (N, 3, 3), nearest the frontal pose."""
    pitch, yaw, roll = euler_from_matrices(rotations, near_rad=FRONTAL_RAD)
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=-1))


def geodesic_distance_rad(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """The angle (radians, in [0, pi]) of the rotation taking each ``true`` matrix to the
    ``predicted`` one: acos((trace(P^T T) - 1) / 2), per matrix of (..., 3, 3) batches."""
    trace = (predicted * true).sum(dim=(-2, -1))  # trace(P^T T) without forming the product
    return torch.acos(((trace - 1.0) / 2.0).clamp(-ACOS_CLAMP, ACOS_CLAMP))


@register_head
@dataclass(frozen=True)
class Rotation6D(Head):
    """The 6D-rotation head: one linear layer of 6 outputs, read as a rotation matrix."""

    name = "rotation_6d"  # the params.yaml ``head`` value

    @classmethod
    def from_params(cls, params: dict) -> Rotation6D:
        return cls()

    @classmethod
    def from_meta(cls, meta: dict) -> Rotation6D:
        return cls()

    def layer_sizes(self) -> dict[str, int]:
        """The network's output layers for this head."""
        return {"fc_rotation": 6}

    def meta(self) -> dict:
        """What a checkpoint stores about the head."""
        return {"head": self.name}

    def rotations(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The (N, 3, 3) rotation matrices of the network's outputs (one (N, 6) tensor)."""
        (vectors,) = outputs
        return gram_schmidt(vectors.float())

    def angles_deg(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The (N, 3) yaw, pitch, roll degrees of the network's outputs."""
        return rotation_angles_deg(self.rotations(outputs))

    def loss(self, outputs: Sequence[torch.Tensor], angles_deg: torch.Tensor) -> torch.Tensor:
        true = label_rotations(angles_deg.float())
        return geodesic_distance_rad(self.rotations(outputs), true).mean()
