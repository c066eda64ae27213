"""The model registry: each backbone by name, with its constructor, ImageNet weights and stem.

As in timm and torchvision, a name (the ``arch`` key of params.yaml, the ``arch`` of a checkpoint)
is looked up here, and this is the only list of names: params validation
(:mod:`headpose.params`), the network (:mod:`headpose.models.network`) and the weight loaders
(:mod:`headpose.models.checkpoints`) all read it. A backbone is added with one :func:`register`
call giving its :class:`Arch`; a family of names (for example ``timm/<name>``) would be added by
teaching :func:`get_arch` to build the :class:`Arch` of a name on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from headpose.errors import HeadposeError
from headpose.models.cbam import cbam_resnet50

# The input normalisation of every backbone's ImageNet weights (and so of every model input).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Input sizes (px) a model is built for (params.yaml's image_size) and a checkpoint may name.
IMAGE_SIZE_RANGE_PX = (32, 1024)


@dataclass(frozen=True)
class Arch:
    """How to build one backbone and what its parts are called."""

    name: str
    constructor: Callable[[], nn.Module]  # the classification network, randomly initialised
    weights: type[WeightsEnum]  # its torchvision ImageNet weights, preferred first
    stem: tuple[str, ...]  # module names of the first conv block (frozen in training phase 1)
    classifier: str  # the attribute holding the final classifier, removed for the heads

    def headless(self) -> tuple[nn.Module, int]:
        """(the network ending in pooled features instead of its classifier, feature count)."""
        network = self.constructor()
        classifier = getattr(network, self.classifier)
        last_linear = [module for module in classifier.modules() if isinstance(module, nn.Linear)]
        setattr(network, self.classifier, nn.Identity())
        return network, last_linear[-1].in_features


ARCHS: dict[str, Arch] = {}


def register(arch: Arch) -> Arch:
    """Add a backbone to the registry (names are unique)."""
    if arch.name in ARCHS:
        raise ValueError(f"arch {arch.name} is registered twice")
    ARCHS[arch.name] = arch
    return arch


def arch_names() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(ARCHS)


def get_arch(name: str) -> Arch:
    """The registered backbone called ``name``, or a HeadposeError listing the known names."""
    if name not in ARCHS:
        raise HeadposeError(f"unknown arch {name!r}; expected one of {', '.join(ARCHS)}")
    return ARCHS[name]


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
