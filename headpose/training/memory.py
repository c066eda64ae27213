"""Process memory: the peak private (anonymous) resident memory of this process, and whether a
training step fits in the memory there is.

Private memory is what no other process can share: the heap, arrays and tensors in RAM (Linux:
``RssAnon`` in ``/proc/self/status``). Pages of memory-mapped files, such as the crop store's
images, are file-backed, live once in the page cache for every process and are not counted.
Linux keeps no peak of ``RssAnon``, so :class:`PeakPrivateMemory` samples it from a thread;
``VmHWM`` (the kernel's peak of all resident memory, mapped file pages included) is reported
beside it. Elsewhere than Linux both are unknown (None).

Before a CPU run trains, :func:`check_training_step_fits` estimates one step's memory from two
small forward passes and refuses a ``batch_size`` that cannot fit what is available (the
cgroup's limit, the machine's available memory or ``ulimit -v``), instead of being killed by
the kernel with no message.
On CUDA the allocator's out-of-memory error is the signal: :func:`memory_errors_named` turns it
(and the CPU allocator's) into the same one line naming ``batch_size`` and ``image_size``.

The estimate is the bytes autograd saves for the backward pass (activations, at the step's
precision) plus three times the weights (their gradients and Adam's two moments); the gradients
of activations are freed layer by layer as the backward pass goes. ``python
scripts/benchmark_memory_estimate.py`` sets it beside the measured peak of real steps.
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from headpose.errors import HeadposeError
from headpose.training.precision import Precision

STATUS_FILE = Path("/proc/self/status")
SAMPLE_INTERVAL_S = 0.05
MEMINFO_FILE = Path("/proc/meminfo")
CGROUP_FILE = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
GIB = 2**30


def status_mib(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``RssAnon``, ``VmHWM``, ...) in MiB, or None."""
    try:
        lines = STATUS_FILE.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) / 1024
    return None


class PeakPrivateMemory:
    """Samples ``RssAnon`` every :data:`SAMPLE_INTERVAL_S` from a daemon thread while running.

    ``with PeakPrivateMemory() as peak: ...`` then ``peak.private_mib`` (highest RssAnon seen)
    and ``peak.resident_mib`` (VmHWM at the end).
    """

    def __init__(self) -> None:
        self.private_mib = status_mib("RssAnon")
        self.resident_mib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._record()

    def _record(self) -> None:
        current = status_mib("RssAnon")
        if current is not None:
            self.private_mib = max(self.private_mib or 0.0, current)

    def __enter__(self) -> PeakPrivateMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._record()
        self.resident_mib = status_mib("VmHWM")

    def summary(self) -> str:
        """One line for the log."""
        if self.private_mib is None:
            return "peak private memory: unknown (no /proc/self/status)"
        return (
            f"peak private memory {self.private_mib:.0f} MiB (RssAnon, sampled every "
            f"{SAMPLE_INTERVAL_S} s); peak resident {self.resident_mib:.0f} MiB (VmHWM, "
            "shared memory-mapped pages included)"
        )


def saved_activation_bytes(
    model: torch.nn.Module, images: torch.Tensor, precision: Precision
) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward of ``images``
    (each storage counted once): what a training step holds per batch, beside the weights."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    training = model.training
    model.eval()  # the same tensors are saved; batch-norm statistics stay untouched
    try:
        hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
        with hooks, precision.autocast():
            model(images)
    finally:
        model.train(training)
    return sum(storages.values())


def step_bytes(
    model: torch.nn.Module, image_size: int, batch_size: int, precision: Precision
) -> int:
    """Estimated bytes one training step of ``batch_size`` images adds to the weights: from the
    saved bytes of forwards of 2 and 4 images (what grows per image, and what does not, such as
    autocast's copies of the weights), scaled to the batch (see the module docstring)."""
    device = next(model.parameters()).device
    saved = [
        saved_activation_bytes(
            model, torch.zeros(batch, 3, image_size, image_size, device=device), precision
        )
        for batch in (2, 4)
    ]
    per_image = (saved[1] - saved[0]) / 2
    fixed = saved[0] - 2 * per_image
    weights = sum(parameter.nbytes for parameter in model.parameters())
    return int(fixed + per_image * batch_size + 3 * weights)


def _int_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _reclaimable_cache(stat_file: Path) -> int:
    """The inactive file cache a cgroup's ``memory.stat`` counts (freed before an OOM kill)."""
    try:
        lines = stat_file.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name in ("inactive_file", "total_inactive_file") and value.strip().isdigit():
            return int(value)
    return 0


def cgroup_available_bytes() -> int | None:
    """Bytes this process's memory cgroup (v2 or v1) still allows, or None without a limit."""
    try:
        lines = CGROUP_FILE.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: limit, usage and stat in one folder
            names = ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        root = CGROUP_ROOT if controllers == "" else CGROUP_ROOT / "memory"
        for folder in (root / path.lstrip("/"), root):  # a namespace shows its own as the root
            limit, usage = (_int_file(folder / name) for name in names)
            if limit is not None and usage is not None and limit < 2**62:
                return max(0, limit - usage + _reclaimable_cache(folder / "memory.stat"))
    return None


def available_memory_bytes() -> tuple[int, str] | None:
    """(bytes a step can still take, where the bound comes from): the smallest of the cgroup's
    room, ``MemAvailable`` and the room under ``ulimit -v``; None where none is known."""
    bounds = []
    try:
        for line in MEMINFO_FILE.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                bounds.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except (OSError, ValueError, IndexError):
        pass
    room = cgroup_available_bytes()
    if room is not None:
        bounds.append((room, "the memory cgroup's limit"))
    address_space_limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    mapped_mib = status_mib("VmSize")
    if address_space_limit != resource.RLIM_INFINITY and mapped_mib is not None:
        room = max(0, address_space_limit - int(mapped_mib * 2**20))
        bounds.append((room, "the address-space limit, ulimit -v"))
    return min(bounds) if bounds else None


def does_not_fit(batch_size: int, image_size: int, detail: str) -> HeadposeError:
    """The one line for a batch too large for the memory there is."""
    return HeadposeError(
        f"batch_size {batch_size} at image_size {image_size} does not fit in memory: {detail}; "
        "lower batch_size (or image_size)"
    )


def check_training_step_fits(
    model: torch.nn.Module,
    image_size: int,
    batch_size: int,
    precision: Precision,
    processes: int = 1,
) -> None:
    """Refuse (one line) a CPU training step whose estimated memory exceeds what is
    available (each of ``processes`` takes ``batch_size / processes`` images); nothing is
    checked where the available memory is unknown."""
    available = available_memory_bytes()
    if available is None:
        return
    room, source = available
    needed = step_bytes(model, image_size, batch_size // processes, precision)
    if needed > room:
        raise does_not_fit(
            batch_size,
            image_size,
            f"one training step needs about {needed / GIB:.1f} GiB (estimated), "
            f"{room / GIB:.1f} GiB is available ({source})",
        )


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


@contextmanager
def memory_errors_named(batch_size: int, image_size: int, device: torch.device) -> Iterator[None]:
    """Turn an allocator's out-of-memory error (CUDA or CPU) raised in the block into the one
    line naming ``batch_size`` and ``image_size``."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not _is_out_of_memory(error):
            raise
        raise does_not_fit(batch_size, image_size, f"{device} ran out of memory") from None
