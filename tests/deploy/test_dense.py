"""The full-precision side of a frozen model: BatchNorm folded into convs, 1×1 convs as GEMMs."""

import pytest
import torch
from torch import nn

from bidrn.binary import BinaryConv2d
from bidrn.deploy import freeze, frozen_layout, kernels, load, save
from bidrn.deploy.dense import (
    DENSE_PRECISIONS,
    Bf16Conv2d,
    ChannelsLastMaxPool2d,
    Int8Conv2d,
    Int8PointwiseConv2d,
    PointwiseConv2d,
    dense_precision,
    fold_batchnorm_into_conv,
    is_pointwise,
    resolve_dense_precision,
    set_dense_precision,
    set_input_range,
    use_channels_last_pools,
    use_pointwise_convs,
)
from bidrn.errors import BidrnError
from bidrn.nets.resnet import Stem


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_equals_conv2d(stride, bias, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 1, stride=stride, bias=bias).double()
    x = torch.randn(3, 24, 9, 7, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = conv(x)
    use_pointwise_convs(nn.Sequential(conv))
    assert isinstance(conv, PointwiseConv2d)
    actual = conv(x)
    assert actual.shape == expected.shape == (3, 40, (9 - 1) // stride + 1, (7 - 1) // stride + 1)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_only_plain_pointwise_convs_are_converted():
    model = nn.Sequential(
        nn.Conv2d(8, 8, 1),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Conv2d(8, 8, 1, padding=1),
        nn.Conv2d(8, 8, 1, groups=2),
        BinaryConv2d(8, 8, 1),
    )
    assert use_pointwise_convs(model) == ["0"]
    assert [is_pointwise(m) for m in model] == [False] * 5  # "0" is a PointwiseConv2d now
    assert type(model[0]) is PointwiseConv2d and type(model[4]) is BinaryConv2d


def _random_batchnorm(channels, seed=0):
    generator = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels).double().eval()
    bn.running_mean.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
    bn.running_var.copy_(torch.rand(channels, generator=generator, dtype=torch.float64) + 0.5)
    bn.weight.data.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
    bn.bias.data.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
    return bn


@pytest.mark.parametrize("bias", [False, True])
def test_fold_batchnorm_into_conv(bias):
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 6, 3, stride=2, padding=1, bias=bias).double()
    bn = _random_batchnorm(6)
    x = torch.randn(2, 5, 8, 8, dtype=torch.float64)
    expected = bn(conv(x))
    fold_batchnorm_into_conv(conv, bn)
    assert conv.bias is not None
    torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)


class StemNet(nn.Module):
    """Full-precision stem conv + BN, a binary conv, a strided 1×1 projection + BN, and a BN that
    must not be folded because its input is read twice."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.binary = BinaryConv2d(16, 16, 3, padding=1)
        self.projection = nn.Conv2d(16, 32, 1, stride=2)
        self.projection_bn = nn.BatchNorm2d(32)
        self.shared = nn.Conv2d(32, 32, 1, bias=False)
        self.shared_bn = nn.BatchNorm2d(32)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = self.projection_bn(self.projection(self.binary(x) + x))
        y = self.shared(x)
        return self.shared_bn(y) + y


def _randomized(model):
    for index, module in enumerate(model.modules()):
        if isinstance(module, nn.BatchNorm2d):
            module.load_state_dict(_random_batchnorm(module.num_features, seed=index).float().state_dict())
    return model.eval()


def test_freeze_folds_full_precision_batchnorms_and_round_trips(tmp_path):
    torch.manual_seed(2)
    model = _randomized(StemNet())
    x = torch.randn(2, 3, 10, 9)
    frozen = freeze(model, example_inputs=(x,))
    layout = frozen_layout(frozen)
    assert layout["folded_batchnorms"] == ["projection_bn", "stem_bn"]
    assert layout["biased_convs"] == ["stem"]
    assert isinstance(frozen.shared_bn, nn.BatchNorm2d)
    assert type(frozen.projection) is PointwiseConv2d and type(frozen.shared) is PointwiseConv2d
    with torch.no_grad():
        expected = model(x)
        actual = frozen(x)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() < 1e-5
    path = save(frozen, tmp_path / "stem.bidrn.safetensors")
    loaded = load(path, skeleton=StemNet())
    assert type(loaded.projection) is PointwiseConv2d
    with torch.no_grad():
        assert torch.equal(loaded(x), actual)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_bf16_pointwise_conv_rounds_operands_and_product_once(stride, bias):
    torch.manual_seed(3)
    conv = nn.Conv2d(96, 40, 1, stride=stride, bias=bias)
    x = torch.randn(2, 96, 9, 7).contiguous(memory_format=torch.channels_last)
    use_pointwise_convs(nn.Sequential(conv))
    exact = conv(x)
    assert set_dense_precision(conv, "bf16") == "bf16" and conv.weight.dtype == torch.bfloat16
    actual = conv(x)
    assert actual.dtype == torch.float32 and actual.shape == exact.shape
    # the product of the bf16-rounded pixels and weights, rounded to bf16 once, then the float32 bias
    product = torch.nn.functional.conv2d(x.bfloat16().double(), conv.weight.double(), None, stride)
    without_bias = actual.double() - (0 if conv.bias is None else conv.bias.double().view(1, -1, 1, 1))
    assert ((without_bias - product).abs() <= 2**-8 * product.abs() + 1e-6).all()
    error = (actual - exact).abs().max() / exact.abs().max()
    assert 1e-4 < error < 2e-2  # bf16 rounding is visible, and only that


@pytest.mark.parametrize("bias", [False, True])
def test_bf16_conv_rounds_operands_and_result_once(bias):
    torch.manual_seed(4)
    conv = nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=bias)
    x = torch.rand(2, 3, 20, 18).contiguous(memory_format=torch.channels_last)
    exact = conv(x)
    assert set_dense_precision(conv, "bf16") == "bf16" and type(conv) is Bf16Conv2d
    actual = conv(x)
    assert actual.dtype == torch.float32 and actual.shape == exact.shape
    product = torch.nn.functional.conv2d(x.bfloat16().double(), conv.weight.double(), None, 2, 3)
    without_bias = actual.double() - (0 if conv.bias is None else conv.bias.double().view(1, -1, 1, 1))
    assert ((without_bias - product).abs() <= 2**-8 * product.abs() + 1e-6).all()
    assert 1e-4 < ((actual - exact).abs().max() / exact.abs().max()).item() < 2e-2


def test_dense_precision_auto_follows_the_cpu_and_rounding_cannot_be_undone(monkeypatch):
    model = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3), nn.Linear(4, 4))
    use_pointwise_convs(model)
    monkeypatch.setattr(kernels, "native_bf16", lambda: False)
    monkeypatch.setattr(kernels, "native_int8", lambda: False)
    assert resolve_dense_precision("auto") == "fp32"
    with pytest.raises(BidrnError, match="int8 needs a CPU with int8 dot products"):
        resolve_dense_precision("int8")
    assert set_dense_precision(model, "auto") == "fp32" and dense_precision(model) == "fp32"
    monkeypatch.setattr(kernels, "native_bf16", lambda: True)
    assert set_dense_precision(model, "auto") == "bf16" and dense_precision(model) == "bf16"
    # conv weights are rounded (the 3x3 conv becomes a Bf16Conv2d); biases and linear layers stay float32
    assert [p.dtype for p in model.parameters()] == [torch.bfloat16, torch.float32] * 2 + [torch.float32] * 2
    assert type(model[0]) is PointwiseConv2d and type(model[1]) is Bf16Conv2d
    assert set_dense_precision(model, "bf16") == "bf16"
    with pytest.raises(BidrnError, match="load the file again"):
        set_dense_precision(model, "fp32")
    with pytest.raises(BidrnError, match="must be one of auto, fp32, bf16, int8"):
        resolve_dense_precision("fp16")
    monkeypatch.setattr(kernels, "native_int8", lambda: True)
    assert resolve_dense_precision("auto") == "int8"


native_int8 = pytest.mark.skipif(not kernels.native_int8(), reason="the CPU has no int8 dot products (VNNI)")


@native_int8
@pytest.mark.parametrize("stride", [1, 2])
def test_int8_pointwise_conv_is_the_exact_product_of_its_quantized_operands(stride):
    torch.manual_seed(5)
    conv = nn.Conv2d(64, 48, 1, stride=stride)
    use_pointwise_convs(conv)
    set_input_range(conv, -1.0, 1.0)
    x = (torch.rand(2, 64, 9, 7) * 2 - 1).contiguous(memory_format=torch.channels_last)
    exact = conv(x)
    weight = conv.weight.detach().reshape(48, 64).double()
    Int8PointwiseConv2d.quantize(conv)
    actual = conv(x)
    assert type(conv) is Int8PointwiseConv2d and conv.weight.dtype == torch.int8
    assert actual.dtype == torch.float32 and actual.shape == exact.shape
    # the reference: the same two roundings, multiplied in float64
    pixels = x[:, :, ::stride, ::stride].permute(0, 2, 3, 1).double()
    codes = torch.floor(pixels * 127 + 128.5).clamp(0, 255) - 128
    step = weight.abs().amax(dim=1) / 127
    assert torch.equal(conv.weight.reshape(48, 64).double(), torch.round(weight / step[:, None]))
    product = (codes / 127) @ (conv.weight.reshape(48, 64).double() * step[:, None]).t() + conv.bias.double()
    torch.testing.assert_close(actual.permute(0, 2, 3, 1).double(), product, rtol=1e-5, atol=1e-5)
    # int8 rounding is visible, and only that
    assert 1e-3 < ((actual - exact).abs().max() / exact.abs().max()).item() < 5e-2


@native_int8
def test_int8_needs_a_bounded_input_and_leaves_the_rest_to_bf16(monkeypatch):
    monkeypatch.setattr(kernels, "native_bf16", lambda: True)
    model = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3))
    use_pointwise_convs(model)
    set_input_range(model[0], -1.0, 1.0)
    assert set_dense_precision(model, "int8") == "int8" and dense_precision(model) == "int8"
    assert [type(m) for m in model] == [Int8PointwiseConv2d, PointwiseConv2d, Bf16Conv2d]
    assert model[1].weight.dtype == model[2].weight.dtype == torch.bfloat16
    with pytest.raises(BidrnError, match="rounded to int8; load the file again"):
        set_dense_precision(model, "bf16")
    with pytest.raises(ValueError, match="known input range"):
        Int8PointwiseConv2d.quantize(PointwiseConv2d(8, 8, 1))
    with pytest.raises(ValueError, match="must be finite"):
        set_input_range(model[1], 0.0, float("inf"))


@native_int8
def test_int8_stem_conv_quantizes_images_and_falls_back_outside_their_range():
    torch.manual_seed(7)
    conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)
    set_input_range(conv, 0.0, 1.0)
    x = torch.rand(2, 3, 20, 18)
    exact = conv(x)
    Int8Conv2d.quantize(conv)
    assert type(conv) is Int8Conv2d and conv.weight.dtype == torch.float32  # kept for the fallback
    actual = conv(x)
    codes = torch.floor(x.double() * 255 + 0.5) / 255
    step = conv.weight.detach().double().flatten(1).abs().amax(dim=1) / 127
    weight = torch.round(conv.weight.double() / step.view(-1, 1, 1, 1)) * step.view(-1, 1, 1, 1)
    product = torch.nn.functional.conv2d(codes, weight, conv.bias.double(), 2, 3)
    torch.testing.assert_close(actual.double(), product, rtol=1e-5, atol=1e-5)
    assert torch.equal(conv(x.contiguous(memory_format=torch.channels_last)), actual)  # either layout
    assert 1e-3 < ((actual - exact).abs().max() / exact.abs().max()).item() < 5e-2
    outside = x * 2  # not an image in [0, 1]: the float32 conv, not a clamped input
    torch.testing.assert_close(
        conv(outside), torch.nn.functional.conv2d(outside, conv.weight, conv.bias, 2, 3)
    )
    with pytest.raises(ValueError, match="non-negative input range"):
        signed = nn.Conv2d(3, 4, 3)
        set_input_range(signed, -1.0, 1.0)
        Int8Conv2d.quantize(signed)


def test_frozen_models_max_pool_without_indices_and_with_the_same_values():
    pools = nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(3, 1, 1))
    assert use_channels_last_pools(pools) == 2  # ceil mode stays torch's
    assert [type(p) for p in pools] == [ChannelsLastMaxPool2d, nn.MaxPool2d, ChannelsLastMaxPool2d]
    x = torch.randn(2, 8, 11, 10).contiguous(memory_format=torch.channels_last)
    for isa in (kernels.active_isa(), kernels.REFERENCE):
        previous = kernels.active_isa()
        kernels.set_isa(isa)
        try:
            assert torch.equal(pools[0](x), nn.functional.max_pool2d(x, 3, 2, 1))
            widened = pools[0](x.bfloat16())  # an int8 stem's bf16 output comes back as float32
            assert widened.dtype == torch.float32
            assert torch.equal(widened, nn.functional.max_pool2d(x.bfloat16(), 3, 2, 1).float())
        finally:
            kernels.set_isa(previous)
    assert torch.equal(pools[0](x.contiguous()), nn.functional.max_pool2d(x, 3, 2, 1))  # NCHW: torch's
    frozen = freeze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, 1)))
    assert type(frozen[1]) is ChannelsLastMaxPool2d


@native_int8
def test_an_int8_stem_writes_bf16_that_its_max_pooling_widens():
    torch.manual_seed(8)
    stem = Stem(16, nn.Identity()).eval()
    x = torch.rand(2, 3, 32, 24)
    frozen = freeze(nn.Sequential(stem), example_inputs=(x,))  # BatchNorm folded, pooling swapped
    set_input_range(frozen[0].conv, 0.0, 1.0)
    exact = frozen(x)
    assert set_dense_precision(frozen, "int8") == "int8"
    assert frozen[0].conv.output_dtype == torch.bfloat16
    actual = frozen(x)
    assert actual.dtype == torch.float32 and actual.shape == exact.shape
    assert ((actual - exact).abs().max() / exact.abs().max()).item() < 5e-2


def test_a_model_with_bf16_weights_is_not_saved(tmp_path):
    torch.manual_seed(2)
    frozen = freeze(_randomized(StemNet()), example_inputs=(torch.randn(2, 3, 10, 9),))
    set_dense_precision(frozen, "bf16")
    with pytest.raises(BidrnError, match="rounded to bf16"):
        save(frozen, tmp_path / "stem.bidrn.safetensors")
    assert not (tmp_path / "stem.bidrn.safetensors").exists()


def test_the_command_line_offers_every_dense_precision():
    import argparse

    from bidrn.commands.predict import add_dense_precision_argument

    parser = argparse.ArgumentParser()
    add_dense_precision_argument(parser)
    (action,) = [a for a in parser._actions if a.dest == "dense_precision"]
    assert tuple(action.choices) == DENSE_PRECISIONS and action.default == "auto"
