"""Every registered head runs the whole pipeline: train -> checkpoint -> evaluate -> ONNX."""

from __future__ import annotations

import inspect

import pytest
from training_fixtures import check_head_end_to_end

from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import evaluate
from headpose.inference.loading import open_model
from headpose.models.heads import check_same_head, head_names, head_with
from headpose.models.heads.bins import Bins
from headpose.models.heads.rotation import Rotation6D
from headpose.models.network import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
@pytest.mark.parametrize("head", head_names())
def test_every_registered_head_trains_evaluates_and_exports(head, tmp_path):
    meta = check_head_end_to_end(head, tmp_path)
    assert meta["arch"] == "resnet18"


def test_an_evaluation_asks_for_a_head_never_for_its_options():
    """Head options reach evaluation only as a head: ``head_with`` replaces the options of a
    checkpoint's head (a bins head's expectation) and checks the rest (its bin width)."""
    source = "checkpoint x.pt"
    assert head_with(Bins(3), {"expectation": "lower_edges"}, source) == Bins(3, "lower_edges")
    assert head_with(Bins(3), {"bin_width": 3}, source) == Bins(3)
    with pytest.raises(HeadposeError, match="x.pt holds bin_width 3; asked for bin_width 1$"):
        head_with(Bins(3), {"bin_width": 1, "expectation": "lower_edges"}, source)
    with pytest.raises(HeadposeError, match="bin_width does not apply to a rotation_6d head"):
        head_with(Rotation6D(), {"bin_width": 3}, source)
    check_same_head(Bins(3, "lower_edges"), Bins(3), source)  # same layers, another mode
    with pytest.raises(HeadposeError, match="holds num_bins 66, bin_width 3; asked for num_bins"):
        check_same_head(Bins(1), Bins(3), source)
    with pytest.raises(HeadposeError, match="holds a bins head; asked for a rotation_6d head"):
        check_same_head(Rotation6D(), Bins(3), source)


def test_generic_code_takes_no_bins_option():
    """Generic code never takes a bins-only option as an argument of its own."""
    for function in (evaluate, open_model, build_model):
        assert not {"expectation", "bin_width"} & set(inspect.signature(function).parameters)
