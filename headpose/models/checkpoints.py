"""Our checkpoint format: writing, reading and fitting it into a network.

Our checkpoints (:func:`save_checkpoint`) are weights-only files ``{"state_dict": ..., "meta":
{...}}`` holding tensors and plain values only, so they load with ``torch.load(...,
weights_only=True)``. The meta says how to use the weights: arch, input size and normalisation
(:data:`headpose.models.validation.META_KEYS`), the head (its
:meth:`~headpose.models.heads.Head.meta`; a checkpoint without ``head`` holds bins, as all did
before there was a choice), whether the backbone is fused for inference (``fused``) and the crop
protocol it was trained on (``crop_protocol``; absent in checkpoints saved before there was a
choice, which were trained on the ``visible`` crop); training adds what the run knew (the
training-set mean angles, the params, the run fingerprint, the epoch). :func:`read_checkpoint`
also reads the original HopeNet snapshots (:mod:`headpose.models.hopenet`), and every read is
validated (:mod:`headpose.models.validation`). A model file to predict with is opened by
:func:`headpose.inference.loading.open_model`, which reads a checkpoint through
:func:`read_checkpoint`; every torch file is read weights-only inside
:func:`readable_weights_file` (one line naming a bad file).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.io.files import atomic_path, file_problem
from headpose.models.heads import head_from_meta
from headpose.models.hopenet import from_hopenet_layout
from headpose.models.validation import (
    CHECKPOINT_FORMAT_VERSION,
    META_KEYS,
    validate_checkpoint,
)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """Write ``{"state_dict", "meta"}`` atomically; ``meta`` needs every key in META_KEYS and
    must describe the model's arch and head. ``fused`` is recorded from the model, and the
    format's version."""
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise HeadposeError(f"checkpoint meta for {path} lacks {', '.join(missing)}")
    head = head_from_meta(meta, f"checkpoint meta for {path}")
    if meta["arch"] != model.arch or head.meta() != model.head.meta():
        raise HeadposeError(
            f"checkpoint meta says {meta['arch']} with head {head.meta()}, but the model "
            f"is {model.arch} with head {model.head.meta()}"
        )
    state_dict = OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items())
    meta = {**meta, "fused": model.fused, "format_version": CHECKPOINT_FORMAT_VERSION}
    save_torch(path, {"state_dict": state_dict, "meta": meta})


def save_torch(path: str | os.PathLike, content: dict) -> None:
    """``torch.save`` atomically through a Python file, so a full disk or a refused write is an
    OSError naming the file (a HeadposeError from :func:`atomic_path`), not torch's own error."""
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        torch.save(content, handle)


@contextmanager
def readable_weights_file(path: Path) -> Iterator[None]:
    """Around one ``torch.load(path, ..., weights_only=True)``: refuse, before it, a path that is
    no regular file (a FIFO would block the read), and turn whatever torch raises into one
    HeadposeError line naming the file and why."""
    problem = file_problem(path)
    if problem:
        raise HeadposeError(f"checkpoint {path} {problem}")
    try:
        yield
    except OSError as error:
        raise HeadposeError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        # torch's own message advises weights_only=False, which would run the file's code: it
        # is never repeated, only what the file holds.
        text = str(error)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise HeadposeError(
                f"{path} is refused: it holds Python objects, not only tensors and plain values "
                f"(such as {found.group(1)}); only weights-only checkpoints are loaded"
            ) from None
        detail = text.split("WeightsUnpickler error:", 1)[-1]
        lines = [line.strip() for line in detail.splitlines() if line.strip()]
        raise HeadposeError(
            f"{path} is not a readable weights-only PyTorch checkpoint ({type(error).__name__}: "
            f"{lines[0] if lines else 'no detail'})"
        ) from None


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """(state dict in HeadPoseNet key layout, meta) of our format or a bare HopeNet state dict,
    validated; the file is checked and read here, once (:func:`readable_weights_file`)."""
    file = Path(path)
    with readable_weights_file(file):
        content = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(content, dict) and "state_dict" in content and "meta" in content:
        state_dict, meta = content["state_dict"], content["meta"]
    elif isinstance(content, dict) and "fc_yaw.weight" in content:
        state_dict, meta = from_hopenet_layout(content, path)
    else:
        raise HeadposeError(
            f"{path} is neither a headpose checkpoint (state_dict + meta) nor a HopeNet snapshot "
            "(a ResNet state dict with fc_yaw/fc_pitch/fc_roll)"
        )
    validate_checkpoint(state_dict, meta, path)
    return dict(state_dict), dict(meta)


def shape_mismatches(model: nn.Module, state_dict: dict) -> list[str]:
    """Tensors of ``state_dict`` whose shape differs from the model's (``name: file vs model``)."""
    own = model.state_dict()
    return [
        f"{key}: {tuple(value.shape)} vs {tuple(own[key].shape)}"
        for key, value in state_dict.items()
        if key in own and (not isinstance(value, torch.Tensor) or value.shape != own[key].shape)
    ]


def load_state(
    model: nn.Module, state_dict: dict, path: str | os.PathLike, allow_missing_heads: bool
) -> None:
    """Load ``state_dict`` into ``model`` strictly (``allow_missing_heads``: the output layers may
    be absent), or a HeadposeError saying which arch and head the file does not fit."""
    mismatched = shape_mismatches(model, state_dict)
    if mismatched:
        raise HeadposeError(
            f"checkpoint {path} does not fit {model.arch} with head {model.head.meta()}: "
            f"{len(mismatched)} tensors of another shape (e.g. {mismatched[0]})"
        )
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if allow_missing_heads:
        missing = [key for key in missing if not key.startswith("fc_")]
    if missing or unexpected:
        raise HeadposeError(
            f"checkpoint {path} does not fit {model.arch} with head {model.head.meta()}: "
            f"missing {len(missing)} tensors (e.g. {missing[:2]}), "
            f"unexpected {len(unexpected)} (e.g. {unexpected[:2]})"
        )
