import math

import pytest
import torch

from bidrn.binary import GradientEstimator, binarize, sign

GRID = torch.tensor(
    [-3.0, -1.5, -1.0, -0.999, -0.75, -0.5, -0.1, 0.0, 0.1, 0.5, 0.75, 0.999, 1.0, 1.001, 2.0],
    dtype=torch.float64,
)


def closed_form(kind: str, x: float, terms: int = 10, omega: float = 0.1) -> float:
    """Derivatives written out from docs/design/binarizers.md §3, point by point."""
    if kind == "identity":
        return 1.0
    if kind == "clipped":
        return 1.0 if abs(x) <= 1 else 0.0
    if kind == "approx_sign":
        return 2.0 - 2.0 * abs(x) if abs(x) < 1 else 0.0
    if kind == "fourier":
        if abs(x) > 1:
            return 0.0
        return 4 * omega / math.pi * sum(math.cos((2 * i + 1) * omega * x) for i in range(terms))
    raise AssertionError(kind)


def test_sign_maps_zero_to_plus_one_and_never_returns_zero():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0])
    assert sign(x).tolist() == [-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]


@pytest.mark.parametrize("kind", ["identity", "clipped", "approx_sign", "fourier"])
@pytest.mark.parametrize("terms", [10, 18])
def test_autograd_gradient_matches_closed_form(kind, terms):
    x = GRID.clone().requires_grad_(True)
    out = binarize(x, GradientEstimator(kind), fourier_terms=terms)
    assert out.tolist() == [1.0 if v >= 0 else -1.0 for v in GRID.tolist()]
    upstream = torch.linspace(0.5, 2.0, len(GRID), dtype=torch.float64)
    out.backward(upstream)
    expected = [
        g * closed_form(kind, v, terms) for g, v in zip(upstream.tolist(), GRID.tolist(), strict=True)
    ]
    assert x.grad.tolist() == pytest.approx(expected, abs=1e-12)


def test_breakpoint_values_of_the_surrogates():
    approx = GradientEstimator("approx_sign").derivative(torch.tensor([-1.0, 0.0, 1.0]))
    assert approx.tolist() == [0.0, 2.0, 0.0]
    clipped = GradientEstimator("clipped").derivative(torch.tensor([-1.0, 0.0, 1.0, 1.5]))
    assert clipped.tolist() == [1.0, 1.0, 1.0, 0.0]
    fourier = GradientEstimator("fourier").derivative(torch.tensor([0.0]), fourier_terms=18)
    assert fourier.item() == pytest.approx(4 * 0.1 / math.pi * 18)
