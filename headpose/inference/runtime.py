"""Runtimes: a model as a function from normalised crops to degrees.

A PyTorch :class:`headpose.models.network.AnglesModel` and its exported ONNX files (fp32 and
int8) map a ``(N, 3, S, S)`` batch of normalised crops straight to ``(N, 3)`` angles in degrees.
Every runtime is wrapped as an :data:`AngleFunction` (a normalised float batch to a numpy
``(N, 3)`` array of yaw, pitch, roll degrees), so prediction, evaluation and the benchmark treat
PyTorch, ONNX Runtime fp32 and int8 models alike (:mod:`headpose.inference.timing` times them).
An ``.onnx`` file is run as its model card says (:func:`card_angle_function`: input layout and
channels, output kind, a fixed batch size), and several models may answer as one
(:func:`averaged_angle_function`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.inference.card import ModelCard, adapt_batch, decode_outputs
from headpose.io.files import file_problem

# A normalised (N, 3, S, S) float batch -> (N, 3) yaw, pitch, roll in degrees.
AngleFunction = Callable[[torch.Tensor], np.ndarray]


def finite_angles(angles_deg: np.ndarray) -> np.ndarray:
    """``angles_deg`` if every value is finite, else a HeadposeError: a model answering NaN
    (diverged or damaged weights, an overflow) must stop a report, not fill it with ``nan``."""
    angles = np.asarray(angles_deg, dtype=np.float64)
    bad = ~np.isfinite(angles).all(axis=-1) if angles.ndim > 1 else ~np.isfinite(angles)
    if bad.any():
        raise HeadposeError(
            f"the model's angles are not finite for {int(bad.sum())} of {len(angles)} inputs "
            "(NaN or infinite weights, or an overflow): its results cannot be used"
        )
    return angles


def torch_angle_function(model: nn.Module, autocast: bool = False) -> AngleFunction:
    """Run an :class:`~headpose.models.network.AnglesModel` (on the device its weights are on)
    without gradients; ``autocast``: in mixed precision on CUDA (as training validates)."""
    device = next(model.parameters()).device
    mixed = autocast and device.type == "cuda"

    def predict(images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            with torch.autocast(device_type=device.type, enabled=mixed):
                outputs = model.network(images.to(device, non_blocking=True))
            return model.head.angles_deg(outputs).float().cpu().numpy()

    return predict


def onnx_session(path: str | os.PathLike, threads: int | None = None, allow_spinning: bool = True):
    """An ONNX Runtime CPU session for ``path``; ``threads`` sets intra-op threads (None: ORT's).

    ``allow_spinning=False`` stops idle worker threads from busy-waiting after each run, which
    otherwise takes the CPU from other work between calls (the face detector, in prediction).
    """
    import onnxruntime

    file = Path(path)
    problem = file_problem(file)
    if problem:
        raise HeadposeError(f"ONNX model {file} {problem}")
    options = onnxruntime.SessionOptions()
    if not allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise HeadposeError(f"{file} is not a loadable ONNX model: {error}") from None


def onnx_angle_function(session) -> AngleFunction:
    """Run an exported angles model (one input, first output = (N, 3) degrees) in ONNX Runtime."""
    input_name = session.get_inputs()[0].name

    def predict(images: torch.Tensor) -> np.ndarray:
        batch = images.detach().cpu().numpy().astype(np.float32, copy=False)
        return session.run(None, {input_name: batch})[0]

    return predict


def card_angle_function(session, card: ModelCard, batch: int | None, model: str) -> AngleFunction:
    """Run an ONNX file as ``card`` says: the pipeline's normalised RGB NCHW batch made the
    file's input (:func:`headpose.inference.card.adapt_batch`), fed ``batch`` at a time when the
    graph fixes its batch size (the last chunk padded by repeating its last crop, the padding's
    answers dropped), and its outputs read as (N, 3) degrees
    (:func:`headpose.inference.card.decode_outputs`)."""
    input_name = session.get_inputs()[0].name
    wanted = 3 if card.output.kind == "bins" else 1
    output_names = [item.name for item in session.get_outputs()[:wanted]]

    def predict(images: torch.Tensor) -> np.ndarray:
        fed = adapt_batch(card.input, images.detach().cpu().numpy().astype(np.float32, copy=False))
        step = batch or max(len(fed), 1)
        answers = []
        for start in range(0, len(fed), step):
            chunk = fed[start : start + step]
            count = len(chunk)
            if batch and count < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
            outputs = session.run(output_names, {input_name: chunk})
            answers.append(decode_outputs(card.output, [out[:count] for out in outputs], model))
        return np.concatenate(answers) if answers else np.zeros((0, 3))

    return predict


def averaged_angle_function(functions: list[AngleFunction]) -> AngleFunction:
    """Several models as one: the mean of their (N, 3) degrees for the same batch."""

    def predict(images: torch.Tensor) -> np.ndarray:
        return np.mean([np.asarray(f(images), dtype=np.float64) for f in functions], axis=0)

    return predict
