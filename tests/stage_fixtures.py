"""The stages' command lines exactly as dvc.yaml writes them, for running stages in tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def stage_command(stage: str, params: dict | None = None) -> list[str]:
    """The words of the stage's ``cmd`` after ``python`` (the script, then its arguments), with
    ``${key}`` filled in from ``params`` as DVC does."""
    cmd = re.sub(r"\$\{(\w+)\}", lambda match: str((params or {})[match[1]]), STAGES[stage]["cmd"])
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
