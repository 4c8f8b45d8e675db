"""The full-precision side of a frozen model: BatchNorm folded into convs, 1×1 convs as GEMMs.

BiDRN keeps some layers in full precision (the 7×7 stems, the Block Residual's 1×1 projections of
Eq. 11, the heads). In a frozen model they cost as much as in Hand4Whole, so they are made cheap
in two exact (up to float rounding) ways:

* :func:`fold_batchnorm_into_conv`: ``bn(conv(x))`` becomes one conv whose weight is scaled per
  output channel and whose bias absorbs the BatchNorm shift (the pairing is proven by
  :func:`bidrn.deploy.freeze.find_foldable_batchnorms`, exactly as for binary layers);
* :class:`PointwiseConv2d`: a 1×1 convolution (any stride, no padding) on a channels-last tensor
  *is* a matrix product of the (strided) pixels with the weight matrix; it runs as one ``addmm``
  instead of torch's conv dispatch, which on CPU picks slow paths for strided and
  non-channels-last 1×1 convs (measured: ``bidrn bench``, docs/deployment.md).

:func:`use_pointwise_convs` swaps every eligible ``nn.Conv2d``; it depends only on the module
tree, so :func:`bidrn.deploy.load` repeats it on the rebuilt skeleton and the state-dict keys stay
those of ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "PointwiseConv2d",
    "batchnorm_factors",
    "channels_last_convs",
    "fold_batchnorm_into_conv",
    "is_pointwise",
    "use_pointwise_convs",
]


class PointwiseConv2d(nn.Conv2d):
    """A 1×1 ``nn.Conv2d`` (groups 1, no padding, no dilation) computed as ``pixels @ weightᵀ + bias``."""

    def forward(self, x: Tensor) -> Tensor:
        """Same result as ``nn.Conv2d.forward``; the output is a channels-last NCHW tensor."""
        stride_h, stride_w = self.stride
        if (stride_h, stride_w) != (1, 1):
            x = x[:, :, ::stride_h, ::stride_w]
        batch, channels, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
        weight = self.weight.reshape(self.out_channels, channels)
        out = pixels @ weight.t() if self.bias is None else torch.addmm(self.bias, pixels, weight.t())
        return out.view(batch, height, width, self.out_channels).permute(0, 3, 1, 2)


def is_pointwise(module: nn.Module) -> bool:
    """Whether ``module`` is a plain full-precision 1×1 conv that :class:`PointwiseConv2d` can run."""
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (1, 1)
        and module.padding in ((0, 0), "valid")
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def use_pointwise_convs(model: nn.Module) -> list[str]:
    """Turn every plain 1×1 ``nn.Conv2d`` of ``model`` into a :class:`PointwiseConv2d` (in place).

    The parameters are shared, not copied. Returns the names of the converted convs.
    """
    names = [name for name, module in model.named_modules() if is_pointwise(module)]
    for name in names:
        model.get_submodule(name).__class__ = PointwiseConv2d
    return names


def channels_last_convs(model: nn.Module) -> nn.Module:
    """Store every full-precision conv weight channels-last, in place; returns ``model``.

    Unlike ``model.to(memory_format=torch.channels_last)``, which converts every 4-D tensor, this
    leaves packed layers' bit tensors in their own layout (no copies).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            weight = module.weight
            if not weight.is_meta and not weight.is_contiguous(memory_format=torch.channels_last):
                weight.data = weight.data.contiguous(memory_format=torch.channels_last)
    return model


def batchnorm_factors(batchnorm: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift) with ``bn(y) = y * scale + shift`` in eval mode, in float64."""
    std = torch.sqrt(batchnorm.running_var.double() + batchnorm.eps)
    gamma = batchnorm.weight.double() if batchnorm.weight is not None else torch.ones_like(std)
    beta = batchnorm.bias.double() if batchnorm.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - batchnorm.running_mean.double() * scale


@torch.no_grad()
def fold_batchnorm_into_conv(conv: nn.Conv2d, batchnorm: nn.BatchNorm2d) -> None:
    """Make ``conv`` compute ``batchnorm(conv(x))`` (eval-mode statistics), in place.

    The weight is scaled by ``γ / √(σ² + ε)`` per output channel and the bias (created when the
    conv had none) becomes ``b · γ / √(σ² + ε) + β − μ · γ / √(σ² + ε)``, computed in float64.
    """
    scale, shift = batchnorm_factors(batchnorm)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    conv.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
    folded_bias = (bias * scale + shift).to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(folded_bias)
    else:
        conv.bias.copy_(folded_bias)
