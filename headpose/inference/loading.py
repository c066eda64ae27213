"""Reading a model file to predict with: the one loader of ``.pt`` checkpoints and ``.onnx`` files.

:func:`read_model` is how every user of a trained model loads it: the evaluation (the evaluate
stage and ``headpose evaluate``'s table), and through :func:`headpose.deploy.loading.load_model`
(which adds the choice to run a checkpoint in ONNX Runtime) the Python API, ``headpose
predict``, ``headpose evaluate --framing-sweep`` and ``headpose benchmark``. It returns a
:class:`LoadedModel`: the model as an :data:`~headpose.inference.runtime.AngleFunction`
(normalised crops to degrees) with its :class:`~headpose.inference.metadata.ModelDescription`
(input side, normalisation, crop protocol, head, fingerprint) and where it runs.

A checkpoint (ours or an original HopeNet snapshot) runs in PyTorch on ``device`` (default: CUDA
when available, else the CPU), fused for inference when its backbone can be; it describes itself
through its meta, and ``head`` may read its outputs with other options of its own head (a bins
head's expectation mode). An ``.onnx`` file (fp32 or int8) runs in ONNX Runtime on the CPU and
describes itself through the metadata the export wrote (:mod:`headpose.inference.metadata`); one
exported elsewhere needs its values given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from headpose.errors import HeadposeError
from headpose.inference.metadata import ModelDescription, describe, read_onnx_metadata
from headpose.inference.runtime import (
    AngleFunction,
    onnx_angle_function,
    onnx_session,
    torch_angle_function,
)
from headpose.io.files import file_problem
from headpose.models.heads import Head
from headpose.models.network import AnglesModel, load_angles_model, pick_device


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


def is_onnx_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an exported ONNX model (else a checkpoint)."""
    return Path(path).suffix.lower() == ".onnx"


def check_model_file(path: str | os.PathLike) -> None:
    """Refuse a model file that is missing or unreadable, naming it as a model or a checkpoint."""
    problem = file_problem(Path(path))
    if problem:
        raise HeadposeError(f"{'model' if is_onnx_file(path) else 'checkpoint'} {path} {problem}")


def read_model(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    *,
    head: Head | None = None,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    crop_protocol: str | None = None,
) -> LoadedModel:
    """Load a ``.pt`` checkpoint (ours or an original HopeNet snapshot; PyTorch on ``device``) or
    an ``.onnx`` file (fp32 or int8; ONNX Runtime on the CPU) to predict with.

    ``head`` (checkpoints only) reads the outputs instead of the checkpoint's own head: the same
    head up to its options. ``crop_protocol`` replaces the one the model records; ``mean`` and
    ``std`` must agree with recorded ones and are needed for an ``.onnx`` exported elsewhere (as
    is ``crop_protocol``, and ``image_size`` when its input side is not fixed); ``image_size``
    sets a checkpoint's input side (default: the one it was trained at).
    """
    file = Path(path)
    check_model_file(file)
    explicit = {"mean": mean, "std": std, "crop_protocol": crop_protocol}
    if is_onnx_file(file):
        if head is not None:
            raise HeadposeError(
                f"{file}: an ONNX model computes its head's angles in its graph; another head "
                "(or head option) applies to checkpoints only"
            )
        return _read_onnx(file, image_size=image_size, **explicit)
    torch_device = pick_device(None if device is None else str(device))
    model, meta = load_angles_model(file, device=torch_device, head=head)
    recorded = ModelDescription.from_meta(meta).values()
    recorded["head"] = model.head.meta()  # the head it is read with
    if image_size is not None:
        recorded["image_size"] = image_size  # a checkpoint's network takes any input side
    description = describe(recorded, f"checkpoint {file}", **explicit)
    function = torch_angle_function(model)
    return LoadedModel(
        file, function, description, "torch", str(torch_device), torch_device, model, meta
    )


def _read_onnx(
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
