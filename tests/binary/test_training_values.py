"""Training-mode values and gradients of ReCU and FDA, computed independently of the library.

The eval-mode forward of every method is checked in test_layers.py; what ReCU and FDA do only while
training (ReCU's gradient windows, FDA's noise adaptation) is checked here against
docs/design/binarizers.md §4.6-§4.7 and §6, written out.
"""

import math

import torch
import torch.nn.functional as F

from bidrn.binary import BinaryConv2d, set_progress

EPOCHS = 14


def pm1(t: torch.Tensor) -> torch.Tensor:
    return (t >= 0).double() * 2 - 1


def test_recu_activation_gradient_is_approx_sign_of_x_over_its_per_sample_std():
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 2, 3, method="recu").double().train()
    spread = torch.tensor([0.5, 3.0], dtype=torch.float64).view(2, 1, 1, 1)  # two samples, two spreads
    x = (torch.randn(2, 3, 4, 5, dtype=torch.float64) * spread).requires_grad_(True)
    upstream = torch.randn(x.shape, dtype=torch.float64)
    binary = layer.quantize_input(x)
    binary.backward(upstream)
    sigma = x.detach().std(dim=(1, 2, 3), keepdim=True)  # one spread per sample, over (C, H, W)
    ratio = x.detach() / sigma
    torch.testing.assert_close(binary, pm1(x.detach()))
    torch.testing.assert_close(x.grad, upstream * (2 - 2 * ratio.abs()).clamp_min(0) / sigma)


def recu_clamped(filters: torch.Tensor, tau: float) -> torch.Tensor:
    """§4.6: centre, standardise × 2√2 (unbiased variance + 1e-5), clamp to ±Q, Q over the whole layer."""
    centred = filters - filters.mean(dim=1, keepdim=True)
    standard = centred / torch.sqrt(centred.var(dim=1, keepdim=True) + 1e-5) * 2 * math.sqrt(2)
    bound = (-standard.abs().mean() * math.log(2 - 2 * tau)).detach()
    return torch.maximum(torch.minimum(standard, bound), -bound)


def test_recu_weight_gradient_flows_through_the_standardisation_inside_the_clamp_window():
    for epoch in (0, EPOCHS - 1):
        torch.manual_seed(1)
        layer = BinaryConv2d(3, 4, 3, method="recu").double()
        set_progress(layer, epoch, EPOCHS)
        tau = 0.85 + 0.14 * (math.exp(epoch / EPOCHS) - 1) / (math.e - 1)
        upstream = torch.randn(layer.weight.shape, dtype=torch.float64)
        layer.quantized_weight().backward(upstream)

        latent = layer.weight.detach().reshape(4, -1).clone().requires_grad_(True)
        clamped = recu_clamped(latent, tau)
        clamped.backward(upstream.reshape(4, -1))  # identity STE through the sign
        bound = clamped.detach().abs().max()
        assert (clamped.detach().abs() == bound).any() and (clamped.detach().abs() < bound).any()
        torch.testing.assert_close(layer.weight.grad.reshape(4, -1), latent.grad)


def noise(module: torch.nn.Module, values: torch.Tensor) -> torch.Tensor:
    """e(v) = W₂·ReLU(W₁·v) + 0.1·sin(v) over the last dimension (§4.7)."""
    hidden = F.relu(values @ module.reduce.weight.T)
    return hidden @ module.expand.weight.T + 0.1 * torch.sin(values)


def test_fda_training_values_add_lambda_times_noise_before_the_weight_scale():
    torch.manual_seed(2)
    layer = BinaryConv2d(8, 4, 3, method="fda").double().train()
    set_progress(layer, 0, EPOCHS)
    lam = 0.05 * (1 + math.cos(math.pi / EPOCHS))
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    per_pixel = noise(layer.input_noise, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(layer.quantize_input(x), pm1(x) + lam * per_pixel)

    filters = layer.weight.detach().reshape(4, -1)
    alpha = filters.abs().mean(dim=1, keepdim=True)
    expected = alpha * (pm1(filters) + lam * noise(layer.weight_noise, filters))
    torch.testing.assert_close(layer.quantized_weight().detach().reshape(4, -1), expected)
