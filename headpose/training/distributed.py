"""Multi-process (DistributedDataParallel) training: launching, the process group, reductions.

``params.yaml: gpus: N`` (N > 1) trains on N GPUs, one process each. The stage command stays
``python stages/train.py``: :func:`relaunch_under_torchrun` replaces that process by
``python -m torch.distributed.run --standalone --nproc_per_node=N stages/train.py`` (torchrun),
which starts the N workers with ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` in their environment.
Each worker then opens the process group with :func:`process_group`, which says who it is
(:class:`Rank`): its rank, the world size and its device.

Backends: ``nccl`` on CUDA, ``gloo`` on the CPU. ``HEADPOSE_DDP_BACKEND=gloo`` forces CPU
processes even where fewer (or no) GPUs exist: for testing the multi-process path on a laptop
or in CI, not for speed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from headpose.errors import HeadposeError
from headpose.models.network import pick_device

BACKEND_VARIABLE = "HEADPOSE_DDP_BACKEND"


@dataclass(frozen=True)
class Rank:
    """This process's place in the run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs (checkpoints, metrics, curves, resume file)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE_PROCESS = Rank()  # a plain run: rank 0 of 1 (the default of functions taking a Rank)


def _forced_backend() -> str | None:
    backend = os.environ.get(BACKEND_VARIABLE)
    if backend not in (None, "", "gloo", "nccl"):
        raise HeadposeError(f"{BACKEND_VARIABLE} is {backend!r}; expected gloo or nccl (or unset)")
    return backend or None


def is_main_process() -> bool:
    """Whether this process is rank 0 of its run (always, when not under torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def relaunch_under_torchrun(gpus: int, visible_devices: str = "") -> None:
    """With ``gpus`` > 1 and not yet under torchrun, replace this process by torchrun running
    the same command on ``gpus`` processes (never returns then); otherwise return at once.
    ``visible_devices`` (the claimed GPUs, :mod:`headpose.training.gpus`) becomes torchrun's
    ``CUDA_VISIBLE_DEVICES``, so its workers' ``cuda:LOCAL_RANK`` are the claimed devices.

    Raises a HeadposeError when fewer CUDA devices than ``gpus`` exist, unless
    ``HEADPOSE_DDP_BACKEND=gloo`` asks for CPU processes.
    """
    if gpus <= 1 or "LOCAL_RANK" in os.environ:
        return
    available = torch.cuda.device_count()
    if _forced_backend() != "gloo" and available < gpus:
        raise HeadposeError(
            f"params.yaml: gpus is {gpus} but this machine has {available} CUDA device(s); "
            f"set gpus to at most {max(available, 1)} (or {BACKEND_VARIABLE}=gloo to test "
            "multi-process training on the CPU)"
        )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={gpus}", *sys.argv]
    if visible_devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_devices
    print("launching:", " ".join(command), flush=True)
    os.execv(sys.executable, command)


@contextmanager
def process_group(device: str | None = None) -> Iterator[Rank]:
    """This process's :class:`Rank`; under torchrun (``WORLD_SIZE`` > 1) the process group is
    opened for the block (nccl with one GPU per process, or gloo on the CPU) and closed after.
    ``device``: a single process's device (e.g. its claimed ``cuda:2``; default: CUDA if any).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        single = pick_device(device)
        if single.type == "cuda" and single.index is not None:
            torch.cuda.set_device(single)  # pinned-memory threads follow the current device
        yield Rank(device=single)
        return
    backend = _forced_backend() or ("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        yield Rank(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()


def sum_over_ranks(values: torch.Tensor, rank: Rank) -> torch.Tensor:
    """``values`` summed element-wise over all processes (unchanged when not distributed)."""
    if not rank.distributed:
        return values
    total = values.to(rank.device).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(values.device)
