"""The model registry: each backbone by name, with its constructor, ImageNet weights and stem.

As in timm and torchvision, a name (the ``arch`` key of params.yaml, the ``arch`` of a checkpoint)
is looked up here, and this is the only list of names: params validation
(:mod:`headpose.models.keys`), the network (:mod:`headpose.models.network`) and the weight loaders
(:mod:`headpose.models.weights`) all read it. A torchvision backbone is added with one
:func:`register` call giving its :class:`Arch` (:data:`ARCHS` is a
:class:`headpose.registry.Registry`: a name is taken once, and a module outside the package may
register one, as a plugin).

``timm/<model name>`` names any timm model (``timm/repvgg_a0``, ``timm/efficientnet_b0``...):
:func:`get_arch` builds its :class:`Arch` on demand, the feature extractor being
``timm.create_model(name, pretrained=False, num_classes=0)``; an unknown name gets the close
matches from ``timm.list_models()``. Its stem is the module of timm's ``first_conv`` (and the
norm layer right after it), its ImageNet weights are timm's default pretrained tag, and
models timm can re-parameterise (RepVGG, MobileOne: branches fused into plain convolutions for
inference) are fused by :meth:`Arch.fuse`.

Each entry gives the input normalisation its pretrained weights expect (:class:`Normalization`):
ImageNet's mean and std for torchvision backbones, the ``mean`` and ``std`` of timm's pretrained
config for ``timm/<name>`` (for example 0.5 for ViTs). Training stores it in checkpoints, and
every input path normalises by the stored values.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from headpose.errors import HeadposeError
from headpose.models.cbam import cbam_resnet50
from headpose.registry import Registry

# The input normalisation of torchvision's ImageNet weights (and of timm models without their own).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    """The per-channel mean and standard deviation a backbone's inputs are normalised by
    (``(x / 255 - mean) / std`` on RGB); checkpoints store them as ``mean`` and ``std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def meta(self) -> dict[str, list[float]]:
        """The checkpoint meta keys of this normalisation."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_meta(cls, meta: dict) -> Normalization:
        """The normalisation a (validated) checkpoint meta stores."""
        return cls(tuple(meta["mean"]), tuple(meta["std"]))


IMAGENET = Normalization(IMAGENET_MEAN, IMAGENET_STD)


TIMM_PREFIX = "timm/"
# Methods by which timm's modules re-parameterise themselves for inference
# (timm.utils.model.reparameterize_model calls them).
_REPARAMETERISE_METHODS = ("reparameterize", "switch_to_deploy", "fuse")


@dataclass(frozen=True)
class Arch:
    """How to build one backbone and what its parts are called."""

    name: str
    constructor: Callable[[], nn.Module]  # the network, randomly initialised
    weights: type[WeightsEnum] | None  # its torchvision ImageNet weights (None: timm's)
    stem: tuple[str, ...]  # module names of the first conv block (frozen in training phase 1)
    classifier: str | None  # the attribute holding the final classifier (None: built without)
    timm_name: str | None = None  # the timm model name, for ``timm/<name>``
    normalization: Normalization = IMAGENET  # what its pretrained weights expect as input

    def headless(self) -> tuple[nn.Module, int]:
        """(the network ending in pooled features instead of its classifier, feature count)."""
        network = self.constructor()
        if self.classifier is None:  # timm, num_classes=0
            return network, getattr(network, "head_hidden_size", None) or network.num_features
        classifier = getattr(network, self.classifier)
        last_linear = [module for module in classifier.modules() if isinstance(module, nn.Linear)]
        setattr(network, self.classifier, nn.Identity())
        return network, last_linear[-1].in_features

    def fusable(self, backbone: nn.Module) -> bool:
        """Whether a backbone of this arch can be re-parameterised (fused) for inference."""
        return self.timm_name is not None and any(
            hasattr(module, method)
            for module in backbone.modules()
            for method in _REPARAMETERISE_METHODS
        )

    def fuse(self, backbone: nn.Module) -> nn.Module | None:
        """The re-parameterised (fused) copy of a backbone, in eval mode, for inference (same
        outputs, fewer and plainer layers), or None when it has nothing to fuse."""
        if not self.fusable(backbone):
            return None
        from timm.utils.model import reparameterize_model

        return reparameterize_model(backbone.eval())


def _defining_module(arch: Arch) -> str:
    """The module a backbone comes from: its constructor's (every entry is an :class:`Arch`)."""
    return arch.constructor.__module__


ARCHS: Registry[Arch] = Registry(
    "arch", module_of=_defining_module, hint=f" or {TIMM_PREFIX}<timm model name>"
)


def register(arch: Arch) -> Arch:
    """Add a backbone to the registry (a name taken by another module's backbone is refused)."""
    return ARCHS.register(arch)


def arch_names() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return ARCHS.names()


def get_arch(name: str, source: str = "") -> Arch:
    """The backbone called ``name`` (registered, or ``timm/<model name>``), or a HeadposeError
    starting with ``source``: the known names, or for an unknown timm model the close matches."""
    if not name.startswith(TIMM_PREFIX):
        return ARCHS.get(name, source)
    try:
        return _timm_arch(name.removeprefix(TIMM_PREFIX))
    except HeadposeError as error:
        raise HeadposeError(f"{source}: {error}" if source else str(error)) from None


@functools.cache
def _timm_arch(model_name: str) -> Arch:
    import timm

    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = (
            "close matches: " + ", ".join(TIMM_PREFIX + match for match in close)
            if close
            else "no close match (timm.list_models() lists every name)"
        )
        raise HeadposeError(f"unknown timm model {TIMM_PREFIX}{model_name}; {hint}")

    def constructor() -> nn.Module:
        return timm.create_model(model_name, pretrained=False, num_classes=0)

    stem = _timm_stem(constructor())
    normalization = _timm_normalization(model_name)
    return Arch(TIMM_PREFIX + model_name, constructor, None, stem, None, model_name, normalization)


def _timm_normalization(model_name: str) -> Normalization:
    """The mean and std of timm's default pretrained config of the model (ImageNet's when it
    has none)."""
    import timm.models

    config = timm.models.get_pretrained_cfg(model_name)
    mean, std = getattr(config, "mean", None), getattr(config, "std", None)
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return IMAGENET
    return Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))


def _timm_stem(network: nn.Module) -> tuple[str, ...]:
    """The top-level module holding timm's ``first_conv``, with the norm layer right after it
    when that is a separate module (``conv_stem`` + ``bn1``, ``conv1`` + ``bn1``)."""
    first_conv = network.pretrained_cfg.get("first_conv") or ""
    if isinstance(first_conv, (tuple, list)):
        first_conv = first_conv[0]
    children = [name for name, _ in network.named_children()]
    top = first_conv.split(".")[0]
    if top not in children:
        top = children[0]
    position = children.index(top)
    stem = [top]
    if position + 1 < len(children):
        following = children[position + 1]
        if isinstance(network.get_submodule(following), nn.BatchNorm2d):
            stem.append(following)
    return tuple(stem)


def _torchvision(name: str, weights: type[WeightsEnum], stem: tuple[str, ...], classifier: str):
    """Register a torchvision classification network (built without weights)."""
    constructor = getattr(torchvision.models, name)
    register(Arch(name, lambda: constructor(weights=None), weights, stem, classifier))


_RESNET_STEM = ("conv1", "bn1")
_torchvision("resnet18", torchvision.models.ResNet18_Weights, _RESNET_STEM, "fc")
_torchvision("resnet34", torchvision.models.ResNet34_Weights, _RESNET_STEM, "fc")
_torchvision("resnet50", torchvision.models.ResNet50_Weights, _RESNET_STEM, "fc")
_torchvision("resnet101", torchvision.models.ResNet101_Weights, _RESNET_STEM, "fc")
_torchvision("resnet152", torchvision.models.ResNet152_Weights, _RESNET_STEM, "fc")
# ResNet50 with CBAM: resnet50's layer names, so resnet50's ImageNet weights (CBAM starts fresh).
register(
    Arch("cbam_resnet50", cbam_resnet50, torchvision.models.ResNet50_Weights, _RESNET_STEM, "fc")
)
_torchvision("mobilenet_v2", torchvision.models.MobileNet_V2_Weights, ("features.0",), "classifier")
_torchvision("shufflenet_v2_x1_0", torchvision.models.ShuffleNet_V2_X1_0_Weights, ("conv1",), "fc")
