"""Evaluation: MAE and subsets, the 1969 guard, outputs, the CLI and the stage on tiny data."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, as_samples
from model_fixtures import write_checkpoint
from protocol_fixtures import HOPENET, VISIBLE
from stage_fixtures import stage_command
from training_fixtures import write_list, write_tiny_dataset

from headpose.cli import main as headpose_main
from headpose.crops.pipeline import evaluation_dataset, preprocess
from headpose.datasets import mat as mat_format
from headpose.datasets.mat import is_real_aflw2000, read_mat_labels, write_sample
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import evaluate, evaluation_timing, write_per_image_csv
from headpose.evaluation.metrics import PoseErrors, error_metrics, mae_summary, near_frontal_mask
from headpose.evaluation.test_sets import check_published_test_set, evaluation_samples
from headpose.inference import timing
from headpose.inference.loading import open_model
from headpose.inference.onnx_export import export_onnx
from headpose.models.heads.bins import Bins
from headpose.models.network import build_model
from headpose.models.registry import IMAGENET
from headpose.plots import plot_errors_vs_angle

IMAGE_SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread", "few_timing_runs")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, list[str]]:
    """An AFLW2000-layout folder of 6 in-range samples plus one with yaw 120 degrees."""
    folder = tmp_path_factory.mktemp("aflw_like")
    stems = write_tiny_dataset(folder, 6)
    image = np.zeros((40, 40, 3), np.uint8)
    landmarks = np.random.default_rng(1).uniform(12, 28, (2, 68))
    pose = np.array([[0.1, math.radians(120), 0.0, 20, 20, 0, 1e-3]], np.float32)
    write_sample(folder / "outlier", image, {"Pose_Para": pose, "pt2d": landmarks})
    return folder, stems


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "model.pt"
    return write_checkpoint(path, "shufflenet_v2_x1_0", image_size=IMAGE_SIZE)


def test_mae_summary_of_known_errors():
    errors = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 8.0]])
    assert mae_summary(errors) == {"count": 2, "yaw": 2.0, "pitch": 3.0, "roll": 5.5, "mean": 3.5}
    assert mae_summary(np.zeros((0, 3))) == {
        "count": 0,
        "yaw": None,
        "pitch": None,
        "roll": None,
        "mean": None,
    }


def test_near_frontal_split_needs_all_three_angles_below_30():
    true = np.array([[10, -10, 5], [29.9, 0, -29.9], [30, 0, 0], [0, -45, 0], [0, 0, 31]])
    assert near_frontal_mask(true).tolist() == [True, True, False, False, False]
    predicted = true + np.array([[1, 1, 1], [3, 3, 3], [2, -2, 2], [4, 4, 4], [6, 0, 0]])
    errors = PoseErrors([f"s{i}" for i in range(5)], true, predicted)
    metrics = error_metrics(errors, training_mean_deg=np.array([0.0, 0.0, 0.0]))
    assert metrics["mae"]["yaw"] == pytest.approx((1 + 3 + 2 + 4 + 6) / 5)
    assert metrics["mae_within_30"] == {
        "count": 2,
        "yaw": 2.0,
        "pitch": 2.0,
        "roll": 2.0,
        "mean": 2.0,
    }
    assert metrics["mae_beyond_30"]["count"] == 3
    assert metrics["mae_beyond_30"]["yaw"] == pytest.approx(4.0)
    assert metrics["mae_beyond_30"]["pitch"] == pytest.approx(2.0)
    baseline = metrics["baseline_training_mean_mae"]  # predicting 0: the mean |true angle|
    assert baseline["pitch"] == pytest.approx(np.abs(true[:, 1]).mean())


def test_the_guard_refuses_a_recognised_aflw2000_without_1969_samples(tmp_path, monkeypatch):
    stems = [str(tmp_path / f"image0{i:04d}") for i in (2, 4, 6)]
    for stem in stems:
        Path(stem + ".jpg").write_bytes(b"")
        Path(stem + ".mat").write_bytes(b"")
    assert not is_real_aflw2000(stems)
    assert (
        check_published_test_set(as_samples(stems), "test.txt") is False
    )  # other sets: any count is fine
    names_digest = hashlib.sha256(b"image00002\nimage00004\nimage00006\n").hexdigest()
    monkeypatch.setattr(mat_format, "AFLW2000_NAMES_SHA256", names_digest)
    assert is_real_aflw2000(stems)
    with pytest.raises(HeadposeError, match="test.txt holds 3 samples .* of the real AFLW2000-3D"):
        check_published_test_set(as_samples(stems), "test.txt")
    test_names_digest = hashlib.sha256(b"image00002\nimage00004\n").hexdigest()
    monkeypatch.setattr(mat_format, "AFLW2000_TEST_NAMES_SHA256", test_names_digest)
    assert check_published_test_set(as_samples(stems[:2]), "test.txt") is True
    with pytest.raises(HeadposeError, match="listed more than once"):
        check_published_test_set(as_samples([stems[0], stems[0], stems[1]]), "test.txt")


def test_the_real_aflw2000_is_recognised_and_needs_its_1969_images_once(aflw2000_dir):
    """Counting lines is not enough: the 1969 protocol images, each once, and nothing else."""
    stems = sorted(str(path.with_suffix("")) for path in aflw2000_dir.glob("*.jpg"))
    assert len(stems) == 2000 and is_real_aflw2000(stems)
    protocol_stems, skipped = evaluation_samples(aflw2000_dir)
    assert len(protocol_stems) == 1969 and len(skipped) == 31
    assert check_published_test_set(protocol_stems, "real") is True
    with pytest.raises(HeadposeError, match="holds 2000 samples"):
        check_published_test_set(as_samples(stems), "real")
    # 1969 lines, one image twice and one missing
    with pytest.raises(HeadposeError, match=r"1969 samples \(1968 distinct, 1 listed more"):
        check_published_test_set(protocol_stems[:-1] + protocol_stems[:1], "real")
    # 1969 distinct images, but one of them out of the protocol's range
    outside = sorted(set(stems) - {sample.entry for sample in protocol_stems})[0]
    with pytest.raises(HeadposeError, match="1969 distinct images"):
        check_published_test_set(protocol_stems[:-1] + as_samples([outside]), "real")
    assert not is_real_aflw2000(stems[:10] + ["elsewhere/image00002"])


def test_folder_data_is_scanned_and_filtered_like_the_filelists_stage(tiny_set):
    folder, stems = tiny_set
    kept, skipped = evaluation_samples(folder)
    assert [sample.entry for sample in kept] == sorted(
        stems
    )  # the yaw-120 outlier is dropped, and said why
    assert [reason.startswith("an angle beyond") for _, reason in skipped] == [True]
    assert len(evaluation_samples(folder, max_angle_deg=130)[0]) == 7


def test_evaluate_predicts_each_sample_as_the_model_does(tiny_set, tiny_checkpoint):
    _, stems = tiny_set
    loaded = open_model(tiny_checkpoint, device="cpu")
    result = evaluate(loaded, as_samples(stems), "tiny", training_mean=np.zeros(3))
    assert result.errors.stems == stems
    truth = np.array([read_mat_labels(stem + ".mat").angles_deg for stem in stems])
    assert np.allclose(result.errors.true_deg, truth, atol=1e-4)
    # one sample through the model by hand: same crop, same expectation
    model = loaded.model.network
    image, _ = evaluation_dataset(as_samples(stems[3:4]), IMAGE_SIZE, HOPENET, workers=1)[0]
    with torch.inference_mode():
        logits = model(preprocess(image.numpy(), IMAGENET).unsqueeze(0))
    by_hand = [Bins(3, "centers").expectation_deg(angle_logits).item() for angle_logits in logits]
    assert np.allclose(result.errors.predicted_deg[3], by_hand, atol=1e-4)
    metrics = result.metrics
    assert metrics["count"] == 6 and metrics["real_aflw2000"] is False
    assert metrics["mae"]["roll"] == pytest.approx(result.errors.absolute_deg[:, 2].mean(), 1e-3)
    assert metrics["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert metrics["model"]["checkpoint_mb"] > 1
    assert "speed" not in metrics  # the same on every run: timing is reported apart
    speed = evaluation_timing(result)
    assert speed["latency_ms_batch1"] > 0
    assert speed["throughput_images_per_s_batch32"] > 0
    json.dumps(metrics, allow_nan=False)  # plain JSON for dvc metrics


def test_per_image_csv_and_error_plots(tmp_path):
    true = np.array([[10.0, -5.0, 2.0], [50.0, 20.0, -3.0], [10.0, 30.0, 0.0]])
    # the third: a pure 10 degree yaw error with roll 0, GE 10 and MAEV 2 * 10 / 3
    errors = PoseErrors(["a/b", "c,d", "e"], true, true + [[1.5] * 3, [1.5] * 3, [10, 0, 0]])
    write_per_image_csv(tmp_path / "per_image.csv", errors)
    with open(tmp_path / "per_image.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames[-2:] == ["geodesic_error_deg", "maev_deg"]  # added at the end
    assert [row["stem"] for row in rows] == ["a/b", "c,d", "e"]
    assert float(rows[1]["true_yaw_deg"]) == 50.0
    assert float(rows[1]["predicted_pitch_deg"]) == 21.5
    assert float(rows[0]["abs_error_roll_deg"]) == 1.5
    assert (rows[2]["geodesic_error_deg"], rows[2]["maev_deg"]) == ("10.0000", "6.6667")
    assert float(rows[0]["geodesic_error_deg"]) == pytest.approx(errors.rotation_deg[0, 0], 1e-4)
    paths = plot_errors_vs_angle(errors.true_deg, errors.absolute_deg, tmp_path / "plots")
    assert [path.name for path in paths] == ["yaw_error.png", "pitch_error.png", "roll_error.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in paths)


def test_cli_prints_the_table_for_a_folder(tiny_set, tiny_checkpoint, capsys):
    folder, _ = tiny_set
    headpose_main(["evaluate", str(tiny_checkpoint), "--data", str(folder), "--workers", "1"])
    output = capsys.readouterr().out
    assert "shufflenet_v2_x1_0, 66 bins of 3 deg, centers expectation, 32 px" in output
    assert f"test set {folder}: 6 samples" in output
    assert output.count("\nall ") == 1 and "|angles| < 30" in output and "\nrest " in output
    header = next(line for line in output.splitlines() if line.startswith("MAE, GE, MAEV"))
    assert header.split()[-7:] == ["yaw", "pitch", "roll", "mean", "GE", "MAEV", "n"]
    all_row = next(line for line in output.splitlines() if line.startswith("all "))
    assert len(all_row.split()) == 8  # all, 4 MAE cells, GE, MAEV, n
    # the published crop unless told otherwise, whatever the checkpoint was trained on
    assert "crop protocol hopenet (published)" in output and "trained on the visible" in output
    headpose_main(
        ["evaluate", str(tiny_checkpoint), "--data", str(folder), "--workers", "1"]
        + ["--crop-protocol", "visible", "--compare-protocols"]
    )
    output = capsys.readouterr().out
    assert "crop protocol visible (not comparable to published tables)" in output
    assert "crop protocol hopenet, same model" in output and output.count("\nall ") == 2


def test_cli_overrides_and_one_line_errors(tiny_set, tiny_checkpoint, tmp_path, capsys):
    folder, stems = tiny_set
    test_list = write_list(tmp_path / "test.txt", stems[:2])
    headpose_main(
        ["evaluate", str(tiny_checkpoint), "--data", str(test_list), "--workers", "1"]
        + ["--expectation", "lower_edges", "--image-size", "48", "--bin-width", "3"]
    )
    assert "lower_edges expectation, 48 px" in capsys.readouterr().out
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    for arguments, message in (
        (["--data", str(empty)], f"sample list {empty} is empty"),
        (["--data", str(tmp_path / "absent.txt")], "does not exist"),
        (["--data", str(test_list), "--bin-width", "1"], "holds bin_width 3; asked for"),
        (["--data", str(test_list), "--image-size", "8"], "--image-size: '8'; expected an integer"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            headpose_main(["evaluate", str(tiny_checkpoint), *arguments])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        headpose_main(["evaluate", str(tmp_path / "absent.pt"), "--data", str(folder)])
    assert f"checkpoint {tmp_path / 'absent.pt'} does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_the_table_scores_an_exported_onnx_file_as_its_checkpoint(
    tiny_set, tiny_checkpoint, tmp_path, capsys
):
    """One loader reads both: an .onnx export gives the checkpoint's angles through the same
    inference path; head options and the baseline are refused for it."""
    folder, stems = tiny_set
    loaded = open_model(tiny_checkpoint, "torch", "cpu")
    onnx_path = tmp_path / "model.onnx"
    export_onnx(loaded.model, onnx_path, loaded.description)
    exported = evaluate(open_model(onnx_path), as_samples(stems), "tiny", workers=1)
    reference = evaluate(loaded, as_samples(stems), "tiny", workers=1)
    assert np.allclose(exported.errors.predicted_deg, reference.errors.predicted_deg, atol=1e-3)
    model = exported.metrics["model"]
    assert model["parameters"] is None and model["precision"] == "fp32"
    assert model["num_bins"] == 66 and model["trained_crop_protocol"] == "visible"
    assert evaluation_timing(exported)["latency_ms_batch1"] > 0
    headpose_main(["evaluate", str(onnx_path), "--data", str(folder), "--workers", "1"])
    output = capsys.readouterr().out
    assert "shufflenet_v2_x1_0, fp32 ONNX, 66 bins of 3 deg, centers expectation, 32 px" in output
    for arguments, message in (
        (["--expectation", "lower_edges"], "--expectation applies to checkpoints"),
        (["--baseline"], "holds no training-mean angles"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            headpose_main(["evaluate", str(onnx_path), "--data", str(folder), *arguments])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_stage_writes_metrics_csv_and_plots(
    tiny_set, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    _, stems = tiny_set
    train_angles = np.array([(10.0 * i, -5.0, 2.0) for i in range(3)])
    # the training-set mean angles come with the checkpoint: no training data is read
    write_checkpoint(
        tmp_path / "models" / "model.pt",
        "shufflenet_v2_x1_0",
        image_size=IMAGE_SIZE,
        training_mean_deg=train_angles.mean(axis=0).tolist(),
    )
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "filelists").mkdir(parents=True)
    write_list(tmp_path / "data" / "filelists" / "test.txt", stems)
    monkeypatch.chdir(tmp_path)
    script, *arguments = stage_command("evaluate")
    spec = importlib.util.spec_from_file_location("evaluate_stage", REPO_ROOT / script)
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.main(arguments)
    metrics = json.loads((tmp_path / "metrics" / "evaluation.json").read_text())
    assert "speed" not in metrics
    listed = "".join(f"{stem}\n" for stem in stems).encode()
    assert metrics["test_list"]["sha256"] == hashlib.sha256(listed).hexdigest()
    timing = json.loads((tmp_path / "timing" / "evaluation.json").read_text())
    assert timing["latency_ms_batch1"] > 0
    truth = np.array([read_mat_labels(stem + ".mat").angles_deg for stem in stems])
    expected_baseline = np.abs(truth - np.array([10.0, -5.0, 2.0])).mean(axis=0)
    assert metrics["baseline_training_mean_mae"]["yaw"] == pytest.approx(expected_baseline[0], 1e-3)
    # the rotation errors only add keys beside the MAE ones (dvc metrics diff shows them)
    suffixes = ("", "_within_30", "_beyond_30")
    protocol_keys = {f"mae{suffix}" for suffix in suffixes}
    rotation_keys = {f"{name}{suffix}" for name in ("geodesic", "maev") for suffix in suffixes}
    before = {"count", "real_aflw2000", "crop_protocol", "baseline_training_mean_mae"}
    before |= {"other_protocols", "model", "test_list", *protocol_keys}
    added = {*rotation_keys, "baseline_training_mean_geodesic", "baseline_training_mean_maev"}
    assert set(metrics) == before | added
    assert set(metrics["other_protocols"]["visible"]) == protocol_keys | rotation_keys
    assert set(metrics["mae"]) == {"count", "yaw", "pitch", "roll", "mean"}
    with open(tmp_path / "data" / "evaluation" / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(stems)
    geodesic = np.mean([float(row["geodesic_error_deg"]) for row in rows])
    maev = np.mean([float(row["maev_deg"]) for row in rows])
    assert metrics["geodesic"] == {"count": len(stems), "mean": pytest.approx(geodesic, abs=1e-3)}
    assert metrics["maev"]["mean"] == pytest.approx(maev, abs=1e-3)
    assert len(list((tmp_path / "plots" / "evaluation").glob("*.png"))) == 3
    output = capsys.readouterr().out
    assert "baseline: training mean" in output
    # main figures under the params' protocol (the published one), the other beside them
    assert metrics["crop_protocol"] == "hopenet" and list(metrics["other_protocols"]) == ["visible"]
    assert "crop protocol hopenet (published)" in output
    assert "crop protocol visible, same model" in output
    model = open_model(tmp_path / "models" / "model.pt")
    by_hand = evaluate(model, as_samples(stems), "x", crop_protocol=VISIBLE)
    assert metrics["other_protocols"]["visible"]["mae"] == by_hand.metrics["mae"]


def test_cli_evaluates_an_original_hopenet_snapshot_as_published(
    tiny_set, tmp_path, capsys, monkeypatch
):
    """A bare ResNet state dict with fc_yaw/fc_pitch/fc_roll (+ fc_finetune), as HopeNet saved."""
    folder, _ = tiny_set
    monkeypatch.setattr(timing, "THROUGHPUT_BATCH_SIZE", 2)  # 224 px: keep the timing short
    state = OrderedDict(
        (key.removeprefix("backbone."), value)
        for key, value in build_model("resnet18", Bins(3)).state_dict().items()
    )
    state["fc_finetune.weight"] = torch.zeros(3, 512)
    snapshot = tmp_path / "hopenet_robust_alpha1.pkl"
    torch.save(state, snapshot)
    headpose_main(["evaluate", str(snapshot), "--data", str(folder), "--workers", "1"])
    output = capsys.readouterr().out
    assert "resnet18, 66 bins of 3 deg, lower_edges expectation, 224 px" in output
