"""What a model file says about itself: the description every reader of a model needs.

A :class:`ModelDescription` is what it takes to feed a model and read its answer: the input side,
the normalisation (``(x / 255 - mean) / std`` on RGB), the crop protocol it was trained on, its
head, and where it came from (arch, the training run's fingerprint). A checkpoint's meta holds
it (:func:`checkpoint_values`); an exported ONNX file carries it in its ``metadata_props``
(:func:`onnx_metadata`, written by :mod:`headpose.inference.onnx_export`), one JSON value under
each :data:`ONNX_KEYS` key::

    headpose.metadata_version  1
    headpose.image_size        64                      input (N, 3, S, S), S pixels
    headpose.mean              [0.5, 0.5, 0.5]         RGB, of x / 255
    headpose.std               [0.5, 0.5, 0.5]
    headpose.crop_protocol     "hopenet"               the crop it was trained on
    headpose.input             {"name": "image", "layout": "NCHW", "channels": "RGB", ...}
    headpose.output            {"name": "angles_deg", "order": ["yaw", "pitch", "roll"], ...}
    headpose.head              {"head": "bins", "num_bins": 66, ...}
    headpose.arch              "timm/..."
    headpose.training_fingerprint  "ab12..." or null (not trained by this project's pipeline)
    headpose.precision         "fp32" or "int8"

:func:`read_onnx_metadata` reads it back (each value at most :data:`MAX_VALUE_CHARS` of JSON
nesting at most :data:`MAX_VALUE_DEPTH` deep), and :func:`describe` makes the description of
what a file records and the values given explicitly. The ``input``/``output`` descriptors with
``image_size``, ``mean``, ``std`` and ``crop_protocol`` are the file's model card
(:func:`headpose.inference.card.card_from_metadata`); ``headpose adopt`` writes a card made
elsewhere under ``metadata_version`` 2 (:data:`CARD_METADATA_VERSION`), its descriptors then
holding the card's scale, channel order, layout and output kind. The description holds the
crop protocol as the registered object; files record its name. A file exported elsewhere
carries none of it: the values it needs (``mean``, ``std``, ``crop_protocol``, and
``image_size`` when its input side is not fixed) must be given explicitly, or a card, else one
line names those missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from headpose.crops.protocols import CropProtocol, get_protocol, trained_protocol
from headpose.errors import HeadposeError
from headpose.geometry import ANGLE_NAMES
from headpose.models.heads import head_from_meta
from headpose.models.registry import Normalization
from headpose.params import SCHEMA, check_argument

PREFIX = "headpose."
PRECISION_KEY = PREFIX + "precision"
METADATA_VERSION = 1  # what exports write
# What ``headpose adopt`` writes: a model card's input/output descriptors (scale, channel order,
# layout, output kind; :mod:`headpose.inference.card`), which a reader of version 1 would ignore.
CARD_METADATA_VERSION = 2
READABLE_VERSION = CARD_METADATA_VERSION
# Bounds on one metadata value: its JSON text, and how deeply its lists and mappings nest.
MAX_VALUE_CHARS = 64 * 1024
MAX_VALUE_DEPTH = 8
INPUT_NAME = "image"
OUTPUT_NAME = "angles_deg"
INPUT = {
    "name": INPUT_NAME,
    "layout": "NCHW",
    "channels": "RGB",
    "dtype": "float32",
    "transform": "(x / 255 - mean) / std",
}
OUTPUT = {
    "name": OUTPUT_NAME,
    "shape": ["N", 3],
    "order": list(ANGLE_NAMES),
    "unit": "degrees",
    "convention": "3DDFA (300W_LP, AFLW2000); see docs/conventions.md",
}
# The values a reader needs to feed a model, in the order messages name them.
REQUIRED = ("image_size", "mean", "std", "crop_protocol")
ONNX_KEYS = (
    "metadata_version",
    *REQUIRED,
    "input",
    "output",
    "head",
    "arch",
    "training_fingerprint",
    "precision",
)


@dataclass(frozen=True)
class ModelDescription:
    """How to feed a model and what it answers (see the module docstring)."""

    image_size: int
    normalization: Normalization
    crop_protocol: CropProtocol  # the registered protocol; files record its name
    head: dict | None = None
    arch: str | None = None
    training_fingerprint: str | None = None
    precision: str = "fp32"

    def values(self) -> dict[str, Any]:
        """Every :data:`ONNX_KEYS` key's value (plain JSON types: the crop protocol's name)."""
        return {
            "metadata_version": METADATA_VERSION,
            "image_size": self.image_size,
            "mean": list(self.normalization.mean),
            "std": list(self.normalization.std),
            "crop_protocol": self.crop_protocol.name,
            "input": INPUT,
            "output": OUTPUT,
            "head": self.head,
            "arch": self.arch,
            "training_fingerprint": self.training_fingerprint,
            "precision": self.precision,
        }


def checkpoint_values(meta: dict) -> dict[str, Any]:
    """What a (validated) checkpoint meta records of its description, as :func:`describe` reads
    it: the crop protocol it was trained on as the object
    (:func:`headpose.crops.protocols.trained_protocol`), its head as the head's meta."""
    return {
        "image_size": int(meta["image_size"]),
        **Normalization.from_meta(meta).meta(),
        "crop_protocol": trained_protocol(meta),
        "head": head_from_meta(meta).meta(),
        "arch": meta.get("arch"),
        "training_fingerprint": meta.get("fingerprint"),
    }


def onnx_metadata(description: ModelDescription) -> dict[str, str]:
    """The ``metadata_props`` of an exported file: ``headpose.<key>`` -> JSON value."""
    return {
        PREFIX + key: json.dumps(value, sort_keys=True)
        for key, value in description.values().items()
    }


def _three_numbers(value: Any, positive: bool) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
        and (not positive or min(value) > 0)
    )


def check_values(values: dict[str, Any], source: str) -> None:
    """Refuse, in one line naming ``source`` and the key, an ``image_size``, ``mean`` or ``std``
    that is out of range (values absent from ``values`` are not checked)."""
    size = values.get("image_size")
    if size is not None:
        check_argument(f"{source}: image_size", size, SCHEMA["image_size"])
    for key in ("mean", "std"):
        if values.get(key) is not None and not _three_numbers(values[key], key == "std"):
            raise HeadposeError(
                f"{source}: {key} {values[key]!r}; expected 3 finite numbers (R, G, B)"
                + (", all positive" if key == "std" else "")
            )


def read_onnx_metadata(props: dict[str, str], source: str) -> dict[str, Any]:
    """The ``headpose.*`` values of a file's ``metadata_props`` (decoded JSON; the crop protocol
    as the registered object its name names); a value that is no JSON, out of range, or of a
    newer metadata version, or an unknown crop protocol, is refused naming ``source``."""
    values = {}
    for key, text in props.items():
        if not key.startswith(PREFIX):
            continue
        if len(text) > MAX_VALUE_CHARS:
            raise HeadposeError(
                f"{source}: metadata {key} holds {len(text)} characters; at most "
                f"{MAX_VALUE_CHARS} expected"
            )
        try:
            value = json.loads(text)
        except ValueError:
            raise HeadposeError(f"{source}: metadata {key} is not JSON: {text[:60]!r}") from None
        except RecursionError:  # deeper than Python's stack: far past the bound
            value = _nested(MAX_VALUE_DEPTH + 1)
        if _depth(value) > MAX_VALUE_DEPTH:
            raise HeadposeError(
                f"{source}: metadata {key} nests lists or mappings more than {MAX_VALUE_DEPTH} "
                "deep; a headpose value is a number, a name, a list or a small mapping"
            )
        values[key[len(PREFIX) :]] = value
    version = values.get("metadata_version", METADATA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > READABLE_VERSION:
        raise HeadposeError(
            f"{source}: headpose metadata version {str(version)[:20]!r}, written by a newer "
            f"headpose; this one reads up to {READABLE_VERSION}"
        )
    check_values(values, source)
    if values.get("crop_protocol") is not None:
        values["crop_protocol"] = get_protocol(values["crop_protocol"], f"{source}: crop_protocol")
    return values


def _nested(depth: int) -> list:
    """A list nested ``depth`` deep (what stands for a value too deep to decode)."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _depth(value: Any) -> int:
    """How deeply lists and mappings nest in a decoded JSON ``value`` (0 for a scalar), counted
    without recursion, and stopping once past :data:`MAX_VALUE_DEPTH`."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (list, dict)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_VALUE_DEPTH:
                break
            pending.extend(
                (child, depth) for child in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def describe(
    recorded: dict[str, Any],
    source: str,
    *,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    crop_protocol: CropProtocol | None = None,
    input_side: int | None = None,
) -> ModelDescription:
    """The description of a model from what its file records (``recorded``: the values of
    :data:`ONNX_KEYS` as :func:`read_onnx_metadata` or :func:`checkpoint_values` give them,
    possibly none) and the values given explicitly.

    A given ``crop_protocol`` replaces the recorded one (a deliberate choice, as for a
    checkpoint); given ``mean``, ``std`` or ``image_size`` must agree with recorded ones (and
    ``image_size`` with the file's fixed ``input_side``). Values neither recorded nor given are
    refused in one line naming them all.
    """
    given = {
        "image_size": image_size,
        "mean": None if mean is None else [float(v) for v in mean],
        "std": None if std is None else [float(v) for v in std],
    }
    check_values(given, f"{source} (given)")
    known = {"image_size": input_side, **{k: v for k, v in recorded.items() if v is not None}}
    for key in ("image_size", "mean", "std"):
        recorded_value = known.get(key)
        if None not in (given[key], recorded_value) and not _same(given[key], recorded_value):
            raise HeadposeError(
                f"{source} records {key} {recorded_value}; {given[key]} was given (leave it out)"
            )
    values = {**known, **{k: v for k, v in given.items() if v is not None}}
    if crop_protocol is not None:
        values["crop_protocol"] = crop_protocol
    missing = [key for key in REQUIRED if values.get(key) is None]
    if missing:
        what = (
            "records no headpose metadata" if not recorded else "records no " + ", ".join(missing)
        )
        raise HeadposeError(
            f"{source} {what} (exported elsewhere?): give its {', '.join(missing)} explicitly "
            "(Python: headpose.load(..., " + ", ".join(f"{key}=" for key in missing) + "); "
            "headpose predict/evaluate: " + ", ".join(_flag(key) for key in missing) + "), or "
            "a model card (headpose.load(..., card=CARD.yaml); --card CARD.yaml; headpose adopt)"
        )
    return ModelDescription(
        image_size=int(values["image_size"]),
        normalization=Normalization(tuple(values["mean"]), tuple(values["std"])),
        crop_protocol=values["crop_protocol"],
        head=values.get("head"),
        arch=values.get("arch"),
        training_fingerprint=values.get("training_fingerprint"),
        precision=values.get("precision") or "fp32",
    )


def _same(first: Any, second: Any) -> bool:
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
            for a, b in zip(first, second, strict=True)
        )
    return first == second


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")
