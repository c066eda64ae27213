"""The crop protocols, and the one rule that chooses one.

Importing this package registers the built-in protocols: ``hopenet`` (the published crop,
:mod:`headpose.crops.protocols.hopenet`, the default) and ``visible`` (the visible-landmark crop
used before, :mod:`headpose.crops.protocols.visible`) and ``fsanet`` (FSA-Net's own crop, the
crop of its published models, :mod:`headpose.crops.protocols.fsanet`; not scored beside the
others by default). Another protocol is one module: a
:class:`CropProtocol` subclass registered with :func:`register_protocol`
(:mod:`headpose.crops.protocols.registry`). A sample whose dataset stores its final crop box gets
the unregistered :class:`~headpose.crops.protocols.stored_box.StoredBox` crop instead, decided
in one place (:func:`~headpose.crops.protocols.stored_box.sample_protocol`).

A protocol is an object from params to pixels: its name becomes the object once, where it
enters (``params.yaml``: :func:`protocol_from_params`; a checkpoint's meta:
:func:`trained_protocol`; a command-line option or an API argument: :func:`get_protocol`), and
the object is passed everywhere below; files store its name only. The one rule for the default
(:func:`choose_protocol`): a protocol given wins; else a model's own protocol (its meta's
``crop_protocol``; a meta without it was trained on :data:`LEGACY_PROTOCOL`, before protocols
existed); else, with no model to ask (scoring a test set), :data:`DEFAULT_PROTOCOL`, the
published crop.
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

# Registered after the project's own two, so they keep their places in every listing.
from headpose.crops.protocols import fsanet  # noqa: E402, F401


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


def choose_protocol(given: CropProtocol | None, meta: dict | None = None) -> CropProtocol:
    """The one rule (module docstring): ``given`` when set; else the protocol of the model whose
    checkpoint ``meta`` this is; else :data:`DEFAULT_PROTOCOL`."""
    if given is not None:
        return given
    if meta is not None:
        return trained_protocol(meta)
    return DEFAULT_PROTOCOL
