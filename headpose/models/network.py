"""The head-pose network: a registered backbone, three binned-angle heads, and the angles model.

:func:`build_model` wraps a backbone of the registry (:mod:`headpose.models.registry`; the
``arch`` key of params.yaml picks it) in a :class:`HeadPoseNet`, whose ``forward`` returns
``(yaw_logits, pitch_logits, roll_logits)``, each ``(batch, num_bins)``. :class:`AnglesModel`
puts the bins' expectation (:class:`headpose.models.bins.Bins`) after the network, so it maps a
``(N, 3, S, S)`` batch of normalised crops straight to ``(N, 3)`` angles in degrees: validation,
evaluation, prediction and the exported ONNX/TorchScript files all run this module.
:func:`load_checkpoint` and :func:`load_angles_model` rebuild them from a checkpoint
(:mod:`headpose.models.checkpoints`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.models.bins import Bins
from headpose.models.checkpoints import load_pretrained, load_state, read_checkpoint
from headpose.models.registry import get_arch


class HeadPoseNet(nn.Module):
    """A backbone giving pooled features, and one linear classifier per angle."""

    def __init__(self, arch: str, num_bins: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_bins = num_bins
        spec = get_arch(arch)
        self.backbone, feature_count = spec.headless()
        self.stem_names = spec.stem
        self.fc_yaw = nn.Linear(feature_count, num_bins)
        self.fc_pitch = nn.Linear(feature_count, num_bins)
        self.fc_roll = nn.Linear(feature_count, num_bins)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.backbone(images)
        return self.fc_yaw(features), self.fc_pitch(features), self.fc_roll(features)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Disjoint groups covering every parameter: ``stem`` (the first conv block, frozen in
        training phase 1), ``backbone`` (the rest of the backbone) and ``heads`` (5x lr)."""
        stem = [
            parameter
            for name in self.stem_names
            for parameter in self.backbone.get_submodule(name).parameters()
        ]
        stem_ids = {id(parameter) for parameter in stem}
        heads = [
            *self.fc_yaw.parameters(),
            *self.fc_pitch.parameters(),
            *self.fc_roll.parameters(),
        ]
        return {
            "stem": stem,
            "backbone": [p for p in self.backbone.parameters() if id(p) not in stem_ids],
            "heads": heads,
        }


def build_model(arch: str, num_bins: int, pretrained: str = "none") -> HeadPoseNet:
    """A HeadPoseNet for ``arch`` with ``num_bins`` classes per angle.

    ``pretrained``: ``none`` (random init), ``imagenet`` (the backbone's torchvision ImageNet
    weights, downloaded into the torch hub cache on first use; cbam_resnet50 takes resnet50's,
    its CBAM layers start fresh) or a checkpoint path (ours or a HopeNet snapshot) of the same
    arch, whose heads are taken too when their bin count matches.
    """
    if num_bins < 2:
        raise HeadposeError(f"num_bins must be at least 2, got {num_bins}")
    model = HeadPoseNet(arch, num_bins)
    load_pretrained(model, pretrained)
    return model


def load_checkpoint(
    path: str | os.PathLike, expected: dict | None = None, device: str | torch.device = "cpu"
) -> tuple[HeadPoseNet, dict]:
    """Load a checkpoint (ours or an original HopeNet snapshot) as an eval-mode model.

    ``expected`` maps meta keys (e.g. ``arch``, ``num_bins``, ``bin_width``) to the values the
    caller needs; a mismatch raises a HeadposeError saying what the file holds and what was asked.
    """
    state_dict, meta = read_checkpoint(path)
    mismatched = {key: value for key, value in (expected or {}).items() if meta.get(key) != value}
    if mismatched:
        asked = ", ".join(f"{key} {value}" for key, value in mismatched.items())
        holds = ", ".join(f"{key} {meta.get(key)}" for key in mismatched)
        raise HeadposeError(f"checkpoint {path} holds {holds}; asked for {asked}")
    model = HeadPoseNet(meta["arch"], meta["num_bins"])
    load_state(model, state_dict, path, allow_missing_heads=False)
    return model.to(device).eval(), meta


class AnglesModel(nn.Module):
    """A head-pose network followed by the expectation over its bins: outputs degrees."""

    def __init__(self, network: nn.Module, bins: Bins) -> None:
        super().__init__()
        self.network = network
        self.bins = bins

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.bins.angles_deg(self.network(images))


def load_angles_model(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[AnglesModel, dict]:
    """An eval-mode :class:`AnglesModel` from a checkpoint, with the checkpoint's meta."""
    network, meta = load_checkpoint(checkpoint, device=device)
    return AnglesModel(network, Bins.from_meta(meta)).to(device).eval(), meta


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in model.parameters())


def pick_device(requested: str | None = None) -> torch.device:
    """The device ``requested`` (``cpu``, ``cuda``, ``cuda:1``, ``mps`` ...), checked to exist
    here; None: CUDA when available, else the CPU."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise HeadposeError(
            f"--device {requested!r} is no device; expected cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise HeadposeError(f"--device {requested}: no CUDA GPU is available here; use cpu")
        if device.index is not None and device.index >= count:
            raise HeadposeError(f"--device {requested}: this machine has {count} CUDA GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise HeadposeError(f"--device {requested}: MPS is not available here; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise HeadposeError(f"--device {requested}: expected cpu, cuda, cuda:N or mps")
    return device
