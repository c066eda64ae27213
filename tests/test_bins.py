"""Bin layout, clamping and the expectation (centres vs the original lower edges)."""

from __future__ import annotations

import pytest
import torch

from headpose.errors import HeadposeError
from headpose.models.bins import Bins


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
