"""Sign with sign(0) = +1 and the surrogate gradients that binarized networks train with.

Every binarizer in this package computes the same forward value, ``sign(x)`` with
``sign(0) = +1`` (a bit-packed inference engine has no code for 0, so a model trained with
``torch.sign`` could not be exported exactly; binarization.md §4.1). What differs between methods is
the gradient that flows back through that step function, the *gradient estimator*:

============  ===================================================  ===========================
kind          d sign(x) / dx is replaced by                        used by
============  ===================================================  ===========================
identity      1                                                    ReCU weights, DoReFa (paper)
clipped       1[|x| <= 1]  (derivative of Hardtanh / clamp)         BNN, XNOR, DoReFa; weights
                                                                    of the Bi-Real family
approx_sign   max(0, 2 - 2|x|)  (Bi-Real ApproxSign, BiDRN Eq. 2)  Bi-Real, ReActNet, ReCU, BiDRN
fourier       (4ω/π) Σ_{i<n} cos((2i+1)ωx) on |x| <= 1, else 0     FDA (n grows during training)
============  ===================================================  ===========================

Boundaries: ``clipped`` and ``fourier`` include |x| = 1; ``approx_sign`` is 0 there and 2 at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

EstimatorKind = Literal["identity", "clipped", "approx_sign", "fourier"]

__all__ = ["GradientEstimator", "binarize", "sign"]


def sign(x: torch.Tensor) -> torch.Tensor:
    """Return +1 where ``x >= 0`` and -1 elsewhere (never 0), in ``x``'s dtype; no gradient."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


@dataclass(frozen=True)
class GradientEstimator:
    """A surrogate derivative for the sign function (see the module docstring).

    Attributes:
        kind: which surrogate.
        omega: angular frequency ω of the FDA Fourier series (``fourier`` only).
    """

    kind: EstimatorKind
    omega: float = 0.1

    def derivative(self, x: torch.Tensor, fourier_terms: int = 10) -> torch.Tensor:
        """Closed-form surrogate derivative at ``x`` (``fourier_terms`` cosines for ``fourier``)."""
        if self.kind == "identity":
            return torch.ones_like(x)
        if self.kind == "clipped":
            return (x.abs() <= 1).to(x.dtype)
        if self.kind == "approx_sign":
            return (2.0 - 2.0 * x.abs()).clamp_min(0.0)
        if self.kind == "fourier":
            if fourier_terms < 1:
                raise ValueError(f"fourier_terms must be >= 1, got {fourier_terms}")
            harmonics = torch.arange(fourier_terms, dtype=x.dtype, device=x.device) * 2 + 1
            series = torch.cos(x.unsqueeze(-1) * (harmonics * self.omega)).sum(-1)
            return (4.0 * self.omega / math.pi) * series * (x.abs() <= 1).to(x.dtype)
        raise ValueError(f"unknown gradient estimator {self.kind!r}")


class _SignWithSurrogateGradient(torch.autograd.Function):
    """Forward: :func:`sign`. Backward: the estimator's closed-form derivative."""

    @staticmethod
    def forward(ctx, x, estimator: GradientEstimator, fourier_terms: int):
        ctx.save_for_backward(x)
        ctx.estimator = estimator
        ctx.fourier_terms = fourier_terms
        return sign(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.estimator.derivative(x, ctx.fourier_terms), None, None


def binarize(x: torch.Tensor, estimator: GradientEstimator, fourier_terms: int = 10) -> torch.Tensor:
    """``sign(x)`` in the forward pass, ``estimator``'s surrogate derivative in the backward pass."""
    return _SignWithSurrogateGradient.apply(x, estimator, fourier_terms)
