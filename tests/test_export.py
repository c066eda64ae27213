"""Export and quantisation: ONNX/TorchScript parity on real AFLW2000 crops, int8, the command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import as_samples
from model_fixtures import write_checkpoint
from protocol_fixtures import HOPENET

from headpose.cli import main
from headpose.crops.pipeline import evaluation_dataset, model_input
from headpose.deploy.export import CropCalibrationReader, export_for_deployment, export_torchscript
from headpose.evaluation.evaluate import predict_samples
from headpose.evaluation.metrics import mae_summary
from headpose.inference.loading import open_model
from headpose.inference.runtime import (
    onnx_angle_function,
    onnx_session,
    torch_angle_function,
)
from headpose.models.heads.bins import Bins
from headpose.models.network import AnglesModel, build_model
from headpose.models.registry import IMAGENET

IMAGE_SIZE = 96


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def real_stems(aflw2000_dir) -> list:
    return as_samples(
        path.with_suffix("").as_posix() for path in sorted(aflw2000_dir.glob("*.jpg"))[:12]
    )


@pytest.fixture(scope="module")
def real_crops(real_stems) -> torch.Tensor:
    dataset = evaluation_dataset(real_stems, IMAGE_SIZE, HOPENET, workers=1)
    images = torch.stack([dataset[index][0] for index in range(len(dataset))])
    return model_input(images, torch.device("cpu"), IMAGENET)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, real_stems) -> dict:
    """A small ResNet18 checkpoint (96 px) through the export stage's library function:
    ONNX fp32 + int8 calibrated on real AFLW2000 crops, both evaluated on them."""
    folder = tmp_path_factory.mktemp("export")
    write_checkpoint(folder / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    metrics = export_for_deployment(
        folder / "model.pt", folder / "deploy", real_stems, real_stems, workers=1
    )
    return {
        "model.pt": folder / "model.pt",
        "model.onnx": folder / "deploy" / "model.onnx",
        "model_int8.onnx": folder / "deploy" / "model_int8.onnx",
        "metrics": metrics,
    }


@pytest.mark.slow
def test_export_metrics_report_parity_sizes_and_int8_cost(exported, real_stems):
    metrics = exported["metrics"]
    assert metrics["exported"] and metrics["parity_max_abs_deg"] < 0.1
    assert metrics["file_mb"]["model_int8.onnx"] < 0.35 * metrics["file_mb"]["model.onnx"]
    mae = metrics["mae"]
    assert {run["count"] for run in mae.values()} == {len(real_stems)}
    assert abs(mae["onnx_fp32"]["mean"] - mae["pytorch_fp32"]["mean"]) < 0.01
    increase = mae["onnx_int8"]["mean"] - mae["onnx_fp32"]["mean"]
    assert metrics["int8_mae_mean_increase_deg"] == pytest.approx(increase, abs=1e-3)


def test_angles_model_is_the_bins_expectation_of_each_head():
    torch.manual_seed(0)
    network = build_model("resnet18", Bins(3)).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = network(images)
        for mode in ("centers", "lower_edges"):
            angles = AnglesModel(network, Bins(3, mode))(images)
            expected = torch.stack([Bins(3, mode).expectation_deg(x) for x in logits], dim=1)
            torch.testing.assert_close(angles, expected)


@pytest.mark.slow
def test_onnx_matches_pytorch_on_real_crops_at_any_batch(exported, real_crops):
    model = open_model(exported["model.pt"], "torch", "cpu").model
    reference = torch_angle_function(model)(real_crops)
    onnx_angles = onnx_angle_function(onnx_session(exported["model.onnx"]))
    assert np.abs(onnx_angles(real_crops) - reference).max() < 0.1
    assert np.abs(onnx_angles(real_crops[:1]) - reference[:1]).max() < 0.1  # dynamic batch
    assert np.ptp(reference, axis=0).min() > 0  # the crops do give different angles


@pytest.mark.slow
def test_onnx_graph_has_named_dynamic_io(exported):
    graph = onnx.load(str(exported["model.onnx"])).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == ["angles_deg"]
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_matches_pytorch(tmp_path, exported, real_crops):
    model = open_model(exported["model.pt"], "torch", "cpu").model
    export_torchscript(model, IMAGE_SIZE, tmp_path / "model.ts")
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    with torch.no_grad():
        torch.testing.assert_close(scripted(real_crops), model(real_crops), atol=1e-3, rtol=0)


@pytest.mark.slow
def test_int8_model_is_quantised_smaller_and_evaluates_like_any_model(exported, real_stems):
    fp32, int8 = exported["model.onnx"], exported["model_int8.onnx"]
    assert int8.stat().st_size < 0.35 * fp32.stat().st_size
    graph = onnx.load(str(int8)).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    int8_errors = predict_samples(
        onnx_angle_function(onnx_session(int8)),
        real_stems,
        IMAGE_SIZE,
        HOPENET,
        1,
        normalization=IMAGENET,
    )
    fp32_errors = predict_samples(
        onnx_angle_function(onnx_session(fp32)),
        real_stems,
        IMAGE_SIZE,
        HOPENET,
        1,
        normalization=IMAGENET,
    )
    assert int8_errors.predicted_deg.shape == (len(real_stems), 3)
    np.testing.assert_array_equal(int8_errors.true_deg, fp32_errors.true_deg)
    assert np.isfinite(int8_errors.predicted_deg).all()
    assert mae_summary(int8_errors.absolute_deg)["count"] == len(real_stems)


@pytest.mark.slow
def test_predict_with_onnx_equals_the_pytorch_evaluation(exported, real_stems):
    network = open_model(exported["model.pt"], "torch", "cpu").model.network
    model = AnglesModel(network, Bins(3, "centers"))
    pytorch = predict_samples(
        torch_angle_function(model), real_stems, IMAGE_SIZE, HOPENET, 1, normalization=IMAGENET
    )
    onnx_run = predict_samples(
        onnx_angle_function(onnx_session(exported["model.onnx"])),
        real_stems,
        IMAGE_SIZE,
        HOPENET,
        1,
        normalization=IMAGENET,
    )
    assert onnx_run.stems == pytorch.stems == [sample.entry for sample in real_stems]
    assert np.abs(onnx_run.predicted_deg - pytorch.predicted_deg).max() < 0.1


def test_calibration_reader_serves_every_batch_then_rewinds():
    reader = CropCalibrationReader(torch.zeros(5, 3, 8, 8), batch_size=2)
    sizes = [len(batch["image"]) for batch in iter(reader.get_next, None)]
    assert sizes == [2, 2, 1]
    reader.rewind()
    assert reader.get_next()["image"].dtype == np.float32


@pytest.mark.slow
def test_export_command_and_its_errors(tmp_path, exported, capsys):
    out = tmp_path / "cli.onnx"
    main(["export", str(exported["model.pt"]), "--format", "onnx", "--out", str(out)])
    assert onnx_session(out).get_outputs()[0].name == "angles_deg"
    assert "angles_deg" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")])
    assert exit_.value.code == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


EXPORT_SCRIPT = """
import sys, torch
from headpose.crops.protocols import get_protocol
from headpose.deploy.export import quantize_onnx
from headpose.inference.metadata import ModelDescription
from headpose.inference.onnx_export import export_onnx
from headpose.models.heads.bins import Bins
from headpose.models.network import AnglesModel, build_model
from headpose.models.registry import IMAGENET
torch.set_num_threads(1)
torch.manual_seed(0)
model = AnglesModel(build_model("mobilenet_v2", Bins(3)).eval())
description = ModelDescription(
    32, IMAGENET, get_protocol("hopenet"), Bins(3).meta(), "mobilenet_v2", "f00d"
)
export_onnx(model, sys.argv[1] + "/model.onnx", description)
images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
quantize_onnx(sys.argv[1] + "/model.onnx", sys.argv[1] + "/model_int8.onnx", images)
"""


@pytest.mark.slow  # a child python exports
def test_onnx_files_are_byte_identical_from_another_checkout(tmp_path):
    # the exporter stores each node's Python stack (absolute paths of the checkout): dropped
    repo = Path(__file__).resolve().parents[1]
    elsewhere = tmp_path / "another" / "clone"
    shutil.copytree(
        repo / "headpose", elsewhere / "headpose", ignore=shutil.ignore_patterns("*.pyc")
    )
    outputs = []
    for checkout in (repo, elsewhere):
        out = tmp_path / f"out{len(outputs)}"
        out.mkdir()
        subprocess.run(
            [sys.executable, "-c", EXPORT_SCRIPT, str(out)],
            env={**os.environ, "PYTHONPATH": str(checkout)},
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
        outputs.append(out)
    for name in ("model.onnx", "model_int8.onnx"):
        first, second = ((out / name).read_bytes() for out in outputs)
        assert first == second, name
        assert str(repo).encode() not in first and str(elsewhere).encode() not in second
