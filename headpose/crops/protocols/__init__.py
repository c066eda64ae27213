"""The crop protocols, and the one rule that chooses one.

Importing this package registers the built-in protocols: ``hopenet`` (the published crop,
:mod:`headpose.crops.protocols.hopenet`, the default) and ``visible`` (the visible-landmark crop
used before, :mod:`headpose.crops.protocols.visible`). Another protocol is one module: a
:class:`CropProtocol` subclass registered with :func:`register_protocol`
(:mod:`headpose.crops.protocols.registry`).

A protocol is chosen once per entry point and passed on as the object: from ``params.yaml``
(:func:`protocol_from_params`), a checkpoint's meta (:func:`trained_protocol`) or a command-line
or API value (:func:`choose_protocol`). The one rule for the default: a value given (a name or a
protocol) wins; else a model's own protocol (its meta's ``crop_protocol``; a meta without it was
trained on :data:`LEGACY_PROTOCOL`, before protocols existed); else, with no model to ask
(scoring a test set), :data:`DEFAULT_PROTOCOL`, the published crop.
"""

from __future__ import annotations

from headpose.crops.protocols import hopenet, visible
from headpose.crops.protocols.registry import (
    PROTOCOLS,
    CropProtocol,
    TrainingDraw,
    get_protocol,
    protocol_names,
    register_protocol,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "LEGACY_PROTOCOL",
    "PROTOCOLS",
    "CropProtocol",
    "TrainingDraw",
    "as_protocol",
    "choose_protocol",
    "get_protocol",
    "protocol_from_params",
    "protocol_names",
    "register_protocol",
    "trained_protocol",
]

# The published crop: the params.yaml default, and the crop a test set is scored under.
DEFAULT_PROTOCOL: CropProtocol = PROTOCOLS.get(hopenet.HopeNet.name)
# What a checkpoint saved before crop protocols existed was trained on.
LEGACY_PROTOCOL: CropProtocol = PROTOCOLS.get(visible.Visible.name)


def as_protocol(protocol: CropProtocol | str, source: str = "crop_protocol") -> CropProtocol:
    """``protocol`` itself, or the registered protocol of that name (``source`` starts the
    error)."""
    if isinstance(protocol, CropProtocol):
        return protocol
    return get_protocol(protocol, source)


def protocol_from_params(crop_protocol: str) -> CropProtocol:
    """The protocol ``params.yaml``'s ``crop_protocol`` names (else one line naming the key and
    the known protocols)."""
    return get_protocol(crop_protocol, "params.yaml: crop_protocol")


def trained_protocol(meta: dict, source: str = "checkpoint") -> CropProtocol:
    """The protocol a checkpoint's model was trained on: its meta's ``crop_protocol``, or
    :data:`LEGACY_PROTOCOL` for a meta saved before there was a choice."""
    if "crop_protocol" not in meta:
        return LEGACY_PROTOCOL
    return get_protocol(meta["crop_protocol"], f"{source}: crop_protocol")


def choose_protocol(
    given: CropProtocol | str | None,
    meta: dict | None = None,
    source: str = "crop_protocol",
) -> CropProtocol:
    """The one rule (module docstring): ``given`` when set; else the protocol of the model whose
    checkpoint ``meta`` this is; else :data:`DEFAULT_PROTOCOL`."""
    if given is not None:
        return as_protocol(given, source)
    if meta is not None:
        return trained_protocol(meta)
    return DEFAULT_PROTOCOL
