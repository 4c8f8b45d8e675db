"""ResNet encoders without pooling and classifier (docs/design/pipeline.md §3).

Torchvision-style ResNet-18 (BasicBlock [2, 2, 2, 2]) and ResNet-50 (bottleneck v1.5, stride on the
3×3, [3, 4, 6, 3]); a projection shortcut (1×1 conv + BN) opens every stage whose shape changes. The
blocks take a convolution factory and an activation factory, so the same definition serves the
full-precision encoders and the BNN-style binarized baselines (:mod:`bidrn.nets.binary_resnet`).

``width`` multiplies every channel count: stage widths are ``p, 2p, 4p, 8p`` with
``p = round(64·width)``, so channel ratios between stages stay exact for any width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ActivationFactory",
    "BasicBlock",
    "BlockPlan",
    "Bottleneck",
    "ConvFactory",
    "ResNet",
    "Stem",
    "init_resnet_weights",
    "resnet_plan",
    "stem_width",
]

ConvFactory = Callable[..., nn.Conv2d]
"""Builds a conv as ``factory(in_channels, out_channels, kernel_size, stride=, padding=, bias=)``."""

ActivationFactory = Callable[[], nn.Module]
"""Builds a fresh activation module."""

_BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}
_EXPANSION = {18: 1, 50: 4}


@dataclass(frozen=True)
class BlockPlan:
    """Shape of one residual block: ``in_channels -> planes (inner) -> out_channels`` at ``stride``."""

    in_channels: int
    planes: int
    out_channels: int
    stride: int

    @property
    def needs_projection(self) -> bool:
        """Whether the block's shortcut must change shape (stride or channels)."""
        return self.stride != 1 or self.in_channels != self.out_channels


def stem_width(width: float) -> int:
    """Channels of the stem and of the first stage's inner width (64 at width 1)."""
    return max(1, round(64 * width))


def resnet_plan(depth: int, width: float = 1.0) -> list[list[BlockPlan]]:
    """Block shapes of the four stages of a ResNet-``depth`` (18 or 50) at channel multiplier ``width``."""
    if depth not in _BLOCKS:
        raise ValueError(f"ResNet depth must be 18 or 50, got {depth}")
    base = stem_width(width)
    expansion = _EXPANSION[depth]
    stages: list[list[BlockPlan]] = []
    in_channels = base
    for index, count in enumerate(_BLOCKS[depth]):
        planes = base * 2**index
        out_channels = planes * expansion
        stage = []
        for block in range(count):
            stride = 2 if index > 0 and block == 0 else 1
            stage.append(BlockPlan(in_channels, planes, out_channels, stride))
            in_channels = out_channels
        stages.append(stage)
    return stages


def _full_precision_conv(*args, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(*args, **kwargs)


class Stem(nn.Module):
    """7×7/2 conv (3 -> C, no bias) · BN · activation · 3×3/2 max-pool; always full precision."""

    def __init__(self, out_channels: int, activation: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activation = activation
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H/4, W/4)."""
        return self.pool(self.activation(self.bn(self.conv(x))))


def _shortcut(plan: BlockPlan, conv: ConvFactory) -> nn.Module:
    if not plan.needs_projection:
        return nn.Identity()
    return nn.Sequential(
        conv(plan.in_channels, plan.out_channels, 1, stride=plan.stride, padding=0, bias=False),
        nn.BatchNorm2d(plan.out_channels),
    )


class BasicBlock(nn.Module):
    """3×3 (stride s) · BN · act · 3×3 · BN, plus shortcut, then act (ResNet-18)."""

    def __init__(
        self,
        plan: BlockPlan,
        conv: ConvFactory = _full_precision_conv,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = conv(plan.in_channels, plan.planes, 3, stride=plan.stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(plan.planes)
        self.act1 = activation()
        self.conv2 = conv(plan.planes, plan.out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(plan.out_channels)
        self.shortcut = _shortcut(plan, conv)
        self.act_out = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act_out(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 · 3×3 (stride s, "v1.5") · 1×1 (×4 channels), BN after each, plus shortcut, then act."""

    def __init__(
        self,
        plan: BlockPlan,
        conv: ConvFactory = _full_precision_conv,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = conv(plan.in_channels, plan.planes, 1, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(plan.planes)
        self.act1 = activation()
        self.conv2 = conv(plan.planes, plan.planes, 3, stride=plan.stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(plan.planes)
        self.act2 = activation()
        self.conv3 = conv(plan.planes, plan.out_channels, 1, stride=1, padding=0, bias=False)
        self.bn3 = nn.BatchNorm2d(plan.out_channels)
        self.shortcut = _shortcut(plan, conv)
        self.act_out = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act_out(out + self.shortcut(x))


def init_resnet_weights(module: nn.Module) -> None:
    """Torchvision's ResNet init: Kaiming-normal (fan-out) convs, BatchNorm γ = 1, β = 0.

    Tensors on the meta device (a skeleton that loading fills) are left alone: random init there
    runs torch's reference decompositions, which import torch._dynamo (+80 MB, seconds).
    """
    for child in module.modules():
        if any(p.is_meta for p in child.parameters(recurse=False)):
            continue
        if isinstance(child, nn.Conv2d):
            nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(child, nn.BatchNorm2d):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)


class ResNet(nn.Module):
    """ResNet-18/50 feature extractor: (B, 3, H, W) -> (B, out_channels, H/32, W/32).

    Args:
        depth: 18 or 50.
        width: channel multiplier.
        conv: factory of the block convolutions and projection shortcuts (the stem is always a
            full-precision ``nn.Conv2d``).
        activation: factory of every activation, the stem's included.
    """

    def __init__(
        self,
        depth: int = 50,
        width: float = 1.0,
        conv: ConvFactory = _full_precision_conv,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        plan = resnet_plan(depth, width)
        block = Bottleneck if depth == 50 else BasicBlock
        self.depth = depth
        self.stem = Stem(stem_width(width), activation())
        self.stages = nn.ModuleList(
            nn.Sequential(*(block(p, conv=conv, activation=activation) for p in stage)) for stage in plan
        )
        self.out_channels = plan[-1][-1].out_channels
        init_resnet_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of the last stage."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x
