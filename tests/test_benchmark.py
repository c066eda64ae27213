"""The backbone benchmark: one report with sizes, speeds, ratios and (with a test list) MAE.

ResNet18 only: its export is the quickest of the three default backbones.
"""

from __future__ import annotations

import json

import pytest
import torch
from model_fixtures import write_checkpoint

from headpose.cli import main
from headpose.deploy.benchmark import format_table, run_benchmark

pytestmark = pytest.mark.slow  # each test exports the model to ONNX

IMAGE_SIZE = 32


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_untrained_backbone_is_timed_in_three_runtimes_and_labelled():
    report = run_benchmark(["resnet18"], {}, threads=1, image_size=IMAGE_SIZE, timed_runs=2)
    assert report["threads"] == 1 and torch.get_num_threads() == 1
    row = report["backbones"]["resnet18"]
    assert row["weights"] == "untrained" and row["image_size"] == IMAGE_SIZE
    assert row["parameters"] > 1e6
    runtimes = ("torch_fp32", "onnx_fp32", "onnx_int8")
    assert list(row["runtimes"]) == list(runtimes)
    torch_fp32, onnx_fp32, int8 = (row["runtimes"][name] for name in runtimes)
    assert torch_fp32["speedup_batch1"] == 1.0 and torch_fp32["file_mb"] is None
    assert int8["file_mb"] < onnx_fp32["file_mb"]
    for entry in row["runtimes"].values():
        assert entry["latency_ms_batch1"] > 0 and entry["throughput_images_per_s_batch32"] > 0
        assert "mae" not in entry  # untrained weights: timing only
    table = format_table(report)
    assert table.count("resnet18") == 3 and "untrained" in table
    long_name = "timm/repvgg_a0 (rotation_6d)"  # longer than the column's default width
    renamed = {**report, "backbones": {long_name: {**row, "name": long_name}}}
    assert all(
        line.startswith(f"{long_name}  untrained")
        for line in format_table(renamed).splitlines()[1:4]
    )


def test_checkpoint_with_test_list_gets_mae_per_runtime(tmp_path, aflw2000_dir, capsys):
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    stems = [str(p.with_suffix("")) for p in sorted(aflw2000_dir.glob("*.jpg"))[:6]]
    test_list = tmp_path / "test.txt"
    test_list.write_text("".join(f"{stem}\n" for stem in stems))
    out = tmp_path / "benchmark.json"

    main(
        [
            "benchmark",
            "--archs",
            "--checkpoints",
            str(checkpoint),
            "--test-list",
            str(test_list),
            "--calibration-list",
            str(test_list),
            "--threads",
            "1",
            "--runs",
            "2",
            "--out",
            str(out),
        ]
    )

    report = json.loads(out.read_text())
    assert list(report["backbones"]) == ["resnet18"]
    row = report["backbones"]["resnet18"]
    assert row["weights"] == "trained" and row["checkpoint"] == str(checkpoint)
    runtimes = row["runtimes"]
    assert runtimes["torch_fp32"]["mae_mean_increase_deg"] == 0
    assert runtimes["torch_fp32"]["mae"]["count"] == len(stems)
    assert abs(runtimes["onnx_fp32"]["mae_mean_increase_deg"]) < 0.05
    assert "mae_mean_increase_deg" in runtimes["onnx_int8"]
    assert "resnet18" in capsys.readouterr().out
