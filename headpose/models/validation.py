"""The validation of every checkpoint read (evaluate, predict, export, benchmark, ``pretrained:``).

The meta must be of a format this code reads (``format_version`` at most
:data:`CHECKPOINT_FORMAT_VERSION`), name a known arch and head, an input size that passes
params.yaml's ``image_size`` rule (:data:`headpose.params.IMAGE_SIZE_RANGE_PX`), a known crop
protocol, a finite ``mean`` and a positive ``std`` of three values each, and a head that agrees
with the weights (the head's own checks, then each output layer's size:
:func:`headpose.models.heads.validate_head_meta`), so a file that contradicts itself is refused
in one line instead of failing inside the network.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from headpose.errors import HeadposeError
from headpose.models.heads import validate_head_meta
from headpose.models.registry import get_arch
from headpose.params import SCHEMA, check_argument

# Keys every checkpoint meta holds (beside its head's: see headpose.models.heads).
META_KEYS = ("arch", "image_size", "mean", "std")
# The checkpoint format this code writes and reads; checkpoints from before it existed have no
# ``format_version`` and are version 1 too. A newer one may mean something this code misreads.
CHECKPOINT_FORMAT_VERSION = 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_checkpoint(state_dict: Any, meta: Any, path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose meta is incomplete, unknown, out of range or contradicts its
    weights, naming the file and the disagreement (see the module docstring)."""
    if not isinstance(meta, dict) or not isinstance(state_dict, dict):
        raise HeadposeError(f"checkpoint {path}: state_dict and meta must be mappings")
    version = meta.get("format_version", CHECKPOINT_FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HeadposeError(f"checkpoint {path}: format_version {version!r} is not a version")
    if version > CHECKPOINT_FORMAT_VERSION:
        raise HeadposeError(
            f"checkpoint {path} has format_version {version}, written by a newer headpose; this "
            f"one reads up to {CHECKPOINT_FORMAT_VERSION}: upgrade headpose to use it"
        )
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise HeadposeError(f"checkpoint {path}: meta lacks {', '.join(missing)}")
    if not isinstance(meta["arch"], str):
        raise HeadposeError(f"checkpoint {path}: arch {meta['arch']!r} is not a name")
    get_arch(meta["arch"], f"checkpoint {path}")
    check_argument(f"checkpoint {path}: image_size", meta["image_size"], SCHEMA["image_size"])
    # The name only: the crop protocol registry (a layer above) checks that it is registered
    # where the protocol is chosen (headpose.crops.protocols.trained_protocol).
    protocol = meta.get("crop_protocol", "")
    if not isinstance(protocol, str) or ("crop_protocol" in meta and not protocol.strip()):
        raise HeadposeError(
            f"checkpoint {path}: crop_protocol {protocol!r}; expected a crop protocol's name"
        )
    for key in ("mean", "std"):
        values = meta[key]
        if not (
            isinstance(values, (list, tuple))
            and len(values) == 3
            and all(_is_number(v) for v in values)
        ) or (key == "std" and min(values) <= 0):
            raise HeadposeError(f"checkpoint {path}: {key} {values!r}; expected 3 finite numbers")
    validate_head_meta(meta, state_dict, f"checkpoint {path}")
    for name, tensor in state_dict.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not tensor.isfinite().all():
            raise HeadposeError(
                f"checkpoint {path}: weights {name} hold NaN or infinite values (a diverged or "
                "damaged model); it would predict nothing but NaN"
            )
