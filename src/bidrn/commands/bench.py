"""``bidrn bench``: packed 1-bit kernels and the frozen BiDRN against full precision, side by side."""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys

import torch

from bidrn.commands.predict import add_dense_precision_argument
from bidrn.deploy import benchmark, freeze, kernels
from bidrn.deploy.allocator import retain_freed_memory
from bidrn.deploy.dense import set_dense_precision
from bidrn.errors import BidrnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn bench``."""
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and the kernels (default: 1 and all cores, both)",
    )
    parser.add_argument(
        "--isa",
        choices=["avx512", "avx2", "popcnt", "neon", "generic", "reference"],
        default=None,
        help="force one kernel set (default: the best this CPU supports)",
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default: 1 8)")
    parser.add_argument("--repeats", type=int, default=30, help="repetitions per layer figure (median)")
    parser.add_argument("--model-repeats", type=int, default=5, help="repetitions per end-to-end figure")
    parser.add_argument("--layers-only", action="store_true", help="skip the end-to-end and size figures")
    add_dense_precision_argument(parser)
    parser.add_argument(
        "--width", type=float, default=None, help="model width override (e.g. 0.25 for a quick run)"
    )


def _settings(args: argparse.Namespace) -> list[int]:
    if args.threads is not None:
        if args.threads < 1:
            raise BidrnError(f"--threads must be at least 1, got {args.threads}")
        return [args.threads]
    return sorted({1, torch.get_num_threads()})


def run(args: argparse.Namespace) -> int:
    """Measure and print (or emit JSON)."""
    if args.isa is not None:
        kernels.set_isa(args.isa)
    overrides = {} if args.width is None else {"width": args.width}
    report: dict = {
        "machine": {
            "cpu": _cpu_info("model name") or platform.machine(),
            "cpu_flags": sorted(set((_cpu_info("flags") or "").split()) & _FLAGS),
            "torch": torch.__version__,
            "kernels": kernels.active_isa(),
            "dense_precision": None,
        },
        "layers": [],
        "end_to_end": [],
    }
    retain_freed_memory()  # as bidrn predict runs
    simulated = frozen = fast = None
    for threads in _settings(args):
        torch.set_num_threads(threads)
        for batch in args.batch:
            setting = f"threads {threads}, batch {batch}"
            rows = benchmark.benchmark_layers(
                batch, args.repeats, progress=lambda line, setting=setting: _progress(f"{setting}: {line}")
            )
            report["layers"].extend({**row, "threads": threads} for row in rows)
            if args.layers_only:
                continue
            if simulated is None:
                _progress("building and freezing the end-to-end models")
                simulated = benchmark.build_model("bidrn", overrides)
                height, width = benchmark.input_size(simulated)
                frozen = freeze(simulated, example_inputs=(torch.rand(1, 3, height, width),))
                fast = copy.deepcopy(frozen)  # timed as bidrn predict runs it; sizes are the exact file's
                report["machine"]["dense_precision"] = set_dense_precision(fast, args.dense_precision)
            _progress(f"{setting}: end to end ({args.model_repeats} repeats of 4 models)")
            row = benchmark.benchmark_end_to_end(batch, args.model_repeats, overrides, fast, simulated)
            report["end_to_end"].append({**row, "threads": threads})
    if not args.layers_only:
        _progress("model sizes")
        report["size"] = benchmark.benchmark_sizes(overrides, frozen, simulated)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_tables(report)
    return 0


def _progress(line: str) -> None:
    """One progress line on stderr (the tables or JSON go to stdout)."""
    print(f"[bench] {line}", file=sys.stderr, flush=True)


_FLAGS = {"avx2", "avx512f", "avx512_vpopcntdq", "popcnt", "asimd"}


def _cpu_info(field: str) -> str | None:
    """A field of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(field)), None)
    except OSError:
        return None


def _print_tables(report: dict) -> None:
    machine = report["machine"]
    print(f"# {machine['cpu']}  flags: {' '.join(machine['cpu_flags'])}  kernels: {machine['kernels']}")
    print(
        f"{'layer':32s} {'batch':>5s} {'thr':>3s} {'fp32 ms':>9s} {'packed ms':>9s} {'speedup':>8s} "
        f"{'steady':>7s}"
    )
    for row in report["layers"]:
        print(
            f"{row['name']:32s} {row['batch']:5d} {row['threads']:3d} {row['fp32_ms']:9.3f} "
            f"{row['packed_ms']:9.3f} {row['speedup']:7.1f}x {row['speedup_steady']:6.1f}x"
        )
    print("(speedup: single calls interleaved, cold weights; steady: bursts of five calls)")
    if report["end_to_end"]:
        precision = machine["dense_precision"]
        print(f"\n(frozen: full-precision convs in {precision}, as bidrn predict runs them)")
        print(
            f"{'end to end':10s} {'batch':>5s} {'thr':>3s} {'H4W fp32':>10s} {'simulated':>10s} "
            f"{'frozen':>10s} {'vs H4W':>7s}"
        )
        for row in report["end_to_end"]:
            print(
                f"{'':10s} {row['batch']:5d} {row['threads']:3d} {row['hand4whole_fp32_ms']:10.1f} "
                f"{row['bidrn_simulated_ms']:10.1f} {row['bidrn_frozen_ms']:10.1f} "
                f"{row['speedup_vs_hand4whole_fp32']:6.2f}x"
            )
    if "size" in report:
        size = report["size"]
        print(
            f"\nsize (MB): Hand4Whole fp32 {size['hand4whole_fp32_mb']:.1f}, simulated BiDRN "
            f"{size['bidrn_simulated_mb']:.1f}, frozen {size['bidrn_frozen_mb']:.1f} "
            f"({size['frozen_vs_hand4whole']:.3f} of H4W), frozen fp16 {size['bidrn_frozen_fp16_mb']:.1f} "
            f"({size['frozen_fp16_vs_hand4whole']:.3f}); binarized layers "
            f"{size['binary_layers_compression']:.1f}x smaller than fp32 latent weights"
        )
