"""Memory limits: a training batch that cannot fit is refused in one line naming ``batch_size``
and ``image_size`` (before any work on the CPU, from the allocator's error on CUDA), instead of
the kernel's silent OOM kill."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import astuple
from pathlib import Path

import pytest
import torch
from training_fixtures import tiny_run_paths, tiny_settings, write_tiny_dataset

from headpose.errors import HeadposeError
from headpose.models.network import build_model
from headpose.training import memory
from headpose.training import run as training
from headpose.training.precision import choose_precision

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fake_proc(tmp_path: Path, monkeypatch, cgroup_line: str, files: dict[str, str]) -> None:
    """Point the memory module at a fake /proc/self/cgroup, /sys/fs/cgroup and /proc/meminfo."""
    (tmp_path / "cgroup").write_text(cgroup_line + "\n")
    (tmp_path / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {20 * 2**20} kB\n")
    for name, text in files.items():
        (tmp_path / "sys" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sys" / name).write_text(text)
    monkeypatch.setattr(memory, "CGROUP_FILE", tmp_path / "cgroup")
    monkeypatch.setattr(memory, "CGROUP_ROOT", tmp_path / "sys")
    monkeypatch.setattr(memory, "MEMINFO_FILE", tmp_path / "meminfo")


def test_the_cgroup_v2_limit_bounds_the_memory_available(tmp_path, monkeypatch):
    fake_proc(
        tmp_path,
        monkeypatch,
        "0::/user/job",
        {
            "user/job/memory.max": f"{6 * GIB}\n",
            "user/job/memory.current": f"{2 * GIB}\n",
            "user/job/memory.stat": f"anon 1\ninactive_file {GIB}\n",
        },
    )
    assert memory.available_memory_bytes() == (5 * GIB, "the memory cgroup's limit")


def test_the_cgroup_v1_limit_seen_as_the_namespace_root(tmp_path, monkeypatch):
    fake_proc(
        tmp_path,
        monkeypatch,
        "4:memory:/docker/abc\n0::/",
        {
            "memory/memory.limit_in_bytes": f"{4 * GIB}",
            "memory/memory.usage_in_bytes": f"{GIB}",
        },
    )
    assert memory.available_memory_bytes() == (3 * GIB, "the memory cgroup's limit")


def test_without_a_cgroup_limit_memavailable_bounds_it(tmp_path, monkeypatch):
    fake_proc(
        tmp_path,
        monkeypatch,
        "4:memory:/",
        {
            "memory/memory.limit_in_bytes": "9223372036854771712",
            "memory/memory.usage_in_bytes": f"{GIB}",
        },
    )
    assert memory.available_memory_bytes() == (20 * GIB, "MemAvailable")


def test_the_step_estimate_grows_with_the_batch_and_the_image():
    model = build_model("resnet18", tiny_settings().head)
    precision = choose_precision("float32", torch.device("cpu"))
    weights = sum(parameter.nbytes for parameter in model.parameters())
    small, double = (memory.step_bytes(model, 32, batch, precision) for batch in (8, 16))
    larger_image = memory.step_bytes(model, 64, 8, precision)
    assert 3 * weights < small < double < 2 * small and larger_image > small
    assert model.training  # measured in eval mode, put back


@pytest.fixture
def tiny_run(tmp_path):
    stems = write_tiny_dataset(tmp_path / "data", 24, size=60)
    return tiny_run_paths(tmp_path, stems)


def test_a_batch_beyond_the_cgroup_limit_is_refused_before_any_work(
    tmp_path, monkeypatch, tiny_run
):
    fake_proc(
        tmp_path,
        monkeypatch,
        "0::/",
        {"memory.max": f"{4 * GIB}", "memory.current": f"{GIB}"},
    )
    monkeypatch.setattr(training, "training_dataset", None)  # reaching it would be an error

    params = tiny_settings(batch_size=4096, image_size=224)
    with pytest.raises(HeadposeError) as refused:
        training.run_training(params, tiny_run)

    message = str(refused.value)
    assert message.startswith("batch_size 4096 at image_size 224 does not fit in memory")
    assert "3.0 GiB is available (the memory cgroup's limit)" in message
    assert "lower batch_size" in message and not tiny_run.models_dir.exists()


@pytest.mark.slow
def test_a_batch_that_fits_trains(tmp_path, monkeypatch, tiny_run):
    fake_proc(
        tmp_path,
        monkeypatch,
        "0::/",
        {"memory.max": f"{4 * GIB}", "memory.current": f"{GIB}"},
    )
    training.run_training(tiny_settings(epochs=1, finetune_epochs=0), tiny_run)
    assert (tiny_run.models_dir / "model.pt").exists()


def test_an_out_of_memory_error_in_training_is_one_line(tiny_run, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(training, "train_one_epoch", out_of_memory)
    with pytest.raises(HeadposeError, match=r"^batch_size 8 at image_size 32 does not fit in "):
        training.run_training(tiny_settings(), tiny_run)

    def other_error(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(training, "train_one_epoch", other_error)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # not every RuntimeError
        training.run_training(tiny_settings(), tiny_run)


@pytest.mark.slow  # a child python trains
def test_under_ulimit_v_a_batch_too_large_is_refused_in_one_line(tiny_run):
    """A real limit: the child process lowers its own address-space limit to 3 GiB above what
    it has mapped, then trains at batch 4096 and 224 px (tens of GiB by the estimate)."""
    script = f"""
        import resource, sys
        from pathlib import Path
        from headpose.errors import exit_on_error
        from headpose.training import memory
        from headpose.training.run import run_training
        from headpose.training.settings import TrainPaths
        sys.path.insert(0, {str(REPO / "tests")!r})
        from training_fixtures import tiny_settings

        mapped = int(memory.status_mib("VmSize") * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (mapped + 3 * 2**30, resource.RLIM_INFINITY))
        paths = TrainPaths(*map(Path, {[str(path) for path in astuple(tiny_run)]!r}))
        exit_on_error(run_training)(tiny_settings(batch_size=4096, image_size=224), paths)
    """
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 2, child.stderr
    (line,) = child.stderr.strip().splitlines()
    assert line.startswith("error: batch_size 4096 at image_size 224 does not fit in memory")
    assert "(the address-space limit, ulimit -v)" in line
