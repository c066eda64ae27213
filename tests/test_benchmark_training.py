"""scripts/benchmark_training.py runs end to end and prints every rate against the reference
step."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import REPO_ROOT
from training_fixtures import write_list, write_tiny_dataset

pytestmark = pytest.mark.slow  # a child python times training steps


def test_prints_loader_step_and_loop_rates(tmp_path):
    stems = write_tiny_dataset(tmp_path / "samples", count=8)
    train_list = write_list(tmp_path / "train.txt", stems)
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "benchmark_training.py"),
            "--list",
            str(train_list),
            "--batches",
            "2",
            "--rounds",
            "1",
            "--set",
            "batch_size=4",
            "--set",
            "image_size=32",
            "--set",
            "workers=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = ("reference step", "loader alone", "per-sample loader", "device crops")
    for name in (*names, "step alone", "whole loop"):
        pattern = rf"{name}:\s+[0-9.]+ images/s\s+[0-9.]+ x reference step"
        assert re.search(pattern, result.stdout), result.stdout
    assert "whole loop / reference step:" in result.stdout
