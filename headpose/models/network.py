"""The head-pose network: a registered backbone, its head's output layers, and the angles model.

:func:`build_model` wraps a backbone of the registry (:mod:`headpose.models.registry`; the
``arch`` key of params.yaml picks it) in a :class:`HeadPoseNet` with the output layers of its head
(:mod:`headpose.models.heads`; the ``head`` key picks it), named and sized by the head.
``forward`` returns the outputs of those layers as a tuple.
:class:`AnglesModel` puts the head's conversion to degrees after the network, so it maps a
``(N, 3, S, S)`` batch of normalised crops straight to ``(N, 3)`` angles in degrees: validation,
evaluation, prediction, the benchmark and the exported ONNX/TorchScript files all run this
module, whatever the head. :func:`network_from_checkpoint` rebuilds the network from a
checkpoint's weights and meta (:mod:`headpose.models.checkpoints`).

Backbones that can be re-parameterised for inference (timm's RepVGG and MobileOne) are fused by
:func:`fused_for_inference`: the one opener of model files
(:func:`headpose.inference.loading.open_model`) always runs the fused form, so evaluation,
prediction, export and the benchmark run (and count the parameters of) what is deployed. A fused
checkpoint (``meta["fused"]``) loads into the fused structure.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.models.checkpoints import load_state
from headpose.models.heads import Head, head_from_meta
from headpose.models.registry import get_arch
from headpose.models.weights import load_pretrained


class HeadPoseNet(nn.Module):
    """A backbone giving pooled features, and the head's linear output layers."""

    def __init__(self, arch: str, head: Head) -> None:
        super().__init__()
        self.arch = arch
        self.head = head
        self.fused = False
        spec = get_arch(arch)
        self.backbone, feature_count = spec.headless()
        self.stem_names = spec.stem
        self.output_names = tuple(head.layer_sizes())
        for name, size in head.layer_sizes().items():
            self.add_module(name, nn.Linear(feature_count, size))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(images)
        if not torch.compiler.is_compiling() and torch.is_autocast_enabled(features.device.type):
            # Mixed precision (CUDA AMP) rounds the backbone only: the output layers run in
            # float32, so the bins' logits (and the 6D vectors) are not half precision.
            with torch.autocast(device_type=features.device.type, enabled=False):
                return self._outputs(features.float())
        return self._outputs(features)

    def _outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.get_submodule(name)(features) for name in self.output_names)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Disjoint groups covering every parameter: ``stem`` (the first conv block, frozen in
        training phase 1), ``backbone`` (the rest of the backbone) and ``heads`` (5x lr)."""
        stem = [
            parameter
            for name in self.stem_names
            for parameter in self.backbone.get_submodule(name).parameters()
        ]
        stem_ids = {id(parameter) for parameter in stem}
        heads = [p for name in self.output_names for p in self.get_submodule(name).parameters()]
        return {
            "stem": stem,
            "backbone": [p for p in self.backbone.parameters() if id(p) not in stem_ids],
            "heads": heads,
        }

    def fuse_backbone(self) -> None:
        """Re-parameterise the backbone for inference in place (eval mode; no-op when the
        arch has nothing to fuse). A fused network is for inference only."""
        fused = get_arch(self.arch).fuse(self.backbone.eval())
        if fused is not None:
            self.backbone = fused
            self.fused = True
        self.eval()


def build_model(arch: str, head: Head, pretrained: str = "none") -> HeadPoseNet:
    """A HeadPoseNet for ``arch`` with the output layers of ``head``.

    ``pretrained``: ``none`` (random init), ``imagenet`` (the backbone's ImageNet weights:
    torchvision's or timm's, downloaded on first use; cbam_resnet50 takes resnet50's, its CBAM
    layers start fresh) or a checkpoint path (ours or a HopeNet snapshot) of the same arch, whose
    output layers are taken too when they have the same head and sizes.
    """
    model = HeadPoseNet(arch, head)
    load_pretrained(model, pretrained)
    return model


def fused_for_inference(network: HeadPoseNet) -> HeadPoseNet:
    """``network`` in eval mode, re-parameterised (a fused copy) when its backbone can be."""
    if network.fused or not get_arch(network.arch).fusable(network.backbone):
        return network.eval()
    fused = copy.deepcopy(network)
    fused.fuse_backbone()
    return fused


def network_from_checkpoint(state_dict: dict, meta: dict, path: str | os.PathLike) -> HeadPoseNet:
    """The eval-mode network a checkpoint's weights and meta describe (as
    :func:`headpose.models.checkpoints.read_checkpoint` returns them; ``path`` names the file in
    messages). A fused checkpoint loads as the fused network."""
    model = HeadPoseNet(meta["arch"], head_from_meta(meta, f"checkpoint {path}"))
    if meta.get("fused"):
        model.fuse_backbone()
        if not model.fused:
            raise HeadposeError(f"checkpoint {path} says fused, but {meta['arch']} has no fusion")
    load_state(model, state_dict, path, allow_missing_heads=False)
    return model.eval()


class AnglesModel(nn.Module):
    """A head-pose network followed by its head's conversion to degrees: outputs (N, 3) yaw,
    pitch, roll degrees."""

    def __init__(self, network: HeadPoseNet, head: Head | None = None) -> None:
        super().__init__()
        self.network = network
        self.head = network.head if head is None else head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head.angles_deg(self.network(images))


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
