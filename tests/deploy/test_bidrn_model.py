"""Freezing the registered BiDRN model: fused units per residual form, and whole-model agreement."""

import copy

import pytest
import torch
from torch import nn

import bidrn
from bidrn.binary import RPReLU
from bidrn.deploy import freeze, kernels, load, save
from bidrn.deploy.dense import Int8Conv2d, Int8PointwiseConv2d, known_input_range, set_dense_precision
from bidrn.deploy.fusion import FusedBiDRB, FusedLocalConvResidual, bound_projection_inputs
from bidrn.errors import BidrnError
from bidrn.nets.bidrn import LocalConvResidual

TINY = {"width": 0.125, "body_input": (64, 48), "hand_input": (64, 64), "face_input": (64, 64)}


def randomize(model, seed=0):
    """Non-trivial BatchNorm statistics and RPReLU parameters (initial ones are identities)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            count = module.num_features
            module.running_mean.copy_(torch.rand(count, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(count, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(count, generator=generator) - 0.5)
        if isinstance(module, RPReLU):
            for parameter in module.parameters():
                parameter.data.copy_(torch.rand(parameter.shape, generator=generator) * 0.5)
    return model.eval()


@pytest.mark.parametrize(
    ("form", "in_channels", "out_channels", "stride"),
    [
        ("base", 8, 8, 1),
        ("down_scale", 8, 8, 2),
        ("fusion_up", 8, 32, 1),
        ("fusion_up", 32, 128, 1),  # branches of whole 32-channel chunks: one merged conv
        ("fusion_down", 32, 8, 1),
        ("fusion_down", 256, 64, 1),  # branches of whole 64-bit words: one conv sums all four
        ("fusion_down", 128, 64, 1),  # two branches (a strided block's 2C -> C)
        ("down_sample", 8, 16, 2),
        ("down_sample", 32, 64, 2),  # merged, with the pooled residual repeated along the channels
    ],
)
def test_fused_unit_matches_unit(isa, form, in_channels, out_channels, stride):
    unit = randomize(LocalConvResidual(in_channels, out_channels, 3, stride, preactivation=nn.Hardtanh()))
    assert unit.form == form
    frozen = freeze(nn.Sequential(unit))
    assert isinstance(frozen[0], FusedLocalConvResidual)
    # branches reading the same input pack it once (Down Sample and Fusion Up have several, Fusion
    # Down when its channel groups are whole words) and run as one conv when each writes whole
    # chunks of the kernels' output channels (concatenated) or reads whole words (summed)
    summed = form == "fusion_down" and out_channels == 64
    assert frozen[0].shares_packed_input == (form in ("fusion_up", "down_sample") or summed)
    assert frozen[0].merges_branches == (form in ("fusion_up", "down_sample") and in_channels == 32)
    assert frozen[0].sums_branches == summed
    x = torch.randn(2, in_channels, 9, 7)
    with torch.no_grad():
        expected, actual = unit(x), frozen(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_fused_unit_call_plans_follow_shapes_layouts_and_new_parameters(isa):
    """Plans are cached per input shape, output layout and clamp; new parameters replace them."""
    unit = randomize(LocalConvResidual(32, 8, 1, 1))  # fusion_down: four channel-sliced branches
    fused = freeze(nn.Sequential(unit))[0]
    generator = torch.Generator().manual_seed(3)
    for shape in ((2, 32, 6, 5), (1, 32, 3, 7), (2, 32, 6, 5)):
        x = torch.randn(*shape, generator=generator)
        block_residual = torch.randn(shape[0], 8, *shape[2:], generator=generator)
        block_residual = block_residual.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            expected = unit(x)
            torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)
            clamped = fused(x, clamp=(-1.0, 1.0))
            torch.testing.assert_close(clamped, expected.clamp(-1, 1), rtol=1e-5, atol=1e-5)
            accumulated = fused(x, add=block_residual, clamp=(-1.0, 1.0))
            torch.testing.assert_close(
                accumulated, (expected + block_residual).clamp(-1, 1), rtol=1e-5, atol=1e-5
            )
    other = randomize(LocalConvResidual(32, 8, 1, 1), seed=1)
    fused.load_state_dict(freeze(nn.Sequential(other))[0].state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), other(x), rtol=1e-5, atol=1e-5)


class _OneConvPerBranch(FusedLocalConvResidual):
    """A fused unit that runs its Fusion Down branches as one conv each, accumulating into the output."""

    sums_branches = property(lambda self: False)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_summed_branches_equal_one_conv_per_branch(isa, kernel_size):
    """Fusion Down's branches summed in registers give the bits of one conv per branch accumulating."""
    unit = randomize(LocalConvResidual(256, 64, kernel_size, 1, preactivation=nn.Hardtanh()))
    summed = freeze(nn.Sequential(unit))[0]
    per_branch = copy.deepcopy(summed)
    per_branch.__class__ = _OneConvPerBranch
    assert summed.sums_branches and not per_branch.sums_branches
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 256, 7, 6, generator=generator)
    block_residual = torch.randn(2, 64, 7, 6, generator=generator)
    block_residual = block_residual.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for options in ({}, {"clamp": (-1.0, 1.0)}, {"add": block_residual, "clamp": (-1.0, 1.0)}):
            plain = per_branch(x, **options)
            assert torch.equal(summed(x, **options), plain)
            if kernels.use_compiled():
                assert len(summed.call_plan(*_plan_inputs(x, options)).steps) == 2  # one pack, one conv
                assert len(per_branch.call_plan(*_plan_inputs(x, options)).steps) == 5


def _plan_inputs(x, options):
    """call_plan's arguments for a unit called on ``x`` with these keyword arguments."""
    nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    add = options.get("add")
    add = None if add is None else add.permute(0, 2, 3, 1)
    return nhwc, add, options.get("clamp")


def test_next_units_hardtanh_becomes_a_clamp(isa):
    chain = nn.Sequential(
        LocalConvResidual(32, 8, 1, 1),  # fusion_down
        LocalConvResidual(8, 8, 3, 1, preactivation=nn.Hardtanh()),  # base
        LocalConvResidual(8, 32, 1, 1, preactivation=nn.Hardtanh()),  # fusion_up
    )
    randomize(chain)
    frozen = freeze(chain)
    assert frozen[0].output_clamp == (-1.0, 1.0) and frozen[1].output_clamp == (-1.0, 1.0)
    assert isinstance(frozen[1].preactivation, nn.Identity) and isinstance(
        frozen[2].preactivation, nn.Identity
    )
    x = torch.randn(2, 32, 6, 5) * 3
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), chain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_frozen_tiny_bidrn_matches_simulated_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = randomize(bidrn.create_model("bidrn", **TINY))
    images = torch.rand(2, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    frozen = freeze(model, example_inputs=(images[:1],))
    assert any(isinstance(module, FusedBiDRB) for module in frozen.modules())
    assert any(isinstance(module, FusedLocalConvResidual) for module in frozen.modules())
    stages = frozen.body_encoder.stages  # the next stage's Hardtanh is fused across the boundary
    assert stages[0][-1].output_clamp == (-1.0, 1.0)
    assert isinstance(stages[1][0].preactivation, nn.Identity)
    assert stages[-1][-1].output_clamp is None  # the encoder's output is not clamped
    with torch.no_grad():
        expected, actual = model(images), frozen(images)
    for name in (
        "root_pose",
        "body_pose",
        "lhand_pose",
        "rhand_pose",
        "jaw_pose",
        "shape",
        "expr",
        "cam_trans",
        "joint_img",
        "lhand_bbox",
        "rhand_bbox",
        "face_bbox",
    ):
        reference, value = getattr(expected, name), getattr(actual, name)
        assert (value - reference).abs().max() <= 1e-4 * reference.abs().max(), name
    path = save(
        frozen, tmp_path / "tiny.bidrn.safetensors", architecture={"name": "bidrn", "overrides": TINY}
    )
    loaded = load(path)
    with torch.no_grad():
        assert torch.equal(loaded(images).body_pose, actual.body_pose)


def _projections(model):
    return [m for m in model.modules() if isinstance(m, FusedBiDRB) and m.block_residual is not None]


def test_projections_and_stems_know_their_input_ranges():
    torch.manual_seed(0)
    frozen = freeze(randomize(bidrn.create_model("bidrn", **TINY)))
    blocks = [b for b in _projections(frozen) if isinstance(b.block_residual.projection, nn.Sequential)]
    assert len(blocks) == 11  # stages 1-4 of the body and hand ResNet-50s, 2-4 of the face ResNet-18
    # the first block's Hardtanh is its own; later ones were moved into the previous block's clamp
    assert isinstance(blocks[0].preactivation, nn.Hardtanh) and blocks[1].input_clamp == (-1.0, 1.0)
    assert all(known_input_range(b.block_residual.projection[0]) == (-1.0, 1.0) for b in blocks)
    ranged = {name for name, m in frozen.named_modules() if known_input_range(m) is not None}
    stems = {f"{part}_encoder.stem.conv" for part in ("body", "hand", "face")}
    assert stems <= ranged and all(known_input_range(frozen.get_submodule(s)) == (0.0, 1.0) for s in stems)
    assert all("block_residual" in name for name in ranged - stems)  # heads read unbounded features
    blocks[0].preactivation = nn.ReLU()
    del blocks[0].block_residual.projection[0].input_range
    assert bound_projection_inputs(frozen) == 10  # ReLU leaves the input unbounded
    assert known_input_range(blocks[0].block_residual.projection[0]) is None


@pytest.mark.skipif(not kernels.native_int8(), reason="the CPU has no int8 dot products (VNNI)")
def test_int8_frozen_bidrn_stays_close_and_is_not_saved(tmp_path):
    torch.manual_seed(0)
    model = randomize(bidrn.create_model("bidrn", **TINY))
    images = torch.rand(2, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    exact, reduced = freeze(model), freeze(model)
    assert set_dense_precision(reduced, "int8") == "int8"
    assert sum(isinstance(m, Int8PointwiseConv2d) for m in reduced.modules()) == 11
    assert sum(isinstance(m, Int8Conv2d) for m in reduced.modules()) == 3  # the stems
    with torch.no_grad():
        expected, actual = exact(images), reduced(images)
    # int8 moves every output a little (it can flip signs later binary layers see), never wildly
    for name in ("body_pose", "lhand_pose", "shape", "cam_trans"):
        reference, value = getattr(expected, name), getattr(actual, name)
        assert 0 < (value - reference).abs().max() <= 0.5 * reference.abs().max() + 0.1, name
    with pytest.raises(BidrnError, match="rounded to int8"):
        save(reduced, tmp_path / "int8.bidrn.safetensors")


def test_a_frozen_model_that_has_run_can_be_deep_copied():
    """Call plans hold raw addresses in ctypes structs, which deepcopy refused; copies plan anew."""
    torch.manual_seed(0)
    frozen = freeze(randomize(bidrn.create_model("bidrn", **TINY)))
    images = torch.rand(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = frozen(images).body_pose
        copied = copy.deepcopy(frozen)
        assert torch.equal(copied(images).body_pose, expected)
        assert torch.equal(frozen(images).body_pose, expected)
