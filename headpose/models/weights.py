"""Pretrained weights: ImageNet weights of the backbones, and ``pretrained:`` checkpoints.

ImageNet weights (``pretrained: imagenet``) of torchvision backbones come from the torch hub
cache, as torchvision's do: downloaded there on first use and verified against the hash in their
file name. Those of ``timm/<name>`` backbones are timm's default pretrained tag: read from
``<torch hub>/checkpoints/timm/<tag>.safetensors`` when that file is there, else downloaded from
the Hugging Face Hub (its cache) or timm's URL. Offline, the error names the file and the folder
to put it in. :func:`load_pretrained` fills a fresh network from ``none``, ``imagenet`` or a
checkpoint path.

:func:`fetch_file` is the package's one downloader of a file with a known SHA-256 (these weights,
and the face detector's model in :mod:`headpose.app.detect`): ``torch.hub``'s, which writes to a
temporary file beside the target, checks the hash and moves it into place.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.models.checkpoints import load_state, read_checkpoint, readable_weights_file
from headpose.models.heads import head_from_meta
from headpose.models.registry import Arch, get_arch

TIMM_WEIGHTS_SUFFIX = ".safetensors"
# A download that connects to nothing, or receives nothing, for this long fails (one line) rather
# than hang: torch.hub's downloader sets no timeout of its own.
DOWNLOAD_TIMEOUT_S = 30.0
# The folder of downloaded model files (the face detector's, published head-pose models'):
# ``$HEADPOSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/headpose``, else ``~/.cache/headpose``.
CACHE_DIR_ENV = "HEADPOSE_CACHE_DIR"


def cache_dir() -> Path:
    """Where downloaded model files are kept (:data:`CACHE_DIR_ENV`)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "headpose"


def imagenet_weight_sources(arch: str) -> list[tuple[str, Path]]:
    """(download URL, path in the torch hub cache) of each ImageNet weight file of ``arch``,
    preferred first (cbam_resnet50 takes resnet50's)."""
    weights_enum = get_arch(arch).weights
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [(weights.url, folder / weights.url.rsplit("/", 1)[-1]) for weights in weights_enum]


def imagenet_weight_files(arch: str) -> list[Path]:
    """Paths the ImageNet weights of ``arch`` may have in the torch hub cache, preferred first."""
    return [path for _, path in imagenet_weight_sources(arch)]


class DownloadUnavailable(HeadposeError):
    """A file is neither in its place nor downloadable (typically: offline)."""


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(
    url: str, path: Path, sha256: str, what: str, check_cached: bool = True, progress: bool = False
) -> Path:
    """``path``, downloaded from ``url`` first when it is missing (or, with ``check_cached``,
    fails its SHA-256 check): the one downloader of the package (ImageNet weights, the face
    detector's model).

    ``sha256`` is the file's SHA-256 hex digest, or its first digits (torchvision's file names
    carry those). The download is ``torch.hub.download_url_to_file``: written to a temporary
    file beside ``path``, its SHA-256 checked, then moved into place (a failed or refused
    download leaves nothing). No network raises :class:`DownloadUnavailable` and a download that
    fails its check a HeadposeError, each one line naming ``what``, the URL and where to put the
    file by hand. A server that does not answer, or stalls, for :data:`DOWNLOAD_TIMEOUT_S` is
    no network.
    """
    if path.is_file() and (not check_cached or file_sha256(path).startswith(sha256)):
        return path
    stale = " (the copy there fails its SHA-256 check)" if path.exists() else ""
    by_hand = f"download it by hand to {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(url, str(path), hash_prefix=sha256, progress=progress)
    except RuntimeError as error:  # torch's hash check
        reason = _first_line(error)
        raise HeadposeError(
            f"{what}: refusing the {path.name} downloaded from {url}: {reason}; {by_hand}"
        ) from None
    except OSError as error:  # urllib's URLError included: no network, refused, not found
        reason = getattr(error, "reason", None) or _first_line(error)
        raise DownloadUnavailable(
            f"{what}: could not download {url} ({reason}){stale}; {by_hand}"
        ) from None
    return path


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """New sockets time out after ``seconds`` while this holds (urllib, under torch.hub, takes
    the default), restored after."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _fetch_imagenet_weights(arch: str) -> Path:
    """The cached ImageNet weight file of ``arch``, downloaded (hash-checked) if none is cached."""
    sources = imagenet_weight_sources(arch)
    for _, path in sources:
        if path.is_file():
            return path
    url, path = sources[0]
    print(f"pretrained: imagenet: downloading {url} to {path}", flush=True)
    # torchvision names its files NAME-<first hex digits of the SHA-256>.pth; a cached file is
    # not re-hashed (100 MB), as torchvision does not
    hash_prefix = path.stem.rsplit("-", 1)[-1]
    what = f"pretrained: imagenet (the ImageNet weights of {arch})"
    return fetch_file(url, path, hash_prefix, what, check_cached=False, progress=True)


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
    with readable_weights_file(weight_file):
        state_dict = torch.load(weight_file, map_location="cpu", weights_only=True)
    classifier = ("fc.", "classifier.")
    backbone_state = {k: v for k, v in state_dict.items() if not k.startswith(classifier)}
    missing, unexpected = model.backbone.load_state_dict(backbone_state, strict=False)
    missing = [key for key in missing if ".cbam." not in key]  # CBAM layers start fresh
    if missing or unexpected:
        raise HeadposeError(
            f"{weight_file} does not fit {model.arch}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
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
