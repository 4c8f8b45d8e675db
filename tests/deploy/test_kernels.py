"""Packed kernels == conv(sign(x), sign(w)) exactly, for every kernel set (hypothesis)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bidrn.deploy import kernels
from bidrn.deploy.layers import PackedBinaryConv2d, PackedBinaryConvTranspose2d, PackedBinaryLinear
from bidrn.deploy.packing import pack_weight

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CHANNELS = st.sampled_from([1, 3, 8, 63, 64, 65, 130, 200])


def signs(x):
    return torch.where(x >= 0, 1.0, -1.0)


def random_input(seed, shape, zero_fraction):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator)
    x[torch.rand(shape, generator=generator) < zero_fraction] = 0.0  # exact zeros are +1
    return x, generator


def random_signs(generator, shape):
    return torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)


def integer_layer(layer, weight_sign):
    """Identity epilogue: the layer then returns the raw ±1 accumulator."""
    layer.set_terms(
        pack_weight(weight_sign), torch.ones(layer.out_channels), torch.zeros(layer.out_channels), None
    )
    return layer


@SETTINGS
@given(
    batch=st.integers(1, 3),
    in_channels=CHANNELS,
    out_channels=st.integers(1, 70),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    kernel=st.sampled_from([1, 2, 3, 5]),
    stride=st.sampled_from([1, 2]),
    padding=st.integers(0, 2),
    dilation=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_conv2d_matches_sign_conv(
    isa, batch, in_channels, out_channels, height, width, kernel, stride, padding, dilation, seed
):
    reach = dilation * (kernel - 1) + 1
    assume(height + 2 * padding >= reach and width + 2 * padding >= reach)
    x, generator = random_input(seed, (batch, in_channels, height, width), 0.2)
    weight = random_signs(generator, (out_channels, in_channels, kernel, kernel))
    layer = integer_layer(
        PackedBinaryConv2d(in_channels, out_channels, kernel, stride, padding, dilation), weight
    )
    expected = F.conv2d(signs(x), weight, stride=stride, padding=padding, dilation=dilation)
    assert torch.equal(layer(x), expected)


@SETTINGS
@given(
    batch=st.integers(1, 2),
    in_channels=CHANNELS,
    out_channels=st.integers(1, 40),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    kernel=st.sampled_from([1, 2, 3, 4]),
    stride=st.sampled_from([1, 2, 3]),
    padding=st.integers(0, 2),
    output_padding=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose2d_matches_sign_conv_transpose(
    isa, batch, in_channels, out_channels, height, width, kernel, stride, padding, output_padding, seed
):
    assume(output_padding < stride)
    assume((min(height, width) - 1) * stride - 2 * padding + kernel + output_padding >= 1)
    x, generator = random_input(seed, (batch, in_channels, height, width), 0.2)
    weight = random_signs(generator, (in_channels, out_channels, kernel, kernel))
    layer = PackedBinaryConvTranspose2d(in_channels, out_channels, kernel, stride, padding, output_padding)
    layer = integer_layer(layer, weight.transpose(0, 1))
    expected = F.conv_transpose2d(
        signs(x), weight, stride=stride, padding=padding, output_padding=output_padding
    )
    assert torch.equal(layer(x), expected)


@SETTINGS
@given(
    rows=st.integers(1, 9), in_features=CHANNELS, out_features=st.integers(1, 70), seed=st.integers(0, 2**16)
)
def test_linear_matches_sign_matmul(isa, rows, in_features, out_features, seed):
    x, generator = random_input(seed, (rows, in_features), 0.2)
    weight = random_signs(generator, (out_features, in_features))
    layer = integer_layer(PackedBinaryLinear(in_features, out_features), weight)
    assert torch.equal(layer(x), signs(x) @ weight.t())


BACKENDS = ["openmp", "pool"] if kernels.extension_available() else [None]


@pytest.mark.parametrize(("threads", "backend"), [(1, BACKENDS[0]), *((2, backend) for backend in BACKENDS)])
def test_epilogue_threshold_and_sample_scale(isa, threads, backend):
    previous, previous_backend = torch.get_num_threads(), backend and kernels.thread_backend()
    torch.set_num_threads(threads)
    if backend:
        kernels.set_thread_backend(backend)
    try:
        x, generator = random_input(3, (3, 70, 6, 5), 0.1)
        weight = random_signs(generator, (40, 70, 3, 3))
        threshold = torch.randn(70, generator=generator) * 0.3
        multiplier, addend = torch.rand(40, generator=generator) + 0.5, torch.randn(40, generator=generator)
        for use_threshold, input_scale in ((True, False), (False, True)):
            layer = PackedBinaryConv2d(70, 40, 3, 2, 1, input_scale=input_scale, has_threshold=use_threshold)
            layer.set_terms(pack_weight(weight), multiplier, addend, threshold if use_threshold else None)
            bits = signs(x - threshold.view(1, -1, 1, 1)) if use_threshold else signs(x)
            expected = F.conv2d(bits, weight, stride=2, padding=1) * multiplier.view(1, -1, 1, 1)
            if input_scale:
                expected = expected * x.abs().mean(dim=(1, 2, 3), keepdim=True)
            expected = expected + addend.view(1, -1, 1, 1)
            torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-4)
    finally:
        torch.set_num_threads(previous)
        if backend:
            kernels.set_thread_backend(previous_backend)


def test_conv_output_is_channels_last_and_accepts_any_layout(isa):
    x, generator = random_input(4, (2, 64, 5, 6), 0.0)
    weight = random_signs(generator, (32, 64, 3, 3))
    layer = integer_layer(PackedBinaryConv2d(64, 32, 3, padding=1), weight)
    out = layer(x)
    assert torch.equal(out, layer(x.contiguous(memory_format=torch.channels_last)))
    assert torch.equal(out, layer(x[:, :, :, :].transpose(2, 3).contiguous().transpose(2, 3)))
    if isa != "reference":
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_call_plans_follow_input_shapes_and_new_weights(isa):
    """A packed conv caches one call plan per input shape; new terms or weights invalidate them."""
    x, generator = random_input(5, (2, 64, 6, 7), 0.1)
    weight = random_signs(generator, (16, 64, 3, 3))
    layer = integer_layer(PackedBinaryConv2d(64, 16, 3, stride=2, padding=1), weight)
    for shape in ((2, 64, 6, 7), (1, 64, 9, 4), (2, 64, 6, 7)):
        inputs = x if shape == x.shape else random_input(6, shape, 0.1)[0]
        assert torch.equal(layer(inputs), F.conv2d(signs(inputs), weight, stride=2, padding=1))
    flipped = -weight
    integer_layer(layer, flipped)
    assert torch.equal(layer(x), F.conv2d(signs(x), flipped, stride=2, padding=1))
    layer.load_state_dict(
        integer_layer(PackedBinaryConv2d(64, 16, 3, stride=2, padding=1), weight).state_dict()
    )
    assert torch.equal(layer(x), F.conv2d(signs(x), weight, stride=2, padding=1))


@pytest.mark.skipif(not kernels.extension_available(), reason="compiled kernels not built")
def test_an_extension_with_other_structs_is_refused():
    """The ctypes mirrors must match the compiled structs field by field, or the extension is not used."""
    extension = kernels._extension
    assert kernels._abi_problem(extension) == ""

    class Other:
        def __init__(self, change):
            self.change = change

        def abi_layout(self):
            return self.change(extension.abi_layout())

    def older(layout):
        return {**layout, "version": kernels.ABI_VERSION - 1}

    def moved(layout):
        size, fields = layout["ConvArgs"]
        return {**layout, "ConvArgs": (size, (*fields[:-2], fields[-1], fields[-2]))}

    assert "ABI version" in kernels._abi_problem(Other(older))
    assert "ConvArgs differs" in kernels._abi_problem(Other(moved))


def all_ones_pointwise(height, width, out_channels):
    """A packed 64-channel NHWC input and an all-(+1) 1x1 conv over it: (x, phase, multiplier, addend,
    pack, buffer); each output is 64 - 2 * (negative inputs of its pixel)."""
    x = torch.randn(1, 64, height, width).contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    layer = integer_layer(PackedBinaryConv2d(64, out_channels, 1), torch.ones(out_channels, 64, 1, 1))
    (phase,), multiplier, addend = layer._kernel_operands()
    pack = kernels.plan_pack(x, [phase], height, width)
    buffer = pack.buffer()
    pack.args.packed = buffer.data_ptr()
    return x, phase, multiplier, addend, pack, buffer


@pytest.mark.skipif(not kernels.extension_available(), reason="compiled kernels not built")
def test_a_conv_can_join_only_a_conv_of_the_same_job_space():
    x, phase, multiplier, addend, pack, buffer = all_ones_pointwise(4, 4, 32)
    out = torch.empty(1, 4, 4, 32)
    first = kernels.plan_conv_args(pack, phase, (4, 4), out, multiplier, addend)
    second = kernels.plan_conv_args(pack, phase, (4, 4), out, multiplier, addend, joins_previous=True)
    first.packed = second.packed = buffer.data_ptr()
    kernels.run((pack.args, first, second))
    assert torch.equal(out, torch.full((1, 4, 4, 32), 64.0) - 2 * (x < 0).sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="joins_previous"):
        kernels.run((pack.args, second))
    second.out_h = 2
    with pytest.raises(ValueError, match="joins_previous"):
        kernels.run((pack.args, first, second))


@pytest.mark.skipif(not kernels.extension_available(), reason="compiled kernels not built")
def test_branches_must_be_few_and_read_inside_the_packed_pixel():
    """ConvArgs.branches: 1 to MAX_BRANCHES branches, whose words all lie in the packed pixel."""
    _, phase, multiplier, addend, pack, buffer = all_ones_pointwise(4, 4, 32)
    out = torch.empty(1, 4, 4, 32)
    conv = kernels.plan_conv_args(pack, phase, (4, 4), out, multiplier, addend)
    conv.packed = buffer.data_ptr()
    assert conv.branches == 1
    for branches, branch_words in ((0, 0), (kernels.MAX_BRANCHES + 1, 0), (2, -1)):
        conv.branches, conv.branch_words = branches, branch_words
        with pytest.raises(ValueError, match="branches must be"):
            kernels.run((pack.args, conv))
    conv.branches, conv.branch_words = 2, 1  # a second word the 64-channel pixel does not have
    with pytest.raises(ValueError, match="inside the packed pixel"):
        kernels.run((pack.args, conv))
    # planning checks what the extension cannot: that the operands hold every branch
    with pytest.raises(ValueError, match="must hold 2 branches"):
        kernels.plan_conv_args(pack, phase, (4, 4), out, multiplier, addend, branches=2)
    with pytest.raises(ValueError, match="branches must be 1 to"):  # MAX_BRANCHES is 4
        kernels.plan_conv_args(pack, phase, (4, 4), out, multiplier, addend, branches=5)


@pytest.mark.skipif(not kernels.extension_available(), reason="compiled kernels not built")
def test_a_residual_with_fewer_channels_repeats_along_the_output_channels():
    x, phase, multiplier, addend, pack, buffer = all_ones_pointwise(3, 5, 96)
    residual = torch.randn(1, 3, 5, 32)
    out = torch.empty(1, 3, 5, 96)
    post = kernels.PostOps(residual=residual)
    conv = kernels.plan_conv_args(pack, phase, (3, 5), out, multiplier, addend, post)
    conv.packed = buffer.data_ptr()
    assert conv.res_channels == 32
    kernels.run((pack.args, conv))
    products = torch.full((1, 3, 5, 96), 64.0) - 2 * (x < 0).sum(-1, keepdim=True)
    torch.testing.assert_close(out, products + residual.repeat(1, 1, 1, 3))
    conv.res_channels = 48
    with pytest.raises(ValueError, match="res_channels"):
        kernels.run((pack.args, conv))
    with pytest.raises(ValueError, match="cannot repeat"):
        post = kernels.PostOps(residual=out[..., :48])
        kernels.plan_conv_args(pack, phase, (3, 5), out, multiplier, addend, post)


@pytest.mark.skipif(not kernels.extension_available(), reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding"),
    [
        ((2, 64, 13, 10), (3, 3), (2, 2), (1, 1)),
        ((1, 5, 7, 9), (3, 2), (1, 2), (1, 0)),
        ((3, 3, 4, 4), (2, 2), (2, 2), (0, 0)),
    ],
)
def test_max_pool_nhwc_equals_torch_max_pooling(dtype, shape, kernel, stride, padding):
    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    x[0, 0, 1, 1] = float("nan")  # a NaN wins its windows, as in torch
    x[-1, -1, -1, -1] = float("-inf")
    expected = F.max_pool2d(x.float(), kernel, stride, padding)
    previous = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            out = kernels.max_pool_nhwc(x.permute(0, 2, 3, 1), kernel, stride, padding).permute(0, 3, 1, 2)
        finally:
            torch.set_num_threads(previous)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, expected, equal_nan=True, rtol=0, atol=0)


@pytest.mark.skipif(not kernels.extension_available(), reason="compiled kernels not built")
def test_max_pool_nhwc_refuses_what_it_cannot_pool():
    x = torch.randn(1, 4, 4, 8)
    with pytest.raises(ValueError, match="unit channel stride"):
        kernels.max_pool_nhwc(x.permute(0, 3, 1, 2), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        kernels.max_pool_nhwc(x.double(), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="pool: "):
        kernels.max_pool_nhwc(x, (2, 2), (2, 2), (2, 2))  # padding beyond half the window


@pytest.mark.skipif(not kernels.extension_available(), reason="compiled kernels not built")
@pytest.mark.parametrize("threads", [1, 2])
def test_quantize_u8_equals_its_formula_on_strided_inputs(threads):
    torch.manual_seed(6)
    x = (torch.rand(2, 37, 9, 11) * 6 - 3).contiguous(memory_format=torch.channels_last)
    view = x[:, :, ::2, 1::2].permute(0, 2, 3, 1)  # NHWC with strides, as a stride-2 1x1 conv reads it
    view[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 0.0, 0.5 / 127])  # bounds, zero point, a tie
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        actual = kernels.quantize_u8(view, 127.0, 128)
    finally:
        torch.set_num_threads(previous)
    expected = torch.floor(view * 127.0 + 128.5).clamp(0, 255).to(torch.uint8)
    assert actual.is_contiguous() and actual.dtype == torch.uint8 and torch.equal(actual, expected)
    assert actual.min() == 0 and actual.max() == 255  # values beyond the bounds saturate
    assert actual[0, 0, 0, :3].tolist() == [1, 255, 128]
    with pytest.raises(ValueError, match="4-D float32"):
        kernels.quantize_u8(view.double(), 127.0, 128)
