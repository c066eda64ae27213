"""Predictions of any runtime over uint8 crops: batches of crops and their labels, in order
(:func:`predict_angles`, evaluation), and one array of crops (:func:`crop_angles`, prediction);
both normalise through :func:`headpose.crops.pipeline.model_input`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from headpose.crops.pipeline import model_input
from headpose.inference.runtime import AngleFunction, finite_angles
from headpose.models.registry import Normalization


def predict_angles(
    predict: AngleFunction,
    batches: Iterable,
    normalization: Normalization,
    description: str = "evaluate",
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) (N, 3) yaw, pitch, roll degrees (float64) over ``(images uint8,
    angles_deg)`` batches, in order, with any runtime: PyTorch, ONNX Runtime fp32 or int8.
    Images are normalised by the model's ``normalization`` on ``device`` (the model's; default
    the CPU)."""
    predictions, truths = [], []
    for images, angles_deg in tqdm(batches, desc=description, unit="batch", leave=False):
        predictions.append(crop_angles(predict, images, normalization, device))
        truths.append(angles_deg.numpy().astype(np.float64))
    return np.concatenate(predictions), np.concatenate(truths)


def crop_angles(
    predict: AngleFunction,
    crops: torch.Tensor | np.ndarray,
    normalization: Normalization,
    device: torch.device | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """(N, 3) yaw, pitch, roll degrees (float64, finite) of uint8 RGB crops ``(N, S, S, 3)``,
    normalised by ``normalization`` on ``device`` (default the CPU), ``batch_size`` crops per
    model call (None: all at once)."""
    device = device or torch.device("cpu")
    images = (
        torch.from_numpy(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
    )
    if len(images) == 0:
        return np.zeros((0, 3))
    step = batch_size or len(images)
    return np.concatenate(
        [
            finite_angles(predict(model_input(images[start : start + step], device, normalization)))
            for start in range(0, len(images), step)
        ]
    )
