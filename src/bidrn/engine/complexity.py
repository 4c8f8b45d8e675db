"""Params and OPs with the paper's convention, counted by tracing a real forward pass.

Convention (paper §4.1, following the BNN literature):

    Params = Params_fp + Params_bin / 32        OPs = OPs_fp + OPs_bin / 64

* Params_bin are the latent weights of binary layers (:class:`~bidrn.binary.BinaryLayer`); every
  other parameter (biases, BatchNorm, thresholds, learnable scales, RPReLU, training-only FDA noise
  MLPs, full-precision layers) is Params_fp. Pruned weights (a ``weight_mask`` buffer, as
  ``torch.nn.utils.prune`` makes) count only where the mask is non-zero.
* OPs are multiply-accumulates of the layers that actually run in the traced forward pass, counted
  once per call: a convolution costs (output elements)·(C_in/groups)·k_h·k_w, a transposed
  convolution (input elements)·(C_out/groups)·k_h·k_w, a linear layer (output elements)·in_features;
  BatchNorm costs one op per output element (docs/design/complexity.md §5.1: this reproduces BNN's 2.63 G),
  and so do the other element-wise layers with learned per-channel parameters that survive
  deployment, RPReLU and PReLU (Table 2a: the OPs grow 2.48 → 2.49 → 2.50 G as Fusion Up and
  Fusion Down add RPReLUs while the binarized weights stay the same).
  MACs of binary layers are OPs_bin, the rest OPs_fp; a pruned layer's MACs scale with its density.
  Parameter-free activations (ReLU, Hardtanh, sign), learned thresholds that fold into the sign
  (ReActNet's), residual additions, pooling, soft-argmax and RoI sampling are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bidrn.binary import BinaryLayer, RPReLU

__all__ = ["ComplexityReport", "ModuleComplexity", "count_complexity"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_PER_ELEMENT = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.PReLU, RPReLU)


@dataclass
class ModuleComplexity:
    """Counts of one module (its own parameters; OPs summed over its calls)."""

    name: str
    kind: str
    binarized: bool
    params_fp: int = 0
    params_bin: int = 0
    ops: int = 0
    calls: int = 0


@dataclass
class ComplexityReport:
    """Raw counts split into full-precision and binarized parts, with the paper's totals."""

    params_fp: int
    params_bin: int
    ops_fp: int
    ops_bin: int
    per_module: list[ModuleComplexity] = field(default_factory=list)

    @property
    def params_fp_m(self) -> float:
        """Full-precision parameters, millions."""
        return self.params_fp / 1e6

    @property
    def params_bin_m(self) -> float:
        """Binarized parameters (not yet divided by 32), millions."""
        return self.params_bin / 1e6

    @property
    def ops_fp_g(self) -> float:
        """Full-precision OPs, billions."""
        return self.ops_fp / 1e9

    @property
    def ops_bin_g(self) -> float:
        """Binarized OPs (not yet divided by 64), billions."""
        return self.ops_bin / 1e9

    @property
    def params_m(self) -> float:
        """Params = Params_fp + Params_bin/32, millions (the paper's column)."""
        return (self.params_fp + self.params_bin / 32) / 1e6

    @property
    def ops_g(self) -> float:
        """OPs = OPs_fp + OPs_bin/64, billions (the paper's column)."""
        return (self.ops_fp + self.ops_bin / 64) / 1e9

    def as_dict(self) -> dict[str, float]:
        """The paper's columns and their split, as plain floats."""
        return {
            "params_m": self.params_m,
            "ops_g": self.ops_g,
            "params_fp_m": self.params_fp_m,
            "params_bin_m": self.params_bin_m,
            "ops_fp_g": self.ops_fp_g,
            "ops_bin_g": self.ops_bin_g,
        }


def _density(module: nn.Module) -> float:
    mask = getattr(module, "weight_mask", None)
    if isinstance(mask, torch.Tensor) and mask.numel() > 0:
        return float(mask.count_nonzero()) / mask.numel()
    return 1.0


def _own_params(module: nn.Module) -> tuple[int, int]:
    """(full-precision, binarized) parameter counts of ``module`` itself (not its children)."""
    fp = binary = 0
    for name, parameter in module.named_parameters(recurse=False):
        base = name.removesuffix("_orig")
        mask = getattr(module, f"{base}_mask", None) if name.endswith("_orig") else None
        count = int(mask.count_nonzero()) if isinstance(mask, torch.Tensor) else parameter.numel()
        if isinstance(module, BinaryLayer) and base == "weight":
            binary += count
        else:
            fp += count
    return fp, binary


def _macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, _TRANSPOSED_CONVS):
        kernel = int(torch.tensor(module.kernel_size).prod())
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    if isinstance(module, _CONVS):
        kernel = int(torch.tensor(module.kernel_size).prod())
        return output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, _PER_ELEMENT):
        return output.numel()
    return 0


def _kind(module: nn.Module) -> str:
    return type(module).__name__


def count_complexity(model: nn.Module, *inputs: torch.Tensor, **kwargs) -> ComplexityReport:
    """Count Params and OPs of ``model`` for one forward pass on ``inputs`` (see module docstring).

    The model runs under ``torch.no_grad()`` in its current train/eval mode; pass a batch of one
    sample for per-image OPs.
    """
    rows = {
        module: ModuleComplexity(name or "<root>", _kind(module), isinstance(module, BinaryLayer))
        for name, module in model.named_modules()
    }
    for module, row in rows.items():
        row.params_fp, row.params_bin = _own_params(module)

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        row = rows[module]
        row.calls += 1
        row.ops += round(_macs(module, args, output) * _density(module))

    counted = (*_CONVS, *_TRANSPOSED_CONVS, nn.Linear, *_PER_ELEMENT)
    handles = [module.register_forward_hook(hook) for module in rows if isinstance(module, counted)]
    try:
        with torch.no_grad():
            model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()

    per_module = [row for row in rows.values() if row.params_fp or row.params_bin or row.ops]
    return ComplexityReport(
        params_fp=sum(row.params_fp for row in per_module),
        params_bin=sum(row.params_bin for row in per_module),
        ops_fp=sum(row.ops for row in per_module if not row.binarized),
        ops_bin=sum(row.ops for row in per_module if row.binarized),
        per_module=per_module,
    )
