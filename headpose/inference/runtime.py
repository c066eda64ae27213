"""Runtimes: a model as a function from normalised crops to degrees.

A PyTorch :class:`headpose.models.network.AnglesModel` and its exported ONNX files (fp32 and
int8) map a ``(N, 3, S, S)`` batch of normalised crops straight to ``(N, 3)`` angles in degrees.
Every runtime is wrapped as an :data:`AngleFunction` (a normalised float batch to a numpy
``(N, 3)`` array of yaw, pitch, roll degrees), so prediction, evaluation and the benchmark treat
PyTorch, ONNX Runtime fp32 and int8 models alike (:mod:`headpose.inference.timing` times them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headpose.errors import HeadposeError
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
