"""Model cards: how to feed a model file and read its answer, for files made elsewhere and for
this project's own exports alike.

A card is a small YAML file (:func:`read_card`) or the ``headpose.*`` metadata of an ``.onnx``
file (:func:`card_from_metadata`; :func:`card_metadata` writes it, ``headpose adopt``)::

    input:                      # what the file takes
      size: 64                  # square side in pixels (may be left out when the graph fixes it)
      layout: NCHW              # NCHW or NHWC
      channels: BGR             # RGB, BGR or grey
      scale: 255                # pixel values (0..255) are divided by this first
      mean: [0.5, 0.5, 0.5]     # of x / scale, per channel in the order above (one for grey)
      std: [0.50196, 0.50196, 0.50196]
    output:                     # how to read its answer
      kind: euler               # euler, rotation_matrix, quaternion or bins
      unit: degrees             # euler: degrees or radians
      order: [yaw, pitch, roll] # euler and bins: the angle of each column (bins: of each output)
      signs: [1, 1, 1]          # factors bringing yaw, pitch, roll to this project's convention
    crop_protocol: visible      # the registered crop protocol it expects

The output kinds: ``euler`` (N, 3) angles; ``rotation_matrix`` (N, 3, 3) or (N, 9) row-major
in this project's matrix convention (``docs/conventions.md``), or its transpose with
``transposed: true``, decoded to angles as the ``rotation_6d`` head decodes
(:func:`headpose.models.heads.rotation.rotation_angles_deg`); ``quaternion`` (N, 4), ``order:
wxyz`` or ``xyzw``, the Hamilton quaternion of that matrix; ``bins``, one output per angle in
``order``, each (N, ``count``) logits, the angle ``sum(softmax_i * (start + i * width))``.
``signs`` apply last, to yaw, pitch, roll. Unknown keys, kinds and values of the wrong type are
refused in one line naming the source and the field.

The card parsed is a frozen :class:`ModelCard`; :meth:`ModelCard.normalization` is its input
transform as this project's pipeline normalises crops (RGB, of x / 255), so a card changes no
crop or batch code: :func:`adapt_batch` turns the pipeline's normalised RGB NCHW batch into the
file's input (channel order, grey, layout), :func:`check_graph` checks the card against the
file's graph when it is opened (input size, layout, channels, the output's shape for its kind;
a fixed batch dimension is reported so the runtime feeds that many at a time) and
:func:`decode_outputs` turns the file's answer into (N, 3) yaw, pitch, roll degrees.

An export of this project records ``headpose.image_size``, ``mean``, ``std`` (RGB, of x / 255),
``crop_protocol``, and ``input``/``output`` descriptors without ``scale``, ``kind`` or
``signs``: read as a card, those are ``scale: 255``, ``kind: euler``, ``signs: [1, 1, 1]``
(:mod:`headpose.inference.metadata`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headpose.crops.protocols import get_protocol
from headpose.errors import HeadposeError, shorten
from headpose.geometry import ANGLE_NAMES
from headpose.inference.metadata import ModelDescription
from headpose.io.text import read_text_file
from headpose.io.yaml_text import parse_yaml
from headpose.models.heads.rotation import rotation_angles_deg
from headpose.models.registry import Normalization
from headpose.params import IMAGE_SIZE_RANGE_PX

LAYOUTS = ("NCHW", "NHWC")
CHANNELS = {"RGB": 3, "BGR": 3, "grey": 1}
KINDS = ("euler", "rotation_matrix", "quaternion", "bins")
UNITS = ("degrees", "radians")
QUATERNION_ORDERS = ("wxyz", "xyzw")
# Grey from RGB: ITU-R BT.601 luma, as OpenCV's cvtColor computes it.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
MAX_CARD_BYTES = 64 * 1024  # a card is a few hundred bytes
MAX_BINS = 100_000
# The keys of each part; the descriptors an export writes also carry the informational ones.
INPUT_KEYS = ("size", "layout", "channels", "scale", "mean", "std")
INFORMATIONAL_INPUT_KEYS = ("name", "dtype", "transform")
EXPORT_TRANSFORM = "(x / 255 - mean) / std"
OUTPUT_KEYS = {
    "euler": ("kind", "unit", "order", "signs"),
    "rotation_matrix": ("kind", "transposed", "signs"),
    "quaternion": ("kind", "order", "signs"),
    "bins": ("kind", "count", "width", "start", "order", "signs"),
}
INFORMATIONAL_OUTPUT_KEYS = ("name", "shape", "convention")
CARD_KEYS = ("input", "output", "crop_protocol")


@dataclass(frozen=True)
class CardInput:
    """What a model file takes (see the module docstring); ``size`` None: the graph's."""

    size: int | None
    layout: str = "NCHW"
    channels: str = "RGB"
    scale: float = 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    @property
    def channel_count(self) -> int:
        return CHANNELS[self.channels]


@dataclass(frozen=True)
class CardOutput:
    """How to read a model file's answer (see the module docstring)."""

    kind: str = "euler"
    unit: str = "degrees"
    order: tuple[str, ...] = ANGLE_NAMES  # euler and bins: the angle of each column / output
    signs: tuple[float, float, float] = (1.0, 1.0, 1.0)  # for yaw, pitch, roll
    transposed: bool = False  # rotation_matrix
    quaternion_order: str = "wxyz"  # quaternion
    count: int | None = None  # bins
    width: float | None = None
    start: float | None = None


@dataclass(frozen=True)
class ModelCard:
    """A parsed, validated card; ``source`` names where it came from, for messages."""

    input: CardInput
    output: CardOutput = field(default_factory=CardOutput)
    crop_protocol: str = "hopenet"
    source: str = field(default="card", compare=False)

    def normalization(self) -> Normalization:
        """The input transform as the pipeline normalises crops: ``(x / 255 - mean) / std`` per
        RGB channel (``(x / scale - m) / s`` of the card's channel order is
        ``(x / 255 - m * scale / 255) / (s * scale / 255)``; grey takes its one value thrice,
        and grey of the normalised channels is then the normalised grey)."""
        factor = self.input.scale / 255.0
        if self.input.channels == "grey":
            order = (0, 0, 0)
        elif self.input.channels == "BGR":
            order = (2, 1, 0)
        else:
            order = (0, 1, 2)
        return Normalization(
            tuple(self.input.mean[i] * factor for i in order),
            tuple(self.input.std[i] * factor for i in order),
        )

    def values(self) -> dict[str, Any]:
        """The card as plain YAML/JSON values (what :func:`parse_card` reads back)."""
        card_input = {
            "layout": self.input.layout,
            "channels": self.input.channels,
            "scale": self.input.scale,
            "mean": list(self.input.mean),
            "std": list(self.input.std),
        }
        if self.input.size is not None:
            card_input = {"size": self.input.size, **card_input}
        out = self.output
        output: dict[str, Any] = {"kind": out.kind}
        if out.kind == "euler":
            output.update(unit=out.unit, order=list(out.order))
        elif out.kind == "rotation_matrix":
            output["transposed"] = out.transposed
        elif out.kind == "quaternion":
            output["order"] = out.quaternion_order
        else:
            output.update(count=out.count, width=out.width, start=out.start, order=list(out.order))
        output["signs"] = list(out.signs)
        return {"input": card_input, "output": output, "crop_protocol": self.crop_protocol}


# --- Reading ------------------------------------------------------------------------------------


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card in the YAML file ``path``: a regular UTF-8 file of at most :data:`MAX_CARD_BYTES`
    (:func:`headpose.io.text.read_text_file`), parsed by the one bounded YAML parser
    (:func:`headpose.io.yaml_text.parse_yaml`: no aliases, no key twice) and validated
    (:func:`parse_card`); any problem is one line naming the file (and the field)."""
    file = Path(path)
    text = read_text_file(file, MAX_CARD_BYTES, "card")
    return parse_card(parse_yaml(text, f"card {file}"), f"card {file}")


def parse_card(values: Any, source: str) -> ModelCard:
    """The :class:`ModelCard` of plain ``values`` (a card's YAML), validated: one line naming
    ``source`` and the field for an unknown key or kind, a missing key, a wrong type or value."""
    if not isinstance(values, dict):
        raise HeadposeError(f"{source}: expected a mapping with keys {', '.join(CARD_KEYS)}")
    _known_keys(values, CARD_KEYS, (), source, "")
    for key in CARD_KEYS:
        if key not in values:
            raise HeadposeError(f"{source}: {key} is missing")
    card_input = _parse_input(values["input"], source, informational=False)
    output = _parse_output(values["output"], source, informational=False)
    protocol = values["crop_protocol"]
    if not isinstance(protocol, str):
        raise HeadposeError(f"{source}: crop_protocol {shorten(protocol)}; expected a name")
    get_protocol(protocol, f"{source}: crop_protocol")  # a registered one
    return ModelCard(card_input, output, protocol, source)


def card_from_metadata(values: dict[str, Any], source: str) -> ModelCard | None:
    """The card a file's ``headpose.*`` metadata makes (``values`` as
    :func:`headpose.inference.metadata.read_onnx_metadata` decodes them), or None when it
    records no input transform (a file exported elsewhere, not adopted). An export of this
    project records ``mean``/``std`` (RGB, x / 255) beside an ``input`` descriptor without
    them; an adopted file records the card's own in ``input``."""
    described = values.get("input")
    if described is None and values.get("mean") is None:
        return None
    if not isinstance(described, dict):
        if described is not None:
            raise HeadposeError(
                f"{source}: headpose.input {shorten(described)}; expected a mapping"
            )
        described = {}
    described = dict(described)
    if "mean" not in described and "std" not in described:  # an export: RGB, x / 255
        described.update({key: values.get(key) for key in ("mean", "std")})
    size = values.get("image_size")
    if size is not None and described.setdefault("size", size) != size:
        raise HeadposeError(
            f"{source}: headpose.image_size {shorten(size)} contradicts headpose.input's size "
            f"{shorten(described['size'])}"
        )
    card_input = _parse_input(described, f"{source} headpose.input", informational=True)
    output_values = values.get("output")
    if output_values is None:
        output_values = {"kind": "euler"}
    elif isinstance(output_values, dict) and "kind" not in output_values:
        output_values = {"kind": "euler", **output_values}
    output = _parse_output(output_values, f"{source} headpose.output", informational=True)
    protocol = values.get("crop_protocol")
    if protocol is None:
        raise HeadposeError(f"{source}: records no headpose.crop_protocol beside its input")
    return ModelCard(card_input, output, getattr(protocol, "name", protocol), source)


def plain_card(description: ModelDescription, source: str) -> ModelCard:
    """The card of a file described by a :class:`~headpose.inference.metadata.ModelDescription`
    alone (the values given for a file without metadata): RGB NCHW of x / 255 normalised by
    its ``normalization``, answering (N, 3) yaw, pitch, roll degrees."""
    normalization = description.normalization
    card_input = CardInput(
        description.image_size, mean=tuple(normalization.mean), std=tuple(normalization.std)
    )
    return ModelCard(card_input, CardOutput(), description.crop_protocol.name, source)


def card_metadata(card: ModelCard) -> dict[str, Any]:
    """The ``headpose.*`` values (without the prefix) that describe a file by ``card``: its
    ``input``/``output``/``crop_protocol`` as the card says, and ``image_size``, ``mean``,
    ``std`` as the pipeline normalises (RGB, x / 255), for readers of those keys."""
    normalization = card.normalization()
    values = card.values()
    described = {
        "input": values["input"],
        "output": values["output"],
        "crop_protocol": card.crop_protocol,
        "mean": list(normalization.mean),
        "std": list(normalization.std),
    }
    if card.input.size is not None:
        described["image_size"] = card.input.size
    return described


def _parse_input(values: Any, source: str, informational: bool) -> CardInput:
    where = "input" if not informational else ""
    if not isinstance(values, dict):
        raise HeadposeError(f"{source}: {where or 'input'} {shorten(values)}; expected a mapping")
    _known_keys(
        values, INPUT_KEYS, INFORMATIONAL_INPUT_KEYS if informational else (), source, where
    )
    name = _field_name(where)
    if informational:
        if values.get("transform", EXPORT_TRANSFORM) != EXPORT_TRANSFORM:
            raise HeadposeError(
                f"{source}: {name('transform')} {shorten(values['transform'])}; expected "
                f"{EXPORT_TRANSFORM!r} (or scale, mean and std)"
            )
        if values.get("dtype", "float32") != "float32":
            raise HeadposeError(
                f"{source}: {name('dtype')} {shorten(values['dtype'])}; expected float32"
            )
    size = values.get("size")
    low, high = IMAGE_SIZE_RANGE_PX
    if size is not None and not (_is_int(size) and low <= size <= high):
        raise HeadposeError(
            f"{source}: {name('size')} {shorten(size)}; expected an integer {low} to {high}"
        )
    layout = _choice(values.get("layout", "NCHW"), LAYOUTS, source, name("layout"))
    channels = _choice(values.get("channels", "RGB"), tuple(CHANNELS), source, name("channels"))
    scale = values.get("scale", 255)
    if not (_is_number(scale) and scale > 0):
        raise HeadposeError(f"{source}: {name('scale')} {shorten(scale)}; expected a number > 0")
    count = CHANNELS[channels]
    numbers = {}
    for key in ("mean", "std"):
        if key not in values:
            raise HeadposeError(f"{source}: {name(key)} is missing")
        value = values[key]
        if not (
            isinstance(value, (list, tuple))
            and len(value) == count
            and all(_is_number(v) for v in value)
            and (key == "mean" or min(value) > 0)
        ):
            positive = ", all > 0" if key == "std" else ""
            raise HeadposeError(
                f"{source}: {name(key)} {shorten(value)}; expected {count} number"
                f"{'s' if count > 1 else ''} (one per {channels} channel{positive})"
            )
        numbers[key] = tuple(float(v) for v in value)
    return CardInput(size, layout, channels, float(scale), numbers["mean"], numbers["std"])


def _parse_output(values: Any, source: str, informational: bool) -> CardOutput:
    where = "output" if not informational else ""
    name = _field_name(where)
    if not isinstance(values, dict):
        raise HeadposeError(f"{source}: {where or 'output'} {shorten(values)}; expected a mapping")
    if "kind" not in values:
        raise HeadposeError(
            f"{source}: {name('kind')} is missing; expected one of {', '.join(KINDS)}"
        )
    kind = _choice(values["kind"], KINDS, source, name("kind"))
    extra = INFORMATIONAL_OUTPUT_KEYS if informational else ()
    _known_keys(values, OUTPUT_KEYS[kind], extra, source, where, f"for kind {kind}")
    signs = values.get("signs", [1, 1, 1])
    if not (
        isinstance(signs, (list, tuple))
        and len(signs) == 3
        and all(_is_number(v) and v != 0 for v in signs)
    ):
        raise HeadposeError(
            f"{source}: {name('signs')} {shorten(signs)}; expected 3 non-zero numbers (yaw, "
            "pitch, roll)"
        )
    settings: dict[str, Any] = {"kind": kind, "signs": tuple(float(v) for v in signs)}
    if kind in ("euler", "bins"):
        order = values.get("order", list(ANGLE_NAMES))
        if not (
            isinstance(order, (list, tuple))
            and all(isinstance(v, str) for v in order)
            and sorted(order) == sorted(ANGLE_NAMES)
        ):
            raise HeadposeError(
                f"{source}: {name('order')} {shorten(order)}; expected yaw, pitch and roll, each "
                "once, in the order of the model's columns"
            )
        settings["order"] = tuple(order)
    if kind == "euler":
        settings["unit"] = _choice(values.get("unit", "degrees"), UNITS, source, name("unit"))
    elif kind == "rotation_matrix":
        transposed = values.get("transposed", False)
        if not isinstance(transposed, bool):
            raise HeadposeError(
                f"{source}: {name('transposed')} {shorten(transposed)}; expected true or false"
            )
        settings["transposed"] = transposed
    elif kind == "quaternion":
        settings["quaternion_order"] = _choice(
            values.get("order", "wxyz"), QUATERNION_ORDERS, source, name("order")
        )
    else:
        for key in ("count", "width", "start"):
            if key not in values:
                raise HeadposeError(f"{source}: {name(key)} is missing (kind bins)")
        count, width, start = values["count"], values["width"], values["start"]
        if not (_is_int(count) and 2 <= count <= MAX_BINS):
            raise HeadposeError(
                f"{source}: {name('count')} {shorten(count)}; expected an integer 2 to {MAX_BINS}"
            )
        if not (_is_number(width) and width > 0):
            raise HeadposeError(
                f"{source}: {name('width')} {shorten(width)}; expected a number > 0"
            )
        if not _is_number(start):
            raise HeadposeError(f"{source}: {name('start')} {shorten(start)}; expected a number")
        settings.update(count=count, width=float(width), start=float(start))
    return CardOutput(**settings)


def _known_keys(
    values: dict,
    known: Sequence[str],
    informational: Sequence[str],
    source: str,
    where: str,
    context: str = "",
) -> None:
    for key in values:
        if key not in known and key not in informational:
            place = f"{where}." if where else ""
            also = f" {context}" if context else ""
            raise HeadposeError(
                f"{source}: unknown key {place}{shorten(key)}{also}; expected "
                + ", ".join(f"{place}{k}" for k in known)
            )


def _field_name(where: str):
    return lambda key: f"{where}.{key}" if where else key


def _choice(value: Any, choices: Sequence[str], source: str, name: str) -> str:
    if not (isinstance(value, str) and value in choices):
        raise HeadposeError(
            f"{source}: {name} {shorten(value)}; expected one of {', '.join(choices)}"
        )
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- The card against the graph -----------------------------------------------------------------


@dataclass(frozen=True)
class GraphFit:
    """What the graph fixes: the input side and the batch size (None: free)."""

    side: int | None
    batch: int | None


def _fixed(dimension: Any) -> int | None:
    return dimension if _is_int(dimension) else None


def check_graph(
    card: ModelCard,
    inputs: Sequence[tuple[str, Sequence[Any]]],
    outputs: Sequence[tuple[str, Sequence[Any]]],
    model: str,
) -> GraphFit:
    """Check ``card`` against a graph's ``inputs`` and ``outputs`` (name, shape; a dimension is
    an int when fixed): one input of rank 4 whose channels, side and layout fit the card, and
    outputs of the shape the card's kind reads. A contradiction is one line naming the card's
    source, its field and ``model``."""
    source = card.source
    if len(inputs) != 1 or len(inputs[0][1]) != 4:
        shapes = [list(shape) for _, shape in inputs]
        raise HeadposeError(
            f"{model}: expected one image input of rank 4 ({card.input.layout}), got {shapes}"
        )
    shape = list(inputs[0][1])
    if card.input.layout == "NCHW":
        channels, height, width = shape[1], shape[2], shape[3]
    else:
        height, width, channels = shape[1], shape[2], shape[3]
    if _fixed(channels) is not None and channels != card.input.channel_count:
        raise HeadposeError(
            f"{source}: input.channels {card.input.channels} ({card.input.channel_count} "
            f"channel{'s' if card.input.channel_count > 1 else ''}, layout {card.input.layout}) "
            f"contradicts {model}'s input shape {shape} ({channels} there)"
        )
    fixed_h, fixed_w = _fixed(height), _fixed(width)
    if fixed_h is not None and fixed_w is not None and fixed_h != fixed_w:
        raise HeadposeError(
            f"{source}: input.layout {card.input.layout} reads {model}'s input shape {shape} as "
            f"{fixed_h} x {fixed_w} pixels; expected a square"
        )
    side = fixed_h if fixed_h is not None else fixed_w
    if card.input.size is not None and side is not None and card.input.size != side:
        raise HeadposeError(
            f"{source}: input.size {card.input.size} contradicts {model}'s input shape {shape} "
            f"({side} px, layout {card.input.layout})"
        )
    if card.input.size is None and side is None:
        raise HeadposeError(
            f"{source}: input.size is missing and {model}'s input side is free; give the size"
        )
    _check_outputs(card.output, outputs, source, model)
    return GraphFit(card.input.size or side, _fixed(shape[0]))


def _check_outputs(
    output: CardOutput, outputs: Sequence[tuple[str, Sequence[Any]]], source: str, model: str
) -> None:
    shapes = [list(shape) for _, shape in outputs]
    if output.kind == "bins":
        if len(outputs) < 3:
            raise HeadposeError(
                f"{source}: output.kind bins reads one output per angle (3); {model} has "
                f"{len(outputs)}: {shapes}"
            )
        for angle, shape in zip(output.order, shapes[:3], strict=True):
            last = shape[-1] if shape else None
            if len(shape) != 2 or (_fixed(last) is not None and last != output.count):
                raise HeadposeError(
                    f"{source}: output.count {output.count} ({angle}: (N, {output.count}) "
                    f"logits) contradicts {model}'s output shape {shape}"
                )
        return
    if not outputs:
        raise HeadposeError(f"{model}: has no output")
    shape = shapes[0]
    per_item = shape[1:]
    expected = {
        "euler": ([[3]], "(N, 3)"),
        "rotation_matrix": ([[3, 3], [9]], "(N, 3, 3) or (N, 9)"),
        "quaternion": ([[4]], "(N, 4)"),
    }[output.kind]
    fits = any(
        len(per_item) == len(option)
        and all(_fixed(d) is None or d == want for d, want in zip(per_item, option, strict=True))
        for option in expected[0]
    )
    if not fits:
        raise HeadposeError(
            f"{source}: output.kind {output.kind} reads {expected[1]}; {model}'s first output "
            f"has shape {shape}"
        )


# --- Feeding and reading ------------------------------------------------------------------------


def adapt_batch(card: CardInput, images: np.ndarray) -> np.ndarray:
    """The file's input from the pipeline's normalised RGB ``(N, 3, S, S)`` float32 batch
    (normalised by :meth:`ModelCard.normalization`): channels reordered (BGR) or made grey, and
    laid out as the card says."""
    if card.channels == "BGR":
        images = images[:, ::-1]
    elif card.channels == "grey":
        weights = np.asarray(GREY_WEIGHTS, dtype=np.float32).reshape(1, 3, 1, 1)
        images = (images * weights).sum(axis=1, keepdims=True, dtype=np.float32)
    if card.layout == "NHWC":
        images = images.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images, dtype=np.float32)


def decode_outputs(output: CardOutput, answers: Sequence[np.ndarray], model: str) -> np.ndarray:
    """(N, 3) yaw, pitch, roll degrees (float64) of a file's ``answers`` (its outputs, in
    order) read as ``output`` says, ``signs`` applied last."""
    if output.kind == "bins":
        columns = {}
        for angle, logits in zip(output.order, answers[:3], strict=True):
            values = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
            values = values - values.max(axis=1, keepdims=True)
            weights = np.exp(values)
            weights /= weights.sum(axis=1, keepdims=True)
            centres = output.start + output.width * np.arange(values.shape[1])
            columns[angle] = weights @ centres
        angles = np.stack([columns[name] for name in ANGLE_NAMES], axis=1)
    else:
        first = np.asarray(answers[0], dtype=np.float64)
        first = first.reshape(len(first), -1)
        if output.kind == "euler":
            if output.unit == "radians":
                first = np.degrees(first)
            index = [output.order.index(name) for name in ANGLE_NAMES]
            angles = first[:, index]
        else:
            if output.kind == "quaternion":
                matrices = _quaternion_matrices(first, output.quaternion_order, model)
            else:
                matrices = first.reshape(-1, 3, 3)
            if output.transposed:
                matrices = matrices.transpose(0, 2, 1)
            angles = rotation_angles_deg(torch.from_numpy(np.ascontiguousarray(matrices))).numpy()
    return angles * np.asarray(output.signs)


def _quaternion_matrices(quaternions: np.ndarray, order: str, model: str) -> np.ndarray:
    """Rotation matrices (N, 3, 3) of Hamilton quaternions (N, 4) in ``order`` (normalised;
    one of zero length is refused)."""
    if order == "xyzw":
        quaternions = quaternions[:, [3, 0, 1, 2]]
    length = np.linalg.norm(quaternions, axis=1)
    zero = ~(length > 1e-12)
    if zero.any():
        raise HeadposeError(
            f"{model}: output.kind quaternion: {int(zero.sum())} of {len(quaternions)} "
            "quaternions have zero length (or are not finite); they describe no rotation"
        )
    w, x, y, z = (quaternions / length[:, None]).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
