"""Side-by-side latency and size measurements behind ``bidrn bench`` (issue: real 1-bit deployment).

Every figure is the median of repeated runs; the contenders of one comparison run interleaved
(round-robin within each repetition) in one process, so machine noise hits them alike. Latencies
exclude model construction and include everything inside ``forward`` (for packed layers: packing
the float input, the XOR-popcount convolution and the fused epilogue).

* layers: torch fp32 ``conv2d`` / ``conv_transpose2d`` (the faster of NCHW and channels-last) vs the
  packed layer on the same float input;
* end to end: full-precision Hand4Whole (torch fp32, the faster of NCHW and channels-last, as for
  the layers), simulated BiDRN (torch fp32, binary layers computed as ±1 floats) and frozen BiDRN
  (packed layers);
* sizes: safetensors files and in-memory tensors of each model, and the binarized layers' packed
  storage against their fp32 latent weights.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bidrn.binary import BinaryLayer
from bidrn.deploy.freeze import freeze
from bidrn.deploy.layers import PackedBinaryConv2d, PackedBinaryConvTranspose2d, PackedBinaryLayer
from bidrn.deploy.packing import pack_weight
from bidrn.deploy.serialization import save

_MB = 1024 * 1024


@dataclass(frozen=True)
class LayerCase:
    """One benchmarked layer shape: ``kind`` conv3x3 / conv1x1 / deconv4x4 with channels and input size."""

    kind: str
    in_channels: int
    out_channels: int
    height: int
    width: int
    stride: int = 1

    @property
    def name(self) -> str:
        """Name like ``conv3x3_256x256_16x12`` (input map size)."""
        suffix = f"_s{self.stride}" if self.stride != 1 else ""
        return f"{self.kind}_{self.in_channels}x{self.out_channels}_{self.height}x{self.width}{suffix}"


#: Shapes of the BiDRN encoders (ResNet-50 stages at the 256x192 body crop) and of BoxNet.
LAYER_CASES = (
    LayerCase("conv3x3", 256, 256, 16, 12),
    LayerCase("conv3x3", 64, 64, 64, 48),
    LayerCase("conv3x3", 128, 128, 32, 24),
    LayerCase("conv3x3", 512, 512, 8, 6),
    LayerCase("conv3x3", 128, 128, 64, 48, stride=2),
    LayerCase("conv1x1", 1024, 256, 16, 12),
    LayerCase("deconv4x4", 256, 256, 32, 24),
)


def median_ms(
    functions: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2, burst: int = 1
) -> dict[str, float]:
    """Median wall time (ms) per call of each function, interleaved round-robin.

    With ``burst = 1`` every call follows the other contenders' calls, so it starts with the caches
    they left (a layer's weights are cold). With ``burst > 1`` each sample is the mean of ``burst``
    back-to-back calls, which measures a function in the steady state it has inside a network of
    its own kind; the contenders still alternate, so machine noise hits them alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in functions}
    with torch.no_grad():
        for _ in range(warmup):
            for function in functions.values():
                function()
        for _ in range(repeats):
            for name, function in functions.items():
                start = time.perf_counter()
                for _ in range(burst):
                    function()
                samples[name].append((time.perf_counter() - start) * 1e3 / burst)
    return {name: statistics.median(values) for name, values in samples.items()}


def _layer_pair(case: LayerCase, batch: int, generator: torch.Generator) -> dict[str, Callable[[], Any]]:
    x = torch.randn(batch, case.in_channels, case.height, case.width, generator=generator)
    x_last = x.contiguous(memory_format=torch.channels_last)
    if case.kind == "deconv4x4":
        weight = torch.randn(case.in_channels, case.out_channels, 4, 4, generator=generator)
        packed = PackedBinaryConvTranspose2d(case.in_channels, case.out_channels, 4, 2, 1)
        packed.set_terms(
            pack_weight(weight.transpose(0, 1)),
            torch.rand(case.out_channels),
            torch.zeros(case.out_channels),
            None,
        )

        def fp32(inp: torch.Tensor, w: torch.Tensor) -> Callable[[], Any]:
            return lambda: F.conv_transpose2d(inp, w, stride=2, padding=1)

    else:
        k = 3 if case.kind == "conv3x3" else 1
        weight = torch.randn(case.out_channels, case.in_channels, k, k, generator=generator)
        packed = PackedBinaryConv2d(case.in_channels, case.out_channels, k, case.stride, k // 2)
        packed.set_terms(
            pack_weight(weight), torch.rand(case.out_channels), torch.zeros(case.out_channels), None
        )

        def fp32(inp: torch.Tensor, w: torch.Tensor) -> Callable[[], Any]:
            return lambda: F.conv2d(inp, w, stride=case.stride, padding=k // 2)

    weight_last = weight.contiguous(memory_format=torch.channels_last)
    return {
        "fp32_nchw": fp32(x, weight),
        "fp32_channels_last": fp32(x_last, weight_last),
        "packed": lambda: packed(x_last),
    }


def benchmark_layers(
    batch: int,
    repeats: int,
    cases: tuple[LayerCase, ...] = LAYER_CASES,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Per-layer rows: ``name``, ``batch``, ``fp32_ms`` (best layout), ``packed_ms``, ``speedup``.

    The main figures interleave single calls (cold weights, see :func:`median_ms`); the
    ``*_steady_ms`` / ``speedup_steady`` figures interleave bursts of five calls. ``progress``
    receives one line per layer before it is measured.
    """
    generator = torch.Generator().manual_seed(0)
    rows = []
    for index, case in enumerate(cases):
        if progress is not None:
            progress(f"layer {case.name} ({index + 1}/{len(cases)})")
        contenders = _layer_pair(case, batch, generator)
        times = median_ms(contenders, repeats)
        steady = median_ms(contenders, max(1, repeats // 5), burst=5)
        fp32_ms = min(times["fp32_nchw"], times["fp32_channels_last"])
        fp32_steady_ms = min(steady["fp32_nchw"], steady["fp32_channels_last"])
        rows.append(
            {
                "name": case.name,
                "batch": batch,
                "fp32_ms": fp32_ms,
                "fp32_nchw_ms": times["fp32_nchw"],
                "fp32_channels_last_ms": times["fp32_channels_last"],
                "packed_ms": times["packed"],
                "speedup": fp32_ms / times["packed"],
                "fp32_steady_ms": fp32_steady_ms,
                "packed_steady_ms": steady["packed"],
                "speedup_steady": fp32_steady_ms / steady["packed"],
            }
        )
    return rows


def build_model(name: str, overrides: dict[str, Any]) -> nn.Module:
    """``bidrn.create_model(name, **overrides)`` in eval mode."""
    import bidrn

    return bidrn.create_model(name, **overrides).eval()


def input_size(model: nn.Module) -> tuple[int, int]:
    """(H, W) of the images a whole-body model takes (512x384 when it does not say)."""
    config = getattr(model, "config", None)
    size = getattr(config, "crop_input", None)
    return tuple(size) if size is not None else (512, 384)


def benchmark_end_to_end(
    batch: int,
    repeats: int,
    overrides: dict[str, Any],
    frozen: nn.Module | None = None,
    simulated: nn.Module | None = None,
) -> dict[str, Any]:
    """Latency of Hand4Whole fp32, simulated BiDRN and frozen BiDRN on the same images.

    ``hand4whole_fp32_ms`` is the faster of the NCHW and channels-last runs (both are reported).
    """
    hand4whole = build_model("hand4whole", overrides)
    hand4whole_last = copy.deepcopy(hand4whole).to(memory_format=torch.channels_last)
    simulated = simulated if simulated is not None else build_model("bidrn", overrides)
    height, width = input_size(simulated)
    images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    images_last = images.contiguous(memory_format=torch.channels_last)
    frozen = frozen if frozen is not None else freeze(simulated, example_inputs=(images[:1],))
    times = median_ms(
        {
            "hand4whole_fp32_nchw_ms": lambda: hand4whole(images),
            "hand4whole_fp32_channels_last_ms": lambda: hand4whole_last(images_last),
            "bidrn_simulated_ms": lambda: simulated(images),
            "bidrn_frozen_ms": lambda: frozen(images),
        },
        repeats,
        warmup=1,
    )
    times["hand4whole_fp32_ms"] = min(
        times["hand4whole_fp32_nchw_ms"], times["hand4whole_fp32_channels_last_ms"]
    )
    times["speedup_vs_hand4whole_fp32"] = times["hand4whole_fp32_ms"] / times["bidrn_frozen_ms"]
    times["speedup_vs_simulated"] = times["bidrn_simulated_ms"] / times["bidrn_frozen_ms"]
    return {"batch": batch, "input": [height, width], **times}


def _tensor_mb(module: nn.Module) -> float:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values()) / _MB


def _file_mb(module: nn.Module, fp16: bool | None = None) -> float:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        if fp16 is None:
            save_file({k: v.contiguous().clone() for k, v in module.state_dict().items()}, str(path))
        else:
            save(module, path, fp16=fp16)
        return path.stat().st_size / _MB


def benchmark_sizes(
    overrides: dict[str, Any], frozen: nn.Module | None = None, simulated: nn.Module | None = None
) -> dict[str, Any]:
    """On-disk (safetensors) and in-memory sizes, and the binarized layers' storage ratio."""
    hand4whole = build_model("hand4whole", overrides)
    simulated = simulated if simulated is not None else build_model("bidrn", overrides)
    frozen = frozen if frozen is not None else freeze(simulated)
    latent = sum(m.weight.numel() * 4 for m in simulated.modules() if isinstance(m, BinaryLayer))
    packed = sum(_tensor_mb(m) * _MB for m in frozen.modules() if isinstance(m, PackedBinaryLayer))
    sizes = {
        "hand4whole_fp32_mb": _file_mb(hand4whole),
        "bidrn_simulated_mb": _file_mb(simulated),
        "bidrn_frozen_mb": _file_mb(frozen, fp16=False),
        "bidrn_frozen_fp16_mb": _file_mb(frozen, fp16=True),
        "hand4whole_memory_mb": _tensor_mb(hand4whole),
        "bidrn_simulated_memory_mb": _tensor_mb(simulated),
        "bidrn_frozen_memory_mb": _tensor_mb(frozen),
        "binary_layers_latent_fp32_mb": latent / _MB,
        "binary_layers_packed_mb": packed / _MB,
    }
    sizes["frozen_vs_hand4whole"] = sizes["bidrn_frozen_mb"] / sizes["hand4whole_fp32_mb"]
    sizes["frozen_fp16_vs_hand4whole"] = sizes["bidrn_frozen_fp16_mb"] / sizes["hand4whole_fp32_mb"]
    sizes["binary_layers_compression"] = latent / packed
    return sizes
