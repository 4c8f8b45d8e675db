"""Sign with sign(0) = +1 and the surrogate gradients that binarized networks train with.

Every binarizer in this package computes the same forward value, ``sign(x)`` with
``sign(0) = +1`` (a bit-packed inference engine has no code for 0, so a model trained with
``torch.sign`` could not be exported exactly; docs/design/binarizers.md §1). What differs between methods is
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

Any object with a ``derivative(x)`` method (a :class:`SurrogateGradient`) can stand in for a
:class:`GradientEstimator`, so a new method brings its own gradient without editing this module.
:func:`binarize` is the one autograd node every quantizer of this package uses: sign, an optional
detached divisor before it and an optional detached scale after it, with the surrogate gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

EstimatorKind = Literal["identity", "clipped", "approx_sign", "fourier"]

__all__ = ["GradientEstimator", "SurrogateGradient", "binarize", "sign"]


def sign(x: Tensor) -> Tensor:
    """Return +1 where ``x >= 0`` and -1 elsewhere (never 0), in ``x``'s dtype; no gradient."""
    # Adding +0.0 turns −0.0 into +0.0, so copying the sign bit onto 1 gives sign(0) = +1; this is
    # a few times faster than torch.where(x >= 0, 1, −1) and allocates one tensor.
    signed = x.detach() + 0.0
    return torch.copysign(x.new_ones(()), signed, out=signed)


class SurrogateGradient(Protocol):
    """A stand-in for d sign(x) / dx in the backward pass."""

    def derivative(self, x: Tensor) -> Tensor:
        """The surrogate derivative at ``x``, as a new tensor of ``x``'s shape (callers may overwrite it)."""
        ...


@dataclass(frozen=True)
class GradientEstimator:
    """The surrogate derivatives of the published methods (see the module docstring).

    Attributes:
        kind: which surrogate.
        omega: angular frequency ω of the FDA Fourier series (``fourier`` only).
    """

    kind: EstimatorKind
    omega: float = 0.1

    def derivative(self, x: Tensor, fourier_terms: int = 10) -> Tensor:
        """Closed-form surrogate derivative at ``x`` (``fourier_terms`` cosines for ``fourier``)."""
        if self.kind == "identity":
            return torch.ones_like(x)
        if self.kind == "clipped":  # in-place comparisons keep the dtype: 1.0 or 0.0
            return x.abs().le_(1.0)
        if self.kind == "approx_sign":  # 2 − 2|x| clamped at 0, computed in place
            return x.abs().mul_(-2.0).add_(2.0).clamp_min_(0.0)
        if self.kind == "fourier":
            if fourier_terms < 1:
                raise ValueError(f"fourier_terms must be >= 1, got {fourier_terms}")
            harmonics = torch.arange(fourier_terms, dtype=x.dtype, device=x.device) * 2 + 1
            series = torch.cos(x.unsqueeze(-1) * (harmonics * self.omega)).sum(-1)
            return (4.0 * self.omega / math.pi) * series * (x.abs() <= 1).to(x.dtype)
        raise ValueError(f"unknown gradient estimator {self.kind!r}")


class _SignWithSurrogateGradient(torch.autograd.Function):
    """Forward: ``sign(x / divisor) · scale``. Backward: ``grad · scale · derivative(x / divisor) / divisor``.

    ``divisor`` and ``scale`` are detached (no gradient flows into them); either may be ``None``.
    """

    @staticmethod
    def forward(ctx, x, estimator, fourier_terms, divisor, scale):
        source = x if divisor is None else x / divisor
        out = sign(source)
        if scale is not None:
            out.mul_(scale)
        ctx.save_for_backward(source, divisor, scale)
        ctx.estimator = estimator
        ctx.fourier_terms = fourier_terms
        return out

    @staticmethod
    def backward(ctx, grad_output):
        source, divisor, scale = ctx.saved_tensors
        if ctx.fourier_terms is None:
            derivative = ctx.estimator.derivative(source)
        else:
            derivative = ctx.estimator.derivative(source, ctx.fourier_terms)
        grad = derivative.mul_(grad_output if scale is None else grad_output * scale)
        if divisor is not None:
            grad = grad.div_(divisor)
        return grad, None, None, None, None


def binarize(
    x: Tensor,
    estimator: SurrogateGradient,
    fourier_terms: int | None = None,
    *,
    divisor: Tensor | None = None,
    scale: Tensor | None = None,
) -> Tensor:
    """``sign(x / divisor) · scale`` forward; ``estimator``'s surrogate derivative backward (one node).

    Args:
        x: values to binarize.
        estimator: the surrogate gradient (a :class:`GradientEstimator` or any :class:`SurrogateGradient`).
        fourier_terms: cosine terms of a ``fourier`` estimator (passed to its ``derivative``); ``None``
            calls ``estimator.derivative(x)`` alone (10 terms for ``fourier``).
        divisor: detached, broadcastable divisor applied before the sign (ReCU's activation spread); it
            narrows or widens the gradient window without changing the forward value's sign.
        scale: detached, broadcastable multiplier of the ±1 result (XNOR's β, the weight scale α).
    """
    return _SignWithSurrogateGradient.apply(x, estimator, fourier_terms, divisor, scale)
