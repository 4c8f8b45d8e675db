"""Epoch-dependent hyper-parameters of ReCU and FDA (docs/design/binarizers.md §6).

``epoch`` is 0-based and ``total_epochs`` is the length of training, so the last epoch is
``total_epochs - 1``. Advance every binarized layer of a model once per epoch with
:func:`bidrn.binary.set_progress`.
"""

from __future__ import annotations

import math

__all__ = ["fda_fourier_terms", "fda_noise_scale", "recu_tau"]

RECU_TAU_MIN = 0.85
RECU_TAU_MAX = 0.99


def _check(epoch: int, total_epochs: int) -> None:
    if total_epochs < 1 or not 0 <= epoch < total_epochs:
        raise ValueError(f"need 0 <= epoch < total_epochs, got epoch={epoch}, total_epochs={total_epochs}")


def recu_tau(epoch: int, total_epochs: int) -> float:
    """ReCU's clamping quantile τ(t) = τ_min + (τ_max − τ_min)(e^{t/T} − 1)/(e − 1), t = epoch, T = total."""
    _check(epoch, total_epochs)
    growth = (math.exp(epoch / total_epochs) - 1.0) / (math.e - 1.0)
    return RECU_TAU_MIN + (RECU_TAU_MAX - RECU_TAU_MIN) * growth


def fda_fourier_terms(epoch: int, total_epochs: int) -> int:
    """Number of cosine terms of FDA's gradient: 10 + ⌊9·epoch/E⌋ (10 at the start, 18 at the end)."""
    _check(epoch, total_epochs)
    return 10 + (9 * epoch) // total_epochs


def fda_noise_scale(epoch: int, total_epochs: int) -> float:
    """FDA's noise-adaptation weight λ = 0.05·(1 + cos(π(epoch + 1)/E)); exactly 0 in the last epoch."""
    _check(epoch, total_epochs)
    if epoch == total_epochs - 1:
        return 0.0
    return 0.05 * (1.0 + math.cos(math.pi * (epoch + 1) / total_epochs))
