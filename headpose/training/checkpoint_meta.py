"""What a training run stores beside the weights, and the two checkpoints it writes: ``model.pt``
(the final epoch's weights) and ``best.pt`` (the best validation epoch's).

The meta holds what evaluation and prediction need to use the weights (arch, head, image size,
crop protocol by name, normalisation), the training-set mean angles, the params (the run's
record), the run fingerprint and the precision the training step ran in; each checkpoint adds
its epoch and validation mean MAE. The files are written by
:func:`headpose.models.checkpoints.save_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headpose.models.checkpoints import save_checkpoint
from headpose.models.network import HeadPoseNet, build_model
from headpose.models.registry import get_arch
from headpose.training.precision import Precision
from headpose.training.resume import RunState
from headpose.training.settings import TrainSettings


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


def save_final_and_best(
    models_dir: Path, settings: TrainSettings, model: HeadPoseNet, state: RunState, meta: dict
) -> None:
    """``model.pt`` (``model``, the final weights) and ``best.pt`` (the best validation epoch's
    weights kept in ``state``) in ``models_dir``, each with ``meta``, its epoch and its
    validation mean MAE."""
    final = state.history[-1]
    save_checkpoint(
        models_dir / "model.pt",
        model,
        {**meta, "epoch": final["epoch"], "val_mae_mean": final["mae_mean"]},
    )
    best_model = build_model(settings.arch, settings.head)
    best_model.load_state_dict(state.best_state_dict)
    save_checkpoint(
        models_dir / "best.pt",
        best_model,
        {**meta, "epoch": state.best_epoch, "val_mae_mean": state.best_mae_mean},
    )
