"""Running a trained model: normalised face crops in, (yaw, pitch, roll) degrees out.

:class:`AnglesModel` puts the soft-argmax expectation
(:meth:`headpose.models.bins.Bins.expectation_deg`)
inside the network, so a model maps a ``(N, 3, S, S)`` batch straight to ``(N, 3)`` angles in
degrees. The exported ONNX/TorchScript files are this module, which makes them usable without
any of our code.

Every runtime is wrapped as an :data:`AngleFunction` (a normalised float batch to a numpy
``(N, 3)`` array of yaw, pitch, roll degrees), so prediction, evaluation and the benchmark treat
PyTorch, ONNX Runtime fp32 and int8 models alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.models.bins import Bins
from headpose.models.network import load_checkpoint

# A normalised (N, 3, S, S) float batch -> (N, 3) yaw, pitch, roll in degrees.
AngleFunction = Callable[[torch.Tensor], np.ndarray]


class AnglesModel(nn.Module):
    """A head-pose network followed by the expectation over its bins: outputs degrees."""

    def __init__(self, network: nn.Module, bin_width: int, expectation: str) -> None:
        super().__init__()
        self.network = network
        self.bins = Bins(int(bin_width))
        self.expectation = expectation

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.network(images)
        return torch.stack(
            [self.bins.expectation_deg(angle, self.expectation) for angle in logits], dim=1
        )


def load_angles_model(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[AnglesModel, dict]:
    """An eval-mode :class:`AnglesModel` from a checkpoint, with the checkpoint's meta."""
    network, meta = load_checkpoint(checkpoint, device=device)
    model = AnglesModel(network, meta["bin_width"], meta["expectation"])
    return model.to(device).eval(), meta


def torch_angle_function(model: nn.Module) -> AngleFunction:
    """Run an :class:`AnglesModel` (on the device its weights are on) without gradients."""
    device = next(model.parameters()).device

    def predict(images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(images.to(device)).float().cpu().numpy()

    return predict


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path``; ``threads`` sets intra-op threads (None: ORT's)."""
    import onnxruntime

    file = Path(path)
    if not file.is_file():
        raise HeadposeError(f"ONNX model {file} does not exist")
    options = onnxruntime.SessionOptions()
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
