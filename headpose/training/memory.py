"""Process memory: the peak private (anonymous) resident memory of this process.

Private memory is what no other process can share: the heap, arrays and tensors in RAM (Linux:
``RssAnon`` in ``/proc/self/status``). Pages of memory-mapped files, such as the crop store's
images, are file-backed, live once in the page cache for every process and are not counted.
Linux keeps no peak of ``RssAnon``, so :class:`PeakPrivateMemory` samples it from a thread;
``VmHWM`` (the kernel's peak of all resident memory, mapped file pages included) is reported
beside it. Elsewhere than Linux both are unknown (None).
"""

from __future__ import annotations

import threading
from pathlib import Path

STATUS_FILE = Path("/proc/self/status")
SAMPLE_INTERVAL_S = 0.05


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
