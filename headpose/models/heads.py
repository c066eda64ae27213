"""The registered heads, looked up by the ``head`` key of params.yaml or a checkpoint's meta.

Importing this module registers the built-in heads: ``bins`` (HopeNet's binned classification,
:mod:`headpose.models.bins`, the default) and ``rotation_6d`` (the 6D rotation with Gram-Schmidt,
:mod:`headpose.models.rotation`). Another head registers itself with
:func:`headpose.models.head.register_head` in its own module. A checkpoint written before there
was a choice holds bins and no ``head`` key.
"""

from __future__ import annotations

import torch

from headpose.errors import HeadposeError
from headpose.models import bins, rotation  # noqa: F401  (registers the built-in heads)
from headpose.models.head import HEADS, Head

DEFAULT_HEAD = "bins"  # the params.yaml default, and what a meta without ``head`` holds


def head_names() -> tuple[str, ...]:
    """The names of the registered heads, the default first."""
    return (DEFAULT_HEAD, *(name for name in HEADS if name != DEFAULT_HEAD))


def head_class(name: object, source: str) -> type[Head]:
    """The registered head called ``name`` (``source`` starts the error)."""
    if name not in HEADS:
        raise HeadposeError(
            f"{source}: unknown head {name!r}; expected one of {', '.join(head_names())}"
        )
    return HEADS[name]


def default_head(name: str) -> Head:
    """The head ``name`` with its params keys at their defaults (an untrained benchmark row)."""
    cls = head_class(name, "head")
    return cls.from_params(cls.params_defaults)


def head_from_params(params: dict) -> Head:
    """The head that ``params`` (a validated params.yaml) train."""
    return head_class(params["head"], "params.yaml").from_params(params)


def validate_head_params(params: dict) -> None:
    """Check the params.yaml keys the heads own: each head's rules on its keys, then that the
    keys of the heads not chosen stay at their defaults, so a variant never silently ignores a
    knob."""
    chosen = params["head"]
    if chosen not in HEADS:
        raise HeadposeError(
            f"params.yaml: head is {chosen!r}; expected one of " + ", ".join(head_names())
        )
    for cls in HEADS.values():
        cls.validate_params(params)
    for cls in HEADS.values():
        if cls.name == chosen:
            continue
        for key, default in cls.params_defaults.items():
            if params[key] != default:
                raise HeadposeError(
                    f"params.yaml: {key} is {params[key]!r}, but {key} does not apply to head "
                    f"{chosen} ({cls.name} head only); leave it at {default!r}"
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
