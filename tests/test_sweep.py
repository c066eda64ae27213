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


def _documented_sweeps() -> list[list[list[str]]]:
    """The ``dvc exp run --queue`` command lines that sweep ``train_seed`` in each code block of
    the README and of docs/results.md (where the measured sweeps are); one list per block."""
    blocks = []
    for path in (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "results.md"):
        for block in path.read_text(encoding="utf-8").split("```")[1::2]:
            commands = [
                shlex.split(line.strip())
                for line in block.splitlines()
                if line.strip().startswith("dvc exp run --queue") and "train_seed=" in line
            ]
            if commands:
                blocks.append(commands)
    return blocks


def _overrides(command: list[str]) -> list[str]:
    return [value for flag, value in itertools.pairwise(command) if flag in ("-S", "--set-param")]


def test_documented_sweeps_queue_every_seed_of_every_variant():
    """Each documented sweep queues seeds 0-2 of each head it names (the default head, bins,
    when it names none; bins seed 0 may be the workspace's own `dvc repro` run, which `headpose
    compare` counts in its group)."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    blocks = _documented_sweeps()
    assert len(blocks) >= 3  # the default profile's, the measured one and the reduced one
    for commands in blocks:
        pairs = set()
        for command in commands:
            sweeps = get_hydra_sweeps(to_path_overrides(_overrides(command)))
            for sweep in sweeps:
                setting = dict(item.split("=", 1) for item in sweep["params.yaml"])
                pairs.add((setting["train_seed"], setting.get("head", "bins")))
        expected = set(itertools.product("012", {head for _, head in pairs}))
        assert pairs in (expected, expected - {("0", "bins")}), commands


def test_only_the_training_stages_track_the_training_seed():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    tracking = {name for name, stage in stages.items() if "train_seed" in stage.get("params", [])}
    assert tracking == {"train"}
    assert "seed" not in stages["train"]["params"]  # the data's seed does not move the model
    for name in DATA_STAGES:
        assert "train_seed" not in stages[name].get("params", [])
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert params["seed"] == 0 and params["train_seed"] == 0
