"""FDA's training-time noise-adaptation modules (Xu et al., NeurIPS 2021; docs/design/binarizers.md §4.7).

During training FDA adds λ·e(·) to the sign of weights and activations, where e is a small bias-free
MLP (d → d/64 → d) plus 0.1·sin. λ decays to exactly 0 in the last epoch, so these modules only exist
for training and are dropped when a model is frozen for inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NoiseAdaptation"]


def _hidden_width(width: int) -> int:
    """d/64, or d/4 when d < 64 (as the reference implementation falls back), never below 1."""
    return width // 64 if width >= 64 else max(width // 4, 1)


class NoiseAdaptation(nn.Module):
    """e(v) = W₂·ReLU(W₁·v) + 0.1·sin(v) over the last dimension of ``v`` (width ``width``).

    For weights the last dimension is a flattened output filter (d = C_in·k·k); for activations it is
    the channel vector of one pixel (d = C), so the module is applied channels-last.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        hidden = _hidden_width(width)
        self.reduce = nn.Linear(width, hidden, bias=False)
        self.expand = nn.Linear(hidden, width, bias=False)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Noise estimate for ``values`` (…, width)."""
        return self.expand(F.relu(self.reduce(values))) + 0.1 * torch.sin(values)
