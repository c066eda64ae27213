"""A head added in one file: this module defines a head, registers it, and runs it through
training, checkpoints, evaluation and ONNX export with no other change to the code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import torch
from training_fixtures import check_head_end_to_end

from headpose.models.heads import HEADS, Head, head_names, register_head

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SCALE_DEG = 90.0  # the outputs are angles in units of 90 degrees


@dataclass(frozen=True)
class DirectAngles(Head):
    """Regress the three angles directly: one linear layer of 3 outputs, a smooth L1 loss."""

    name = "direct_angles"

    @classmethod
    def from_params(cls, params: dict) -> DirectAngles:
        return cls()

    @classmethod
    def from_meta(cls, meta: dict) -> DirectAngles:
        return cls()

    def meta(self) -> dict:
        return {"head": self.name}

    def layer_sizes(self) -> dict[str, int]:
        return {"fc_angles": 3}

    def angles_deg(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        (scaled,) = outputs
        return scaled.float() * SCALE_DEG

    def loss(self, outputs: Sequence[torch.Tensor], angles_deg: torch.Tensor) -> torch.Tensor:
        (scaled,) = outputs
        return torch.nn.functional.smooth_l1_loss(scaled.float(), angles_deg / SCALE_DEG)


@pytest.fixture
def registered():
    register_head(DirectAngles)
    yield
    HEADS.unregister(DirectAngles.name)


def test_a_head_defined_in_one_file_trains_evaluates_and_exports(registered, tmp_path):
    assert DirectAngles.name in head_names()
    meta = check_head_end_to_end(DirectAngles.name, tmp_path)
    assert "num_bins" not in meta  # no bins special case applied to another head
