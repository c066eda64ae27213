"""The committed dvc.lock is what a fresh clone reproduces: the data stages are bit-exact.

Copies the working tree (tracked and untracked-but-not-ignored files, no outputs, no DVC cache)
into a throwaway git repository, runs ``dvc repro analyze`` there (synth, filelists, augment,
analyze on the default params) and compares each of those stages' entries in the new dvc.lock
with the committed one: command, code and parameter hashes, and the hash of every output. A
failure means a data stage's outputs changed without a new dvc.lock (run ``dvc repro`` and commit
it), or that this machine renders differently from the one that made the lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT
from stage_fixtures import commit_all, copy_source_tree

pytestmark = pytest.mark.slow

DATA_STAGES = ("synth", "filelists", "augment", "analyze")


def _stage_locks(lock_file: Path) -> dict:
    return yaml.safe_load(lock_file.read_text(encoding="utf-8"))["stages"]


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_data_stages_reproduce_the_committed_dvc_lock(tmp_path: Path) -> None:
    committed = _stage_locks(REPO_ROOT / "dvc.lock")
    missing = [stage for stage in DATA_STAGES if stage not in committed]
    assert not missing, f"dvc.lock has no entry for {missing}: run dvc repro and commit it"

    project = tmp_path / "project"
    copy_source_tree(project)
    commit_all(project)
    # the stages' `python` must be this interpreter, activated or not
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "analyze"],
        cwd=project,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"dvc repro analyze failed:\n{result.stdout}\n{result.stderr}"

    reproduced = _stage_locks(project / "dvc.lock")
    for stage in DATA_STAGES:
        for key in ("cmd", "deps", "params", "outs"):
            assert reproduced[stage].get(key) == committed[stage].get(key), (
                f"stage {stage}: {key} differ from the committed dvc.lock\n"
                f"committed:  {committed[stage].get(key)}\nreproduced: {reproduced[stage].get(key)}"
            )
