"""Checkpoints and pretrained weights: ours, the original HopeNet snapshots, ImageNet weights.

Our checkpoints (:func:`save_checkpoint`) are weights-only files ``{"state_dict": ..., "meta":
{...}}`` holding tensors and plain values only, so they load with ``torch.load(...,
weights_only=True)``. The meta says how to use the weights: arch, input size and normalisation
(:data:`META_KEYS`), the head (``head``: ``bins`` with its width, count and expectation mode, or
``rotation_6d``; a checkpoint without ``head`` holds bins, as all did before there was a choice)
whether the backbone is fused for inference (``fused``) and the crop protocol it was trained on
(``crop_protocol``; absent in checkpoints saved before there was a choice, which were trained on
the ``visible`` crop); training adds what the run knew (the
training-set mean angles, the params, the run fingerprint, the epoch). Loading validates the
arch, the head and the tensors against each other. :func:`read_checkpoint`
also reads the original HopeNet snapshots (``hopenet_alpha1.pkl``, ``hopenet_alpha2.pkl``: a bare
ResNet state dict with ``fc_yaw``/``fc_pitch``/``fc_roll`` heads), which must be evaluated as
published: bin width 3, lower-edge expectation, 224 px, ImageNet normalisation, the ``hopenet``
crop (:data:`HOPENET_META`).

Every checkpoint read goes through :func:`validate_checkpoint` (evaluate, predict, export,
benchmark, ``pretrained:``): the meta must name a known arch and head, an input size in
:data:`IMAGE_SIZE_RANGE_PX`, and a head that agrees with the weights (for bins: the output count
of each angle layer is ``num_bins``, and ``num_bins * bin_width`` is the 198-degree range), so a
file that contradicts itself is refused in one line instead of failing inside the network.

ImageNet weights (``pretrained: imagenet``) of torchvision backbones come from the torch hub
cache, as torchvision's do: downloaded there on first use and verified against the hash in their
file name. Those of ``timm/<name>`` backbones are timm's default pretrained tag: read from
``<torch hub>/checkpoints/timm/<tag>.safetensors`` when that file is there, else downloaded from
the Hugging Face Hub (its cache) or timm's URL. Offline, the error names the file and the folder
to put it in.
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.io.files import atomic_path, file_problem
from headpose.models.bins import RANGE_DEG, Bins
from headpose.models.heads import head_from_meta, validate_head_meta
from headpose.models.registry import IMAGENET, Arch, get_arch
from headpose.params import CROP_PROTOCOLS, IMAGE_SIZE_RANGE_PX

# Keys every checkpoint meta holds (beside its head's: see headpose.models.heads).
META_KEYS = ("arch", "image_size", "mean", "std")
TIMM_WEIGHTS_SUFFIX = ".safetensors"

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


# --- ImageNet weights, cached like torchvision's ----------------------------------------------


def imagenet_weight_sources(arch: str) -> list[tuple[str, Path]]:
    """(download URL, path in the torch hub cache) of each ImageNet weight file of ``arch``,
    preferred first (cbam_resnet50 takes resnet50's)."""
    weights_enum = get_arch(arch).weights
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


def timm_weight_source(arch: Arch) -> tuple[str, str, Path]:
    """(pretrained tag, where timm publishes its weights, the local file they are read from) of
    the ImageNet weights of a timm arch (timm's default pretrained tag)."""
    import timm.models

    config = timm.models.get_pretrained_cfg(arch.timm_name)
    if config is None or not (config.hf_hub_id or config.url):
        raise HeadposeError(f"pretrained: imagenet: timm has no pretrained weights for {arch.name}")
    tag = f"{arch.timm_name}.{config.tag}" if config.tag else arch.timm_name
    origin = f"https://huggingface.co/{config.hf_hub_id}" if config.hf_hub_id else config.url
    local = Path(torch.hub.get_dir()) / "checkpoints" / "timm" / f"{tag}{TIMM_WEIGHTS_SUFFIX}"
    return tag, origin, local


def _download_timm_weights(arch: Arch) -> Path:
    """The file of a timm arch's ImageNet weights: the local copy, or a download."""
    import timm.models

    tag, origin, local = timm_weight_source(arch)
    if local.is_file():
        return local
    config = timm.models.get_pretrained_cfg(arch.timm_name)
    print(f"pretrained: imagenet: fetching timm's weights {tag} from {origin}", flush=True)
    try:
        if config.hf_hub_id:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(config.hf_hub_id, "model" + TIMM_WEIGHTS_SUFFIX))
        timm_cache = Path(torch.hub.get_dir()) / "checkpoints" / config.url.rsplit("/", 1)[-1]
        if not timm_cache.is_file():
            torch.hub.download_url_to_file(config.url, str(timm_cache), progress=True)
        return timm_cache
    except Exception as error:  # no network, refused, not found: many exception types
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HeadposeError(
            f"pretrained: imagenet could not download timm's ImageNet weights of {arch.name} "
            f"({reason}); place model{TIMM_WEIGHTS_SUFFIX} from {origin} as {local.name} in "
            f"{local.parent}"
        ) from None


def _load_timm_imagenet_weights(model: nn.Module, arch: Arch) -> None:
    import timm

    weight_file = _download_timm_weights(arch)
    try:  # timm's loader applies the model's checkpoint filters; with the classifier kept it
        # loads strictly (without, it would skip mismatched tensors silently)
        pretrained = timm.create_model(
            arch.timm_name,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(weight_file), "hf_hub_id": None, "url": None},
        )
        pretrained.reset_classifier(0)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HeadposeError(f"{weight_file} does not fit {arch.name}: {reason}") from None
    model.backbone.load_state_dict(pretrained.state_dict())


def load_imagenet_weights(model: nn.Module) -> None:
    """Fill a HeadPoseNet's backbone with its arch's ImageNet weights (the heads stay as they
    are)."""
    arch = get_arch(model.arch)
    if arch.timm_name is not None:
        _load_timm_imagenet_weights(model, arch)
        return
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


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """Write ``{"state_dict", "meta"}`` atomically; ``meta`` needs every key in META_KEYS and
    must describe the model's arch and head. ``fused`` is recorded from the model."""
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
    save_torch(path, {"state_dict": state_dict, "meta": {**meta, "fused": model.fused}})


def save_torch(path: str | os.PathLike, content: dict) -> None:
    """``torch.save`` atomically through a Python file, so a full disk or a refused write is an
    OSError naming the file (a HeadposeError from :func:`atomic_path`), not torch's own error."""
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        torch.save(content, handle)


def _torch_load(path: str | os.PathLike) -> Any:
    file = Path(path)
    problem = file_problem(file)
    if problem:
        raise HeadposeError(f"checkpoint {file} {problem}")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except OSError as error:
        raise HeadposeError(f"cannot read checkpoint {file}: {error.strerror or error}") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        # torch's own message advises weights_only=False, which would run the file's code: it
        # is never repeated, only what the file holds.
        text = str(error)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise HeadposeError(
                f"{file} is refused: it holds Python objects, not only tensors and plain values "
                f"(such as {found.group(1)}); only weights-only checkpoints are loaded"
            ) from None
        detail = text.split("WeightsUnpickler error:", 1)[-1]
        lines = [line.strip() for line in detail.splitlines() if line.strip()]
        raise HeadposeError(
            f"{file} is not a readable weights-only PyTorch checkpoint ({type(error).__name__}: "
            f"{lines[0] if lines else 'no detail'})"
        ) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_checkpoint(state_dict: Any, meta: Any, path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose meta is incomplete, unknown, out of range or contradicts its
    weights, naming the file and the disagreement (see the module docstring)."""
    if not isinstance(meta, dict) or not isinstance(state_dict, dict):
        raise HeadposeError(f"checkpoint {path}: state_dict and meta must be mappings")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise HeadposeError(f"checkpoint {path}: meta lacks {', '.join(missing)}")
    if not isinstance(meta["arch"], str):
        raise HeadposeError(f"checkpoint {path}: arch {meta['arch']!r} is not a name")
    try:
        get_arch(meta["arch"])
    except HeadposeError as error:
        raise HeadposeError(f"checkpoint {path}: {error}") from None
    low, high = IMAGE_SIZE_RANGE_PX
    size = meta["image_size"]
    if not isinstance(size, int) or isinstance(size, bool) or not low <= size <= high:
        raise HeadposeError(
            f"checkpoint {path}: image_size {size!r}; expected an integer in [{low}, {high}] px"
        )
    if meta.get("crop_protocol", CROP_PROTOCOLS[0]) not in CROP_PROTOCOLS:
        raise HeadposeError(
            f"checkpoint {path}: crop_protocol {meta['crop_protocol']!r}; expected one of "
            + ", ".join(CROP_PROTOCOLS)
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


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """(state dict in HeadPoseNet key layout, meta) of our format or a bare HopeNet state dict."""
    content = _torch_load(path)
    if isinstance(content, dict) and "state_dict" in content and "meta" in content:
        state_dict, meta = content["state_dict"], content["meta"]
    elif isinstance(content, dict) and "fc_yaw.weight" in content:
        state_dict, meta = _from_hopenet_layout(content, path)
    else:
        raise HeadposeError(
            f"{path} is neither a headpose checkpoint (state_dict + meta) nor a HopeNet snapshot "
            "(a ResNet state dict with fc_yaw/fc_pitch/fc_roll)"
        )
    validate_checkpoint(state_dict, meta, path)
    return dict(state_dict), dict(meta)


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


def load_pretrained(model: nn.Module, pretrained: str) -> None:
    """Fill a fresh HeadPoseNet with ``pretrained`` weights: ``none`` (keep the random init),
    ``imagenet`` (the backbone's ImageNet weights) or a checkpoint path (ours or a HopeNet
    snapshot) of the same arch, not fused, whose output layers are taken too when the head and
    its sizes match."""
    if pretrained == "none":
        return
    if pretrained == "imagenet":
        load_imagenet_weights(model)
        return
    state_dict, meta = read_checkpoint(pretrained)
    if meta["arch"] != model.arch:
        raise HeadposeError(
            f"pretrained checkpoint {pretrained} holds arch {meta['arch']}, "
            f"but arch is {model.arch}"
        )
    if meta.get("fused"):
        raise HeadposeError(
            f"pretrained checkpoint {pretrained} is fused for inference; train from the unfused "
            "checkpoint (models/model.pt)"
        )
    if head_from_meta(meta).layer_sizes() != model.head.layer_sizes():
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc_")}
    load_state(model, state_dict, pretrained, allow_missing_heads=True)
