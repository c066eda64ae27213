"""Opening a model file to predict with: the one opener of ``.pt`` checkpoints, original HopeNet
``.pkl`` snapshots and ``.onnx`` files, with the runtime chosen.

:func:`open_model` is how every user of a trained model opens it: the Python API
(:func:`headpose.app.api.load`), ``headpose predict``, the evaluation (the evaluate stage,
``headpose evaluate`` and ``headpose sweep``), ``headpose benchmark`` and the export (the export
stage, ``headpose export``). It returns a :class:`LoadedModel`: the model as an
:data:`~headpose.inference.runtime.AngleFunction` (normalised crops to degrees) with its
:class:`~headpose.inference.metadata.ModelDescription` (input side, normalisation, crop
protocol, head, fingerprint) and where it runs.

The runtime (:data:`RUNTIMES`): ``auto`` runs an ``.onnx`` file (fp32 or int8) in ONNX Runtime
and a checkpoint in PyTorch; ``torch`` runs a checkpoint in PyTorch on ``device`` (default: CUDA
when available, else the CPU), fused for inference when its backbone can be; ``onnx`` on a
checkpoint exports it to a temporary fp32 ONNX file
(:func:`headpose.inference.onnx_export.export_onnx`) and runs that. ONNX Runtime runs on the
CPU. A checkpoint describes itself through its meta; an ``.onnx`` file through the metadata its
export wrote (:mod:`headpose.inference.metadata`), and one exported elsewhere needs its values
given.

The file is checked once, where it is read: a checkpoint by
:func:`headpose.models.checkpoints.read_checkpoint` (``torch.load(..., weights_only=True)``), an
``.onnx`` file by :func:`headpose.inference.runtime.onnx_session`. A bad file (missing, a folder,
a FIFO, truncated, a pickle of Python objects, a meta that contradicts its weights) is one
HeadposeError line naming it. From ``headpose.load`` a checkpoint is three calls from
``torch.load``: ``load`` -> :func:`open_model` -> ``read_checkpoint`` -> ``torch.load``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from headpose.crops.protocols import CropProtocol
from headpose.errors import HeadposeError
from headpose.inference.metadata import (
    ModelDescription,
    checkpoint_values,
    describe,
    read_onnx_metadata,
)
from headpose.inference.onnx_export import export_onnx
from headpose.inference.runtime import (
    AngleFunction,
    onnx_angle_function,
    onnx_session,
    torch_angle_function,
)
from headpose.models.checkpoints import read_checkpoint
from headpose.models.heads import Head, check_same_head
from headpose.models.network import (
    AnglesModel,
    fused_for_inference,
    network_from_checkpoint,
    pick_device,
)

RUNTIMES = ("auto", "torch", "onnx")


@dataclass(frozen=True)
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

    def with_head(self, head: Head) -> LoadedModel:
        """The same checkpoint with its outputs read by ``head``: its own head up to the head's
        options (a bins head's expectation mode; :func:`headpose.models.heads.check_same_head`).
        Only a checkpoint run in PyTorch has outputs to read otherwise."""
        if self.model is None or self.runtime != "torch":
            raise HeadposeError(
                f"{self.path}: an ONNX model computes its head's angles in its graph; another "
                "head (or head option) applies to checkpoints run in PyTorch only"
            )
        check_same_head(head, self.model.network.head, f"checkpoint {self.path}")
        model = AnglesModel(self.model.network, head).eval()
        return dataclasses.replace(
            self,
            predict=torch_angle_function(model),
            description=dataclasses.replace(self.description, head=head.meta()),
            model=model,
        )


def is_onnx_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an exported ONNX model (else a checkpoint)."""
    return Path(path).suffix.lower() == ".onnx"


def open_model(
    path: str | os.PathLike,
    runtime: str = "auto",
    device: str | torch.device | None = None,
    *,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    crop_protocol: CropProtocol | None = None,
) -> LoadedModel:
    """Open a ``.pt`` checkpoint (ours or an original HopeNet snapshot) or an ``.onnx`` file
    (fp32 or int8) to predict with, in ``runtime`` (:data:`RUNTIMES`) on ``device``.

    ``crop_protocol`` replaces the one the model records; ``mean`` and ``std`` must agree with
    recorded ones and are needed for an ``.onnx`` exported elsewhere (as is ``crop_protocol``,
    and ``image_size`` when its input side is not fixed); ``image_size`` sets a checkpoint's
    input side (default: the one it was trained at).
    """
    file = Path(path)
    if runtime not in RUNTIMES:
        raise HeadposeError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    given = {"image_size": image_size, "mean": mean, "std": std, "crop_protocol": crop_protocol}
    if is_onnx_file(file):
        if runtime == "torch":
            raise HeadposeError(f"{file} is an ONNX model: it runs in the onnx runtime")
        return _open_onnx(file, **given)
    torch_device = pick_device(None if device is None else str(device))  # it must exist
    state_dict, meta = read_checkpoint(file)
    if runtime == "onnx":
        torch_device = torch.device("cpu")  # the export's source
    network = network_from_checkpoint(state_dict, meta, file).to(torch_device)
    model = AnglesModel(fused_for_inference(network).to(torch_device)).eval()
    recorded = checkpoint_values(meta)
    if image_size is not None:
        del recorded["image_size"]  # a checkpoint's network takes any input side
    description = describe(recorded, f"checkpoint {file}", **given)
    function = torch_angle_function(model)
    loaded = LoadedModel(
        file, function, description, "torch", str(torch_device), torch_device, model, meta
    )
    return _exported(loaded) if runtime == "onnx" else loaded


def _exported(checkpoint: LoadedModel) -> LoadedModel:
    """A checkpoint opened on the CPU, run as its fp32 ONNX export in ONNX Runtime."""
    with tempfile.TemporaryDirectory() as work:
        export_onnx(checkpoint.model, Path(work) / "model.onnx", checkpoint.description)
        session = onnx_session(Path(work) / "model.onnx", allow_spinning=False)
    return dataclasses.replace(
        checkpoint,
        predict=onnx_angle_function(session),
        runtime="onnx",
        runs_on="onnxruntime (fp32 export)",
    )


def _open_onnx(
    file: Path,
    *,
    image_size: int | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    crop_protocol: CropProtocol | None,
) -> LoadedModel:
    """An ``.onnx`` file in ONNX Runtime on the CPU, described by its metadata and the values
    given; its one input and first output checked to be a square image batch and angles."""
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
