"""Running one function over many samples in a process pool, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count(workers: int) -> int:
    """Number of processes for the ``workers`` parameter (0 = one per CPU core)."""
    return workers if workers > 0 else (os.cpu_count() or 1)


def imap_with_progress(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int, description: str
) -> Iterator[Result]:
    """Yield ``function(item)`` for each item, in order, as ``workers`` processes compute them.

    The results stream: a consumer that writes each one away (the crop store) never holds them
    all. ``function`` must be a module-level function (it is pickled). One worker, or fewer than
    two items, runs in this process.
    """
    processes = min(worker_count(workers), len(items))
    progress = {"total": len(items), "desc": description, "unit": "sample", "smoothing": 0.05}
    if processes <= 1:
        yield from (function(item) for item in tqdm(items, **progress))
        return
    chunk_size = max(1, min(64, len(items) // (processes * 8)))
    with multiprocessing.Pool(processes) as pool:
        yield from tqdm(pool.imap(function, items, chunksize=chunk_size), **progress)


def map_with_progress(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int, description: str
) -> list[Result]:
    """``[function(item) for item in items]`` over ``workers`` processes (see
    :func:`imap_with_progress`)."""
    return list(imap_with_progress(function, items, workers, description))
