"""What many test modules share: the repository's root (the one definition of ``REPO_ROOT``), sample
lists as Samples, and running ``dvc`` in a scratch project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def as_samples(entries) -> list:
    """The :class:`~headpose.datasets.registry.Sample` of each list entry, in order."""
    from headpose.datasets.registry import resolve_all

    return resolve_all(str(entry) for entry in entries)


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``project``, with this interpreter as the stages' ``python``."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
