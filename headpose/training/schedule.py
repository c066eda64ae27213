"""The optimiser and learning-rate schedule of a run: its two phases, which parameters each
trains, the Adam optimiser of a phase and its per-epoch LR scheduler.

The recipe (``params.yaml`` keys in brackets):

* phase 1 (``epochs``): Adam at ``lr``, the stem (conv1/bn1) frozen (no gradients, BN statistics
  fixed) and the three heads at 5x ``lr``, as in the original; phase 2 (``finetune_epochs``,
  0 = the one-phase original): everything trainable at ``finetune_lr``;
* one optimizer and one LR scheduler per phase: ``lr_schedule: exponential`` multiplies the rates
  by ``lr_decay`` after every epoch, ``step`` by ``lr_step_gamma`` at the epochs in ``lr_steps``
  (counted from the start of each phase).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from headpose.models.network import HeadPoseNet

HEAD_LR_FACTOR = 5.0  # phase 1: heads learn 5x faster than the backbone (original HopeNet)


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
