"""The model family: backbones with three binned-angle heads, and their checkpoints.

:func:`build_model` wraps a torchvision backbone (built without weights; the ``arch`` key of
params.yaml picks it) or our CBAM-ResNet50 in a :class:`HeadPoseNet`, whose ``forward`` returns
``(yaw_logits, pitch_logits, roll_logits)``, each ``(batch, num_bins)``.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`) are weights-only files
``{"state_dict": ..., "meta": {...}}`` holding tensors and plain values only, so they load with
``torch.load(..., weights_only=True)``. The meta says how to use the weights: arch, bins,
input size, expectation mode and normalisation. :func:`load_checkpoint` also reads the original
HopeNet snapshots (``hopenet_alpha1.pkl``, ``hopenet_alpha2.pkl``: a bare ResNet state dict with
``fc_yaw``/``fc_pitch``/``fc_roll`` heads), which must be evaluated as published: bin width 3,
lower-edge expectation, 224 px, ImageNet normalisation (:data:`HOPENET_META`).

ImageNet weights (``pretrained: imagenet``) come from the torch hub cache, as torchvision's do:
downloaded there on first use and verified against the hash in their file name; offline, the
error names the file and the folder to put it in.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from headpose.errors import HeadposeError
from headpose.io.files import atomic_path
from headpose.params import ARCHS, FULL_RANGE_DEG

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Keys every checkpoint meta holds.
META_KEYS = ("arch", "num_bins", "bin_width", "image_size", "expectation", "mean", "std")

# How the original HopeNet snapshots were trained and must be evaluated.
HOPENET_META: dict[str, Any] = {
    "arch": "resnet50",
    "num_bins": 66,
    "bin_width": 3,
    "image_size": 224,
    "expectation": "lower_edges",
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "source": "original HopeNet snapshot",
}

# torchvision constructor and weight enum of each plain backbone (cbam_resnet50 reuses resnet50's).
_TORCHVISION = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights),
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights),
    "resnet101": (torchvision.models.resnet101, torchvision.models.ResNet101_Weights),
    "resnet152": (torchvision.models.resnet152, torchvision.models.ResNet152_Weights),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights),
    "shufflenet_v2_x1_0": (
        torchvision.models.shufflenet_v2_x1_0,
        torchvision.models.ShuffleNet_V2_X1_0_Weights,
    ),
}

# ResNet layouts of a bare HopeNet state dict: (bottleneck blocks?, blocks per stage) -> arch.
_RESNET_LAYOUTS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


# --- CBAM (Woo et al. 2018, "CBAM: Convolutional Block Attention Module") -----------------------


class ChannelAttention(nn.Module):
    """Reweights channels by sigmoid(MLP(avg-pool) + MLP(max-pool)), the MLP shared."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )

    def weights(self, features: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) channel weights in (0, 1)."""
        average = torch.mean(features, dim=(2, 3), keepdim=True)
        maximum = torch.amax(features, dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(average) + self.mlp(maximum))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features * self.weights(features)


class SpatialAttention(nn.Module):
    """Reweights positions by sigmoid(7x7 conv over the channel-mean and channel-max maps)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def weights(self, features: torch.Tensor) -> torch.Tensor:
        """The (B, 1, H, W) spatial weights in (0, 1)."""
        mean_map = torch.mean(features, dim=1, keepdim=True)
        max_map = torch.amax(features, dim=1, keepdim=True)
        return torch.sigmoid(self.conv(torch.cat([mean_map, max_map], dim=1)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features * self.weights(features)


class CBAM(nn.Module):
    """Channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(features))


class CBAMBottleneck(Bottleneck):
    """A ResNet bottleneck whose residual branch passes through CBAM before the addition."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cbam = CBAM(self.bn3.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.relu(self.bn1(self.conv1(x)))
        residual = self.relu(self.bn2(self.conv2(residual)))
        residual = self.cbam(self.bn3(self.conv3(residual)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(residual + shortcut)


def cbam_resnet50() -> ResNet:
    """ResNet50 with CBAM in every bottleneck (same layer names as torchvision's resnet50)."""
    return ResNet(CBAMBottleneck, [3, 4, 6, 3])


# --- The head-pose network ----------------------------------------------------------------------


class HeadPoseNet(nn.Module):
    """A backbone giving pooled features, and one linear classifier per angle."""

    def __init__(self, arch: str, num_bins: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_bins = num_bins
        self.backbone, self.stem_names, feature_count = _headless_backbone(arch)
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


def _headless_backbone(arch: str) -> tuple[nn.Module, tuple[str, ...], int]:
    """(backbone returning pooled features, names of its stem modules, feature count)."""
    if arch == "cbam_resnet50":
        network = cbam_resnet50()
    elif arch in _TORCHVISION:
        network = _TORCHVISION[arch][0](weights=None)
    else:
        raise HeadposeError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if arch == "mobilenet_v2":
        feature_count = network.classifier[-1].in_features
        network.classifier = nn.Identity()
        stem_names: tuple[str, ...] = ("features.0",)
    else:  # ResNets and ShuffleNet end in a `fc` classifier after pooling
        feature_count = network.fc.in_features
        network.fc = nn.Identity()
        stem_names = ("conv1",) if arch.startswith("shufflenet") else ("conv1", "bn1")
    return network, stem_names, feature_count


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
    if pretrained == "imagenet":
        _load_imagenet(model)
    elif pretrained != "none":
        state_dict, meta = _read_checkpoint(pretrained)
        if meta["arch"] != arch:
            raise HeadposeError(
                f"pretrained checkpoint {pretrained} holds arch {meta['arch']}, but arch is {arch}"
            )
        if meta["num_bins"] != num_bins:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc_")}
        _load_state(model, state_dict, pretrained, allow_missing_heads=True)
    return model


# --- ImageNet weights, cached like torchvision's ----------------------------------------------


def imagenet_weight_sources(arch: str) -> list[tuple[str, Path]]:
    """(download URL, path in the torch hub cache) of each ImageNet weight file of ``arch``,
    preferred first (cbam_resnet50 takes resnet50's)."""
    weights_enum = _TORCHVISION["resnet50" if arch == "cbam_resnet50" else arch][1]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [(weights.url, folder / weights.url.rsplit("/", 1)[-1]) for weights in weights_enum]


def imagenet_weight_files(arch: str) -> list[Path]:
    """Paths the ImageNet weights of ``arch`` may have in the torch hub cache, preferred first."""
    return [path for _, path in imagenet_weight_sources(arch)]


def _fetch_imagenet_weights(arch: str) -> Path:
    """The cached ImageNet weight file of ``arch``, downloaded (hash-checked) if none is cached."""
    sources = imagenet_weight_sources(arch)
    for _, path in sources:
        if path.is_file():
            return path
    url, path = sources[0]
    # torchvision names its files NAME-<first hex digits of the SHA-256>.pth
    hash_prefix = path.stem.rsplit("-", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"pretrained: imagenet: downloading {url} to {path}", flush=True)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=True)
    except (OSError, RuntimeError) as error:  # no network, refused, or a hash mismatch
        path.unlink(missing_ok=True)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HeadposeError(
            f"pretrained: imagenet could not download the ImageNet weights of {arch} ({reason}); "
            f"place {path.name} (from {url}) in {path.parent}"
        ) from None
    return path


def _load_imagenet(model: HeadPoseNet) -> None:
    weight_file = _fetch_imagenet_weights(model.arch)
    state_dict = _torch_load(weight_file)
    classifier = ("fc.", "classifier.")
    backbone_state = {k: v for k, v in state_dict.items() if not k.startswith(classifier)}
    missing, unexpected = model.backbone.load_state_dict(backbone_state, strict=False)
    missing = [key for key in missing if ".cbam." not in key]  # CBAM layers start fresh
    if missing or unexpected:
        raise HeadposeError(
            f"{weight_file} does not fit {model.arch}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )


# --- Checkpoints --------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, model: HeadPoseNet, meta: dict) -> None:
    """Write ``{"state_dict", "meta"}`` atomically; ``meta`` needs every key in META_KEYS."""
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise HeadposeError(f"checkpoint meta for {path} lacks {', '.join(missing)}")
    if meta["arch"] != model.arch or meta["num_bins"] != model.num_bins:
        raise HeadposeError(
            f"checkpoint meta says {meta['arch']} with {meta['num_bins']} bins, but the model "
            f"is {model.arch} with {model.num_bins} bins"
        )
    state_dict = OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items())
    with atomic_path(path) as temp:
        torch.save({"state_dict": state_dict, "meta": dict(meta)}, temp)


def load_checkpoint(
    path: str | os.PathLike, expected: dict | None = None, device: str | torch.device = "cpu"
) -> tuple[HeadPoseNet, dict]:
    """Load a checkpoint (ours or an original HopeNet snapshot) as an eval-mode model.

    ``expected`` maps meta keys (e.g. ``arch``, ``num_bins``, ``bin_width``) to the values the
    caller needs; a mismatch raises a HeadposeError saying what the file holds and what was asked.
    """
    state_dict, meta = _read_checkpoint(path)
    mismatched = {key: value for key, value in (expected or {}).items() if meta.get(key) != value}
    if mismatched:
        asked = ", ".join(f"{key} {value}" for key, value in mismatched.items())
        holds = ", ".join(f"{key} {meta.get(key)}" for key in mismatched)
        raise HeadposeError(f"checkpoint {path} holds {holds}; asked for {asked}")
    model = HeadPoseNet(meta["arch"], meta["num_bins"])
    _load_state(model, state_dict, path, allow_missing_heads=False)
    return model.to(device).eval(), meta


def _torch_load(path: str | os.PathLike) -> Any:
    file = Path(path)
    if not file.is_file():
        raise HeadposeError(f"checkpoint {file} does not exist")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise HeadposeError(
            f"{file} is not a readable weights-only PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'})"
        ) from None


def _read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """(state dict in HeadPoseNet key layout, meta) of our format or a bare HopeNet state dict."""
    content = _torch_load(path)
    if isinstance(content, dict) and "state_dict" in content and "meta" in content:
        meta = content["meta"]
        missing = [key for key in META_KEYS if key not in meta]
        if missing:
            raise HeadposeError(f"checkpoint {path}: meta lacks {', '.join(missing)}")
        if meta["arch"] not in ARCHS:
            raise HeadposeError(f"checkpoint {path}: unknown arch {meta['arch']!r}")
        return dict(content["state_dict"]), dict(meta)
    if isinstance(content, dict) and "fc_yaw.weight" in content:
        return _from_hopenet_layout(content, path)
    raise HeadposeError(
        f"{path} is neither a headpose checkpoint (state_dict + meta) nor a HopeNet snapshot "
        "(a ResNet state dict with fc_yaw/fc_pitch/fc_roll)"
    )


def _from_hopenet_layout(content: dict, path: str | os.PathLike) -> tuple[dict, dict]:
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
    num_bins = int(plain["fc_yaw.weight"].shape[0])
    if FULL_RANGE_DEG % num_bins:
        raise HeadposeError(f"{path}: {num_bins} bins do not split 198 degrees evenly")
    state_dict = {}
    for key, value in plain.items():
        if key.startswith("fc_finetune."):
            continue  # an unused layer of the original model
        state_dict[key if key.startswith("fc_") else f"backbone.{key}"] = value
    meta = {**HOPENET_META, "arch": arch, "num_bins": num_bins}
    meta["bin_width"] = FULL_RANGE_DEG // num_bins
    return state_dict, meta


def _load_state(
    model: HeadPoseNet, state_dict: dict, path: str | os.PathLike, allow_missing_heads: bool
) -> None:
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if allow_missing_heads:
        missing = [key for key in missing if not key.startswith("fc_")]
    if missing or unexpected:
        raise HeadposeError(
            f"checkpoint {path} does not fit {model.arch} with {model.num_bins} bins: "
            f"missing {len(missing)} tensors (e.g. {missing[:2]}), "
            f"unexpected {len(unexpected)} (e.g. {unexpected[:2]})"
        )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in model.parameters())


def pick_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
