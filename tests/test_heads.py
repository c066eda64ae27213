"""Every registered head runs the whole pipeline: train -> checkpoint -> evaluate -> ONNX."""

from __future__ import annotations

import pytest
from training_fixtures import check_head_end_to_end

from headpose.models.heads import head_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("head", head_names())
def test_every_registered_head_trains_evaluates_and_exports(head, tmp_path):
    meta = check_head_end_to_end(head, tmp_path)
    assert meta["arch"] == "resnet18"
