"""Freeze a model: every binary layer becomes a packed layer, following BatchNorms are folded.

:func:`freeze` works on any ``nn.Module`` tree that uses :class:`bidrn.binary.BinaryLayer` s. It
deep-copies the model in eval mode and replaces each ``BinaryConv2d`` / ``BinaryConvTranspose2d`` /
``BinaryLinear`` by its :mod:`bidrn.deploy.layers` counterpart, built from
``layer.inference_terms()``: the weight signs are packed, and the weight scale, ReCU's output scale
and the bias become the per-output-channel ``multiplier`` and ``addend``.

A BatchNorm is folded into the layer before it only when the data flow proves it safe: during one
forward pass on ``example_inputs`` (eval mode, no gradients) the layer and the BatchNorm each run
exactly once, the BatchNorm's input *is* the layer's output tensor, and no other operation reads
that tensor. Folded BatchNorms become ``nn.Identity``. Without example inputs nothing is folded
(still exact, a little slower); :func:`freeze` never guesses from module order.

Full-precision convs get the same treatment where it is proven safe: their BatchNorm is folded
into the weight and a bias, and 1×1 convs run as GEMMs (:mod:`bidrn.deploy.dense`).

Finally, BiDRN's Local Convolution Residual units (whose BatchNorm follows RPReLU and the residual,
so it cannot be folded) become :class:`bidrn.deploy.fusion.FusedLocalConvResidual`, which applies
RPReLU, residual, merge and BatchNorm in the packed convs' epilogue.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from bidrn.binary import BinaryConv2d, BinaryConvTranspose2d, BinaryLayer, BinaryLinear
from bidrn.deploy.dense import (
    batchnorm_factors,
    channels_last_convs,
    fold_batchnorm_into_conv,
    set_input_range,
    use_channels_last_pools,
    use_pointwise_convs,
)
from bidrn.deploy.layers import (
    PackedBinaryConv2d,
    PackedBinaryConvTranspose2d,
    PackedBinaryLayer,
    PackedBinaryLinear,
)
from bidrn.deploy.packing import pack_weight
from bidrn.errors import BidrnError
from bidrn.nets.resnet import Stem
from bidrn.nets.wholebody import WholeBodyNet

__all__ = [
    "INFERENCE_BATCH",
    "cpu_inference_settings",
    "find_foldable_batchnorms",
    "freeze",
    "frozen_layout",
    "fuse_units",
    "pack_layer",
]

#: crops per call of a frozen whole-body model (``WholeBodyNet.inference_batch``); measured on the
#: paper size, 8 crops, Zen 4: 2 at a time beats the whole batch at 1 and 2 threads (faults, caches)
INFERENCE_BATCH = 2

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Tensor metadata reads that do not consume the values.
_METADATA = {"__get__", "size", "dim", "numel", "is_contiguous", "stride", "__len__"}


@dataclass
class _Trace:
    """What one traced forward pass saw."""

    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    outputs: dict[int, str] = field(default_factory=dict)  # id(output tensor) -> layer name
    keep_alive: list[Tensor] = field(default_factory=list)  # ids stay unique while traced
    batchnorm_input: dict[str, str | None] = field(default_factory=dict)  # bn name -> layer name
    other_uses: set[str] = field(default_factory=set)  # layer names whose output is read elsewhere
    inside: list[tuple[str, int]] = field(default_factory=list)  # stack of (bn name, id(bn input))


class _UseCounter(TorchFunctionMode):
    """Records every operation that reads a binary layer's output outside its BatchNorm."""

    def __init__(self, trace: _Trace) -> None:
        super().__init__()
        self.trace = trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") not in _METADATA:
            inside_input = self.trace.inside[-1][1] if self.trace.inside else None
            for value in tree_flatten((args, kwargs))[0]:
                if (
                    isinstance(value, Tensor)
                    and id(value) in self.trace.outputs
                    and id(value) != inside_input
                ):
                    self.trace.other_uses.add(self.trace.outputs[id(value)])
        return func(*args, **kwargs)


def _is_foldable_layer(module: nn.Module) -> bool:
    """Binary layers and plain full-precision ``nn.Conv2d`` can absorb a following BatchNorm."""
    return isinstance(module, BinaryLayer) or type(module) is nn.Conv2d


def find_foldable_batchnorms(model: nn.Module, example_inputs: Sequence[Any]) -> dict[str, str]:
    """Map layer name -> name of the BatchNorm that can be folded into it (see module doc).

    Layers are binary layers and plain full-precision ``nn.Conv2d``.
    """
    names = {module: name for name, module in model.named_modules()}
    trace = _Trace()
    handles = []

    def after_layer(module: nn.Module, _inputs: Any, output: Any) -> None:
        trace.calls[names[module]] += 1
        if isinstance(output, Tensor):
            trace.outputs[id(output)] = names[module]
            trace.keep_alive.append(output)

    def before_batchnorm(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        name = names[module]
        trace.calls[name] += 1
        source = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
        trace.batchnorm_input[name] = trace.outputs.get(id(source)) if source is not None else None
        trace.inside.append((name, id(source)))

    def after_batchnorm(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        trace.inside.pop()

    for module in model.modules():
        if _is_foldable_layer(module):
            handles.append(module.register_forward_hook(after_layer))
        elif isinstance(module, _BATCHNORMS):
            handles.append(module.register_forward_pre_hook(before_batchnorm))
            handles.append(module.register_forward_hook(after_batchnorm))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _UseCounter(trace):
            model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    pairs = {}
    for bn_name, layer_name in trace.batchnorm_input.items():
        if layer_name is None or layer_name in trace.other_uses:
            continue
        if trace.calls[bn_name] != 1 or trace.calls[layer_name] != 1:
            continue
        if _can_fold(model.get_submodule(layer_name), model.get_submodule(bn_name)):
            pairs[layer_name] = bn_name
    return pairs


def _can_fold(layer: nn.Module, batchnorm: nn.Module) -> bool:
    if batchnorm.running_mean is None or batchnorm.running_var is None:  # batch statistics in eval
        return False
    out_channels = (
        layer.weight.shape[1] if isinstance(layer, BinaryConvTranspose2d) else layer.weight.shape[0]
    )
    if batchnorm.num_features != out_channels:
        return False
    if isinstance(layer, BinaryLinear):
        return isinstance(batchnorm, nn.BatchNorm1d)
    return isinstance(batchnorm, nn.BatchNorm2d)


@torch.no_grad()
def pack_layer(layer: BinaryLayer, batchnorm: nn.Module | None = None) -> PackedBinaryLayer:
    """The packed equivalent of one binary layer, with ``batchnorm`` (eval mode) folded in."""
    if getattr(layer, "groups", 1) != 1:
        raise BidrnError(f"cannot freeze {layer!r}: only groups=1 binary layers can be packed")
    if isinstance(layer, BinaryConv2d) and (layer.padding_mode != "zeros" or isinstance(layer.padding, str)):
        raise BidrnError(f"cannot freeze {layer!r}: only numeric zero padding is supported")
    terms = layer.inference_terms()
    threshold = terms.input_threshold
    options = {"input_scale": terms.input_scale is not None, "has_threshold": threshold is not None}
    if isinstance(layer, BinaryConv2d):
        packed = PackedBinaryConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            **options,
        )
        weight_sign = terms.weight_sign
    elif isinstance(layer, BinaryConvTranspose2d):
        packed = PackedBinaryConvTranspose2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.output_padding,
            layer.dilation,
            **options,
        )
        weight_sign = terms.weight_sign.transpose(0, 1)  # (C_in, O, k, k) -> (O, C_in, k, k)
    elif isinstance(layer, BinaryLinear):
        packed = PackedBinaryLinear(layer.in_features, layer.out_features, **options)
        weight_sign = terms.weight_sign
    else:
        raise BidrnError(f"cannot freeze {type(layer).__name__}: unknown binary layer type")
    multiplier = terms.weight_scale.double()
    if terms.output_scale is not None:
        multiplier = multiplier * terms.output_scale.double()
    addend = layer.bias.double() if layer.bias is not None else torch.zeros_like(multiplier)
    if batchnorm is not None:
        scale, shift = batchnorm_factors(batchnorm)
        multiplier, addend = multiplier * scale, addend * scale + shift
    packed.set_terms(pack_weight(weight_sign), multiplier.float(), addend.float(), threshold)
    return packed.to(layer.weight.device)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def freeze(model: nn.Module, example_inputs: Sequence[Any] | None = None, fuse: bool = True) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every binary layer packed (see the module doc).

    Args:
        model: any module tree containing :class:`bidrn.binary.BinaryLayer` s; it is not modified.
        example_inputs: positional arguments of one forward call, used to find BatchNorms that can
            be folded (see :func:`find_foldable_batchnorms`); ``None`` folds nothing.
        fuse: fuse BiDRN's Local Convolution Residual units (see :mod:`bidrn.deploy.fusion`).

    Returns:
        The frozen module, with 4-D weights in channels-last memory format (the packed layers work
        channels-last, so the full-precision convs keep activations that way too) and batches split
        as :func:`cpu_inference_settings` says; its
        :func:`frozen_layout` lists the packed layers, folded BatchNorms, full-precision convs that
        gained a bias from folding, and fused units.
    """
    if isinstance(model, BinaryLayer):
        raise BidrnError("freeze a model that contains binary layers, not a single layer")
    frozen = copy.deepcopy(model).eval()
    pairs = find_foldable_batchnorms(frozen, example_inputs) if example_inputs is not None else {}
    layers = [(name, module) for name, module in frozen.named_modules() if isinstance(module, BinaryLayer)]
    for name, layer in layers:
        batchnorm = frozen.get_submodule(pairs[name]) if name in pairs else None
        _replace(frozen, name, pack_layer(layer, batchnorm))
    biased_convs = []
    for name, bn_name in pairs.items():
        conv = frozen.get_submodule(name)
        if type(conv) is nn.Conv2d:
            if conv.bias is None:
                biased_convs.append(name)
            fold_batchnorm_into_conv(conv, frozen.get_submodule(bn_name))
    for bn_name in pairs.values():
        _replace(frozen, bn_name, nn.Identity())
    frozen.bidrn_folded_batchnorms = sorted(pairs.values())
    frozen.bidrn_biased_convs = sorted(biased_convs)
    use_pointwise_convs(frozen)
    frozen.bidrn_fused_units = fuse_units(frozen) if fuse else []
    return cpu_inference_settings(frozen)


def cpu_inference_settings(model: nn.Module) -> nn.Module:
    """A frozen model's run-time settings (in place; returns it), applied by :func:`freeze` and ``load``.

    Full-precision conv weights are stored channels-last (the packed layers work channels-last) and
    max pooling runs without indices (:class:`~bidrn.deploy.dense.ChannelsLastMaxPool2d`).
    A whole-body model runs large batches :data:`INFERENCE_BATCH` crops at a time, and its
    encoders' stems record that they read images in [0, 1] (its input contract; int8 precision
    quantizes them on that range and checks it per call).
    """
    if isinstance(model, WholeBodyNet):
        model.inference_batch = INFERENCE_BATCH
        for stem in model.modules():
            if isinstance(stem, Stem) and type(stem.conv) is nn.Conv2d:
                set_input_range(stem.conv, 0.0, 1.0)
    use_channels_last_pools(model)
    return channels_last_convs(model)


def fuse_units(model: nn.Module) -> list[str]:
    """Replace every fusable unit of a frozen model by its fused version; returns their names.

    Also marks the Block Residual projections whose input is bounded (for int8 precision), runs the
    units of each stage as one kernel call (:class:`~bidrn.deploy.stages.FusedStage`) and fuses
    BoxNet's upsampling units (:mod:`bidrn.deploy.upsampling`; both in place, same state dict, not
    listed).
    """
    from bidrn.deploy.fusion import (
        FusedBiDRB,
        FusedLocalConvResidual,
        bound_projection_inputs,
        can_fuse,
        can_fuse_block,
        fuse_preactivations,
    )
    from bidrn.deploy.stages import fuse_stages
    from bidrn.deploy.upsampling import fuse_upsampling

    names = [name for name, module in model.named_modules() if can_fuse(module)]
    for name in names:
        FusedLocalConvResidual.fuse(model.get_submodule(name))
    blocks = [name for name, module in model.named_modules() if can_fuse_block(module)]
    for name in blocks:
        _replace(model, name, FusedBiDRB(model.get_submodule(name)))
    fuse_preactivations(model)
    bound_projection_inputs(model)
    fuse_stages(model)
    fuse_upsampling(model)
    return names + blocks


def frozen_layout(model: nn.Module) -> dict[str, Any]:
    """Packed layers (name -> constructor config), folded BatchNorms and fused units of a frozen model."""
    layers = {name: m.config() for name, m in model.named_modules() if isinstance(m, PackedBinaryLayer)}
    return {
        "packed_layers": layers,
        "folded_batchnorms": list(getattr(model, "bidrn_folded_batchnorms", [])),
        "biased_convs": list(getattr(model, "bidrn_biased_convs", [])),
        "fused_units": list(getattr(model, "bidrn_fused_units", [])),
    }
