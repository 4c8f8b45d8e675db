"""Eval-mode forward values of every method, computed independently of the library."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from bidrn.binary import (
    BinaryConv2d,
    BinaryConvTranspose2d,
    BinaryLayer,
    BinaryLinear,
    get_method,
    list_methods,
)

PAPER_METHODS = ["bnn", "xnor", "dorefa", "bireal", "reactnet", "recu", "fda", "bidrn"]


def pm1(t: torch.Tensor) -> torch.Tensor:
    return (t >= 0).double() * 2 - 1


def expected_activation(method: str, x: torch.Tensor, layer) -> torch.Tensor:
    """Binarized input per method (eval mode); channels on dim 1 (conv) or -1 (linear)."""
    if method == "reactnet":
        shape = [1] * x.dim()
        shape[layer._channel_dim] = -1
        return pm1(x - layer.input_threshold.detach().view(shape))
    if method == "xnor":
        beta = x.abs().mean(dim=tuple(range(1, x.dim())), keepdim=True)
        return pm1(x) * beta
    return pm1(x)


def expected_filters(method: str, filters: torch.Tensor) -> torch.Tensor:
    """Effective (C_out, d) filters per method (eval mode), before any output scale."""
    if method == "bnn":
        return pm1(filters)
    if method == "recu":  # clamping and positive scaling keep the sign of the centred filter
        return pm1(filters - filters.mean(1, keepdim=True))
    if method == "dorefa-layerscale":
        return pm1(filters) * filters.abs().mean()
    return pm1(filters) * filters.abs().mean(1, keepdim=True)


def make(layer_cls, method, **kwargs):
    torch.manual_seed(0)
    layer = layer_cls(method=method, **kwargs).double().eval()
    with torch.no_grad():
        layer.weight.mul_(3)  # push some latent weights beyond ±1
        if layer.input_threshold is not None:
            layer.input_threshold.uniform_(-0.5, 0.5)
        if layer.bias is not None:
            layer.bias.uniform_(-1, 1)
    return layer


def input_with_zeros(*shape):
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64)
    x.view(-1)[::3] = 0.0
    return x


def finish(method, layer, y):
    if layer.output_scale is not None:
        shape = [1] * y.dim()
        shape[layer._channel_dim] = -1
        y = y * layer.output_scale.detach().view(shape)
    if layer.bias is not None:
        shape = [1] * y.dim()
        shape[layer._channel_dim] = -1
        y = y + layer.bias.detach().view(shape)
    return y


def test_registry_holds_every_paper_method_with_a_citation():
    assert set(PAPER_METHODS) <= set(list_methods())
    for name in list_methods():
        spec = get_method(name)
        assert spec.name == name
        assert any(year in spec.description for year in ("2016", "2018", "2020", "2021", "2023"))
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "other"


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown binarization method 'nope'.*bidrn"):
        BinaryConv2d(4, 4, 3, method="nope")


@pytest.mark.parametrize("method", [*PAPER_METHODS, "dorefa-layerscale"])
def test_conv_forward_equals_independent_computation(method):
    layer = make(BinaryConv2d, method, in_channels=5, out_channels=7, kernel_size=3, stride=2, padding=1,
                 bias=True)  # fmt: skip
    x = input_with_zeros(2, 5, 9, 8)
    activation = expected_activation(method, x, layer)
    weight = expected_filters(method, layer.weight.detach().reshape(7, -1)).reshape(layer.weight.shape)
    expected = finish(method, layer, F.conv2d(activation, weight, stride=2, padding=1))
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    binary = layer.quantize_input(x)
    assert (binary != 0).all()


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_transposed_conv_forward_equals_independent_computation(method):
    layer = make(BinaryConvTranspose2d, method, in_channels=6, out_channels=4, kernel_size=4, stride=2,
                 padding=1)  # fmt: skip
    x = input_with_zeros(2, 6, 3, 5)
    activation = expected_activation(method, x, layer)
    filters = layer.weight.detach().transpose(0, 1).reshape(4, -1)  # per output channel
    weight = expected_filters(method, filters).reshape(4, 6, 4, 4).transpose(0, 1)
    expected = finish(method, layer, F.conv_transpose2d(activation, weight, stride=2, padding=1))
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert (layer.quantize_input(x) != 0).all()


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_linear_forward_equals_independent_computation(method):
    layer = make(BinaryLinear, method, in_features=70, out_features=9)
    x = input_with_zeros(3, 70)
    activation = expected_activation(method, x, layer)
    weight = expected_filters(method, layer.weight.detach())
    expected = finish(method, layer, activation @ weight.T)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert (layer.quantize_input(x) != 0).all()


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_inference_terms_reproduce_the_eval_forward(method):
    layer = make(BinaryConv2d, method, in_channels=4, out_channels=6, kernel_size=3, padding=1, bias=True)
    x = input_with_zeros(2, 4, 6, 7)
    terms = layer.inference_terms()
    threshold = 0 if terms.input_threshold is None else terms.input_threshold.view(1, -1, 1, 1)
    y = F.conv2d(pm1(x - threshold), terms.weight_sign, padding=1)
    y = y * terms.weight_scale.view(1, -1, 1, 1)
    if terms.output_scale is not None:
        y = y * terms.output_scale.view(1, -1, 1, 1)
    if terms.input_scale == "per_sample_mean_abs":
        y = y * x.abs().mean(dim=(1, 2, 3), keepdim=True)
    y = y + layer.bias.detach().view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), y, rtol=1e-12, atol=1e-12)
    assert set(terms.weight_sign.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("method", ["bnn", "xnor", "dorefa", "bireal", "bidrn"])
def test_state_dict_layout_matches_torch_counterparts(method):
    reference = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    layer = BinaryConv2d(3, 8, 3, padding=1, method=method)
    layer.load_state_dict(reference.state_dict(), strict=True)
    torch.testing.assert_close(layer.weight, reference.weight)
    linear = BinaryLinear(5, 2, method=method)
    linear.load_state_dict(torch.nn.Linear(5, 2).state_dict(), strict=True)
    assert isinstance(layer, torch.nn.Conv2d) and isinstance(layer, BinaryLayer)


def test_bidrn_weight_gradient_is_alpha_times_clamp_window():
    """Eq. 4 with α detached and the clamp STE: dL/dw = α_o · 1[|w| <= 1] · dL/dw_b."""
    layer = BinaryLinear(6, 3, bias=False, method="bidrn").double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.5, 0.2, 1.0, -0.3, 2.0]] * 3, dtype=torch.float64))
    x = torch.randn(4, 6, dtype=torch.float64)
    layer(x).sum().backward()
    alpha = layer.weight.detach().abs().mean(1, keepdim=True)
    window = (layer.weight.detach().abs() <= 1).double()
    expected = pm1(x).sum(0, keepdim=True) * alpha * window
    torch.testing.assert_close(layer.weight.grad, expected)


def test_recu_training_forward_equals_eval_forward_but_gradients_differ():
    torch.manual_seed(3)
    layer = BinaryConv2d(4, 4, 3, padding=1, method="recu").double()
    x = (torch.randn(2, 4, 5, 5, dtype=torch.float64) * 5).requires_grad_(True)
    layer.train()
    y_train = layer(x)
    y_train.sum().backward()
    grad_train = x.grad.clone()
    x.grad = None
    layer.eval()
    y_eval = layer(x)
    y_eval.sum().backward()
    torch.testing.assert_close(y_train, y_eval)
    assert not torch.allclose(grad_train, x.grad)


def test_transposed_conv_rejects_groups():
    with pytest.raises(ValueError, match="groups=1"):
        BinaryConvTranspose2d(4, 4, 2, groups=2)
