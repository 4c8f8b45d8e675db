"""A binarization method defined outside the package: registered, trained a step, frozen, run packed.

Everything the method needs lives in this file: a surrogate gradient, an activation quantizer with a
learnable per-channel shift and a schedule, and a weight quantizer with its own scale. The library
learns about it only through ``register_method``.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import bidrn
from bidrn.binary import (
    ActivationQuantizer,
    ActivationTerms,
    BinarizationMethod,
    BinaryConv2d,
    BinaryConvTranspose2d,
    BinaryLinear,
    WeightQuantizer,
    WeightTerms,
    binarize,
    register_method,
    set_progress,
    sign,
    unregister_method,
)
from bidrn.deploy import PackedBinaryConv2d, PackedBinaryConvTranspose2d, PackedBinaryLinear, freeze

NAME = "shifted-tanh"


@dataclass(frozen=True)
class TanhGradient:
    """d/dx tanh(k·x) = k·(1 − tanh²(k·x)) in place of d sign(x) / dx."""

    sharpness: float

    def derivative(self, x):
        slope = torch.tanh(self.sharpness * x)
        return self.sharpness * (1 - slope * slope)


@dataclass(frozen=True)
class ShiftedTanhSign(ActivationQuantizer):
    """a = sign(x − b_c) with a learnable shift per input channel; tanh gradient sharpening 1 → 4."""

    def build(self, layer, in_channels):
        layer.input_shift = nn.Parameter(torch.zeros(in_channels))
        layer.register_buffer("tanh_sharpness", torch.tensor(1.0))

    def set_progress(self, layer, epoch, total_epochs):
        layer.tanh_sharpness.fill_(1.0 + 3.0 * epoch / max(total_epochs - 1, 1))

    def __call__(self, x, layer):
        shifted = x - layer.channel_view(layer.input_shift, x)
        return binarize(shifted, TanhGradient(float(layer.tanh_sharpness)))

    def inference_terms(self, layer):
        return ActivationTerms(input_threshold=layer.input_shift.detach().clone())


@dataclass(frozen=True)
class RmsScaledSign(WeightQuantizer):
    """w_b = r_o·sign(w_o), r_o = √mean(w_o²) detached; gradient r_o·tanh'(w)."""

    @staticmethod
    def rms(filters):
        return filters.detach().square().mean(dim=1, keepdim=True).sqrt()

    def __call__(self, filters, layer):
        return binarize(filters, TanhGradient(1.0), scale=self.rms(filters))

    def inference_terms(self, filters, layer):
        return WeightTerms(weight_sign=sign(filters), weight_scale=self.rms(filters).flatten())


def shifted_tanh() -> BinarizationMethod:
    """Shifted sign with a sharpening tanh surrogate and RMS-scaled weights (a test method)."""
    return BinarizationMethod("", ShiftedTanhSign(), RmsScaledSign())


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_method(shifted_tanh)
    yield
    unregister_method(NAME)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.down = BinaryConv2d(16, 70, 3, stride=2, padding=1, method=NAME)
        self.down_bn = nn.BatchNorm2d(70)
        self.up = BinaryConvTranspose2d(70, 24, 4, stride=2, padding=1, method=NAME)
        self.up_bn = nn.BatchNorm2d(24)
        self.fc = BinaryLinear(24, 10, method=NAME)

    def forward(self, x):
        x = self.up_bn(self.up(self.down_bn(self.down(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def test_the_method_keeps_its_state_under_its_own_names():
    layer = BinaryConv2d(4, 6, 3, method=NAME)
    assert set(layer.state_dict()) == {"weight", "input_shift", "tanh_sharpness"}
    assert layer.input_threshold is None and layer.output_scale is None
    set_progress(layer, 3, 4)
    assert layer.tanh_sharpness.item() == 4.0


def test_forward_and_surrogate_gradients_are_the_methods_own():
    torch.manual_seed(0)
    layer = BinaryLinear(5, 3, bias=False, method=NAME).double()
    with torch.no_grad():
        layer.input_shift.copy_(torch.tensor([0.2, -0.1, 0.0, 0.3, -0.4]))
    set_progress(layer, 1, 3)  # sharpness 2.5
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 3, dtype=torch.float64)
    layer(x).backward(upstream)

    shifted = x.detach() - layer.input_shift.detach()
    rms = layer.weight.detach().square().mean(dim=1, keepdim=True).sqrt()
    weight = torch.where(layer.weight.detach() >= 0, 1.0, -1.0).double() * rms
    activation = torch.where(shifted >= 0, 1.0, -1.0).double()
    torch.testing.assert_close(layer(x), activation @ weight.T)
    tanh_slope = 2.5 * (1 - torch.tanh(2.5 * shifted) ** 2)
    grad_x = (upstream @ weight) * tanh_slope
    torch.testing.assert_close(x.grad, grad_x)
    torch.testing.assert_close(layer.input_shift.grad, -grad_x.sum(0))
    weight_slope = 1 - torch.tanh(layer.weight.detach()) ** 2
    torch.testing.assert_close(layer.weight.grad, (upstream.T @ activation) * rms * weight_slope)


def test_trains_a_step_freezes_and_runs_packed_like_the_simulation(isa):
    torch.manual_seed(0)
    model = TinyNet()
    x = torch.randn(4, 3, 11, 13)
    set_progress(model, 0, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).square().mean().backward()
    assert model.down.input_shift.grad.abs().sum() > 0
    assert model.up.weight.grad.abs().sum() > 0
    optimizer.step()
    assert model.down.input_shift.abs().sum() > 0  # the step moved the thresholds off 0

    model.eval()
    frozen = freeze(model, example_inputs=(x,))
    assert isinstance(frozen.down, PackedBinaryConv2d)
    assert isinstance(frozen.up, PackedBinaryConvTranspose2d)
    assert isinstance(frozen.fc, PackedBinaryLinear)
    torch.testing.assert_close(frozen.down.input_threshold, model.down.input_shift.detach())
    with torch.no_grad():
        expected, actual = model(x), frozen(x)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() < 1e-4


def test_the_library_never_names_the_method():
    package = Path(bidrn.__file__).parent
    sources = [*(package / "binary").rglob("*.py"), *(package / "deploy").rglob("*.py")]
    assert len(sources) > 10
    names = (NAME, "shifted_tanh", "ShiftedTanhSign", "RmsScaledSign", "input_shift", "tanh_sharpness")
    for path in sources:
        text = path.read_text()
        assert not any(name in text for name in names), path


def test_sharpness_schedule_spans_one_to_four():
    layer = BinaryLinear(2, 2, method=NAME)
    values = []
    for epoch in range(5):
        set_progress(layer, epoch, 5)
        values.append(layer.tanh_sharpness.item())
    assert values == pytest.approx([1.0 + 0.75 * epoch for epoch in range(5)])
    assert math.isclose(values[-1], 4.0)
