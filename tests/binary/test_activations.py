import pytest
import torch

from bidrn.binary import RPReLU


def test_rprelu_is_shifted_prelu_per_channel():
    layer = RPReLU(2)
    with torch.no_grad():
        layer.shift_in.copy_(torch.tensor([0.5, -1.0]))
        layer.slope.copy_(torch.tensor([0.1, 0.2]))
        layer.shift_out.copy_(torch.tensor([2.0, 3.0]))
    x = torch.tensor([[[[1.0]], [[-2.0]]], [[[0.0]], [[0.0]]]])  # (2, 2, 1, 1)
    y = layer(x).flatten().tolist()
    assert y == pytest.approx(
        [
            1.0 - 0.5 + 2.0,  # x > γ: x − γ + ζ
            0.2 * (-2.0 + 1.0) + 3.0,  # x <= γ: β(x − γ) + ζ
            0.1 * (0.0 - 0.5) + 2.0,
            0.0 + 1.0 + 3.0,
        ]
    )
    flat = layer(torch.tensor([[1.0, -2.0]]))
    assert flat.flatten().tolist() == pytest.approx([2.5, 2.8])
