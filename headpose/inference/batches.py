"""Predictions of any runtime over batches of uint8 crops and their labels, in order."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from headpose.data.pipeline import model_input
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
    device = device or torch.device("cpu")
    predictions, truths = [], []
    for images, angles_deg in tqdm(batches, desc=description, unit="batch", leave=False):
        predictions.append(finite_angles(predict(model_input(images, device, normalization))))
        truths.append(angles_deg.numpy().astype(np.float64))
    return np.concatenate(predictions), np.concatenate(truths)
