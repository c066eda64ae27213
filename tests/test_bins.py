"""Bin layout, clamping and the expectation (centres vs the original lower edges)."""

from __future__ import annotations

import pytest
import torch

from headpose.errors import HeadposeError
from headpose.models.heads.bins import Bins


@pytest.mark.parametrize("width", [1, 3, 33])
def test_labels_cover_the_range_and_clamp_the_ends(width):
    bins = Bins(width)
    labels = bins.labels(torch.tensor([-99.0, -98.9, 0.0, 98.9, 99.0, 120.0, -150.0]))
    assert labels.min() >= 0 and labels.max() <= bins.count - 1
    assert labels[0] == 0 and labels[4] == bins.count - 1 and labels[5] == bins.count - 1
    assert bins.count == 198 // width


def test_invalid_width_is_rejected_with_the_valid_list():
    with pytest.raises(HeadposeError, match="valid widths: 1, 2, 3, 6"):
        Bins(4)


def test_confident_prediction_recovers_the_bin_centre_not_the_lower_edge():
    bins = Bins(3)
    angle = torch.tensor([10.2])
    logits = torch.full((1, bins.count), -1e4)
    logits[0, bins.labels(angle)] = 0.0
    assert bins.expectation_deg(logits).item() == pytest.approx(10.5)  # centre of [9, 12)
    assert Bins(3, "lower_edges").expectation_deg(logits).item() == pytest.approx(9.0)


def test_uniform_logits_give_zero_with_centres_and_minus_half_width_with_edges():
    bins = Bins(3)
    logits = torch.zeros(1, bins.count)
    assert bins.expectation_deg(logits).item() == pytest.approx(0.0, abs=1e-5)
    assert Bins(3, "lower_edges").expectation_deg(logits).item() == pytest.approx(-1.5, abs=1e-5)


def _bins_loss_inputs() -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = tuple(4 * torch.randn(16, 66, generator=generator) for _ in range(3))
    angles = 60 * torch.rand(16, 3, generator=generator) - 30
    return logits, angles


def test_expectation_and_loss_stay_float32_under_autocast():
    """Mixed precision (CUDA AMP; here the CPU's bfloat16 autocast, which lowers matmuls the
    same way) must not lower the soft-argmax or the bins loss: half-precision logits are cast to
    float32 and the expectation's matmul runs outside autocast, so the numbers match float32."""
    from headpose.models.heads.bins import binned_loss

    bins = Bins(3)
    logits, angles = _bins_loss_inputs()
    reference_deg = bins.angles_deg(logits)
    reference_loss = binned_loss(logits, angles, bins, alpha=0.1)
    half_logits = tuple(angle_logits.bfloat16() for angle_logits in logits)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        degrees = bins.angles_deg(logits)
        loss = binned_loss(logits, angles, bins, alpha=0.1)
        half_loss = binned_loss(half_logits, angles, bins, alpha=0.1)
    assert degrees.dtype == torch.float32 and loss.dtype == torch.float32
    assert half_loss.dtype == torch.float32
    torch.testing.assert_close(degrees, reference_deg, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss, reference_loss, rtol=1e-6, atol=0)
    # bfloat16 logits lose only their own rounding (the loss of the rounded logits in float32)
    rounded = tuple(angle_logits.float() for angle_logits in half_logits)
    torch.testing.assert_close(half_loss, binned_loss(rounded, angles, bins, alpha=0.1))


def test_output_layers_run_in_float32_under_autocast():
    """Under autocast the backbone may run in half precision, but the logits come out of
    float32 output layers: the same as those layers applied to the backbone's features in
    float32 (without autocast the network is unchanged)."""
    from headpose.models.network import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", Bins(3)).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = model(images)
        features = model.backbone(images)
    assert features.dtype == torch.bfloat16
    assert all(angle_logits.dtype == torch.float32 for angle_logits in logits)
    with torch.no_grad():
        expected = model.fc_yaw(features.float())
    torch.testing.assert_close(logits[0], expected, rtol=0, atol=0)
