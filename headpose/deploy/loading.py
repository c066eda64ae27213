"""Loading a model for use, with the runtime chosen: a ``.pt`` checkpoint or an ``.onnx`` file.

:func:`load_model` is how the Python API :mod:`headpose.app.api`, ``headpose predict``,
``headpose evaluate --framing-sweep`` and ``headpose benchmark`` load a trained model. Files are
read by the one loader below the evaluation, :func:`headpose.inference.loading.read_model`
(which the evaluate stage and ``headpose evaluate``'s table call directly); this module adds the
runtime choice as the command line makes it: ``auto`` runs an ``.onnx`` file in ONNX Runtime and
a checkpoint in PyTorch; ``onnx`` on a checkpoint exports it (fp32, with its metadata) and runs
the export. PyTorch runs on ``device`` (default: CUDA when available, else the CPU), ONNX Runtime
on the CPU.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from headpose.deploy.export import export_onnx
from headpose.errors import HeadposeError
from headpose.inference.loading import LoadedModel, check_model_file, is_onnx_file, read_model
from headpose.inference.runtime import onnx_angle_function, onnx_session
from headpose.models.network import pick_device

__all__ = ["RUNTIMES", "LoadedModel", "load_model"]

RUNTIMES = ("auto", "torch", "onnx")


def load_model(
    path: str | os.PathLike,
    runtime: str = "auto",
    device: str | torch.device | None = None,
    *,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    crop_protocol: str | None = None,
) -> LoadedModel:
    """Load a ``.pt`` checkpoint (ours or an original HopeNet snapshot) or an ``.onnx`` file
    (fp32 or int8) to predict with, in ``runtime`` (:data:`RUNTIMES`) on ``device``.

    ``crop_protocol``, ``mean``, ``std`` and ``image_size`` are as in
    :func:`headpose.inference.loading.read_model`.
    """
    file = Path(path)
    check_model_file(file)
    if runtime not in RUNTIMES:
        raise HeadposeError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    values = {"image_size": image_size, "mean": mean, "std": std, "crop_protocol": crop_protocol}
    if is_onnx_file(file):
        if runtime == "torch":
            raise HeadposeError(f"{file} is an ONNX model: it runs in the onnx runtime")
        return read_model(file, **values)
    if runtime != "onnx":
        return read_model(file, device, **values)
    pick_device(None if device is None else str(device))  # a device asked for must exist
    checkpoint = read_model(file, "cpu", **values)
    with tempfile.TemporaryDirectory() as work:
        export_onnx(checkpoint.model, Path(work) / "model.onnx", checkpoint.description)
        session = onnx_session(Path(work) / "model.onnx", allow_spinning=False)
    return dataclasses.replace(
        checkpoint,
        predict=onnx_angle_function(session),
        runtime="onnx",
        runs_on="onnxruntime (fp32 export)",
        device=torch.device("cpu"),
    )
