"""The whole training run: its phases, epoch after epoch, with validation, curves, resume
checkpoints and the final checkpoints (:func:`run_training`).

The parts have their own modules: the settings read from ``params.yaml``
(:mod:`headpose.training.settings`), the phases, optimiser and LR schedule
(:mod:`headpose.training.schedule`), one epoch and its validation
(:mod:`headpose.training.epoch`), the loaders (:mod:`headpose.training.data`) and the
checkpoints' meta (:mod:`headpose.training.checkpoint_meta`).

After every epoch the model is scored on the validation list, the numbers go to dvclive, and a
resume checkpoint is written (:mod:`headpose.training.resume`). Re-running with the same params
and lists continues after the last finished epoch and gives exactly the result of an
uninterrupted run: shuffling and augmentation are seeded per epoch, not by a running random
state. The checkpoints hold, beside the weights, the training-set mean angles, the params and the
run fingerprint (:func:`~headpose.training.checkpoint_meta.checkpoint_meta`).

CUDA is used when present (pinned memory, loader worker processes; the train stage passes the
GPU it claimed, :mod:`headpose.training.gpus`); otherwise the CPU, where runs are deterministic
for a fixed ``train_seed`` (the model's seed; ``seed`` is the data's and training does not read
it). The step's numerics (``precision``: bfloat16 or float16 autocast, channels-last,
``compile``) come from :mod:`headpose.training.precision`.

Under torchrun (``gpus`` > 1, see headpose/training/distributed.py) every process trains a
DistributedDataParallel copy on its share of each global batch (``batch_size`` / processes, so
``batch_size`` stays the global batch; the samplers deal out the same seeded order as one
process sees), BatchNorm statistics are synchronised across GPUs (SyncBatchNorm; on the CPU
gloo backend, a test setting, they stay per process), validation errors are summed over all
processes, and only rank 0 writes checkpoints, curves, metrics and the resume file.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from dvclive import Live
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from headpose.crops.pipeline import evaluation_dataset, training_dataset
from headpose.crops.training_batches import TrainingRegions
from headpose.datasets.registry import Sample, read_samples
from headpose.evaluation.metrics import MAE_KEYS
from headpose.models.network import HeadPoseNet, build_model
from headpose.models.registry import Normalization, get_arch
from headpose.training.checkpoint_meta import checkpoint_meta, save_final_and_best
from headpose.training.data import make_eval_loader, make_train_loader
from headpose.training.distributed import Rank, process_group, sum_over_ranks
from headpose.training.epoch import InputMaker, input_maker, train_one_epoch, validation_mae
from headpose.training.memory import (
    PeakPrivateMemory,
    check_training_step_fits,
    memory_errors_named,
)
from headpose.training.precision import Precision, check_compiler, choose_precision
from headpose.training.resume import RunState, load_resume, run_fingerprint, save_resume
from headpose.training.schedule import (
    Phase,
    make_optimizer,
    make_scheduler,
    set_stem_frozen,
    set_train_mode,
)
from headpose.training.settings import TrainPaths, TrainSettings


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation draws from torch)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Trainer:
    """Everything one run uses; :meth:`run_phase` trains one phase from where the run stands."""

    settings: TrainSettings
    paths: TrainPaths
    fingerprint: str
    device: torch.device
    model: HeadPoseNet
    train_set: TrainingRegions
    train_loader: DataLoader
    sampler: DistributedSampler
    val_loader: DataLoader
    live: Live | None  # rank 0 only
    state: RunState
    precision: Precision
    scaler: torch.amp.GradScaler
    rank: Rank

    @property
    def normalization(self) -> Normalization:
        """The input normalisation of the backbone (stored in the checkpoints)."""
        return get_arch(self.settings.arch).normalization

    def make_inputs(self) -> InputMaker:
        """What turns the loader's batches into the model's input."""
        return input_maker(
            self.settings.image_size,
            self.settings.crop_protocol,
            self.normalization,
            self.device,
            self.precision,
        )

    def wrap(self) -> nn.Module:
        """The module a phase trains through: the model itself, under torchrun a
        DistributedDataParallel wrapper made after the phase set which parameters learn
        (DDP only averages the gradients of parameters trainable when it is made), compiled by
        ``torch.compile`` when ``compile`` is true."""
        network: nn.Module = self.model
        if self.rank.distributed:
            device_ids = [self.device] if self.device.type == "cuda" else None
            network = DistributedDataParallel(self.model, device_ids=device_ids)
        return torch.compile(network) if self.settings.compile else network

    def run_phase(self, phase: Phase, saved: dict | None) -> None:
        """Train the phase's remaining epochs (``saved``: a resume checkpoint's content)."""
        last_epoch = phase.first_epoch + phase.epochs - 1
        if self.state.epochs_done >= last_epoch:
            return  # finished before an interruption
        stem_frozen = phase.name == "frozen_stem"
        set_stem_frozen(self.model, stem_frozen)
        network = self.wrap()
        optimizer = make_optimizer(self.model, phase)
        schedule = self.settings.schedule
        scheduler = make_scheduler(optimizer, schedule, phase.epochs * len(self.train_loader))
        if saved and saved["phase"] == phase.name and self.state.epochs_done >= phase.first_epoch:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        total = self.settings.epochs + self.settings.finetune_epochs
        for epoch in range(self.state.epochs_done + 1, last_epoch + 1):
            lr = optimizer.param_groups[0]["lr"]
            self.sampler.set_epoch(epoch)
            self.train_set.set_epoch(epoch)
            set_train_mode(self.model, stem_frozen)
            rank_loss = train_one_epoch(
                network,
                self.train_loader,
                optimizer,
                self.scaler,
                self.settings.head,
                self.make_inputs(),
                self.precision,
                f"epoch {epoch}/{total} ({phase.name})",
                show_progress=self.rank.is_main,
                scheduler=scheduler if schedule.per_step else None,
            )
            loss = sum_over_ranks(torch.tensor(rank_loss), self.rank).item() / self.rank.world_size
            if not schedule.per_step:
                scheduler.step()
            scores = validation_mae(self.model, self.val_loader, self.normalization, self.rank)
            record = {"epoch": epoch, "phase": phase.name, "lr": lr, "train_loss": loss, **scores}
            self.state.add_epoch(record, self.model)
            if not self.rank.is_main:
                continue
            log_epoch(self.live, record)
            tqdm.write(
                f"epoch {epoch}: loss {loss:.3f}, validation MAE yaw {scores['mae_yaw']:.2f} "
                f"pitch {scores['mae_pitch']:.2f} roll {scores['mae_roll']:.2f} "
                f"mean {scores['mae_mean']:.2f} deg"
            )
            save_resume(
                self.paths.resume_file,
                self.fingerprint,
                self.state,
                phase.name,
                model=self.model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=self.scaler,
            )

    def save_models(self) -> None:
        """``model.pt`` (final weights) and ``best.pt`` (best validation epoch), with meta."""
        training_mean_deg = self.train_set.crops.angles_deg.astype(np.float64).mean(axis=0)
        meta = checkpoint_meta(self.settings, training_mean_deg, self.fingerprint, self.precision)
        save_final_and_best(self.paths.models_dir, self.settings, self.model, self.state, meta)

    def metrics(self) -> dict:
        """Final and best epoch's validation MAEs (the content of ``metrics/train.json``)."""
        final = self.state.history[-1]
        best = self.state.history[self.state.best_epoch - 1]
        return {
            "final": {key: final[key] for key in ("epoch", "train_loss", *MAE_KEYS)},
            "best": {key: best[key] for key in ("epoch", *MAE_KEYS)},
            "train_images": len(self.train_set),
            "val_images": len(self.val_loader.dataset.dataset),
        }


def run_training(settings: TrainSettings, paths: TrainPaths, device: str | None = None) -> dict:
    """Train as ``settings`` say on ``paths.train_list``, validate on ``paths.val_list``.

    Writes ``models/model.pt`` (final) and ``models/best.pt`` (lowest validation mean MAE) and
    the dvclive curves; returns the metrics (final and best epoch's MAEs). Bad lists raise a
    HeadposeError before any work (bad params already did, in :meth:`TrainSettings.from_params`).
    Every process prints its peak private memory at the end (:mod:`headpose.training.memory`).
    Continues an interrupted run of the same params and lists from ``paths.resume_file``, which
    is deleted once the run is complete. Under torchrun every process calls this; only rank 0
    writes, and all return the same metrics.
    ``device``: a single process's device (the stage passes its claimed GPU; default: CUDA if
    present, else the CPU).
    """
    train_samples = read_samples(paths.train_list)
    val_samples = read_samples(paths.val_list)
    with process_group(device) as rank, PeakPrivateMemory() as memory:
        metrics = _train(settings, paths, train_samples, val_samples, rank)
    print(f"process {rank.rank + 1} of {rank.world_size}: {memory.summary()}")
    return metrics


def _train(
    settings: TrainSettings,
    paths: TrainPaths,
    train_samples: list[Sample],
    val_samples: list[Sample],
    rank: Rank,
) -> dict:
    device = rank.device
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fastest kernels for a fixed size
    head = settings.head
    precision = choose_precision(settings.precision, device)
    if settings.compile:
        check_compiler(device)
    print(
        f"training {settings.arch} with the {head.name} head on {device.type} in "
        f"{precision.name}{', channels-last' if precision.channels_last else ''}"
        f"{', compiled' if settings.compile else ''} (process {rank.rank + 1} of "
        f"{rank.world_size}): {len(train_samples)} train images, "
        f"{len(val_samples)} validation images"
    )
    size, protocol = settings.image_size, settings.crop_protocol
    loader_settings = settings.loader
    workers = loader_settings.workers
    if device.type == "cpu":  # before any work; CUDA's allocator says so itself (see below)
        unseeded = build_model(settings.arch, head)  # the same size as the trained one
        batch_size = loader_settings.batch_size
        check_training_step_fits(unseeded, size, batch_size, precision, rank.world_size)
    framing = settings.framing
    print(framing.describe())
    train_set = training_dataset(
        train_samples, size, protocol, settings.train_seed, workers, framing=framing
    )
    train_loader, sampler = make_train_loader(train_set, loader_settings, device, rank)
    val_set = evaluation_dataset(val_samples, size, protocol, workers)
    val_loader = make_eval_loader(val_set, loader_settings, device, rank)
    fingerprint = run_fingerprint(
        settings.record, settings.pretrained, train_set.crops.key, val_set.crops.key
    )

    seed_everything(settings.train_seed)
    model = build_model(settings.arch, head, settings.pretrained)
    if rank.distributed and device.type == "cuda":  # SyncBatchNorm has no CPU implementation
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=precision.memory_format)
    scaler = precision.grad_scaler()
    saved = load_resume(paths.resume_file, fingerprint, model)
    state = RunState(**saved["state"]) if saved else RunState()
    if saved:
        model.load_state_dict(saved["model"])
        scaler.load_state_dict(saved["scaler"])
        print(f"resuming after epoch {state.epochs_done} from {paths.resume_file}")
    live = Live(str(paths.live_dir), save_dvc_exp=False, dvcyaml=False) if rank.is_main else None
    for record in state.history if live else []:  # DVC deleted the interrupted run's curves
        log_epoch(live, record)

    trainer = Trainer(
        settings, paths, fingerprint, device, model, train_set, train_loader, sampler,
        val_loader, live, state, precision, scaler, rank,
    )  # fmt: skip
    started = time.perf_counter()
    with memory_errors_named(loader_settings.batch_size, size, device):
        for phase in settings.phases():
            trainer.run_phase(phase, saved)
    if live:
        live.end()
        trainer.save_models()
        paths.resume_file.unlink(missing_ok=True)
    print(
        f"trained in {time.perf_counter() - started:.0f} s; best validation MAE "
        f"{state.best_mae_mean:.2f} deg at epoch {state.best_epoch}"
    )
    return trainer.metrics()


def log_epoch(live: Live, record: dict) -> None:
    """One epoch's numbers as one dvclive step."""
    live.log_metric("train/loss", record["train_loss"])
    live.log_metric("train/lr", record["lr"])
    for key in MAE_KEYS:
        live.log_metric(f"val/{key}", record[key])
    live.next_step()
