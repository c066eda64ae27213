"""Interrupted outputs: SIGTERM says one line, a SIGKILLed run's temporaries are removed by the
next run, and ``headpose predict`` never leaves the outputs of two runs mixed in its folder.

The kills are real: a child process is stopped with SIGTERM or SIGKILL while it writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_fixtures import run_cli
from model_fixtures import write_checkpoint

from headpose.errors import exit_on_error
from headpose.io.files import remove_stale_temporaries, update_folder, write_text

REPO = Path(__file__).resolve().parents[1]
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def hidden(folder: Path) -> list[str]:
    """The hidden entries of a folder (temporaries and staging folders)."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sigterm_ends_an_entry_point_with_one_line(capsys):
    before = signal.getsignal(signal.SIGTERM)

    @exit_on_error
    def long_job() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the job")

    with pytest.raises(SystemExit) as stopped:
        long_job()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "terminated (SIGTERM): no output was left half-written\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


# A main thread blocked in C where no signal reaches Python: a second pthread_mutex_lock of a
# default (non-recursive) mutex by its owner waits in a futex for ever; the signal's C handler
# runs and the wait goes on, so Python's SIGTERM handler never runs.
BLOCKED_IN_C = """
    import ctypes, os, signal, sys, time
    import headpose.errors
    from headpose.errors import exit_on_error
    from headpose.io.files import atomic_path

    headpose.errors.SIGTERM_GRACE_S = float(sys.argv[1])

    @exit_on_error
    def main():
        libc = ctypes.CDLL(None)
        mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER
        with atomic_path(sys.argv[2]) as temp:
            temp.write_text("half")
            print("blocked", flush=True)
            libc.pthread_mutex_lock(mutex)
            libc.pthread_mutex_lock(mutex)  # never returns

    main()
"""


def run_script(script: str) -> subprocess.CompletedProcess:
    """Run the (indented) Python ``script`` in a child process to its end, output captured."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def terminate(child: subprocess.Popen) -> str:
    """Send ``child`` SIGTERM and return its standard error once it ends (killed after 20 s)."""
    child.send_signal(signal.SIGTERM)
    try:
        return child.communicate(timeout=20)[1]
    finally:
        child.kill()


def start_blocked_in_c(grace_s: float, target: Path) -> subprocess.Popen:
    """A child whose entry point holds a temporary output and waits in C, started and waiting."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(BLOCKED_IN_C), str(grace_s), str(target)],
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline() == "blocked\n"
    wait_in_futex(child.pid)
    return child


FUTEX_SYSCALL = {"x86_64": "202", "aarch64": "98"}


def wait_in_futex(pid: int) -> None:
    """Return once the process's main thread waits in the futex call (a signal sent earlier
    would find it still in Python, and take the tidy path)."""
    number = FUTEX_SYSCALL.get(os.uname().machine)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            current = Path(f"/proc/{pid}/syscall").read_text().split()[0]
        except (OSError, IndexError):
            break  # no /proc: fall back on time
        if number is None:
            break
        if current == number:
            return
        time.sleep(0.01)
    time.sleep(1.0)


def test_sigterm_ends_a_main_thread_blocked_in_c_after_the_grace_period(tmp_path):
    child = start_blocked_in_c(1.0, tmp_path / "out.txt")
    sent = time.monotonic()
    stderr = terminate(child)
    waited = time.monotonic() - sent

    assert child.returncode == 128 + signal.SIGTERM
    assert 0.9 < waited < 10, waited  # the grace period, then at once
    assert stderr == "terminated (SIGTERM): still running 1 s after SIGTERM, stopped at once\n"
    # the temporary stays (no finally ran) and goes with the next write, as after SIGKILL
    (leftover,) = hidden(tmp_path)
    write_text(tmp_path / "out.txt", "whole")
    assert hidden(tmp_path) == [] and not (tmp_path / "out.txt").with_name(leftover).exists()


def test_a_second_sigterm_ends_a_blocked_process_at_once(tmp_path):
    child = start_blocked_in_c(600.0, tmp_path / "out.txt")
    child.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert child.poll() is None  # still within the grace period
    stderr = terminate(child)

    assert child.returncode == 128 + signal.SIGTERM
    assert stderr == "terminated (SIGTERM): a second SIGTERM, stopped at once\n"


def test_sigterm_where_python_runs_still_exits_tidily_and_removes_temporaries(tmp_path):
    script = """
        import sys, time
        from headpose.errors import exit_on_error
        from headpose.io.files import atomic_path

        @exit_on_error
        def main():
            with atomic_path(sys.argv[1]) as temp:
                temp.write_text("half")
                print("writing", flush=True)
                time.sleep(60)

        main()
    """
    target = tmp_path / "out.txt"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(target)],
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline() == "writing\n"
    assert len(hidden(tmp_path)) == 1
    stderr = terminate(child)

    assert child.returncode == 128 + signal.SIGTERM
    assert stderr == "terminated (SIGTERM): no output was left half-written\n"
    assert list(tmp_path.iterdir()) == []  # the finally ran: no temporary, no output


def test_an_entry_point_that_ends_leaves_no_watchdog_behind():
    """The watchdog belongs to the entry point's run: after it returns (or is stopped, in
    the first test here) no thread waits to end this process, and the wakeup fd is back."""

    @exit_on_error
    def job() -> int:
        assert any(t.name == "headpose-sigterm-watchdog" for t in threading.enumerate())
        return 7

    assert job() == 7
    assert not any(t.name == "headpose-sigterm-watchdog" for t in threading.enumerate())
    assert signal.set_wakeup_fd(-1) == -1


# A child stopped before its after-fork hook has run (a pool closed while a worker is still
# starting, under load): the hook registered here, ahead of headpose's own, SIGTERMs the child
# at that moment. The entry point in the parent must not take the child's signal for its own.
STOPPED_WHILE_FORKING = """
    import os, signal, sys, time
    os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))
    import headpose.errors
    from headpose.errors import exit_on_error

    headpose.errors.SIGTERM_GRACE_S = 0.5

    @exit_on_error
    def main():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        time.sleep(2.0)  # four grace periods: a watchdog woken by the child would end us
        print("child", os.waitstatus_to_exitcode(status), "parent still running", flush=True)

    main()
"""


def test_a_child_stopped_while_forking_does_not_wake_its_parents_watchdog():
    child = run_script(STOPPED_WHILE_FORKING)
    assert child.returncode == 0, child.stderr
    # the child ended by SIGTERM's default action once headpose's hook had run
    assert child.stdout == f"child {-signal.SIGTERM} parent still running\n"
    assert child.stderr == ""


def test_an_entry_point_runs_without_a_watchdog_where_no_thread_can_start(monkeypatch):
    """Under a memory limit "can't start new thread": the command still runs (SIGTERM then
    acts as before: tidily, where Python runs)."""

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)

    @exit_on_error
    def job() -> int:
        return 7

    assert job() == 7
    assert signal.set_wakeup_fd(-1) == -1


def test_a_sigkilled_writes_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.onnx"
    script = f"""
        import os, signal
        from headpose.io.files import atomic_path
        with atomic_path({str(target)!r}) as temp:
            temp.write_bytes(b"half an export")
            os.kill(os.getpid(), signal.SIGKILL)
    """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=CHILD_ENV)
    assert child.wait() == -signal.SIGKILL
    (leftover,) = hidden(tmp_path)
    assert leftover.startswith(f".model.{child.pid}-") and leftover.endswith(".tmp.onnx")

    write_text(target, "whole")

    assert hidden(tmp_path) == [] and target.read_text() == "whole"


def test_temporaries_of_running_processes_and_other_files_are_kept(tmp_path):
    mine = tmp_path / f".model.{os.getpid()}-abc.tmp.onnx"
    running = tmp_path / f".model.{os.getppid()}-abc.tmp.onnx"
    gone = [tmp_path / f".model.{dead_pid()}-abc.tmp.onnx", tmp_path / f".out.{dead_pid()}-x.tmp"]
    gone[1].mkdir()
    unrelated = [tmp_path / ".model.onnx", tmp_path / ".notes", tmp_path / "a.1-b.tmp"]
    for path in [mine, running, gone[0], *unrelated]:
        path.write_text("x")

    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(gone)
    names = [path.name for path in [mine, running, *unrelated]]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names)


def test_a_folder_is_swept_once_per_process_before_files_are_written_into_it(tmp_path):
    """Sweeping on every write made writing N files into a folder O(N^2) (synth 2x slower)."""
    stale = tmp_path / f".a.{dead_pid()}-x.tmp.jpg"
    stale.write_text("x")
    write_text(tmp_path / "a.jpg", "1")
    assert not stale.exists()
    stale.write_text("x")  # appears later: this process already swept the folder
    write_text(tmp_path / "b.jpg", "2")
    assert stale.exists()


def test_updating_a_folder_replaces_only_the_old_sets_files(tmp_path):
    folder, staged = tmp_path / "out", tmp_path / "staged"
    folder.mkdir()
    staged.mkdir()
    for name in ["old.jpg", "kept.jpg", "done.json", "notes.txt"]:
        (folder / name).write_text("old")
    (folder / "sub").mkdir()
    for name in ["kept.jpg", "new.jpg", "done.json"]:
        (staged / name).write_text("new")

    previous = ["old.jpg", "kept.jpg", "done.json", "sub", "..", "../out/notes.txt"]
    update_folder(folder, staged, previous=previous, complete_marker="done.json")

    names = sorted(path.name for path in folder.iterdir())
    assert names == ["done.json", "kept.jpg", "new.jpg", "notes.txt", "sub"]
    assert (folder / "kept.jpg").read_text() == "new"
    assert (folder / "notes.txt").read_text() == "old"
    assert tmp_path.exists() and list(staged.iterdir()) == []


# --- headpose predict -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(
        tmp_path_factory.mktemp("model") / "model.pt", "resnet18", image_size=64
    )


def write_photo(path: Path, seed: int) -> Path:
    image = np.random.default_rng(seed).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def write_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
    assert writer.isOpened(), "this OpenCV build cannot write mp4v"
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    return path


def predict_args(inputs: list[Path], checkpoint: Path, out: Path) -> list[str]:
    return [
        "predict", *map(str, inputs), "--checkpoint", str(checkpoint), "--out", str(out),
        "--detector", "haar",
    ]  # fmt: skip


def start_predict(inputs: list[Path], checkpoint: Path, out: Path) -> subprocess.Popen:
    """``headpose predict`` in a child process, returned once it writes into its staging
    folder."""
    child = subprocess.Popen(
        [sys.executable, "-m", "headpose.cli", *predict_args(inputs, checkpoint, out)],
        env=CHILD_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(p.is_dir() and any(p.iterdir()) for p in out.glob(".staging.*.tmp")):
        assert child.poll() is None, f"predict ended before it was stopped: {child.stderr.read()}"
        assert time.monotonic() < deadline, "predict never started writing"
        time.sleep(0.05)
    return child


@pytest.fixture
def earlier_run(tmp_path, checkpoint) -> tuple[Path, dict[str, bytes]]:
    """An output folder holding a complete earlier run on two photos, and its files' bytes."""
    photos = tmp_path / "photos"
    photos.mkdir()
    inputs = [write_photo(photos / f"photo{index}.jpg", index) for index in range(2)]
    out = tmp_path / "out"
    assert run_cli(predict_args(inputs, checkpoint, out)) == 1  # random pixels: no face found
    files = {path.name: path.read_bytes() for path in out.iterdir()}
    assert sorted(files) == ["photo0.jpg", "photo1.jpg", "predictions.csv", "predictions.json"]
    assert sorted(json.loads(files["predictions.json"])["outputs"]) == sorted(files)
    return out, files


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """The files of a folder (not its sub-folders) and their bytes."""
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def test_sigterm_during_predict_leaves_the_earlier_run_whole(tmp_path, checkpoint, earlier_run):
    out, earlier = earlier_run
    video = write_video(tmp_path / "clip.mp4", frames=3000)

    child = start_predict([video], checkpoint, out)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)

    assert child.returncode == 128 + signal.SIGTERM
    assert stderr.splitlines()[-1] == "terminated (SIGTERM): no output was left half-written"
    assert "Traceback" not in stderr
    assert folder_bytes(out) == earlier and hidden(out) == []  # nothing of the stopped run


def test_a_sigkilled_predicts_staging_goes_with_the_next_run(tmp_path, checkpoint, earlier_run):
    out, earlier = earlier_run
    video = write_video(tmp_path / "clip.mp4", frames=3000)

    child = start_predict([video], checkpoint, out)
    child.kill()
    child.communicate(timeout=60)
    assert folder_bytes(out) == earlier  # the killed run moved nothing in
    (staging,) = hidden(out)
    assert staging.startswith(f".staging.{child.pid}-")

    short = write_video(tmp_path / "short.mp4", frames=3)
    assert run_cli(predict_args([short], checkpoint, out)) == 1  # random pixels: no face

    # the killed run's staging folder and the earlier run's annotated photos are gone
    assert sorted(folder_bytes(out)) == ["predictions.csv", "predictions.json", "short.mp4"]
    assert hidden(out) == []
    report = json.loads((out / "predictions.json").read_text())
    assert report["outputs"] == sorted(folder_bytes(out))


def test_a_users_own_files_in_the_output_folder_are_kept(tmp_path, checkpoint, earlier_run):
    out, _ = earlier_run
    (out / "notes.txt").write_text("mine")
    (out / "predictions.json").write_text("{not json")  # an unreadable report lists nothing
    photo = write_photo(tmp_path / "other.jpg", 7)

    assert run_cli(predict_args([photo], checkpoint, out)) == 1

    names = sorted(folder_bytes(out))
    assert names == [
        "notes.txt", "other.jpg", "photo0.jpg", "photo1.jpg", "predictions.csv",
        "predictions.json",
    ]  # fmt: skip
    assert (out / "notes.txt").read_text() == "mine"


def test_pool_workers_stopped_by_their_pool_print_nothing():
    """A pool ends its forked workers with SIGTERM: they inherit the entry point's handler, but
    end silently, as SIGTERM ends a process (no Terminated traceback per worker)."""
    script = """
        import multiprocessing
        from headpose.errors import exit_on_error

        @exit_on_error
        def main():
            for _ in range(20):  # a worker's traceback came about one pool in three
                with multiprocessing.get_context("fork").Pool(4) as pool:
                    assert list(pool.imap(abs, [-1, -2] * 50, chunksize=4))
                # leaving the block terminates the workers with SIGTERM

        main()
    """
    child = run_script(script)
    assert child.returncode == 0 and child.stderr == ""
