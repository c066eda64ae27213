"""A team shares data and models through a DVC remote: `dvc add`, `dvc push`, `dvc pull`.

Runs the real dvc command in a throwaway git repository against a local-directory remote, the
same commands the README shows for S3/SSH remotes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DVC = shutil.which("dvc")


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.skipif(DVC is None, reason="the dvc command is not installed")
def test_push_then_pull_restores_a_dataset_and_a_model(tmp_path):
    project, remote = tmp_path / "project", tmp_path / "remote"
    project.mkdir()
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    run(["dvc", "config", "core.analytics", "false"], project)
    dataset = project / "data" / "300W_LP" / "AFW"
    dataset.mkdir(parents=True)
    (dataset / "AFW_1_1_0.jpg").write_bytes(bytes(range(256)) * 40)
    (dataset / "AFW_1_1_0.mat").write_bytes(b"MATLAB 5.0 stand-in" * 10)
    (project / "models").mkdir()
    (project / "models" / "model.pt").write_bytes(b"\x00weights" * 1000)
    run(["dvc", "add", "-q", "data/300W_LP", "models/model.pt"], project)
    run(["dvc", "remote", "add", "-d", "team", str(remote)], project)
    run(["dvc", "push", "-q"], project)
    assert any(path.is_file() for path in remote.rglob("*")), "push wrote nothing to the remote"

    originals = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    originals[project / "models" / "model.pt"] = (project / "models" / "model.pt").read_bytes()
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "300W_LP")
    (project / "models" / "model.pt").unlink()

    run(["dvc", "pull", "-q"], project)
    for path, content in originals.items():
        assert path.read_bytes() == content, f"{path} differs after pull"
