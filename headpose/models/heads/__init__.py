"""The heads: the registered ones, looked up by the ``head`` key of params.yaml or a checkpoint's
meta.

The package holds the interface and the registry (:mod:`headpose.models.heads.base`: :class:`Head`,
:data:`HEADS`, :func:`register_head`) and one module per built-in head, registered by importing
this package: ``bins`` (HopeNet's binned classification, :mod:`headpose.models.heads.bins`, the
default) and ``rotation_6d`` (the 6D rotation with Gram-Schmidt,
:mod:`headpose.models.heads.rotation`). Another head registers itself with :func:`register_head`
in its own module (a plugin: :mod:`headpose.registry`). A checkpoint written before there was a
choice holds bins and no ``head`` key.

A head carries its own options (a bins head its width, expectation mode and loss weight): code
above the heads passes a head, never one of its options. :func:`head_with` makes the head an
evaluation asks for from a checkpoint's (options replaced, the rest checked), and
:func:`check_same_head` checks a given head against the one a checkpoint records.
"""

from __future__ import annotations

from typing import Any

import torch

from headpose.errors import HeadposeError, shorten
from headpose.models.heads import bins, rotation  # noqa: F401  (registered, the default first)
from headpose.models.heads.base import HEADS, Head, register_head

__all__ = [
    "DEFAULT_HEAD",
    "HEADS",
    "Head",
    "check_meta_keys",
    "check_same_head",
    "default_head",
    "head_class",
    "head_from_meta",
    "head_from_params",
    "head_names",
    "head_with",
    "register_head",
    "validate_head_meta",
    "validate_head_params",
]

DEFAULT_HEAD = bins.Bins.name  # the params.yaml default, and what a meta without ``head`` holds


def head_names() -> tuple[str, ...]:
    """The names of the registered heads, the default first (it is registered first)."""
    return HEADS.names()


def head_class(name: object, source: str) -> type[Head]:
    """The registered head called ``name`` (``source`` starts the error)."""
    return HEADS.get(name, source)


def default_head(name: str) -> Head:
    """The head ``name`` with its params keys at their defaults (an untrained benchmark row)."""
    cls = head_class(name, "head")
    return cls.from_params(cls.params_defaults)


def head_from_params(params: dict) -> Head:
    """The head that ``params`` (a validated params.yaml) train."""
    return head_class(params["head"], "params.yaml: head").from_params(params)


def validate_head_params(params: dict) -> None:
    """Check the params.yaml keys the heads own: each head's rules on its keys, then that the
    keys of the heads not chosen stay at their defaults, so a variant never silently ignores a
    knob."""
    chosen = head_class(params["head"], "params.yaml: head").name
    for cls in HEADS.values():
        cls.validate_params(params)
    for cls in HEADS.values():
        if cls.name == chosen:
            continue
        for key, default in cls.params_defaults.items():
            if params[key] != default:
                raise HeadposeError(
                    f"params.yaml: {key} is {shorten(params[key])}, but {key} does not apply to "
                    f"head {chosen} ({cls.name} head only); leave it at {default!r}"
                )


def check_meta_keys(cls: type[Head], meta: dict, source: str) -> None:
    """Refuse a meta that lacks a key its head needs."""
    missing = [key for key in cls.meta_keys if key not in meta]
    if missing:
        raise HeadposeError(f"{source}: a {cls.name} head without {', '.join(missing)}")


def head_from_meta(meta: dict, source: str = "checkpoint") -> Head:
    """The head a checkpoint's meta records (``head`` absent: bins, as before the choice)."""
    cls = head_class(meta.get("head", DEFAULT_HEAD), source)
    check_meta_keys(cls, meta, source)
    return cls.from_meta(meta)


def validate_head_meta(meta: dict, state_dict: dict, source: str) -> Head:
    """The head of a checkpoint, its meta checked against itself and the weights: the head's own
    checks, then the output count of each of its layers."""
    cls = head_class(meta.get("head", DEFAULT_HEAD), source)
    check_meta_keys(cls, meta, source)
    cls.validate_meta(meta, state_dict, source)
    head = cls.from_meta(meta)
    for layer, size in head.layer_sizes().items():
        weight = state_dict.get(f"{layer}.weight")
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.shape[0] != size:
            shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
            raise HeadposeError(
                f"{source}: its {head.name} head needs a {layer}.weight of {size} "
                f"outputs; the file holds {shape}"
            )
    return head


def _values(meta: dict, keys: list[str]) -> str:
    return ", ".join(f"{key} {meta.get(key)}" for key in keys)


def head_with(head: Head, settings: dict[str, Any], source: str) -> Head:
    """``head`` as an evaluation asks for it. ``settings`` maps keys of the head's checkpoint meta
    to values: those among its :attr:`~headpose.models.heads.Head.options` replace its own (a bins
    head's ``expectation``), every other must be what it holds (a bins head's ``bin_width``);
    else a HeadposeError starting with ``source`` (e.g. ``checkpoint X holds bin_width 3; asked
    for bin_width 1``)."""
    held = head.meta()
    unknown = [key for key in settings if key not in held and key not in head.options]
    if unknown:
        raise HeadposeError(f"{source}: {', '.join(unknown)} does not apply to a {head.name} head")
    checked = [key for key in settings if key not in head.options and held[key] != settings[key]]
    if checked:
        raise HeadposeError(
            f"{source} holds {_values(held, checked)}; asked for {_values(settings, checked)}"
        )
    return head.with_options(**{key: settings[key] for key in settings if key in head.options})


def check_same_head(head: Head, recorded: Head, source: str) -> None:
    """Refuse ``head`` unless it is ``recorded`` (a checkpoint's head) up to its options: the
    outputs of the same layers, read with other evaluation settings."""
    if head.name != recorded.name:
        raise HeadposeError(f"{source} holds a {recorded.name} head; asked for a {head.name} head")
    options = {option: getattr(head, option) for option in head.options}
    held, asked = recorded.with_options(**options).meta(), head.meta()
    differ = [key for key in {**held, **asked} if held.get(key) != asked.get(key)]
    if differ:
        raise HeadposeError(
            f"{source} holds {_values(held, differ)}; asked for {_values(asked, differ)}"
        )
