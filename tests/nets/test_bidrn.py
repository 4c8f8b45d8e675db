import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bidrn.binary import BinaryConv2d
from bidrn.binary.methods import get_method, list_methods
from bidrn.nets.bidrn import BiDRNEncoder, LocalConvResidual, choose_lcr_form
from bidrn.nets.config import EncoderConfig
from bidrn.nets.resnet import ResNet

ALL_FORMS = ("base", "down_scale", "fusion_up", "fusion_down", "down_sample")


def silence_binary_path(unit: LocalConvResidual) -> None:
    """Make every RPReLU output exactly 0, so the unit computes BN(merge(residuals))."""
    with torch.no_grad():
        for rprelu in unit.rprelus:
            rprelu.shift_in.fill_(1e6)
            rprelu.slope.zero_()
            rprelu.shift_out.zero_()


def bn_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return x / torch.sqrt(torch.tensor(1.0 + bn.eps))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((16, 16, 1), ("base", 1)),
        ((16, 16, 2), ("down_scale", 1)),
        ((16, 64, 1), ("fusion_up", 4)),
        ((64, 16, 1), ("fusion_down", 4)),
        ((32, 16, 1), ("fusion_down", 2)),
        ((16, 32, 2), ("down_sample", 2)),
        ((16, 24, 1), (None, 1)),
    ],
)
def test_choose_lcr_form(shape, expected):
    assert choose_lcr_form(*shape) == expected


def residual_only(in_ch, out_ch, kernel, stride, x):
    unit = LocalConvResidual(in_ch, out_ch, kernel, stride, ALL_FORMS).eval()
    silence_binary_path(unit)
    return unit, unit(x)


def test_base_lcr_residual_is_identity():
    x = torch.randn(2, 8, 6, 5)
    unit, out = residual_only(8, 8, 3, 1, x)
    assert unit.form == "base" and out.shape == x.shape
    torch.testing.assert_close(out, bn_eval(x, unit.bn))


def test_down_scale_residual_is_average_pool():
    x = torch.randn(2, 8, 6, 4)
    unit, out = residual_only(8, 8, 3, 2, x)
    assert unit.form == "down_scale" and out.shape == (2, 8, 3, 2)
    torch.testing.assert_close(out, bn_eval(F.avg_pool2d(x, 2), unit.bn))


def test_down_scale_on_odd_size_matches_conv_output_size():
    x = torch.randn(1, 4, 7, 5)
    unit = LocalConvResidual(4, 4, 3, 2, ALL_FORMS)
    assert unit(x).shape == (1, 4, 4, 3)


def test_fusion_up_residual_is_channel_concat_of_copies():
    x = torch.randn(2, 4, 5, 5)
    unit, out = residual_only(4, 16, 1, 1, x)
    assert unit.form == "fusion_up" and len(unit.convs) == 4 and out.shape == (2, 16, 5, 5)
    torch.testing.assert_close(out, bn_eval(torch.cat([x] * 4, dim=1), unit.bn))


def test_fusion_down_residual_is_sum_of_channel_groups():
    x = torch.randn(2, 16, 5, 5)
    unit, out = residual_only(16, 4, 1, 1, x)
    assert unit.form == "fusion_down" and len(unit.convs) == 4 and out.shape == (2, 4, 5, 5)
    torch.testing.assert_close(out, bn_eval(sum(x.chunk(4, dim=1)), unit.bn))


def test_down_sample_residual_is_concat_of_average_pools():
    x = torch.randn(2, 4, 6, 6)
    unit, out = residual_only(4, 8, 3, 2, x)
    assert unit.form == "down_sample" and len(unit.convs) == 2 and out.shape == (2, 8, 3, 3)
    pooled = F.avg_pool2d(x, 2)
    torch.testing.assert_close(out, bn_eval(torch.cat([pooled, pooled], dim=1), unit.bn))


def test_fusion_down_branches_each_read_their_own_channel_group():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 5)
    unit = LocalConvResidual(8, 4, 1, 1, ALL_FORMS).eval()
    groups = x.chunk(2, dim=1)
    merged = sum(
        rprelu(conv(g)) + g for conv, rprelu, g in zip(unit.convs, unit.rprelus, groups, strict=True)
    )
    torch.testing.assert_close(unit(x), unit.bn(merged))


FORM_SHAPES = {"base": (8, 8, 1), "down_scale": (8, 8, 2), "fusion_up": (4, 16, 1), "fusion_down": (16, 4, 1),
               "down_sample": (4, 8, 2)}  # fmt: skip
INPUT_ONLY_METHODS = [name for name in list_methods() if get_method(name).activation.input_only]


@pytest.mark.parametrize("form", ALL_FORMS)
@pytest.mark.parametrize("method", INPUT_ONLY_METHODS)
def test_branches_at_once_equal_the_branch_loop_in_values_and_gradients(form, method):
    torch.manual_seed(0)
    in_channels, out_channels, stride = FORM_SHAPES[form]
    unit = LocalConvResidual(in_channels, out_channels, 3, stride, ALL_FORMS, method=method).train()
    assert unit.form == form
    with torch.no_grad():  # every branch different, so a swapped branch or parameter shows
        for parameter in unit.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    x = torch.randn(2, in_channels, 6, 6)

    def run(path):
        unit.zero_grad()
        inputs = x.clone().requires_grad_()
        out = path(inputs)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out, inputs.grad, [p.grad.clone() for p in unit.parameters() if p.grad is not None]

    fused, looped = run(unit._branches_at_once), run(unit._branch_by_branch)
    torch.testing.assert_close(fused[0], looped[0])
    torch.testing.assert_close(fused[1], looped[1])
    assert len(fused[2]) == len(looped[2]) > 0
    for a, b in zip(fused[2], looped[2], strict=True):
        torch.testing.assert_close(a, b)


def test_fusion_up_branches_share_the_input_and_are_concatenated():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5)
    unit = LocalConvResidual(4, 8, 1, 1, ALL_FORMS).eval()
    branches = [rprelu(conv(x)) + x for conv, rprelu in zip(unit.convs, unit.rprelus, strict=True)]
    torch.testing.assert_close(unit(x), unit.bn(torch.cat(branches, dim=1)))


def test_disabled_form_is_a_plain_binary_conv_without_residual_or_rprelu():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5)
    unit = LocalConvResidual(4, 16, 1, 1, enabled_forms=("base",)).eval()
    assert unit.form is None and unit.rprelus is None and len(unit.convs) == 1
    assert unit.convs[0].out_channels == 16
    torch.testing.assert_close(unit(x), unit.bn(unit.convs[0](x)))


def unit_forms(encoder: BiDRNEncoder, stage: int, block: int) -> list[str | None]:
    return [unit.form for unit in encoder.stages[stage][block].units]


def test_bidrn50_uses_the_forms_of_design_bidrn_md_4():
    encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=50), width=0.25)
    assert unit_forms(encoder, 0, 0) == ["base", "base", "fusion_up"]
    assert unit_forms(encoder, 0, 1) == ["fusion_down", "base", "fusion_up"]
    assert unit_forms(encoder, 1, 0) == ["fusion_down", "down_scale", "fusion_up"]
    assert [len(u.convs) for u in encoder.stages[1][0].units] == [2, 1, 4]
    assert [len(u.convs) for u in encoder.stages[1][1].units] == [4, 1, 4]


@pytest.mark.parametrize("depth", [18, 50])
def test_every_lcr_unit_after_the_first_pre_activates_its_input(depth):
    """a_f = preact(x) before every sign: the block does it for its first unit, each later unit itself."""
    encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=depth), width=0.25).eval()
    for stage in encoder.stages:
        for block in stage:
            kinds = [type(unit.preactivation) for unit in block.units]
            assert kinds == [nn.Identity] + [nn.Hardtanh] * (len(kinds) - 1)
    second = encoder.stages[0][0].units[1]  # a base unit: its residual carries Hardtanh(x)
    silence_binary_path(second)
    x = torch.randn(2, second.bn.num_features, 4, 4) * 3
    torch.testing.assert_close(second(x), bn_eval(x.clamp(-1, 1), second.bn))


def test_bidrn18_uses_down_sample_in_strided_blocks():
    encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=18), width=0.25)
    assert unit_forms(encoder, 0, 0) == ["base", "base"]
    assert unit_forms(encoder, 1, 0) == ["down_sample", "base"]


@pytest.mark.parametrize(("kind", "conv_type"), [("fp", nn.Conv2d), ("binary", BinaryConv2d)])
def test_block_residual_kinds(kind, conv_type):
    encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=50, block_residual=kind), width=0.25)
    projection = encoder.stages[1][0].block_residual.projection[0]
    assert type(projection) is conv_type and projection.stride == (2, 2) and projection.kernel_size == (1, 1)
    assert isinstance(encoder.stages[1][1].block_residual.projection, nn.Identity)


def test_without_block_residual_the_block_output_is_the_lcr_chain():
    torch.manual_seed(0)
    encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=18, block_residual="none"), width=0.25).eval()
    block = encoder.stages[1][0]
    assert block.block_residual is None
    x = torch.randn(1, 16, 8, 8)
    torch.testing.assert_close(block(x), block.units(block.preactivation(x)))


def test_block_residual_adds_to_the_chain_of_the_preactivated_input():
    torch.manual_seed(0)
    block = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=50), width=0.25).eval().stages[2][0]
    x = torch.randn(1, 128, 8, 8) * 3
    a = block.preactivation(x)
    assert a.abs().max() <= 1
    torch.testing.assert_close(block(x), block.units(a) + block.block_residual(a))


def test_bidrn_encoder_matches_resnet_output_shape():
    x = torch.rand(2, 3, 64, 96)
    for depth in (18, 50):
        encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=depth), width=0.125)
        reference = ResNet(depth, width=0.125)
        assert encoder(x).shape == reference(x).shape == (2, reference.out_channels, 2, 3)


def binary_inputs(encoder: BiDRNEncoder, monkeypatch) -> list[torch.Tensor]:
    """Every binarized activation the encoder's binary convolutions use on one random image."""
    seen = []
    quantize_input = BinaryConv2d.quantize_input

    def recording(layer, x):
        seen.append(quantize_input(layer, x))
        return seen[-1]

    monkeypatch.setattr(BinaryConv2d, "quantize_input", recording)
    encoder(torch.randn(1, 3, 64, 64))
    assert seen
    return seen


def test_relu_preactivation_makes_every_binary_input_plus_one(monkeypatch):
    torch.manual_seed(0)
    encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=18, preactivation="relu"), width=0.25).eval()
    assert all(torch.all(q == 1) for q in binary_inputs(encoder, monkeypatch))


def test_hardtanh_preactivation_gives_mixed_signs(monkeypatch):
    torch.manual_seed(0)
    encoder = BiDRNEncoder(EncoderConfig(kind="bidrn", depth=18), width=0.25).eval()
    assert all((q == 1).any() and (q == -1).any() for q in binary_inputs(encoder, monkeypatch))
