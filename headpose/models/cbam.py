"""CBAM (Woo et al. 2018, "CBAM: Convolutional Block Attention Module") and the CBAM-ResNet50.

Channel attention, then spatial attention, applied to the residual branch of every ResNet
bottleneck before the addition. :func:`cbam_resnet50` keeps torchvision's resnet50 layer names,
so resnet50's ImageNet weights load into it (the CBAM layers start fresh).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet


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
