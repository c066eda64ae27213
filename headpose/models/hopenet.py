"""The original HopeNet snapshots (``hopenet_alpha1.pkl``, ``hopenet_alpha2.pkl``, ...): a bare
ResNet state dict with ``fc_yaw``/``fc_pitch``/``fc_roll`` bins layers, converted to our key
layout and meta. They must be evaluated as published: bin width 3, lower-edge expectation,
224 px, ImageNet normalisation, the ``hopenet`` crop (:data:`HOPENET_META`).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from headpose.errors import HeadposeError
from headpose.models.heads.bins import RANGE_DEG, Bins
from headpose.models.registry import IMAGENET

# How the original HopeNet snapshots were trained and must be evaluated.
HOPENET_META: dict[str, Any] = {
    "arch": "resnet50",
    **Bins(3, "lower_edges").meta(),
    "image_size": 224,
    "crop_protocol": "hopenet",
    **IMAGENET.meta(),
    "source": "original HopeNet snapshot",
}


# ResNet layouts of a bare HopeNet state dict: (bottleneck blocks?, blocks per stage) -> arch.
_RESNET_LAYOUTS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


def from_hopenet_layout(content: dict, path: str | os.PathLike) -> tuple[dict, dict]:
    """Map the original HopeNet keys (``conv1.weight``, ``layer1.0...``, ``fc_yaw...``) to ours."""
    plain = {key.removeprefix("module."): value for key, value in content.items()}
    bottleneck = "layer1.0.conv3.weight" in plain
    blocks = tuple(
        len({key.split(".")[1] for key in plain if key.startswith(f"layer{stage}.")})
        for stage in range(1, 5)
    )
    arch = _RESNET_LAYOUTS.get((bottleneck, blocks))
    if arch is None:
        raise HeadposeError(f"{path}: a HopeNet-style state dict of an unknown ResNet {blocks}")
    head = plain["fc_yaw.weight"]
    num_bins = int(head.shape[0]) if isinstance(head, torch.Tensor) and head.ndim == 2 else 0
    if num_bins < 2 or RANGE_DEG % num_bins:
        raise HeadposeError(f"{path}: {num_bins} bins do not split 198 degrees evenly")
    state_dict = {}
    for key, value in plain.items():
        if key.startswith("fc_finetune."):
            continue  # an unused layer of the original model
        state_dict[key if key.startswith("fc_") else f"backbone.{key}"] = value
    meta = {**HOPENET_META, "arch": arch, **Bins(RANGE_DEG // num_bins, "lower_edges").meta()}
    return state_dict, meta
