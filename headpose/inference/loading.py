"""Opening a model file to predict with: the one opener of ``.pt`` checkpoints, original HopeNet
``.pkl`` snapshots and ``.onnx`` files, with the runtime chosen.

:func:`open_model` is how every user of a trained model opens it: the Python API
(:func:`headpose.app.api.load`), ``headpose predict``, the evaluation (the evaluate stage,
``headpose evaluate`` and ``headpose sweep``), ``headpose benchmark`` and the export (the export
stage, ``headpose export``). It returns a :class:`LoadedModel`: the model as an
:data:`~headpose.inference.runtime.AngleFunction` (normalised crops to degrees) with its
:class:`~headpose.inference.metadata.ModelDescription` (input side, normalisation, crop
protocol, head, fingerprint) and where it runs.

An ``.onnx`` file is fed and read as its model card says (:mod:`headpose.inference.card`: the
card given, else the one its metadata makes, else the values given), the card checked against
the graph when the file is opened. A name that is no file may be a published model's
(:mod:`headpose.inference.published`, fetched on first use); several files or names are averaged
as one model (:func:`averaged`).

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from headpose.crops.protocols import CropProtocol, get_protocol
from headpose.errors import HeadposeError
from headpose.inference.card import (
    ModelCard,
    card_from_metadata,
    check_graph,
    plain_card,
    read_card,
)
from headpose.inference.metadata import (
    ModelDescription,
    checkpoint_values,
    describe,
    read_onnx_metadata,
)
from headpose.inference.onnx_export import export_onnx
from headpose.inference.published import published_files, published_model, published_names
from headpose.inference.runtime import (
    AngleFunction,
    averaged_angle_function,
    card_angle_function,
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
    card: ModelCard | None = None  # how an .onnx file is fed and read
    files: tuple[Path, ...] = ()  # the model files averaged as this one (none: just ``path``)

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


CardArgument = ModelCard | str | os.PathLike | None
ModelPath = str | os.PathLike | Sequence[str | os.PathLike]


def open_model(
    path: ModelPath,
    runtime: str = "auto",
    device: str | torch.device | None = None,
    *,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    crop_protocol: CropProtocol | None = None,
    card: CardArgument = None,
) -> LoadedModel:
    """Open a ``.pt`` checkpoint (ours or an original HopeNet snapshot) or an ``.onnx`` file
    (fp32 or int8) to predict with, in ``runtime`` (:data:`RUNTIMES`) on ``device``; or the
    name of a published model (:mod:`headpose.inference.published`: its files fetched on first
    use, fed by its card); or several of those, averaged as one model (:func:`averaged`).

    ``card`` (a :class:`~headpose.inference.card.ModelCard` or the path of a card's YAML file)
    describes an ``.onnx`` file in place of its metadata. ``crop_protocol`` replaces the one the
    model records; ``mean`` and ``std`` must agree with recorded ones and are needed for an
    ``.onnx`` exported elsewhere without a card (as is ``crop_protocol``, and ``image_size``
    when its input side is not fixed); ``image_size`` sets a checkpoint's input side (default:
    the one it was trained at).
    """
    given = {"image_size": image_size, "mean": mean, "std": std, "crop_protocol": crop_protocol}
    if runtime not in RUNTIMES:
        raise HeadposeError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if not isinstance(path, (str, os.PathLike)):
        paths = list(path) if isinstance(path, Sequence) else []
        if not paths or not all(isinstance(item, (str, os.PathLike)) for item in paths):
            raise HeadposeError(
                f"model {str(path)[:60]!r}: expected a model file, a published model's name or "
                "a list of them"
            )
        if len(paths) == 1:
            return open_model(paths[0], runtime, device, card=card, **given)
        return averaged([open_model(item, runtime, device, card=card, **given) for item in paths])
    named = published_model(str(path)) if not Path(path).exists() else None
    if named is not None:
        files = published_files(named)
        chosen = named.card if card is None else card
        return open_model(
            files if len(files) > 1 else files[0], runtime, device, card=chosen, **given
        )
    file = Path(path)
    if not file.suffix and len(file.parts) == 1 and not file.exists():  # a name, not a file
        raise HeadposeError(
            f"model {str(path)[:60]!r}: no such file, and no published model of that name "
            f"(published: {', '.join(published_names())})"
        )
    if is_onnx_file(file):
        if runtime == "torch":
            raise HeadposeError(f"{file} is an ONNX model: it runs in the onnx runtime")
        return _open_onnx(file, card=_card(card), **given)
    if card is not None:
        raise HeadposeError(
            f"{file}: a model card describes an .onnx file; a checkpoint describes itself"
        )
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


def _card(card: CardArgument) -> ModelCard | None:
    """A card given as an object or as the path of its YAML file."""
    if card is None or isinstance(card, ModelCard):
        return card
    if not isinstance(card, (str, os.PathLike)):
        raise HeadposeError(
            f"card {str(card)[:60]!r}: expected the path of a card's YAML file or a ModelCard"
        )
    return read_card(card)


def averaged(models: list[LoadedModel]) -> LoadedModel:
    """Several opened models as one: each fed the same crops (so they must take the same input
    side, normalisation and crop protocol; one line names the first that differs) and the mean
    of their decoded yaw, pitch and roll degrees its answer (each angle averaged on its own, as
    FSA-Net's author averages its variants; fine away from +-180 degrees, where no head-pose
    model answers)."""
    first = models[0]
    for other in models[1:]:
        for what in ("image_size", "normalization", "crop_protocol"):
            mine, theirs = getattr(first.description, what), getattr(other.description, what)
            if mine != theirs:
                raise HeadposeError(
                    f"{other.path} takes {what} {theirs}, {first.path} {mine}: models averaged "
                    "as one must be fed the same crops"
                )
        if other.device != first.device:
            raise HeadposeError(
                f"{other.path} runs on {other.device}, {first.path} on {first.device}: models "
                "averaged as one run on one device"
            )
    return dataclasses.replace(
        first,
        predict=averaged_angle_function([model.predict for model in models]),
        runs_on=f"{first.runs_on}, the mean of {len(models)} models",
        files=tuple(model.path for model in models),
        model=None,
        meta=None,
    )


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
    card: ModelCard | None,
    image_size: int | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    crop_protocol: CropProtocol | None,
) -> LoadedModel:
    """An ``.onnx`` file in ONNX Runtime on the CPU, fed and read as its card says: the card
    given, else the one its ``headpose.*`` metadata makes (this project's exports, adopted
    files), else the values given (an RGB NCHW file answering yaw, pitch, roll degrees). The
    card is checked against the graph here, where the file is opened."""
    session = onnx_session(file, allow_spinning=False)
    props = dict(session.get_modelmeta().custom_metadata_map)
    recorded = read_onnx_metadata(props, str(file))
    inputs = [(item.name, list(item.shape)) for item in session.get_inputs()]
    outputs = [(item.name, list(item.shape)) for item in session.get_outputs()]
    if card is None:
        card = card_from_metadata(recorded, f"{file} metadata")
    if card is None:  # no card: the values given describe it
        shape = inputs[0][1] if len(inputs) == 1 else []
        side = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else None
        side = side if side is not None and shape[3] == side else None
        given = describe(
            recorded, str(file), image_size=image_size, mean=mean, std=std,
            crop_protocol=crop_protocol, input_side=side,
        )  # fmt: skip
        card = plain_card(given, str(file))
    fit = check_graph(card, inputs, outputs, str(file))
    if image_size is not None and image_size != fit.side:
        raise HeadposeError(
            f"{file} takes {fit.side} px inputs; image size {image_size} (--image-size) applies "
            "to checkpoints only"
        )
    normalization = card.normalization()
    values = {
        **recorded,
        "image_size": fit.side,
        "mean": list(normalization.mean),
        "std": list(normalization.std),
        "crop_protocol": get_protocol(card.crop_protocol, f"{card.source}: crop_protocol"),
    }
    description = describe(values, str(file), mean=mean, std=std, crop_protocol=crop_protocol)
    runs_on = f"onnxruntime ({description.precision})"
    function = card_angle_function(session, card, fit.batch, str(file))
    return LoadedModel(file, function, description, "onnx", runs_on, torch.device("cpu"), card=card)
