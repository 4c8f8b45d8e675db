"""Real-valued activation modules used around binary convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RPReLU", "rprelu"]


def rprelu(
    x: torch.Tensor, shift_in: torch.Tensor, slope: torch.Tensor, shift_out: torch.Tensor
) -> torch.Tensor:
    """Functional RPReLU on channels (dim 1): ``PReLU_c(x − γ_c) + ζ_c`` (BiDRN Eq. 6)."""
    view = (1, -1, *([1] * (x.dim() - 2)))
    return F.prelu(x - shift_in.view(view), slope) + shift_out.view(view)


class RPReLU(nn.Module):
    """RPReLU (ReActNet; BiDRN Eq. 6): f(x) = PReLU_c(x − γ_c) + ζ_c, channel-wise.

    Per channel: x − γ + ζ where x > γ, β·(x − γ) + ζ otherwise, with learnable shift γ (init 0), slope
    β (init 0.25, PyTorch's PReLU default) and shift ζ (init 0). Channels are on dim 1, which is also
    the last dimension of a (B, C) input.
    """

    def __init__(self, num_channels: int, init_slope: float = 0.25) -> None:
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(num_channels))
        self.slope = nn.Parameter(torch.full((num_channels,), init_slope))
        self.shift_out = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the shifted PReLU channel-wise."""
        return rprelu(x, self.shift_in, self.slope, self.shift_out)

    def extra_repr(self) -> str:
        """Describe the layer for ``print(module)``."""
        return f"{self.slope.numel()}"
