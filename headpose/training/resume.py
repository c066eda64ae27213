"""Resumable runs: what a run has done so far, and the resume checkpoint that replays it.

A resume checkpoint is written after every epoch outside the stage's outputs (DVC deletes
``models/`` before re-running the stage). Re-running with the same params and samples (the same
:func:`run_fingerprint`: the lists, the bytes of every sample file and of a ``pretrained:``
checkpoint) continues after the last finished epoch and gives exactly the result of an
uninterrupted run; a file of another run (a replaced ``pretrained:`` file makes another run), or
a damaged one (unreadable, or weights that do not fit the model), is ignored with a note.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from headpose.models.checkpoints import save_torch, shape_mismatches


def pretrained_digest(pretrained: str) -> str:
    """SHA-256 of a ``pretrained:`` checkpoint's bytes, so a replaced file is another run ("" for
    ``none`` and ``imagenet``, whose files torchvision and timm check themselves, and for a
    missing file, which loading the weights reports)."""
    if pretrained in ("none", "imagenet"):
        return ""
    try:
        with open(pretrained, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return ""


def run_fingerprint(record: dict, pretrained: str, train_key: str, val_key: str) -> str:
    """A hash of everything a run's result depends on: all params (``record``, the whole
    params.yaml as a mapping), the ``pretrained:`` file's bytes and both sets' crop store keys
    (:func:`headpose.crops.store.key.store_key`: the lists and every sample file's bytes)."""
    content = {
        "params": record,
        "train": train_key,
        "val": val_key,
        "pretrained": pretrained_digest(pretrained),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass
class RunState:
    """What a run has done so far: one record per finished epoch and the best weights yet."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_mae_mean: float = float("inf")
    best_state_dict: dict | None = None

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def add_epoch(self, record: dict, model: nn.Module) -> None:
        """Record a finished epoch, keeping a copy of the weights when validation improved."""
        self.history.append(record)
        if record["mae_mean"] < self.best_mae_mean:
            self.best_epoch, self.best_mae_mean = record["epoch"], record["mae_mean"]
            self.best_state_dict = {
                k: v.detach().cpu().clone() for k, v in model.state_dict().items()
            }


def save_resume(path: Path, fingerprint: str, state: RunState, phase: str, **objects) -> None:
    """Write the resume checkpoint: the run state, the phase's name and each object's
    ``state_dict``."""
    content = {"fingerprint": fingerprint, "phase": phase, "state": vars(state)}
    content.update({name: item.state_dict() for name, item in objects.items()})
    save_torch(path, content)


def load_resume(path: Path, fingerprint: str, model: nn.Module) -> dict | None:
    """The saved content of an interrupted run with the same fingerprint whose weights fit
    ``model``, else None."""
    if not path.is_file():
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a foreign or damaged file: start over rather than fail
        print(f"ignoring {path}: not a readable weights-only resume checkpoint")
        return None
    if not isinstance(content, dict) or content.get("fingerprint") != fingerprint:
        print(
            f"ignoring {path}: a run of other params or other samples (lists or file "
            "contents); starting over"
        )
        return None
    saved_model = content.get("model")
    own = model.state_dict()
    if (
        not isinstance(saved_model, dict)
        or set(saved_model) != set(own)
        or shape_mismatches(model, saved_model)
        or not all(isinstance(content.get(key), dict) for key in ("state", "scaler"))
    ):
        print(f"ignoring {path}: its weights do not fit the model; starting over")
        return None
    return content
