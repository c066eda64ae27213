"""Tiny checkpoints for the model, evaluation and prediction tests."""

from __future__ import annotations

from pathlib import Path

import torch

from headpose.models.checkpoints import save_checkpoint
from headpose.models.heads.bins import Bins
from headpose.models.network import build_model
from headpose.models.registry import IMAGENET


def checkpoint_meta(arch: str, num_bins: int = 66, image_size: int = 32) -> dict:
    """The meta of a checkpoint trained with bin centres and ImageNet normalisation."""
    return {
        "arch": arch,
        "num_bins": num_bins,
        "bin_width": 198 // num_bins,
        "image_size": image_size,
        "expectation": "centers",
        **IMAGENET.meta(),
    }


def write_checkpoint(
    path: Path, arch: str, num_bins: int = 66, image_size: int = 32, seed: int = 0, **meta
) -> Path:
    """Save a randomly initialised model (seeded) as a checkpoint at ``path``; ``meta`` adds
    keys to its meta (such as ``training_mean_deg``)."""
    torch.manual_seed(seed)
    meta = {**checkpoint_meta(arch, num_bins, image_size), **meta}
    save_checkpoint(path, build_model(arch, Bins(198 // num_bins)), meta)
    return path
