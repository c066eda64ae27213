"""GPU claiming (headpose/training/gpus.py) on a fake device count: free devices in order,
CUDA_VISIBLE_DEVICES respected, ``gpus: N`` claims N, waiting while none is free, release on
exit and on a crash, and two concurrent claimant processes never sharing an index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import REPO_ROOT

from headpose.training.gpus import claim_gpus, visible_device_ids

# A claimant process: claims one of DEVICES fake devices, prints its index, holds it until
# its stdin closes (or it is killed).
CLAIMANT = """
import sys
from headpose.training.gpus import claim_gpus
claim = claim_gpus(1, device_count=int(sys.argv[1]), poll_seconds=0.05, report=lambda _: None)
print(claim.indices[0], flush=True)
sys.stdin.read()
"""


@pytest.fixture
def environ(tmp_path) -> dict[str, str]:
    return {"HEADPOSE_GPU_LOCKS": str(tmp_path / "locks")}


def _claimant(environ: dict[str, str], devices: int) -> subprocess.Popen:
    env = {**os.environ, **environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("LOCAL_RANK", None)
    return subprocess.Popen(
        [sys.executable, "-c", CLAIMANT, str(devices)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_claims_free_devices_in_order_and_n_at_once(environ):
    first = claim_gpus(1, device_count=4, environ=environ)
    assert first.indices == (0,) and first.training_device() == "cuda:0"
    pair = claim_gpus(2, device_count=4, environ=environ)
    assert pair.indices == (1, 2) and pair.visible_devices() == "1,2"
    assert pair.training_device() is None  # torchrun's workers take one each
    first.release()
    assert claim_gpus(1, device_count=4, environ=environ).indices == (0,)


def test_cuda_visible_devices_is_respected(environ):
    environ = {**environ, "CUDA_VISIBLE_DEVICES": "3,1"}
    assert visible_device_ids(2, environ) == ["3", "1"]
    claim = claim_gpus(1, device_count=2, environ=environ)
    assert claim.indices == (0,) and claim.device_ids == ("3",)  # cuda:0 of this process is 3
    # a process that sees all four devices: device 3 is the one taken
    everything = {"HEADPOSE_GPU_LOCKS": environ["HEADPOSE_GPU_LOCKS"]}
    rest = claim_gpus(3, device_count=4, environ=everything)  # held while referenced
    assert rest.device_ids == ("0", "1", "2")
    claim.release()
    assert claim_gpus(1, device_count=4, environ=everything).device_ids == ("3",)
    assert visible_device_ids(4, {"CUDA_VISIBLE_DEVICES": ""}) == []  # shows no device


def test_no_cuda_too_few_devices_or_torchrun_worker_claim_nothing(environ):
    assert claim_gpus(1, device_count=0, environ=environ).indices == ()
    assert claim_gpus(1, environ=environ).training_device() is None  # this machine: no CUDA
    assert claim_gpus(3, device_count=2, environ=environ).indices == ()
    worker = {**environ, "LOCAL_RANK": "0"}
    assert claim_gpus(1, device_count=2, environ=worker).indices == ()


def test_waits_while_none_is_free(environ):
    messages: list[str] = []
    holder = claim_gpus(1, device_count=1, environ=environ)
    started = time.monotonic()
    timer = threading.Timer(0.4, holder.release)
    timer.start()
    claim = claim_gpus(
        1, device_count=1, environ=environ, poll_seconds=0.05, report=messages.append
    )
    assert time.monotonic() - started >= 0.35 and claim.indices == (0,)
    assert len(messages) == 1 and "waiting for 1 free GPU(s) of 1" in messages[0]


def test_two_concurrent_processes_never_share_a_device(environ):
    for _ in range(3):
        claimants = [_claimant(environ, 2) for _ in range(2)]
        indices = {int(process.stdout.readline()) for process in claimants}
        assert indices == {0, 1}
        for process in claimants:
            process.communicate("")


def test_a_crashed_holder_releases_its_device(environ):
    holder = _claimant(environ, 1)
    assert holder.stdout.readline().strip() == "0"
    waiter = _claimant(environ, 1)
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting: the only device is held
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert waiter.stdout.readline().strip() == "0"
    waiter.communicate("")
