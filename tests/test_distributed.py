"""Multi-process training: 2 gloo CPU processes train like 1 process on the same global batch.

Why the two runs can match: the DistributedSampler deals one seeded permutation round-robin to
the ranks, so the ranks' halves of step k together are the one-process batch k; augmentation is
seeded per sample index; DDP averages the ranks' gradients of equal-sized halves, which is the
gradient of the whole batch's mean loss. The one thing that differs on the CPU is BatchNorm:
SyncBatchNorm (used on CUDA) has no CPU implementation, so each gloo process would normalise by
its own half-batch. Both runs here therefore keep BatchNorm on its running statistics.
"""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing
from helpers import as_samples
from protocol_fixtures import HOPENET
from torch import nn
from training_fixtures import tiny_settings, write_list, write_tiny_dataset

import headpose.training.run as training
from headpose.errors import HeadposeError
from headpose.io.lists import read_list
from headpose.training.data import make_train_loader
from headpose.training.distributed import BACKEND_VARIABLE, Rank, relaunch_under_torchrun
from headpose.training.run import run_training
from headpose.training.settings import TrainPaths

# 16 training images, global batch 16: one step per epoch, so each epoch's loss is one step's.
# float32: two ranks' halves of a batch equal the whole batch only up to the step's rounding.
PARAMS = {"batch_size": 16, "epochs": 2, "finetune_epochs": 1, "workers": 1, "precision": "float32"}


def _rendezvous_store() -> dist.TCPStore:
    """The store the workers meet in, served by this process as torchrun's agent serves it, on
    a port the system assigns as it binds (port 0). Probing for a free port, closing it and
    letting rank 0 bind it later (as this test did) left a window in which another process on
    a busy machine could take the port: the gloo run then failed to start, once in a while."""
    return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def _train_mode_with_fixed_batchnorm(model: nn.Module, stem_frozen: bool) -> None:
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _worker(rank: int, world_size: int, port: int, params: dict, paths: TrainPaths) -> None:
    """One process of the 2-process run (torch.multiprocessing.spawn calls it with its rank)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TORCHELASTIC_USE_AGENT_STORE="True",  # every rank a client of the parent's store
        GLOO_SOCKET_IFNAME="lo",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        **{BACKEND_VARIABLE: "gloo"},
    )
    torch.set_num_threads(1)
    training.set_train_mode = _train_mode_with_fixed_batchnorm
    run_training(params, paths)


def _paths(lists: tuple[Path, Path], out: Path) -> TrainPaths:
    return TrainPaths(lists[0], lists[1], out / "models", out / "resume.pt", out / "live")


def _curve(paths: TrainPaths, name: str) -> list[float]:
    with open(paths.live_dir / "plots" / "metrics" / f"{name}.tsv") as handle:
        return [float(row[name.split("/")[-1]]) for row in csv.DictReader(handle, delimiter="\t")]


@pytest.fixture(scope="module")
def lists(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    stems = write_tiny_dataset(folder, 23)
    # 7 validation images: the ranks hold 4 and 3, so a mean of per-rank means would be wrong
    return write_list(folder / "train.txt", stems[:16]), write_list(folder / "val.txt", stems[16:])


@pytest.mark.slow
def test_two_processes_train_like_one(lists, tmp_path, monkeypatch, one_torch_thread):
    params = tiny_settings(**PARAMS)
    monkeypatch.setattr(training, "set_train_mode", _train_mode_with_fixed_batchnorm)
    single = _paths(lists, tmp_path / "single")
    single_metrics = run_training(params, single)

    double = _paths(lists, tmp_path / "double")
    store = _rendezvous_store()
    torch.multiprocessing.spawn(_worker, args=(2, store.port, params, double), nprocs=2)

    losses = _curve(single, "train/loss")
    assert len(losses) == 3
    assert _curve(double, "train/loss") == pytest.approx(losses, rel=1e-4)
    for key in ("mae_yaw", "mae_pitch", "mae_roll", "mae_mean"):
        assert _curve(double, f"val/{key}") == pytest.approx(_curve(single, f"val/{key}"), 1e-4)
    assert sorted(p.name for p in double.models_dir.iterdir()) == ["best.pt", "model.pt"]
    meta = torch.load(double.models_dir / "model.pt", weights_only=True)["meta"]
    assert meta["val_mae_mean"] == pytest.approx(single_metrics["final"]["mae_mean"], 1e-4)
    assert not double.resume_file.exists()  # written each epoch by rank 0, removed at the end


def test_the_rendezvous_port_is_held_from_the_moment_it_is_chosen():
    store = _rendezvous_store()
    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.bind(("127.0.0.1", store.port))  # no other process can take it


def test_ranks_share_each_global_batch(lists):
    dataset = training.training_dataset(as_samples(read_list(lists[0])), 32, HOPENET, 0)
    params = tiny_settings(batch_size=8).loader
    device = torch.device("cpu")
    single, single_sampler = make_train_loader(dataset, params, device)
    ranks = [make_train_loader(dataset, params, device, Rank(r, 2)) for r in range(2)]
    for sampler in [single_sampler] + [sampler for _, sampler in ranks]:
        sampler.set_epoch(3)
    assert [loader.sampler.batch_size for loader, _ in ranks] == [4, 4]
    batches = torch.utils.data.BatchSampler
    whole_batches = list(batches(single_sampler, 8, drop_last=True))
    per_rank = [list(batches(sampler, 4, drop_last=True)) for _, sampler in ranks]
    assert len(whole_batches) == 2
    for step, batch in enumerate(whole_batches):
        assert sorted(per_rank[0][step] + per_rank[1][step]) == sorted(batch)
    with pytest.raises(HeadposeError, match="batch_size 8 must be divisible"):
        make_train_loader(dataset, params, device, Rank(0, 3))


def test_relaunch_checks_devices_and_runs_torchrun(monkeypatch):
    launched = []
    monkeypatch.setattr(os, "execv", lambda program, command: launched.append(command))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(BACKEND_VARIABLE, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    relaunch_under_torchrun(1)
    assert not launched
    with pytest.raises(HeadposeError, match="gpus is 4 but this machine has 1 CUDA device"):
        relaunch_under_torchrun(4)
    monkeypatch.setenv(BACKEND_VARIABLE, "mpi")
    with pytest.raises(HeadposeError, match="HEADPOSE_DDP_BACKEND is 'mpi'"):
        relaunch_under_torchrun(4)
    monkeypatch.setenv(BACKEND_VARIABLE, "gloo")
    monkeypatch.setattr("sys.argv", ["stages/train.py"])
    relaunch_under_torchrun(4)
    assert launched[0][1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "stages/train.py"
    ]  # fmt: skip
    monkeypatch.setenv("LOCAL_RANK", "0")  # already a torchrun worker: no second launch
    relaunch_under_torchrun(4)
    assert len(launched) == 1
