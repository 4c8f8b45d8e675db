"""BNN-style binarized ResNets: the encoders of the Table 1 baselines (docs/design/complexity.md §5.1).

The full-precision ResNet with every block convolution *and* every 1×1 projection shortcut replaced
by a :class:`~bidrn.binary.BinaryConv2d` of the chosen method; the stem convolution, all BatchNorms and
everything outside the encoder stay full precision. This reading reproduces the paper's BNN row
(21.61 M Params / 2.63 G OPs) from layer shapes alone.

Every ReLU becomes a Hardtanh, as in BiBench's binarized ResNets (``act_cfg=Hardtanh`` for the
baselines; BNN itself used Hardtanh). This is not cosmetic: with ``sign(0) = +1`` a ReLU in front of
a sign makes every activation +1 (BiDRN §3.1), and every block input here is an activation output.
Method-specific extras (ReActNet's RSign thresholds, ReCU's learnable scales, FDA's noise modules)
live inside the binary layers (:mod:`bidrn.binary`).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from bidrn.binary import BinaryConv2d
from bidrn.nets.resnet import ResNet

__all__ = ["binary_resnet"]


def binary_resnet(depth: int = 50, method: str = "bnn", width: float = 1.0) -> ResNet:
    """A ResNet-``depth`` whose block convs and projection shortcuts are binarized with ``method``."""
    return ResNet(depth, width, conv=partial(BinaryConv2d, method=method), activation=nn.Hardtanh)
