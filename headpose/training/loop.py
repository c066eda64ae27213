"""The training loop: two-phase schedule, one epoch, validation, the whole run and its checkpoints.

The recipe (``params.yaml`` keys in brackets):

* the loss of the ``head`` (its :meth:`~headpose.models.heads.Head.loss`): for ``bins``, per angle,
  cross-entropy over the bins + ``alpha`` x MSE between the softmax expectation (bin centres, or
  lower edges with ``expectation: lower_edges``) and the true angle; for ``rotation_6d``, the
  geodesic distance between the predicted rotation matrix and the label's;
* phase 1 (``epochs``): Adam at ``lr``, the stem (conv1/bn1) frozen (no gradients, BN statistics
  fixed) and the three heads at 5x ``lr``, as in the original; phase 2 (``finetune_epochs``,
  0 = the one-phase original): everything trainable at ``finetune_lr``;
* one optimizer and one LR scheduler per phase: ``lr_schedule: exponential`` multiplies the rates
  by ``lr_decay`` after every epoch, ``step`` by ``lr_step_gamma`` at the epochs in ``lr_steps``
  (counted from the start of each phase).

After every epoch the model is scored on the validation list through the evaluation's inference
path and metrics (:mod:`headpose.evaluation`: fixed evaluation crop, MAE per angle), the numbers
go to dvclive, and a resume checkpoint is written (:mod:`headpose.training.resume`). Re-running
with the same params and lists continues after the last finished epoch and gives exactly the
result of an uninterrupted run: shuffling and augmentation are seeded per epoch, not by a running
random state. The checkpoints hold, beside the weights, the training-set mean angles, the params
and the run fingerprint (:func:`checkpoint_meta`).

CUDA is used when present (pinned memory, loader worker processes; the train stage passes the
GPU it claimed, :mod:`headpose.training.gpus`); otherwise the CPU, where runs are deterministic
for a fixed ``train_seed`` (the model's seed; ``seed`` is the data's and training does not read
it). The loader hands over whole batches of cached regions; their random crops, flips and blurs
are made on the training device (:mod:`headpose.crops.training_batches`). The step's numerics
(``precision``: bfloat16 or float16 autocast, channels-last, ``compile``) come from
:mod:`headpose.training.precision`, and the loss is summed on the device and read once an epoch,
so under bfloat16 or float32 the host does not wait for the GPU within an epoch (float16's loss
scaler reads its overflow flag every step).

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dvclive import Live
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from headpose.crops.framing import FRAMING_KEYS, FramingAugmentation
from headpose.crops.pipeline import PoseDataset, evaluation_dataset, training_dataset
from headpose.crops.protocols import CropProtocol, protocol_from_params
from headpose.crops.training_batches import RegionBatch, TrainingRegions, training_images
from headpose.datasets.registry import Sample, read_samples
from headpose.errors import HeadposeError
from headpose.evaluation.metrics import MAE_KEYS, absolute_errors_deg, error_sums, mae_from_sums
from headpose.geometry import ANGLE_NAMES
from headpose.inference.batches import predict_angles
from headpose.inference.runtime import torch_angle_function
from headpose.io.parallel import worker_count
from headpose.models.checkpoints import save_checkpoint
from headpose.models.heads import HEADS, Head, head_from_params
from headpose.models.keys import validate_model_params
from headpose.models.network import AnglesModel, HeadPoseNet, build_model
from headpose.models.registry import Normalization, get_arch
from headpose.params import Params
from headpose.training.distributed import SINGLE_PROCESS, Rank, process_group, sum_over_ranks
from headpose.training.memory import (
    PeakPrivateMemory,
    check_training_step_fits,
    memory_errors_named,
)
from headpose.training.precision import Precision, check_compiler, choose_precision
from headpose.training.resume import RunState, load_resume, run_fingerprint, save_resume

HEAD_LR_FACTOR = 5.0  # phase 1: heads learn 5x faster than the backbone (original HopeNet)
LOSS_SHOWN_EVERY = 50  # steps between progress-bar loss updates (each waits for the device)


@dataclass(frozen=True)
class TrainPaths:
    """Where training reads and writes (the train stage's command line in dvc.yaml names them)."""

    train_list: Path
    val_list: Path
    models_dir: Path
    resume_file: Path
    live_dir: Path


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one optimizer: ``first_epoch`` .. ``first_epoch + epochs - 1``."""

    name: str  # "frozen_stem" or "finetune"
    first_epoch: int  # 1-based over the whole run
    epochs: int
    lr: float


def phases(epochs: int, lr: float, finetune_epochs: int, finetune_lr: float) -> list[Phase]:
    """The run's phases: phase 1, then phase 2 when ``finetune_epochs`` > 0."""
    plan = [Phase("frozen_stem", 1, epochs, lr)]
    if finetune_epochs > 0:
        plan.append(Phase("finetune", epochs + 1, finetune_epochs, finetune_lr))
    return plan


@dataclass(frozen=True)
class LRSchedule:
    """The per-epoch learning-rate schedule: ``exponential`` (``decay`` per epoch) or ``step``
    (``step_gamma`` at each epoch of ``steps``)."""

    kind: str
    decay: float
    steps: tuple[int, ...]
    step_gamma: float


@dataclass(frozen=True)
class LoaderSettings:
    """What the data loaders use: the global batch, the sampler's seed and the loader processes
    on CUDA."""

    batch_size: int
    train_seed: int
    workers: int


def model_keys() -> tuple[str, ...]:
    """The params.yaml keys the model code reads (as a mapping): ``arch``, ``head`` and the keys
    every registered head declares (:attr:`~headpose.models.heads.Head.params_defaults`)."""
    heads = dict.fromkeys(key for cls in HEADS.values() for key in cls.params_defaults)
    return ("arch", "head", *heads)


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run takes from ``params.yaml``, built once by :meth:`from_params`
    (the one place training reads params): the model's keys checked by the models and turned
    into a :class:`~headpose.models.heads.Head`, the framing augmentation, the loaders, the two
    phases and their schedule, the step's numerics, and ``record``, the whole file as the run's
    record (the checkpoints' ``params``, hashed into the run fingerprint)."""

    arch: str
    pretrained: str
    head: Head
    image_size: int
    crop_protocol: CropProtocol
    framing: FramingAugmentation
    loader: LoaderSettings
    train_seed: int
    epochs: int
    lr: float
    finetune_epochs: int
    finetune_lr: float
    schedule: LRSchedule
    precision: str
    compile: bool
    record: dict[str, Any]

    @classmethod
    def from_params(cls, params: Params) -> TrainSettings:
        """The settings of validated ``params``; the model keys are checked against the models
        (:func:`~headpose.models.keys.validate_model_params`) first."""
        model = validate_model_params(params.as_dict(model_keys()))
        return cls(
            arch=params.arch,
            pretrained=params.pretrained,
            head=head_from_params(model),
            image_size=params.image_size,
            crop_protocol=protocol_from_params(params.crop_protocol),
            framing=FramingAugmentation.from_params(params.as_dict(FRAMING_KEYS)),
            loader=LoaderSettings(params.batch_size, params.train_seed, params.workers),
            train_seed=params.train_seed,
            epochs=params.epochs,
            lr=params.lr,
            finetune_epochs=params.finetune_epochs,
            finetune_lr=params.finetune_lr,
            schedule=LRSchedule(
                params.lr_schedule, params.lr_decay, params.lr_steps, params.lr_step_gamma
            ),
            precision=params.precision,
            compile=params.compile,
            record=params.record(),
        )

    def phases(self) -> list[Phase]:
        """The run's phases (:func:`phases`)."""
        return phases(self.epochs, self.lr, self.finetune_epochs, self.finetune_lr)


# --- Reproducibility ----------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation draws from torch)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_loader_worker(worker_id: int) -> None:
    """DataLoader workers: one thread each (the items carry their own seeded generators)."""
    torch.set_num_threads(1)


# --- Model, optimizer and schedule --------------------------------------------------------------


def _stem_modules(model: HeadPoseNet) -> list[nn.Module]:
    return [model.backbone.get_submodule(name) for name in model.stem_names]


def set_stem_frozen(model: HeadPoseNet, frozen: bool) -> None:
    """Freeze (or release) the stem's parameters."""
    for parameter in model.parameter_groups()["stem"]:
        parameter.requires_grad_(not frozen)


def set_train_mode(model: HeadPoseNet, stem_frozen: bool) -> None:
    """Training mode, keeping the frozen stem's BatchNorm statistics fixed (eval mode)."""
    model.train()
    if stem_frozen:
        for module in _stem_modules(model):
            module.eval()


def make_optimizer(model: HeadPoseNet, phase: Phase) -> torch.optim.Optimizer:
    """Adam for one phase: backbone at its lr and heads at 5x (phase 1), or everything at it."""
    groups = model.parameter_groups()
    if phase.name == "frozen_stem":
        param_groups = [
            {"params": groups["backbone"], "lr": phase.lr},
            {"params": groups["heads"], "lr": phase.lr * HEAD_LR_FACTOR},
        ]
    else:
        everything = groups["stem"] + groups["backbone"] + groups["heads"]
        param_groups = [{"params": everything, "lr": phase.lr}]
    return torch.optim.Adam(param_groups)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LRSchedule
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch LR ``schedule`` (stepped once after every epoch of a phase)."""
    if schedule.kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=schedule.decay)
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(schedule.steps), gamma=schedule.step_gamma
    )


# --- One epoch and its validation ---------------------------------------------------------------


InputMaker = Callable[[RegionBatch], tuple[torch.Tensor, torch.Tensor]]


def input_maker(
    image_size: int,
    protocol: CropProtocol,
    normalization: Normalization,
    device: torch.device,
    precision: Precision,
) -> InputMaker:
    """What turns a loader batch into ``(model input, angles_deg)`` on ``device``."""
    return partial(
        training_images,
        image_size=image_size,
        protocol=protocol,
        device=device,
        normalization=normalization,
        channels_last=precision.channels_last,
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    head: Head,
    make_inputs: InputMaker,
    precision: Precision,
    description: str,
    show_progress: bool = True,
) -> float:
    """One pass over ``loader``; returns the mean loss per batch.

    The losses are summed on the device; the host reads them at the end (and every
    :data:`LOSS_SHOWN_EVERY` steps for the progress bar), so it queues steps without waiting.
    """
    total, steps = None, 0
    bar = tqdm(loader, desc=description, unit="batch", leave=False, disable=not show_progress)
    for batch in bar:
        images, angles_deg = make_inputs(batch)
        with precision.autocast():
            outputs = model(images)
        loss = head.loss(outputs, angles_deg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total = loss.detach().double() + (0.0 if total is None else total)
        steps += 1
        if show_progress and steps % LOSS_SHOWN_EVERY == 0:
            bar.set_postfix(loss=f"{float(total) / steps:.3f}")
    if not steps:
        raise HeadposeError(f"{description}: the training loader gave no batch")
    return float(total) / steps


def validation_mae(
    model: HeadPoseNet,
    loader: DataLoader,
    normalization: Normalization,
    rank: Rank = SINGLE_PROCESS,
) -> dict[str, float]:
    """Validation MAE per angle and their mean (degrees) through the evaluation's inference path,
    over the samples of all ranks (each predicts its own share of the validation set)."""
    model.eval()
    predict = torch_angle_function(AnglesModel(model), autocast=True)
    predicted, true = predict_angles(predict, loader, normalization, "validate", rank.device)
    sums = torch.from_numpy(error_sums(absolute_errors_deg(predicted, true)))
    mae = mae_from_sums(sum_over_ranks(sums, rank).numpy())
    return {f"mae_{name}": mae[name] for name in (*ANGLE_NAMES, "mean")}


# --- Data loading -------------------------------------------------------------------------------


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


# --- Run state and resume checkpoints -----------------------------------------------------------


# --- The whole run ------------------------------------------------------------------------------


def checkpoint_meta(
    settings: TrainSettings,
    training_mean_deg: np.ndarray,
    fingerprint: str,
    precision: Precision,
) -> dict:
    """What is stored beside the weights: what evaluation and prediction need to use them, the
    training-set mean angles (the evaluation's baseline), the params (the run's record), the run
    fingerprint and the precision the training step ran in."""
    return {
        "arch": settings.arch,
        **settings.head.meta(),
        "image_size": settings.image_size,
        "crop_protocol": settings.crop_protocol.name,
        **get_arch(settings.arch).normalization.meta(),
        "training_mean_deg": [float(angle) for angle in training_mean_deg],
        "params": settings.record,
        "fingerprint": fingerprint,
        "training_precision": precision.name,
    }


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
        scheduler = make_scheduler(optimizer, self.settings.schedule)
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
            )
            loss = sum_over_ranks(torch.tensor(rank_loss), self.rank).item() / self.rank.world_size
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
        final = self.state.history[-1]
        save_checkpoint(
            self.paths.models_dir / "model.pt",
            self.model,
            {**meta, "epoch": final["epoch"], "val_mae_mean": final["mae_mean"]},
        )
        best_model = build_model(self.settings.arch, self.settings.head)
        best_model.load_state_dict(self.state.best_state_dict)
        save_checkpoint(
            self.paths.models_dir / "best.pt",
            best_model,
            {**meta, "epoch": self.state.best_epoch, "val_mae_mean": self.state.best_mae_mean},
        )

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
