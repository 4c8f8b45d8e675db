"""BoxNet: hand and face boxes from the body feature (docs/design/pipeline.md §4.2, docs/design/bidrn.md §7).

Input: the body feature (C×8×6) concatenated with the detached PositionNet heatmaps (25·8 channels).
Three ×2 transposed convs (4×4, stride 2) lift it to 64×48; a 1×1 conv gives three centre heatmaps
(left hand, right hand, face) whose 2-D soft-argmax are the box centres; for each box, the feature
sampled at its (detached) centre goes through an MLP (hidden -> hidden -> 2) for the box size.
Centres and sizes are returned in body-heatmap cells (the 8×6 grid).

Binarized BoxNet (paper §3.2, Fig. 6: "binarize both Deconv layers and Linear layers except the final
one"): every transposed conv and every hidden linear layer is binarized; the centre conv and the last
linear layer of each MLP stay full precision. Each binarized layer gets a local residual in the LCR
style, ``BN(RPReLU(o) + R(a_f))``:

* 256 -> 256 transposed convs: R = ×2 nearest upsampling of ``a_f``;
* the first transposed conv (2248 -> 256, no integer channel ratio): R = a full-precision 1×1
  projection on the 8×6 input followed by ×2 nearest upsampling (``first_residual='projection'``,
  0.58 M parameters and 0.03 G OPs at paper size) or no residual (``'none'``). The projection is our
  choice: the paper's binarized-BoxNet rows carry ≈1 M full-precision parameters that no minimal
  reading explains (docs/design/complexity.md §5.2), and this is the cheapest layer that gives the first
  deconv a full-precision path;
* hidden linear layers (256 -> 256): R = identity, no BatchNorm (Hand4Whole's MLPs have none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bidrn.binary import BinaryConvTranspose2d, BinaryLinear, RPReLU
from bidrn.nets.bidrn import make_preactivation
from bidrn.nets.config import BoxNetConfig
from bidrn.nets.geometry import sample_features, soft_argmax_2d
from bidrn.nets.heads import init_head_weights

__all__ = ["BOX_NAMES", "BinarizedSizeHead", "BinarizedUpsampling", "BoxNet", "BoxPrediction"]

BOX_NAMES = ("lhand", "rhand", "face")
"""Order of the three boxes BoxNet predicts."""

_UPSAMPLING = 8  # three ×2 transposed convs


@dataclass
class BoxPrediction:
    """BoxNet output, in body-heatmap cells (x along W, y along H).

    Attributes:
        centers: (B, 3, 2) box centres for left hand, right hand, face.
        sizes: (B, 3, 2) box (width, height).
    """

    centers: torch.Tensor
    sizes: torch.Tensor


class BinarizedUpsampling(nn.Module):
    """Binarized 4×4/2 transposed conv with its local residual: ``BN(RPReLU(o) + up2(R(a_f)))``."""

    def __init__(
        self, in_channels: int, out_channels: int, config: BoxNetConfig, projection: bool = False
    ) -> None:
        super().__init__()
        self.preactivation = make_preactivation(config.preactivation, in_channels)
        self.deconv = BinaryConvTranspose2d(in_channels, out_channels, 4, 2, 1, method=config.method)
        self.rprelu: RPReLU | None = None
        self.projection: nn.Module | None = None
        if in_channels == out_channels:
            self.rprelu = RPReLU(out_channels)
            self.projection = nn.Identity()
        elif projection:
            self.rprelu = RPReLU(out_channels)
            self.projection = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, 2H, 2W)."""
        a = self.preactivation(x)
        out = self.deconv(a)
        if self.projection is None or self.rprelu is None:
            return self.bn(out)
        residual = F.interpolate(self.projection(a), scale_factor=2.0, mode="nearest")
        return self.bn(self.rprelu(out) + residual)


class BinarizedSizeHead(nn.Module):
    """Box-size MLP with a binarized hidden layer: ``Linear_fp(RPReLU(BinaryLinear(a)) + a)``."""

    def __init__(self, hidden: int, config: BoxNetConfig) -> None:
        super().__init__()
        self.preactivation = make_preactivation(config.preactivation, hidden)
        self.hidden = BinaryLinear(hidden, hidden, method=config.method)
        self.rprelu = RPReLU(hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, hidden) -> (B, 2)."""
        a = self.preactivation(x)
        return self.out(self.rprelu(self.hidden(a)) + a)


def _fp_upsampling(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _fp_size_head(hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


class BoxNet(nn.Module):
    """Hand and face box regressor (full precision or binarized, see module docstring).

    Args:
        feature_channels: channels of the body feature (2048 at paper size).
        heatmap_channels: channels of the flattened body heatmaps (25 joints × 8 depth bins).
        hidden: width of the transposed convs and MLPs (256 at paper size).
        config: full-precision or binarized, and the binarized form's options.
    """

    def __init__(
        self, feature_channels: int, heatmap_channels: int, hidden: int, config: BoxNetConfig
    ) -> None:
        super().__init__()
        in_channels = feature_channels + heatmap_channels
        if config.binarized:
            self.upsampling = nn.Sequential(
                BinarizedUpsampling(
                    in_channels, hidden, config, projection=config.first_residual == "projection"
                ),
                BinarizedUpsampling(hidden, hidden, config),
                BinarizedUpsampling(hidden, hidden, config),
            )
            self.size_heads = nn.ModuleList(BinarizedSizeHead(hidden, config) for _ in BOX_NAMES)
        else:
            self.upsampling = nn.Sequential(
                _fp_upsampling(in_channels, hidden),
                _fp_upsampling(hidden, hidden),
                _fp_upsampling(hidden, hidden),
            )
            self.size_heads = nn.ModuleList(_fp_size_head(hidden) for _ in BOX_NAMES)
        self.center = nn.Conv2d(hidden, len(BOX_NAMES), 1)
        init_head_weights(self)

    def forward(self, body_features: torch.Tensor, body_heatmaps: torch.Tensor) -> BoxPrediction:
        """Body feature (B, C, H, W) and detached heatmap probabilities (B, J, D, H, W) -> boxes."""
        heatmaps = body_heatmaps.flatten(1, 2)
        features = self.upsampling(torch.cat((body_features, heatmaps), dim=1))
        centers = soft_argmax_2d(self.center(features))  # (B, 3, 2) in upsampled pixels
        sampled = sample_features(features, centers.detach())  # (B, 3, hidden)
        sizes = torch.stack([head(sampled[:, k]) for k, head in enumerate(self.size_heads)], dim=1)
        return BoxPrediction(centers=centers / _UPSAMPLING, sizes=sizes)
