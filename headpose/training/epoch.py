"""One training epoch and one validation pass.

The loss is the ``head``'s (its :meth:`~headpose.models.heads.Head.loss`): for ``bins``, per
angle, cross-entropy over the bins + ``alpha`` x MSE between the softmax expectation (bin centres,
or lower edges with ``expectation: lower_edges``) and the true angle; for ``rotation_6d``, the
geodesic distance between the predicted rotation matrix and the label's. The loader hands over
whole batches of cached regions; their random crops, flips and blurs are made on the training
device (:mod:`headpose.crops.training_batches`). The loss is summed on the device and read once an
epoch, so under bfloat16 or float32 the host does not wait for the GPU within an epoch (float16's
loss scaler reads its overflow flag every step). Validation scores the model through the
evaluation's inference path and metrics (:mod:`headpose.evaluation`: fixed evaluation crop, MAE
per angle), summed over all processes under torchrun.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from headpose.crops.protocols import CropProtocol
from headpose.crops.training_batches import RegionBatch, training_images
from headpose.errors import HeadposeError
from headpose.evaluation.metrics import absolute_errors_deg, error_sums, mae_from_sums
from headpose.geometry import ANGLE_NAMES
from headpose.inference.batches import predict_angles
from headpose.inference.runtime import torch_angle_function
from headpose.models.heads import Head
from headpose.models.network import AnglesModel, HeadPoseNet
from headpose.models.registry import Normalization
from headpose.training.distributed import SINGLE_PROCESS, Rank, sum_over_ranks
from headpose.training.precision import Precision

LOSS_SHOWN_EVERY = 50  # steps between progress-bar loss updates (each waits for the device)


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
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One pass over ``loader``; returns the mean loss per batch. A ``scheduler`` given is
    stepped after every optimizer step (a per-step schedule, ``onecycle``).

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
        if scheduler is not None:
            scheduler.step()
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
