"""Running one function over many samples in a process pool, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count(workers: int) -> int:
    """Number of processes for the ``workers`` parameter (0 = one per CPU core)."""
    return workers if workers > 0 else (os.cpu_count() or 1)


def map_with_progress(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int, description: str
) -> list[Result]:
    """Return ``[function(item) for item in items]`` in order, over ``workers`` processes.

    ``function`` must be a module-level function (it is pickled). One worker, or fewer than two
    items, runs in this process.
    """
    processes = min(worker_count(workers), len(items))
    progress = {"total": len(items), "desc": description, "unit": "sample", "smoothing": 0.05}
    if processes <= 1:
        return [function(item) for item in tqdm(items, **progress)]
    chunk_size = max(1, min(64, len(items) // (processes * 8)))
    with multiprocessing.Pool(processes) as pool:
        return list(tqdm(pool.imap(function, items, chunksize=chunk_size), **progress))
