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


@pytest.mark.slow  # a child python times training steps
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
    others = ("step alone", "whole loop", "ref., looped Adam", "forward", "forward \\+ backward")
    for name in (*names, *others):
        pattern = rf"{name}:\s+[0-9.]+ images/s\s+[0-9.]+ x reference step"
        assert re.search(pattern, result.stdout), result.stdout
    assert "whole loop / reference step:" in result.stdout
    profile = result.stdout.split("profile of a whole-loop step", 1)[1]
    parts = ("loader", "device crops", "forward", "backward", "optimiser", "rest")
    shares = [re.search(rf"{part}:\s+-?[0-9.]+ ms\s+(-?[0-9.]+)%", profile) for part in parts]
    assert all(shares), profile
    assert sum(float(share.group(1)) for share in shares) == pytest.approx(100, abs=0.5)


def test_the_step_profile_splits_the_whole_loop_into_its_parts():
    """The parts are differences of the timings and add up to the whole loop, per batch."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from benchmark_training import step_profile

    best = {
        "loader alone": 1.0,
        "device crops": 2.0,
        "forward": 3.0,
        "forward + backward": 8.0,
        "reference step": 9.0,
        "whole loop": 16.0,
    }
    parts = step_profile(best, batches=2)
    assert parts == {
        "loader": 0.5,
        "device crops": 1.0,
        "forward": 1.5,
        "backward": 2.5,
        "optimiser": 0.5,
        "rest": 2.0,
    }
    assert sum(parts.values()) == pytest.approx(best["whole loop"] / 2)
