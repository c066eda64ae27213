"""The 6D-rotation head: Gram-Schmidt, the geodesic loss, matrix <-> Euler with the datasets'
convention (on the real AFLW2000 labels), flips, params, checkpoints, training, evaluation and
export (ONNX fp32 + int8) through the one inference path."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import yaml
from helpers import REPO_ROOT, as_samples
from model_fixtures import checkpoint_meta
from training_fixtures import tiny_run_paths, tiny_settings, write_tiny_dataset

from headpose.datasets.mat import read_mat_labels
from headpose.deploy.export import export_for_deployment
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import evaluate, format_report
from headpose.evaluation.test_sets import evaluation_samples
from headpose.geometry import flip_angles, rotation_matrix
from headpose.inference.loading import open_model
from headpose.models.checkpoints import save_checkpoint
from headpose.models.heads import head_from_meta, head_with
from headpose.models.heads.bins import Bins
from headpose.models.heads.rotation import (
    Rotation6D,
    geodesic_distance_rad,
    gram_schmidt,
    label_rotations,
    rotation_angles_deg,
)
from headpose.models.keys import validate_model_params
from headpose.models.network import AnglesModel, build_model
from headpose.params import validate
from headpose.training.run import run_training
from headpose.training.settings import TrainPaths

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIRROR_X = np.diag([-1.0, 1.0, 1.0])  # mirroring an image left-right in camera space


def six_d(rotations: torch.Tensor) -> torch.Tensor:
    """The 6D encoding of rotation matrices: their first two columns, as Gram-Schmidt reads them."""
    return torch.cat([rotations[..., :, 0], rotations[..., :, 1]], dim=-1)


@pytest.fixture(scope="module")
def aflw2000_labels_deg(aflw2000_dir) -> np.ndarray:
    """(1969, 3) yaw, pitch, roll of the real AFLW2000 protocol set (|angles| <= 99)."""
    stems, _ = evaluation_samples(aflw2000_dir)
    assert len(stems) == 1969
    return np.array([sample.header().angles_deg for sample in stems])


def test_gram_schmidt_gives_proper_rotations():
    vectors = torch.randn(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rotations = gram_schmidt(vectors)
    identity = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    assert torch.allclose(rotations.transpose(-1, -2) @ rotations, identity, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(500, dtype=torch.float64))
    # the first column keeps the first vector's direction; the second stays in their plane
    first = vectors[:, :3] / vectors[:, :3].norm(dim=-1, keepdim=True)
    assert torch.allclose(rotations[:, :, 0], first, atol=1e-12)
    normal = torch.linalg.cross(vectors[:, :3], vectors[:, 3:])
    assert torch.allclose(
        (rotations[:, :, 1] * normal).sum(-1), torch.zeros(500, dtype=torch.float64), atol=1e-9
    )


def test_geodesic_loss_is_zero_at_the_truth_and_pi_for_a_half_turn():
    angles = torch.tensor([[30.0, -10.0, 5.0], [-70.0, 20.0, -15.0], [0.0, 0.0, 0.0]])
    truth = label_rotations(angles)
    assert geodesic_distance_rad(truth, truth).max() < 1e-3
    half_turn = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))  # pi about the z axis
    assert torch.allclose(
        geodesic_distance_rad(truth @ half_turn, truth), torch.full((3,), math.pi), atol=1e-3
    )
    quarter_turn = label_rotations(torch.tensor([[0.0, 0.0, 90.0]]))
    assert geodesic_distance_rad(quarter_turn, label_rotations(torch.zeros(1, 3))).item() == (
        pytest.approx(math.pi / 2, abs=1e-5)
    )
    # the training loss of the head: near 0 for an exact prediction, with finite gradients
    outputs = six_d(truth).clone().requires_grad_(True)
    loss = Rotation6D().loss((outputs,), angles)
    loss.backward()
    assert loss.item() < 1e-3 and torch.isfinite(outputs.grad).all()
    wrong = Rotation6D().loss((six_d(truth @ half_turn),), angles)
    assert wrong.item() == pytest.approx(math.pi, abs=1e-3)


def test_label_matrices_are_the_geometry_convention(aflw2000_labels_deg):
    labels = aflw2000_labels_deg
    matrices = label_rotations(torch.from_numpy(labels)).numpy()
    for index in range(0, len(labels), 50):
        yaw, pitch, roll = np.radians(labels[index])
        np.testing.assert_allclose(matrices[index], rotation_matrix(pitch, yaw, roll), atol=1e-12)


def test_matrix_euler_round_trip_on_the_real_aflw2000_labels(aflw2000_labels_deg):
    labels = torch.from_numpy(aflw2000_labels_deg)
    rotations = label_rotations(labels)
    recovered = rotation_angles_deg(rotations)
    assert torch.allclose(recovered, labels, atol=1e-6)
    # yaws past 90 (300W_LP has them, up to the 99-degree filter) keep small pitch and roll
    beyond = torch.tensor([[95.0, 10.0, 5.0], [-97.0, -20.0, 8.0]], dtype=torch.float64)
    assert torch.allclose(rotation_angles_deg(label_rotations(beyond)), beyond, atol=1e-9)
    # the whole head on the exact 6D encoding gives the labels back (float32, as deployed)
    head_angles = Rotation6D().angles_deg((six_d(rotations).float(),)).double()
    assert (head_angles - labels).abs().max() < 1e-3


def test_the_flipped_matrix_is_the_matrix_of_the_flipped_angles(aflw2000_labels_deg):
    labels = aflw2000_labels_deg
    flipped = label_rotations(torch.from_numpy(flip_angles(labels))).numpy()
    mirrored = MIRROR_X @ label_rotations(torch.from_numpy(labels)).numpy() @ MIRROR_X
    np.testing.assert_allclose(flipped, mirrored, atol=1e-12)


def test_network_loss_and_angles_of_the_rotation_head():
    torch.manual_seed(0)
    network = build_model("resnet18", Rotation6D())
    assert network.output_names == ("fc_rotation",) and not hasattr(network, "fc_yaw")
    images = torch.randn(4, 3, 32, 32)
    (outputs,) = network(images)
    assert outputs.shape == (4, 6)
    angles = torch.tensor([[10.0, 5.0, -3.0]] * 4)
    loss = network.head.loss((outputs,), angles)
    loss.backward()
    head_weight = network.fc_rotation.weight.grad
    assert 0 < loss.item() <= math.pi and head_weight.abs().sum() > 0
    model = AnglesModel(network.eval())
    with torch.inference_mode():
        predicted = model(images)
    assert predicted.shape == (4, 3) and predicted.abs().max() <= 180


def test_params_head_key_and_the_bins_only_keys():
    params = copy.deepcopy(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    assert params["head"] == "bins"
    validate_model_params(validate({**params, "head": "rotation_6d"}))
    for key, value in (("bin_width", 1), ("alpha", 2), ("expectation", "lower_edges")):
        with pytest.raises(HeadposeError) as error:
            validate_model_params(validate({**params, "head": "rotation_6d", key: value}))
        message = str(error.value)
        assert key in message and "does not apply to head rotation_6d" in message
        assert "\n" not in message
        validate_model_params(validate({**params, key: value}))  # fine with bins
    unknown = "params.yaml: head: unknown head 'quaternion'; expected one of bins, rotation_6d"
    with pytest.raises(HeadposeError, match=unknown):
        validate_model_params(validate({**params, "head": "quaternion"}))


def test_checkpoints_record_and_validate_the_head(tmp_path):
    torch.manual_seed(0)
    network = build_model("resnet18", Rotation6D()).eval()
    meta = {**checkpoint_meta("resnet18"), "head": "rotation_6d"}
    for key in ("num_bins", "bin_width", "expectation"):
        del meta[key]
    path = tmp_path / "rotation.pt"
    save_checkpoint(path, network, meta)
    opened = open_model(path, "torch", "cpu")
    loaded, loaded_meta = opened.model, opened.meta
    assert loaded_meta["head"] == "rotation_6d" and isinstance(loaded.head, Rotation6D)
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(images), AnglesModel(network)(images))
    with pytest.raises(HeadposeError, match="expectation does not apply to a rotation_6d head"):
        head_with(loaded.head, {"expectation": "centers"}, f"checkpoint {path}")
    with pytest.raises(HeadposeError, match="holds a rotation_6d head; asked for a bins head"):
        opened.with_head(Bins(3))
    with pytest.raises(HeadposeError, match="with head"):  # meta and model disagree
        save_checkpoint(tmp_path / "bad.pt", network, checkpoint_meta("resnet18"))
    # a file whose meta says bins but holds the rotation layer is refused on loading
    content = torch.load(path, weights_only=True)
    content["meta"] = {**content["meta"], **checkpoint_meta("resnet18"), "head": "bins"}
    torch.save(content, tmp_path / "mislabelled.pt")
    with pytest.raises(HeadposeError, match="mislabelled.pt: no 2-D fc_yaw/fc_pitch/fc_roll"):
        open_model(tmp_path / "mislabelled.pt", "torch", "cpu")
    content["meta"]["head"] = "quaternion"
    torch.save(content, tmp_path / "unknown.pt")
    with pytest.raises(HeadposeError, match="unknown head 'quaternion'"):
        open_model(tmp_path / "unknown.pt", "torch", "cpu")
    # checkpoints from before the head key hold bins
    assert head_from_meta(checkpoint_meta("resnet18")) == Bins(3)
    # a bins checkpoint as pretrained weights for a rotation model: backbone only
    bins_path = tmp_path / "bins.pt"
    save_checkpoint(bins_path, build_model("resnet18", Bins(3)), checkpoint_meta("resnet18"))
    rotation = build_model("resnet18", Rotation6D(), pretrained=str(bins_path))
    assert torch.equal(
        rotation.backbone.conv1.weight, torch.load(bins_path)["state_dict"]["backbone.conv1.weight"]
    )


@pytest.fixture(scope="module")
def trained_rotation(tmp_path_factory) -> tuple[dict, TrainPaths, list[str]]:
    """A tiny rotation_6d run (random data, 32 px, 2 + 1 epochs) through the real training loop."""
    folder = tmp_path_factory.mktemp("rotation_run")
    stems = write_tiny_dataset(folder, 24)
    paths = tiny_run_paths(folder, stems)
    return run_training(tiny_settings(head="rotation_6d"), paths), paths, stems[16:]


@pytest.mark.slow
def test_training_and_evaluation_run_with_the_rotation_head(trained_rotation):
    metrics, paths, val_stems = trained_rotation
    assert metrics["final"]["epoch"] == 3 and math.isfinite(metrics["final"]["train_loss"])
    # the geodesic loss is in radians, at most pi
    assert 0 < metrics["final"]["train_loss"] <= math.pi
    meta = torch.load(paths.models_dir / "model.pt", weights_only=True)["meta"]
    assert meta["head"] == "rotation_6d" and "bin_width" not in meta
    result = evaluate(
        open_model(paths.models_dir / "model.pt"), as_samples(val_stems), "val", baseline=True
    )
    truth = np.array([read_mat_labels(stem + ".mat").angles_deg for stem in val_stems])
    # MAE is the plain absolute Euler difference
    np.testing.assert_allclose(
        result.errors.absolute_deg, np.abs(result.errors.predicted_deg - truth), atol=1e-4
    )
    assert result.metrics["mae"]["mean"] == pytest.approx(metrics["final"]["mae_mean"], abs=1e-3)
    assert result.metrics["model"]["head"] == "rotation_6d"
    assert "resnet18, rotation_6d head, 32 px" in format_report(result.metrics, "m.pt", "val")


@pytest.mark.slow
def test_export_and_int8_of_the_rotation_head(trained_rotation, tmp_path):
    _, paths, val_stems = trained_rotation
    metrics = export_for_deployment(
        paths.models_dir / "model.pt",
        tmp_path / "deploy",
        as_samples(val_stems),
        as_samples(val_stems),
        workers=1,
    )
    assert metrics["parity_max_abs_deg"] < 0.01
    assert abs(metrics["mae"]["onnx_fp32"]["mean"] - metrics["mae"]["pytorch_fp32"]["mean"]) < 0.01
    assert metrics["mae"]["onnx_int8"]["count"] == len(val_stems)
    assert math.isfinite(metrics["mae"]["onnx_int8"]["mean"])
    assert metrics["file_mb"]["model_int8.onnx"] < metrics["file_mb"]["model.onnx"]
    assert not metrics["fused"] and not (tmp_path / "deploy" / "model_fused.pt").exists()
