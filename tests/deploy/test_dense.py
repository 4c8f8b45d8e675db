"""The full-precision side of a frozen model: BatchNorm folded into convs, 1×1 convs as GEMMs."""

import pytest
import torch
from torch import nn

from bidrn.binary import BinaryConv2d
from bidrn.deploy import freeze, frozen_layout, load, save
from bidrn.deploy.dense import PointwiseConv2d, fold_batchnorm_into_conv, is_pointwise, use_pointwise_convs


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
