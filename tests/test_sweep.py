"""Seed sweeps: the documented queued sweep commands (README, docs/results.md)
expand, through the pinned DVC's own grid parser, into every training seed of every variant, and
only the training stages track ``train_seed`` (a seed sweep re-runs train, evaluate and export,
never the data stages)."""

from __future__ import annotations

import itertools
import shlex

import yaml
from helpers import REPO_ROOT

DATA_STAGES = ("synth", "filelists", "augment", "analyze")


def _documented_sweep_commands() -> list[list[str]]:
    """Every ``dvc exp run --queue`` command line of the README and of docs/results.md (where
    the measured sweeps are) that sweeps ``train_seed``."""
    documents = (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "results.md")
    lines = [line for path in documents for line in path.read_text(encoding="utf-8").splitlines()]
    return [
        shlex.split(line.strip())
        for line in lines
        if line.strip().startswith("dvc exp run --queue") and "train_seed=" in line
    ]


def _overrides(command: list[str]) -> list[str]:
    return [value for flag, value in itertools.pairwise(command) if flag in ("-S", "--set-param")]


def test_documented_sweeps_queue_every_seed_of_every_variant():
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    commands = _documented_sweep_commands()
    assert len(commands) >= 2  # the default profile's and the reduced one that was run
    for command in commands:
        sweeps = get_hydra_sweeps(to_path_overrides(_overrides(command)))
        settings = [dict(item.split("=", 1) for item in sweep["params.yaml"]) for sweep in sweeps]
        pairs = [(setting["train_seed"], setting["head"]) for setting in settings]
        assert sorted(pairs) == sorted(itertools.product("012", ("bins", "rotation_6d")))


def test_only_the_training_stages_track_the_training_seed():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    tracking = {name for name, stage in stages.items() if "train_seed" in stage.get("params", [])}
    assert tracking == {"train"}
    assert "seed" not in stages["train"]["params"]  # the data's seed does not move the model
    for name in DATA_STAGES:
        assert "train_seed" not in stages[name].get("params", [])
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert params["seed"] == 0 and params["train_seed"] == 0
