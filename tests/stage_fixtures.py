"""The stages' command lines exactly as dvc.yaml writes them, and throwaway copies of the project
as git repositories, for running stages (and real DVC) in tests."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import yaml
from helpers import REPO_ROOT

# Every stage's definition; a ``foreach`` stage's ``do`` (its ${key} and ${item.*} left as is).
STAGES = {
    name: stage.get("do", stage)
    for name, stage in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))[
        "stages"
    ].items()
}


def stage_command(stage: str, params: dict | None = None) -> list[str]:
    """The words of the stage's ``cmd`` after ``python`` (the script, then its arguments), with
    ``${key}`` filled in from ``params`` as DVC does."""
    values = params or {}
    cmd = re.sub(r"\$\{(\w+)\}", lambda m: str(values.get(m[1], m[0])), STAGES[stage]["cmd"])
    words = shlex.split(cmd)
    assert words[0] == "python", cmd
    return words[1:]


def stage_options(stage: str) -> dict[str, str]:
    """``{--option: value}`` of the stage's ``cmd`` (options without ``${...}``)."""
    words = shlex.split(STAGES[stage]["cmd"])
    return {
        word: value
        for word, value in zip(words, words[1:], strict=False)
        if word.startswith("--") and "${" not in value
    }


def load_stage(name: str):
    """The script of dvc.yaml's stage ``name`` as a module (call its ``main(argv)``)."""
    script, *_ = stage_command(name, {"train_data": "x", "test_data": "y"})
    spec = importlib.util.spec_from_file_location(f"{name}_stage", REPO_ROOT / script)
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    return stage


def git(args: list[str], cwd: Path) -> str:
    """The output of ``git ARGS`` run in ``cwd`` (it must succeed)."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout


def copy_source_tree(destination: Path) -> None:
    """Copy the working tree's tracked and untracked-but-not-ignored files (no outputs, no DVC
    cache) to ``destination``."""
    listed = git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO_ROOT)
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def commit_all(project: Path) -> None:
    """Make ``project`` a git repository holding one commit of all its files."""
    git(["init", "-q"], project)
    git(["add", "-A"], project)
    git(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], project)
