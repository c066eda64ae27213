"""Loading a model for use: a ``.pt`` checkpoint or an exported ``.onnx`` file as a runtime.

:func:`load_model` is the one way a trained model is loaded to predict with it (the Python API
:mod:`headpose.app.api`, ``headpose predict``, ``headpose evaluate --framing-sweep`` and
``headpose benchmark``): it returns a :class:`LoadedModel`, the model as an
:data:`~headpose.inference.runtime.AngleFunction` (normalised crops to degrees) with its
:class:`~headpose.inference.metadata.ModelDescription` (input side, normalisation, crop protocol,
head, fingerprint) and where it runs.

The runtime is chosen as the command line chooses it: ``auto`` runs an ``.onnx`` file in ONNX
Runtime and a checkpoint in PyTorch; ``onnx`` on a checkpoint exports it (fp32, with its
metadata) and runs the export. PyTorch runs on ``device`` (default: CUDA when available, else the
CPU), ONNX Runtime on the CPU. A checkpoint describes itself through its meta, an ONNX file
through the metadata the export wrote (:mod:`headpose.inference.metadata`); one exported elsewhere
needs its values given.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from headpose.deploy.export import export_onnx
from headpose.errors import HeadposeError
from headpose.inference.metadata import ModelDescription, describe, read_onnx_metadata
from headpose.inference.runtime import (
    AngleFunction,
    onnx_angle_function,
    onnx_session,
    torch_angle_function,
)
from headpose.io.files import file_problem
from headpose.models.network import AnglesModel, load_angles_model, pick_device

RUNTIMES = ("auto", "torch", "onnx")


@dataclass
class LoadedModel:
    """A model ready to predict: ``predict`` maps a normalised ``(N, 3, S, S)`` batch on
    ``device`` to ``(N, 3)`` yaw, pitch, roll degrees; ``description`` says how to feed it.
    ``model`` and ``meta`` are the PyTorch model and checkpoint meta (None for an .onnx file)."""

    path: Path
    predict: AngleFunction
    description: ModelDescription
    runtime: str  # "torch" or "onnx"
    runs_on: str  # for reports: the device, or "onnxruntime ..."
    device: torch.device  # where its inputs are made
    model: AnglesModel | None = None
    meta: dict | None = None


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

    ``crop_protocol`` replaces the one the model records; ``mean`` and ``std`` must agree with
    recorded ones and are needed for an ``.onnx`` exported elsewhere (as is ``crop_protocol``,
    and ``image_size`` when its input side is not fixed); ``image_size`` sets a checkpoint's
    input side (default: the one it was trained at).
    """
    file = Path(path)
    problem = file_problem(file)
    if problem:
        raise HeadposeError(f"model {file} {problem}")
    if runtime not in RUNTIMES:
        raise HeadposeError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    is_onnx = file.suffix.lower() == ".onnx"
    if runtime == "auto":
        runtime = "onnx" if is_onnx else "torch"
    explicit = {"mean": mean, "std": std, "crop_protocol": crop_protocol}
    if is_onnx:
        if runtime != "onnx":
            raise HeadposeError(f"{file} is an ONNX model: it runs in the onnx runtime")
        return _load_onnx(file, image_size=image_size, **explicit)
    torch_device = pick_device(None if device is None else str(device))
    model, meta = load_angles_model(file, device=torch_device if runtime == "torch" else "cpu")
    recorded = ModelDescription.from_meta(meta).values()
    if image_size is not None:
        recorded["image_size"] = image_size  # a checkpoint's network takes any input side
    description = describe(recorded, f"checkpoint {file}", **explicit)
    if runtime == "torch":
        function = torch_angle_function(model)
        return LoadedModel(
            file, function, description, "torch", str(torch_device), torch_device, model, meta
        )
    with tempfile.TemporaryDirectory() as work:
        export_onnx(model, Path(work) / "model.onnx", description)
        session = onnx_session(Path(work) / "model.onnx", allow_spinning=False)
    cpu = torch.device("cpu")
    function = onnx_angle_function(session)
    runs_on = "onnxruntime (fp32 export)"
    return LoadedModel(file, function, description, "onnx", runs_on, cpu, model, meta)


def _load_onnx(
    file: Path,
    *,
    image_size: int | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    crop_protocol: str | None,
) -> LoadedModel:
    session = onnx_session(file, allow_spinning=False)
    props = dict(session.get_modelmeta().custom_metadata_map)
    recorded = read_onnx_metadata(props, str(file))
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
        shapes = [item.shape for item in inputs]
        raise HeadposeError(f"{file}: expected one input of shape (N, 3, S, S), got {shapes}")
    height, width = inputs[0].shape[2:]
    fixed = isinstance(height, int) and height == width
    if isinstance(height, int) and isinstance(width, int) and height != width:
        raise HeadposeError(f"{file}: expected a square input (N, 3, S, S), got {inputs[0].shape}")
    last = outputs[0].shape[-1] if outputs and outputs[0].shape else None
    if last not in (3, None) and not isinstance(last, str):
        raise HeadposeError(
            f"{file}: its first output has shape {outputs[0].shape}; expected (N, 3) angles"
        )
    if fixed and image_size is not None and image_size != height:
        raise HeadposeError(
            f"{file} takes {height} px inputs; image size {image_size} (--image-size) applies "
            "to checkpoints only"
        )
    description = describe(
        recorded,
        str(file),
        image_size=image_size,
        mean=mean,
        std=std,
        crop_protocol=crop_protocol,
        input_side=height if fixed else None,
    )
    runs_on = f"onnxruntime ({description.precision})"
    return LoadedModel(
        file, onnx_angle_function(session), description, "onnx", runs_on, torch.device("cpu")
    )
