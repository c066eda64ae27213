"""The data loaders of a training run: the shuffling training loader and its sampler, and the
in-order validation loader, each over this process's share under torchrun.

On the CPU batches are gathered in the training process; on CUDA in persistent worker processes
(they map the crop store, not copy it), prefetched into pinned memory.
"""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Subset

from headpose.crops.pipeline import PoseDataset
from headpose.crops.training_batches import TrainingRegions
from headpose.errors import HeadposeError
from headpose.io.parallel import worker_count
from headpose.training.distributed import SINGLE_PROCESS, Rank
from headpose.training.settings import LoaderSettings


def _seed_loader_worker(worker_id: int) -> None:
    """DataLoader workers: one thread each (the items carry their own seeded generators)."""
    torch.set_num_threads(1)


def make_train_loader(
    dataset: TrainingRegions,
    settings: LoaderSettings,
    device: torch.device,
    rank: Rank = SINGLE_PROCESS,
) -> tuple[DataLoader, DistributedSampler]:
    """The shuffling loader of this rank and its sampler (the one place the sampler is made).

    The sampler draws each epoch's order from ``train_seed + epoch`` (call ``set_epoch``) and deals
    it out round-robin to the ranks, each taking ``batch_size / world_size`` per step, so the
    ranks' batches of one step together are exactly the one-process batch of that step. The
    loader asks ``dataset`` for a whole batch at a time (a :class:`RegionBatch`). On the CPU
    batches are gathered in the training process (workers would compete with the training step
    for the same cores); on CUDA in ``workers`` persistent processes, prefetching, into pinned
    memory (:func:`_loader_options`).
    """
    if settings.batch_size % rank.world_size:
        raise HeadposeError(
            f"params.yaml: batch_size {settings.batch_size} must be divisible by the number of "
            f"training processes ({rank.world_size}, the gpus key): it is the global batch"
        )
    batch_size = settings.batch_size // rank.world_size
    sampler = DistributedSampler(
        dataset, rank.world_size, rank.rank, shuffle=True, seed=settings.train_seed, drop_last=True
    )
    if len(sampler) < MIN_BATCH:
        raise HeadposeError(
            f"the training list holds {len(dataset)} sample(s) for {rank.world_size} training "
            f"process(es): each needs at least {MIN_BATCH} a batch (BatchNorm learns from a "
            "batch's statistics); list more samples"
        )
    batches = BatchSampler(sampler, batch_size, drop_last=len(sampler) > batch_size)  # no tiny
    # last batch for BatchNorm; the dataset gathers each batch whole (batch_size=None).
    options = _loader_options(settings.workers, device, LOADER_PREFETCH_BATCHES)
    loader = DataLoader(dataset, batch_size=None, sampler=batches, **options)
    return loader, sampler


def make_eval_loader(
    dataset: PoseDataset,
    settings: LoaderSettings,
    device: torch.device,
    rank: Rank = SINGLE_PROCESS,
) -> DataLoader:
    """An in-order loader over this rank's share of an evaluation dataset (every
    ``world_size``-th item from ``rank``; no item repeated, unlike DistributedSampler)."""
    share = Subset(dataset, range(rank.rank, len(dataset), rank.world_size))
    options = _loader_options(settings.workers, device, EVAL_PREFETCH_BATCHES)
    return DataLoader(share, batch_size=settings.batch_size, **options)


LOADER_PREFETCH_BATCHES = 2  # per worker process, on CUDA: whole training batches
MIN_BATCH = 2  # BatchNorm in training needs two values per channel
EVAL_PREFETCH_BATCHES = 4  # per worker process, on CUDA: evaluation batches of single crops


def _loader_options(workers: int, device: torch.device, prefetch: int) -> dict:
    """uint8 batches; on CUDA from persistent worker processes (they map the crop store, not
    copy it), prefetched into pinned memory so the copy to the GPU overlaps the step."""
    cuda = device.type == "cuda"
    workers = worker_count(workers) if cuda else 0
    return {
        "num_workers": workers,
        "pin_memory": cuda,
        "worker_init_fn": _seed_loader_worker if workers else None,
        "persistent_workers": workers > 0,
        "prefetch_factor": prefetch if workers else None,
    }
