"""The quantizer interface: input-only activations can be shared, specs are validated."""

import pytest
import torch

from bidrn.binary import BinaryConv2d, SignWeight, get_method, unregister_method
from bidrn.binary.estimators import GradientEstimator

INPUT_ONLY = {"bnn", "xnor", "dorefa", "dorefa-layerscale", "bireal", "recu", "bidrn"}
PER_LAYER = {"reactnet", "fda"}  # learnable threshold, noise-adaptation MLP


@pytest.mark.parametrize("name", sorted(INPUT_ONLY | PER_LAYER))
def test_activation_quantizers_say_whether_they_depend_on_the_input_alone(name):
    assert get_method(name).activation.input_only is (name in INPUT_ONLY)


@pytest.mark.parametrize("name", ["bidrn", "xnor", "recu"])
@pytest.mark.parametrize("training", [True, False])
def test_convs_sharing_one_quantized_input_match_separate_calls(name, training):
    torch.manual_seed(0)
    convs = [BinaryConv2d(6, 6, 3, padding=1, method=name).double().train(training) for _ in range(2)]
    assert convs[0].method.activation == convs[1].method.activation
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    separate = convs[0](x) + 2 * convs[1](x)
    separate.sum().backward()
    grad_separate = x.grad.clone()
    x.grad = None
    shared_input = convs[0].quantize_input(x)
    shared = convs[0].forward_quantized(shared_input) + 2 * convs[1].forward_quantized(shared_input)
    shared.sum().backward()
    torch.testing.assert_close(shared, separate, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, grad_separate)
    assert grad_separate.abs().sum() > 0


def test_weight_quantizer_rejects_an_unknown_scale():
    with pytest.raises(ValueError, match="unknown weight scale 'max'"):
        SignWeight(GradientEstimator("clipped"), scale="max")


def test_unregistering_an_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="'nope' is not registered"):
        unregister_method("nope")
