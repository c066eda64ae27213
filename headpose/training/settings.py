"""What a training run takes from ``params.yaml`` (:class:`TrainSettings`, the one place training
reads params) and where it reads and writes (:class:`TrainPaths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headpose.crops.framing import FRAMING_KEYS, FramingAugmentation
from headpose.crops.protocols import CropProtocol, protocol_from_params
from headpose.models.heads import HEADS, Head, head_from_params
from headpose.models.keys import validate_model_params
from headpose.params import Params
from headpose.training.schedule import LRSchedule, Phase, phases


@dataclass(frozen=True)
class TrainPaths:
    """Where training reads and writes (the train stage's command line in dvc.yaml names them)."""

    train_list: Path
    val_list: Path
    models_dir: Path
    resume_file: Path
    live_dir: Path


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
    weight_decay: float
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
            weight_decay=params.weight_decay,
            schedule=LRSchedule(
                params.lr_schedule,
                params.lr_decay,
                params.lr_steps,
                params.lr_step_gamma,
                params.lr_warmup,
            ),
            precision=params.precision,
            compile=params.compile,
            record=params.record(),
        )

    def phases(self) -> list[Phase]:
        """The run's phases (:func:`phases`)."""
        return phases(
            self.epochs, self.lr, self.finetune_epochs, self.finetune_lr, self.weight_decay
        )
