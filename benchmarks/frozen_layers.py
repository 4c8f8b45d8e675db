"""Where a frozen BiDRN's time goes, layer by layer, on this CPU.

Usage::

    python benchmarks/frozen_layers.py                       # paper size, 1 thread, batch 1
    python benchmarks/frozen_layers.py --size cpu --threads 2 --batch 8

An untrained BiDRN of the requested size is frozen in memory (speed does not depend on the weights'
values) and run ``--repeats`` times after three warm-up calls. Forward hooks time every fused
binary unit, every packed binary layer and every full-precision conv, deconv and linear layer. The
script prints the whole call's median, the time of each part of the network split into binary and
full-precision layers, and the slowest layers with their multiply-accumulates per second (binary
MACs for binary layers), so a kernel that runs far below its neighbours stands out. Hooks add a
few microseconds per layer; the sum of the layers is therefore close to, not exactly, the total.
They also keep a block from writing its output over the tensor its Block Residual added
(:class:`bidrn.deploy.fusion.FusedBiDRB` leaves alone what a hook was handed), so the last unit of a
block is timed writing a separate output, and each stage runs block by block rather than as one
kernel call (:class:`bidrn.deploy.stages.FusedStage`). The whole call is timed that way too
(`bidrn bench` and ``benchmarks/runtimes.py`` time the model as predict runs it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn

import bidrn
from bidrn.deploy import freeze
from bidrn.deploy.allocator import retain_freed_memory
from bidrn.deploy.dense import DENSE_PRECISIONS, set_dense_precision
from bidrn.deploy.fusion import FusedLocalConvResidual
from bidrn.deploy.layers import PackedBinaryConvTranspose2d, PackedBinaryLayer
from bidrn.deploy.upsampling import FusedUpsampling
from bidrn.engine.protocols import PROTOCOLS

SIZES = {"paper": {}, "cpu": dict(PROTOCOLS["synth-cpu"].model_overrides)}
FUSED = (FusedLocalConvResidual, FusedUpsampling)
TIMED = (*FUSED, PackedBinaryLayer, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@dataclass
class LayerRecord:
    kind: str
    binary: bool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    seconds: list[float]


def kernel_taps(layer: nn.Module) -> int:
    """Kernel positions of a conv/deconv (1 for a linear layer), packed or float."""
    if isinstance(layer, PackedBinaryLayer):
        shape = layer.weight_bits.shape
        return shape[1] * shape[2] if len(shape) == 4 else 1
    return layer.weight[0, 0].numel()


def multiply_accumulates(layer: nn.Module, output: torch.Tensor) -> int:
    """MACs of one call: every output element times its inputs (per branch for fused units)."""
    if isinstance(layer, FusedLocalConvResidual):
        pixels = output.shape[0] * output.shape[2] * output.shape[3]
        return sum(pixels * conv.out_channels * kernel_taps(conv) * conv.in_channels for conv in layer.convs)
    if isinstance(layer, FusedUpsampling):  # its deconv's (its first unit's 1x1 projection runs inside too)
        return multiply_accumulates(layer.deconv, output)
    in_channels = layer.in_channels if hasattr(layer, "in_channels") else layer.in_features
    if isinstance(layer, (nn.ConvTranspose2d, PackedBinaryConvTranspose2d)):  # stride² output phases
        return output.numel() * in_channels * kernel_taps(layer) // (layer.stride[0] * layer.stride[1])
    groups = getattr(layer, "groups", 1)
    return output.numel() * kernel_taps(layer) * in_channels // groups


def attach_timers(model: nn.Module) -> dict[str, LayerRecord]:
    """Time every layer of ``TIMED`` that is not inside a fused unit (those run inside the unit)."""
    records: dict[str, LayerRecord] = {}
    inside_units = {
        name + "." + child
        for name, module in model.named_modules()
        if isinstance(module, FUSED)
        for child, _ in module.named_modules()
        if child
    }
    for name, layer in model.named_modules():
        if not isinstance(layer, TIMED) or name in inside_units:
            continue

        def started(module: nn.Module, _inputs: tuple, name: str = name) -> None:
            module._timer_started = time.perf_counter()

        def finished(module: nn.Module, inputs: tuple, output, name: str = name) -> None:
            elapsed = time.perf_counter() - module._timer_started
            output = output if torch.is_tensor(output) else output[0]
            if name not in records:
                binary = isinstance(module, (*FUSED, PackedBinaryLayer))
                records[name] = LayerRecord(
                    type(module).__name__, binary, tuple(inputs[0].shape), tuple(output.shape),
                    multiply_accumulates(module, output), [],
                )  # fmt: skip
            records[name].seconds.append(elapsed)

        layer.register_forward_pre_hook(started)
        layer.register_forward_hook(finished)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--slowest", type=int, default=20, help="layers listed one by one")
    parser.add_argument(
        "--dense-precision",
        choices=DENSE_PRECISIONS,
        default="auto",
        help="the full-precision convs, as bidrn predict --dense-precision",
    )
    args = parser.parse_args()
    retain_freed_memory()  # as bidrn predict runs

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    simulated = bidrn.create_model("bidrn", **SIZES[args.size]).eval()
    images = torch.rand(args.batch, 3, *simulated.config.crop_input)
    frozen = freeze(simulated, example_inputs=(images[:1],))
    precision = set_dense_precision(frozen, args.dense_precision)
    del simulated
    records = attach_timers(frozen)
    totals = []
    with torch.inference_mode():
        for _ in range(3):
            frozen(images)
        for record in records.values():
            record.seconds.clear()
        for _ in range(args.repeats):
            started = time.perf_counter()
            frozen(images)
            totals.append(time.perf_counter() - started)

    median = {name: statistics.median(record.seconds) for name, record in records.items()}
    total = statistics.median(totals)
    timed = sum(median.values())
    print(
        f"frozen BiDRN, {args.size} size, batch {args.batch}, threads {args.threads}, {args.repeats} runs, "
        f"full-precision convs {precision}"
    )

    print(f"whole call {total * 1e3:.1f} ms (median); timed layers {timed * 1e3:.1f} ms ({len(median)})")
    parts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for name, seconds in median.items():
        record = records[name]
        part = parts[f"{name.split('.')[0]} ({'binary' if record.binary else 'full precision'})"]
        part[0] += seconds
        part[1] += record.macs
        part[2] += 1
    print(f"\n{'part':42s} {'ms':>7s} {'share':>6s} {'layers':>6s} {'GMAC':>7s} {'GMAC/s':>8s}")
    for part, (seconds, macs, count) in sorted(parts.items(), key=lambda item: -item[1][0]):
        print(
            f"{part:42s} {seconds * 1e3:7.1f} {seconds / total:6.1%} {count:6d} {macs / 1e9:7.2f} "
            f"{macs / seconds / 1e9:8.1f}"
        )
    print(f"\n{'ms':>6s} {'GMAC/s':>7s}  layer (kind: input -> output)")
    for name, seconds in sorted(median.items(), key=lambda item: -item[1])[: args.slowest]:
        record = records[name]
        print(
            f"{seconds * 1e3:6.2f} {record.macs / seconds / 1e9:7.1f}  {name} "
            f"({record.kind}: {record.in_shape} -> {record.out_shape})"
        )


if __name__ == "__main__":
    main()
