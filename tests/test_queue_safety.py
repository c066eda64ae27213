"""The stages are safe to run as queued experiments (``dvc exp run --queue``, ``dvc queue start``).

A queued experiment runs in its own temporary copy of the repo, so a stage must read only its
declared dependencies and write only its declared outputs, all relative to the repo root. This
checks statically that no stage script names a path of its own, that every path a stage's
command line passes is declared for that stage in dvc.yaml (except the timing files and the
resume file, which are deliberately no outputs), and that the training resume file lives inside
the copy, outside any output (DVC deletes outputs before a stage runs) and git-ignored.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from helpers import REPO_ROOT
from stage_fixtures import STAGES, stage_command, stage_options

# Not deps or outputs on purpose: params.yaml (DVC tracks the keys a stage lists under `params`),
# run timings (they vary from run to run), and the resume file and dvclive's folder (only its
# plots are outputs), both checked below.
UNDECLARED_OPTIONS = ("--params", "--timing", "--resume", "--live")


def _declared(stage: dict, *sections: str) -> list[PurePosixPath]:
    paths = []
    for section in sections:
        for entry in stage.get(section, []):
            name = next(iter(entry)) if isinstance(entry, dict) else entry
            paths.append(PurePosixPath(name))
    return paths


def _covered(path: PurePosixPath, declared: list[PurePosixPath]) -> bool:
    return any(path == item or item in path.parents for item in declared)


def _path_constants(script: Path) -> dict[str, PurePosixPath]:
    """Module-level ``NAME = "some/path"`` string constants of a stage script."""
    constants = {}
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            if isinstance(value, str) and "/" in value:
                constants[node.targets[0].id] = PurePosixPath(value)
    return constants


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_path_a_stage_names_is_declared(name):
    stage = STAGES[name]
    script = REPO_ROOT / stage_command(name, {"train_data": "x", "test_data": "y"})[0]
    declared = _declared(stage, "deps", "outs", "metrics", "plots")
    paths = _path_constants(script)
    assert not paths, f"{script.name} names paths of its own (pass them in dvc.yaml): {paths}"
    paths = {
        option: PurePosixPath(value)
        for option, value in stage_options(name).items()
        if option not in UNDECLARED_OPTIONS
    }
    assert all(not path.is_absolute() for path in paths.values())
    undeclared = {key: str(path) for key, path in paths.items() if not _covered(path, declared)}
    assert not undeclared, f"{script.name} uses paths dvc.yaml does not declare: {undeclared}"
    options = stage_options(name)
    assert options.get("--params", "params.yaml") == "params.yaml"
    if "--timing" in options:  # beside the metrics, never committed
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", options["--timing"]], cwd=REPO_ROOT, check=False
        ).returncode
        assert ignored == 0


def test_training_paths_are_declared_and_resume_file_is_private():
    stage = STAGES["train"]
    options = {option: PurePosixPath(value) for option, value in stage_options("train").items()}
    inputs, outputs = _declared(stage, "deps"), _declared(stage, "outs", "metrics", "plots")
    assert _covered(options["--train-list"], inputs)
    assert _covered(options["--val-list"], inputs)
    assert _covered(options["--models"], outputs)
    assert _covered(options["--live"] / "plots" / "metrics", outputs)
    # inside the repo copy (so queued runs never share it), kept across re-runs, not in git
    resume = options["--resume"]
    assert not resume.is_absolute() and ".." not in resume.parts
    assert not _covered(resume, outputs)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(resume)], cwd=REPO_ROOT, check=False
    ).returncode
    assert ignored == 0
