"""Which GPUs a training process uses: one claim per process, a lock file per device.

Several training processes on one machine (``dvc queue start -j 4``, or runs started by hand)
must not all land on ``cuda:0``. Before training, :func:`claim_gpus` takes ``gpus`` devices no
other process holds: for each device this process can see (``CUDA_VISIBLE_DEVICES`` respected:
its entries are the devices, in its order) it tries an exclusive ``fcntl.flock`` on
``<lock dir>/gpu-<id>.lock``, keeps the first ``gpus`` it gets, and when fewer are free releases
them, says once that it waits, and tries again every few seconds. The operating system drops a
flock when the last descriptor of its file closes, so a claim ends when the process exits,
crash and ``kill -9`` included; nothing is left to clean up. The lock files stay inheritable, so
a claim survives the ``exec`` into torchrun (``gpus`` > 1), which then sees only the claimed
devices through ``CUDA_VISIBLE_DEVICES`` (:meth:`GpuClaim.visible_devices`).

The lock folder is ``$HEADPOSE_GPU_LOCKS`` or ``<temp dir>/headpose-gpu-locks``: processes that
should share devices must agree on it (one machine, one temp dir by default). Without CUDA (no
device, a CPU-only torch) the claim is empty and changes nothing; with fewer devices than
``gpus`` it is empty as well and the launcher (:mod:`headpose.training.distributed`) reports it.
Under torchrun (``LOCAL_RANK`` set) the launching process already holds the claim.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from headpose.errors import HeadposeError

LOCK_DIR_VARIABLE = "HEADPOSE_GPU_LOCKS"
VISIBLE_VARIABLE = "CUDA_VISIBLE_DEVICES"
POLL_SECONDS = 2.0


@dataclass
class GpuClaim:
    """The devices one process holds: ``indices`` in its own CUDA numbering (``cuda:i``) and
    ``device_ids``, the same devices as ``CUDA_VISIBLE_DEVICES`` names them. Empty: no GPU."""

    indices: tuple[int, ...] = ()
    device_ids: tuple[str, ...] = ()
    _handles: list[IO[str]] = field(default_factory=list, repr=False)

    def visible_devices(self) -> str:
        """A ``CUDA_VISIBLE_DEVICES`` value that shows a child process exactly these devices."""
        return ",".join(self.device_ids)

    def training_device(self) -> str | None:
        """``cuda:i`` for a one-device claim (what a single training process runs on); None
        otherwise (no claim: the default device; several: torchrun's workers take one each)."""
        return f"cuda:{self.indices[0]}" if len(self.indices) == 1 else None

    def release(self) -> None:
        """Give the devices back now (the process ending does it too)."""
        for handle in self._handles:
            handle.close()
        self._handles.clear()


def lock_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the per-device lock files live (shared by every process of the machine)."""
    configured = environ.get(LOCK_DIR_VARIABLE)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "headpose-gpu-locks"


def visible_device_ids(device_count: int, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The ids of the ``device_count`` devices this process sees, in CUDA's order: the entries
    of ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs) when set, else ``0 .. device_count - 1``."""
    visible = environ.get(VISIBLE_VARIABLE)
    if visible is None:
        return [str(index) for index in range(device_count)]
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    return entries[:device_count]


def cuda_device_count() -> int:
    """CUDA devices this process can use (0 without CUDA or with a CPU-only torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _try_lock(path: Path) -> IO[str] | None:
    """The open, exclusively flock-ed lock file at ``path``, or None when another holds it."""
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the claim's life)
    except OSError as error:
        raise HeadposeError(f"cannot open the GPU lock file {path}: {error.strerror}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise HeadposeError(f"cannot lock the GPU lock file {path}: {error.strerror}") from None
    os.set_inheritable(handle.fileno(), True)  # held on across exec into torchrun
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _lock_name(device_id: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", device_id) + ".lock"


def claim_gpus(
    count: int,
    *,
    device_count: int | None = None,
    environ: Mapping[str, str] = os.environ,
    poll_seconds: float = POLL_SECONDS,
    report: Callable[[str], None] = print,
) -> GpuClaim:
    """Claim ``count`` free devices, waiting until that many are free; see the module text.

    ``device_count`` (default: what torch sees) and ``environ`` are for tests. Returns an empty
    claim without CUDA, with fewer devices than ``count``, or under torchrun.
    """
    available = cuda_device_count() if device_count is None else device_count
    if "LOCAL_RANK" in environ or available < max(count, 1):
        return GpuClaim()
    ids = visible_device_ids(available, environ)
    if len(ids) < count:
        return GpuClaim()
    folder = lock_folder(environ)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HeadposeError(
            f"cannot create the GPU lock folder {folder}: {error.strerror}"
        ) from None
    waited = False
    while True:
        held: list[tuple[int, IO[str]]] = []
        for index, device_id in enumerate(ids):
            handle = _try_lock(folder / _lock_name(device_id))
            if handle is not None:
                held.append((index, handle))
                if len(held) == count:
                    indices = tuple(index for index, _ in held)
                    return GpuClaim(indices, tuple(ids[i] for i in indices), [h for _, h in held])
        for _, handle in held:
            handle.close()
        if not waited:
            report(
                f"waiting for {count} free GPU(s) of {len(ids)} ({VISIBLE_VARIABLE} ids "
                f"{', '.join(ids)}; locks in {folder})"
            )
            waited = True
        time.sleep(poll_seconds)
