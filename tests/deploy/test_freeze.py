"""freeze / save / load on small models built from bidrn.binary layers."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import bidrn
from bidrn.binary import BinaryConv2d, BinaryConvTranspose2d, BinaryLinear, RPReLU, list_methods
from bidrn.deploy import (
    PackedBinaryConv2d,
    PackedBinaryConvTranspose2d,
    PackedBinaryLinear,
    freeze,
    frozen_layout,
    load,
    save,
)
from bidrn.errors import BidrnError, InputFileError


class Block(nn.Module):
    """conv -> BN -> + x -> RPReLU: the BN reads the conv output and nothing else does."""

    def __init__(self, channels, method):
        super().__init__()
        self.conv = BinaryConv2d(channels, channels, 3, padding=1, method=method)
        self.bn = nn.BatchNorm2d(channels)
        self.act = RPReLU(channels)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)) + x)


class TinyNet(nn.Module):
    def __init__(self, method="bidrn"):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block = Block(16, method)
        self.down = BinaryConv2d(16, 70, 3, stride=2, padding=1, method=method)
        self.down_bn = nn.BatchNorm2d(70)
        self.up = BinaryConvTranspose2d(70, 24, 4, stride=2, padding=1, method=method)
        self.up_bn = nn.BatchNorm2d(24)
        self.fc = BinaryLinear(24, 10, method=method)
        self.fc_bn = nn.BatchNorm1d(10)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = self.up_bn(self.up(self.down_bn(self.down(x))))
        return self.fc_bn(self.fc(x.mean(dim=(2, 3))))


def randomize(model, seed=0):
    """Non-trivial BatchNorm statistics and method extras, then eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            count = module.num_features
            module.running_mean.copy_(torch.rand(count, generator=generator) * 2 - 1)
            module.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(count, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(count, generator=generator) - 0.5)
        if getattr(module, "input_threshold", None) is not None:
            module.input_threshold.data.copy_(
                torch.rand(module.input_threshold.shape, generator=generator) * 0.6 - 0.3
            )
    return model.eval()


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("method", list_methods())
def test_frozen_matches_simulated_for_every_method(isa, method):
    torch.manual_seed(0)
    model = randomize(TinyNet(method))
    x = torch.randn(2, 3, 11, 13)
    x[:, :, :2] = 0.0
    frozen = freeze(model, example_inputs=(x,))
    with torch.no_grad():
        assert relative_error(frozen(x), model(x)) < 1e-4
    assert isinstance(frozen.block.conv, PackedBinaryConv2d)
    assert isinstance(frozen.up, PackedBinaryConvTranspose2d)
    assert isinstance(frozen.fc, PackedBinaryLinear)
    assert sorted(frozen_layout(frozen)["folded_batchnorms"]) == ["block.bn", "down_bn", "fc_bn", "up_bn"]
    assert isinstance(model.block.conv, BinaryConv2d)  # the original is untouched


class SharedOutput(nn.Module):
    """The conv output feeds the BN *and* the residual: folding the BN would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = BinaryConv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = BinaryConv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(self.bn(self.conv(x))))


@pytest.mark.parametrize("model_type", [SharedOutput, CalledTwice])
def test_batchnorm_is_folded_only_when_safe(model_type):
    model = randomize(model_type())
    x = torch.randn(1, 8, 5, 5)
    frozen = freeze(model, example_inputs=(x,))
    assert frozen_layout(frozen)["folded_batchnorms"] == []
    assert isinstance(frozen.bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert relative_error(frozen(x), model(x)) < 1e-5


def test_without_example_inputs_nothing_is_folded():
    model = randomize(TinyNet())
    frozen = freeze(model)
    assert frozen_layout(frozen)["folded_batchnorms"] == []
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert relative_error(frozen(x), model(x)) < 1e-4


@pytest.mark.parametrize("fp16", [False, True])
def test_save_load_round_trip(tmp_path, fp16):
    model = randomize(TinyNet("reactnet"))
    x = torch.randn(2, 3, 9, 8)
    frozen = freeze(model, example_inputs=(x,))
    path = save(frozen, tmp_path / "tiny.bidrn.safetensors", fp16=fp16)
    loaded = load(path, skeleton=TinyNet("reactnet"))
    with torch.no_grad():
        expected, actual = frozen(x), loaded(x)
    if fp16:
        assert relative_error(actual, expected) < 2e-2
        assert loaded.stem.weight.dtype == torch.float32
    else:
        assert torch.equal(actual, expected)
    assert torch.equal(loaded.down.weight_bits, frozen.down.weight_bits)


def test_packed_weights_are_at_least_25x_smaller_than_latent_weights():
    layer = BinaryConv2d(256, 256, 3, padding=1)
    packed = freeze(nn.Sequential(layer))[0]
    latent_bytes = layer.weight.numel() * 4
    packed_bytes = sum(t.numel() * t.element_size() for t in packed.state_dict().values())
    assert latent_bytes / packed_bytes >= 25


def test_load_rejects_foreign_and_missing_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load(tmp_path / "missing.bidrn.safetensors", skeleton=TinyNet())
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other))
    with pytest.raises(InputFileError, match="not a bidrn frozen model"):
        load(other, skeleton=TinyNet())
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(InputFileError, match="readable"):
        load(garbage, skeleton=TinyNet())


def test_load_without_architecture_needs_a_skeleton(tmp_path):
    path = save(freeze(TinyNet().eval()), tmp_path / "tiny.bidrn.safetensors")
    with pytest.raises(InputFileError, match="skeleton"):
        load(path)


def test_freeze_rejects_unsupported_layers():
    with pytest.raises(BidrnError, match="groups=1"):
        freeze(nn.Sequential(BinaryConv2d(8, 8, 3, groups=2)))


def test_frozen_and_loaded_whole_body_models_run_batches_in_pieces(tmp_path):
    from bidrn.deploy.freeze import INFERENCE_BATCH

    overrides = {"width": 0.125, "body_input": [64, 48], "hand_input": [64, 64], "face_input": [64, 64]}
    model = bidrn.create_model("bidrn", **overrides).eval()
    assert model.inference_batch is None
    frozen = freeze(model, example_inputs=(torch.rand(1, 3, 128, 96),))
    assert frozen.inference_batch == INFERENCE_BATCH == 2
    architecture = {"name": "bidrn", "overrides": overrides}
    path = save(frozen, tmp_path / "m.bidrn.safetensors", architecture=architecture)
    assert load(path).inference_batch == INFERENCE_BATCH
