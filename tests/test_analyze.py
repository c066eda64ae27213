"""Angle distributions: the statistics, the published AFLW2000 table and the histograms."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import as_samples

from headpose.datasets.analyze import angle_summary, dataset_angles, distributions
from headpose.datasets.augment import build_augmentation
from headpose.datasets.filelists import build_filelists, write_filelists
from headpose.errors import HeadposeError
from headpose.plots import plot_angle_histograms

# AFLW2000 5th / 95th percentiles of the published table (docs/conventions.md), degrees.
PUBLISHED_AFLW2000 = {"yaw": (-68.1, 68.4), "pitch": (-31.0, 26.3), "roll": (-33.5, 33.7)}


def test_summary_statistics():
    angles = np.stack([np.arange(101.0), -np.arange(101.0), np.full(101, 7.0)], axis=1)
    summary = angle_summary(angles)
    assert summary["count"] == 101
    assert summary["yaw"] == {
        "p5": 5.0, "p25": 25.0, "p50": 50.0, "p75": 75.0, "p95": 95.0,
        "min": 0.0, "max": 100.0, "mean": 50.0,
    }  # fmt: skip
    assert summary["pitch"]["p5"] == -95.0 and summary["roll"]["p95"] == 7.0
    assert angle_summary(np.zeros((0, 3))) == {"count": 0}
    json.dumps(summary)  # plain numbers only


@pytest.fixture(scope="module")
def real_pipeline(aflw2000_dir, w300lp_sample_dir, tmp_path_factory):
    """filelists + (disabled) augment on the real data, then the analysis."""
    root = tmp_path_factory.mktemp("real")
    lists = build_filelists(w300lp_sample_dir, aflw2000_dir, 99, val_fraction=0.1, seed=0)
    write_filelists(lists, root / "filelists")
    train = as_samples(lists.train)
    build_augmentation(train, w300lp_sample_dir, root / "aug", False, 0.1, [10], 99, seed=0)
    return root, dataset_angles(root / "filelists", root / "aug")


def test_real_aflw2000_reproduces_the_published_percentiles(real_pipeline):
    """The published table is numpy's linear-interpolation percentile over all 2000 images
    (outliers included); the 1969 in-range images give a narrower table."""
    _, angles = real_pipeline
    table = distributions(angles)["test"]
    assert table["all"]["count"] == 2000 and table["used"]["count"] == 1969
    for angle, (p5, p95) in PUBLISHED_AFLW2000.items():
        assert table["all"][angle]["p5"] == pytest.approx(p5, abs=0.2), angle
        assert table["all"][angle]["p95"] == pytest.approx(p95, abs=0.2), angle
    assert table["used"]["yaw"]["p5"] > PUBLISHED_AFLW2000["yaw"][0] + 1
    assert table["all"]["pitch"]["min"] < -300 and table["used"]["pitch"]["min"] >= -99


def test_histograms_are_written_per_angle(real_pipeline):
    root, angles = real_pipeline
    used = {dataset: subsets["used"] for dataset, subsets in angles.items()}
    paths = plot_angle_histograms(used, root / "plots")
    assert [path.name for path in paths] == ["yaw.png", "pitch.png", "roll.png"]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in paths)


def test_a_list_entry_without_angles_is_a_clear_error(real_pipeline, tmp_path):
    root, _ = real_pipeline
    shutil.copytree(root / "aug", tmp_path / "aug")
    (tmp_path / "aug" / "train.txt").write_text("data/nowhere/AFW_1_1_0\n")
    with pytest.raises(HeadposeError, match="lists data/nowhere/AFW_1_1_0.*dvc repro"):
        dataset_angles(root / "filelists", tmp_path / "aug")


def test_the_stage_writes_the_framing_section_and_its_line(real_pipeline, capsys):
    """The analyze stage on the real lists: the framing of train, 300W_AUG and test under the
    repo's params (published crop, framing augmentation as configured), the in-range verdict
    as a metric and as one printed line, and the framing histograms beside the angle ones."""
    import importlib.util

    from helpers import REPO_ROOT

    spec = importlib.util.spec_from_file_location("analyze_stage", REPO_ROOT / "stages/analyze.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    root, _ = real_pipeline
    metrics, plots = root / "distributions.json", root / "plots_stage"
    stage.main(
        [
            "--params", str(REPO_ROOT / "params.yaml"), "--filelists", str(root / "filelists"),
            "--augmented", str(root / "aug"), "--metrics", str(metrics), "--plots", str(plots),
        ]
    )  # fmt: skip
    section = json.loads(metrics.read_text())["framing"]
    assert section["crop_protocol"] == "hopenet" and section["test"]["used"]["count"] == 1969
    assert section["train"]["protocol"]["count"] == 1  # the one real 300W_LP sample
    assert isinstance(section["test_inside"]["inside"], bool)
    assert section["test"]["used"]["scale"]["p50"] == pytest.approx(0.405, abs=0.01)
    printed = capsys.readouterr().out
    assert "test framing (5-95 %)" in printed and "300W_AUG training framing" in printed
    assert (plots / "framing.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
