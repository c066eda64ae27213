"""A crop protocol added in one file: this module defines a protocol, registers it, and runs it
through training, checkpoints, evaluation, ONNX export and prediction with no other change to
the code."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch
from helpers import as_samples
from training_fixtures import tiny_run_paths, tiny_settings, write_tiny_dataset

import headpose
from headpose.app.detect import FaceBox
from headpose.crops.crop import (
    Box,
    landmark_box,
    margins,
)
from headpose.crops.protocols import (
    PROTOCOLS,
    CropProtocol,
    choose_protocol,
    get_protocol,
    protocol_names,
    register_protocol,
)
from headpose.datasets.labels import Labels
from headpose.errors import HeadposeError
from headpose.io.images import read_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CentreSquare(CropProtocol):
    """A square about the centre of the visible landmarks' box: its side the box's longer side,
    grown by the largest margin of the mode on each side; the base class's pixels (the whole box
    resized to a square, no random position), blurred by a 3x3 box."""

    name = "centre_square"
    blur_kernel = np.full((3, 3), 1 / 9, dtype=np.float32)
    blur_border = "reflect"

    def face_box(self, annotation: Labels) -> Box:
        x0, y0, x1, y1 = landmark_box(annotation.visible_points_xy - 1.0)
        half = max(x1 - x0, y1 - y0) / 2
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        return centre_x - half, centre_y - half, centre_x + half, centre_y + half

    def loosen_box(self, box: Box, k: float, mode: str) -> Box:
        grow = max(margins(k, mode)) * (box[2] - box[0])
        return box[0] - grow, box[1] - grow, box[2] + grow, box[3] + grow


@pytest.fixture
def registered():
    register_protocol(CentreSquare)
    yield PROTOCOLS.get(CentreSquare.name)
    PROTOCOLS.unregister(CentreSquare.name)


@pytest.mark.slow
def test_a_protocol_defined_in_one_file_trains_evaluates_exports_and_predicts(registered, tmp_path):
    from headpose.deploy.export import export_for_deployment
    from headpose.evaluation.evaluate import evaluate, format_report
    from headpose.inference.loading import open_model
    from headpose.training.run import run_training

    assert CentreSquare.name in protocol_names() and get_protocol(CentreSquare.name) == registered
    stems = write_tiny_dataset(tmp_path, 24)
    paths = tiny_run_paths(tmp_path, stems)
    metrics = run_training(tiny_settings(crop_protocol=CentreSquare.name), paths)
    checkpoint = paths.models_dir / "model.pt"
    meta = torch.load(checkpoint, weights_only=True)["meta"]
    assert meta["crop_protocol"] == CentreSquare.name
    assert choose_protocol(None, meta) == registered  # the model's own protocol

    # evaluated under its crop, the model scores as its validation did
    result = evaluate(
        open_model(checkpoint), as_samples(stems[16:]), "val", crop_protocol=registered
    )
    assert result.metrics["crop_protocol"] == CentreSquare.name
    assert result.metrics["model"]["trained_crop_protocol"] == CentreSquare.name
    assert result.metrics["mae"]["mean"] == pytest.approx(metrics["final"]["mae_mean"], abs=1e-3)
    assert f"crop protocol {CentreSquare.name}" in format_report(result.metrics, checkpoint, "val")

    # exported: calibration and test crops follow the trained protocol, the file records it
    exported = export_for_deployment(
        checkpoint, tmp_path / "deploy", as_samples(stems), as_samples(stems[16:]), workers=1
    )
    assert exported["crop_protocol"] == CentreSquare.name
    assert exported["parity_max_abs_deg"] < 0.01
    onnx_file = tmp_path / "deploy" / "model.onnx"
    props = {prop.key: prop.value for prop in onnx.load(onnx_file).metadata_props}
    assert json.loads(props["headpose.crop_protocol"]) == CentreSquare.name

    # the Python API reads the protocol from the file and crops faces by it
    model = headpose.load(onnx_file)
    assert model.crop_protocol == registered
    image = read_image(stems[0] + ".jpg")
    box = (8.0, 9.0, 30.0, 28.0)
    expected = registered.prediction_crop(image, registered.from_pixel_coordinates(box), 32)
    crops = model.crops(image, [FaceBox(*box, float("nan"))])
    assert np.array_equal(crops[0], expected)
    (pose,) = model.predict(image, boxes=[box])
    angles = model.predict_crops(expected)[0]
    assert (pose.yaw_deg, pose.pitch_deg, pose.roll_deg) == pytest.approx(tuple(angles))


def test_an_unknown_protocol_is_one_line_naming_the_known_ones():
    with pytest.raises(HeadposeError, match="expected one of hopenet, visible"):
        get_protocol("centre_square")


@pytest.mark.parametrize(("protocol", "message"), [
    ("centre_square", "crop_protocol: unknown crop protocol 'centre_square'; expected one of"),
    (3, "crop_protocol 3; expected a crop protocol's name"),
])  # fmt: skip
def test_a_checkpoint_of_an_unregistered_protocol_is_one_line(tmp_path, protocol, message):
    from model_fixtures import write_checkpoint

    from headpose.inference.loading import open_model

    checkpoint = write_checkpoint(tmp_path / "m.pt", "resnet18", crop_protocol=protocol)
    with pytest.raises(HeadposeError, match=re.escape(message)):
        open_model(checkpoint)
