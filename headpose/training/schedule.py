"""The optimiser and learning-rate schedule of a run: its two phases, which parameters each
trains, the Adam optimiser of a phase and its per-epoch LR scheduler.

The recipe (``params.yaml`` keys in brackets):

* phase 1 (``epochs``): Adam at ``lr``, the stem (conv1/bn1) frozen (no gradients, BN statistics
  fixed) and the three heads at 5x ``lr``, as in the original; phase 2 (``finetune_epochs``,
  0 = the one-phase original): everything trainable at ``finetune_lr``;
* ``weight_decay``: Adam's decoupled weight decay (AdamW: the weights shrink by ``lr x
  weight_decay`` a step, apart from the gradient's moments) on the weights of convolutions and
  linear layers, never on biases or normalisation parameters; 0 (the default and the published
  recipe) is plain Adam;
* one optimizer and one LR scheduler per phase: ``lr_schedule: exponential`` multiplies the rates
  by ``lr_decay`` after every epoch, ``step`` by ``lr_step_gamma`` at the epochs in ``lr_steps``
  (counted from the start of each phase); ``onecycle`` changes them after every optimizer step:
  from 1/25 of each group's rate up to it over the first ``lr_warmup`` share of the phase's
  steps, then down to 1/10,000 of the start, both halves along a cosine (the rates of PyTorch's
  ``OneCycleLR``; Adam's betas left as they are; :func:`one_cycle_factor`).
"""

from __future__ import annotations

import math
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
    weight_decay: float = 0.0


def phases(
    epochs: int, lr: float, finetune_epochs: int, finetune_lr: float, weight_decay: float = 0.0
) -> list[Phase]:
    """The run's phases: phase 1, then phase 2 when ``finetune_epochs`` > 0."""
    plan = [Phase("frozen_stem", 1, epochs, lr, weight_decay)]
    if finetune_epochs > 0:
        plan.append(Phase("finetune", epochs + 1, finetune_epochs, finetune_lr, weight_decay))
    return plan


@dataclass(frozen=True)
class LRSchedule:
    """The learning-rate schedule: ``exponential`` (``decay`` per epoch), ``step`` (``step_gamma``
    at each epoch of ``steps``) or ``onecycle`` (per optimizer step, ``warmup`` the rising share).
    """

    kind: str
    decay: float
    steps: tuple[int, ...]
    step_gamma: float
    warmup: float

    @property
    def per_step(self) -> bool:
        """Whether the rates change after every optimizer step rather than every epoch."""
        return self.kind == "onecycle"


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


FUSED_ADAM_DEVICES = ("cpu", "cuda")  # where PyTorch has the fused Adam kernel


def make_optimizer(model: HeadPoseNet, phase: Phase) -> torch.optim.Optimizer:
    """Adam for one phase: backbone at its lr and heads at 5x (phase 1), or everything at it;
    each of those groups split in two, its weights (decayed by ``phase.weight_decay``) and its
    biases and normalisation parameters (never decayed). Fused (one kernel over all parameters)
    on the devices of :data:`FUSED_ADAM_DEVICES`: the same update as the per-parameter loop
    PyTorch uses by default on the CPU, about a fifth of its time there
    (``scripts/benchmark_training.py``'s ``optimiser`` part)."""
    groups = model.parameter_groups()
    if phase.name == "frozen_stem":
        by_rate = [(groups["backbone"], phase.lr), (groups["heads"], phase.lr * HEAD_LR_FACTOR)]
    else:
        by_rate = [(groups["stem"] + groups["backbone"] + groups["heads"], phase.lr)]
    param_groups = []
    for parameters, lr in by_rate:
        weights = [p for p in parameters if p.ndim > 1]
        others = [p for p in parameters if p.ndim <= 1]
        param_groups += [
            {"params": weights, "lr": lr, "weight_decay": phase.weight_decay},
            {"params": others, "lr": lr, "weight_decay": 0.0},
        ]
    device = next(model.parameters()).device.type
    return torch.optim.Adam(
        [group for group in param_groups if group["params"]],
        decoupled_weight_decay=True,
        fused=device in FUSED_ADAM_DEVICES,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LRSchedule, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The LR ``schedule`` of a phase of ``steps`` optimizer steps: ``onecycle`` is stepped
    after every optimizer step, the others once after every epoch of the phase."""
    if schedule.kind == "onecycle":

        def factor(step: int) -> float:  # a function, not an object: not pickled with the state
            return one_cycle_factor(step, steps, schedule.warmup)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if schedule.kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=schedule.decay)
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(schedule.steps), gamma=schedule.step_gamma
    )


ONE_CYCLE_START = 1 / 25  # of the peak rate, at the first step
ONE_CYCLE_END = ONE_CYCLE_START / 1e4  # at the last step


def one_cycle_factor(step: int, steps: int, warmup: float) -> float:
    """The ``onecycle`` rate at optimizer ``step`` (0-based) of ``steps``, as a share of the
    peak: up from :data:`ONE_CYCLE_START` to 1 until step ``warmup * steps - 1``, then down to
    :data:`ONE_CYCLE_END` at the last step, each half along a cosine. A half of no steps (a
    phase of one or two steps) is skipped."""
    peak_step, last_step = warmup * steps - 1, steps - 1
    if peak_step > 0 and step <= peak_step:
        return _cosine(ONE_CYCLE_START, 1.0, step / peak_step)
    start = max(peak_step, 0.0)
    share = (step - start) / (last_step - start) if last_step > start else 1.0
    return _cosine(1.0, ONE_CYCLE_END, min(max(share, 0.0), 1.0))


def _cosine(start: float, end: float, share: float) -> float:
    """From ``start`` (share 0) to ``end`` (share 1) along half a cosine."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * share))
