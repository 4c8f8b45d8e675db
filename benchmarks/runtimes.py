"""The frozen 1-bit BiDRN against the runtimes people deploy Hand4Whole with, side by side.

Usage::

    pip install ".[bench]"                        # onnx, onnxruntime, openvino
    python benchmarks/runtimes.py                 # paper size; 1 thread and all cores; batch 1 and 8
    python benchmarks/runtimes.py --threads 1 --batch 1 --repeats 15 --json runtimes.json
    python benchmarks/runtimes.py --width 0.25 --repeats 3      # a quick look
    python benchmarks/runtimes.py --rss                          # peak RSS: bidrn predict vs ORT int8

Hand4Whole (full precision, same registry model as ``bidrn.create_model("hand4whole")``) is exported
to ONNX once and run in ONNX Runtime (fp32, and int8: static QDQ quantization, per-channel weights,
calibrated on the benchmark's own images) and OpenVINO (fp32, bf16 precision hint, and int8: the
same QDQ model), next to PyTorch eager fp32 and the frozen BiDRN (``bidrn.deploy``: packed 1-bit
layers), with its full-precision convs in the precision ``bidrn predict`` uses here
(``--dense-precision``, default ``auto``: int8 projections and stems where the CPU has VNNI,
else bf16 where it has bf16 dot products) and, when that
is not fp32, once more in exact fp32. Before anything is timed, every runtime's outputs are
compared with its reference (Hand4Whole eager fp32; the simulated BiDRN for the frozen one) and
the worst relative error is printed; a runtime outside its tolerance stops the run.

Timing: all contenders of one (threads, batch) setting run in one process, calls alternating
round-robin, after a warm-up; the table gives medians of wall-clock time and of process CPU time
(which other processes on a shared machine disturb less), the frozen BiDRN's ratio to each
contender (< 1: BiDRN is faster) and the load average before and after. Exported and quantized
models are cached in ``--cache`` (default ``runs/runtimes``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import bidrn
from bidrn.deploy import freeze, kernels
from bidrn.deploy.allocator import retain_freed_memory
from bidrn.deploy.dense import DENSE_PRECISIONS, set_dense_precision

# Worst relative error allowed before timing (max |a - b| / max |b| over an output, worst output).
TOLERANCE = {"fp32": 1e-3, "bf16": 0.1, "int8": 0.3, "frozen": 0.3}
CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vpopcntdq",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "asimd",
)


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[runtimes] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    """The 1-minute load average and the CPU count, e.g. ``"1.52/2"``."""
    try:
        return f"{os.getloadavg()[0]:.2f}/{os.cpu_count()}"
    except OSError:
        return "?"


class Hand4WholeOutputs(torch.nn.Module):
    """Hand4Whole returning its outputs as a tuple (ONNX needs tensors, not a dataclass)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(images).as_dict().values())


def as_arrays(output) -> list[np.ndarray]:
    """A model's outputs (WholeBodyOutput or a sequence) as numpy arrays, in field order."""
    values = output.as_dict().values() if hasattr(output, "as_dict") else output
    return [np.asarray(v.detach().numpy() if isinstance(v, torch.Tensor) else v) for v in values]


UNCHECKED_SUFFIXES = ("_bbox_center", "_bbox_size")
"""BoxNet's raw outputs in heatmap cells: near zero in an untrained model (sizes of 0.007 cells), so a
relative error on them measures nothing; the boxes actually cropped (``*_bbox``) are checked."""


def worst_error(actual: list[np.ndarray], expected: list[np.ndarray], names: list[str]) -> float:
    """max over the checked outputs (all but :data:`UNCHECKED_SUFFIXES`) of max |a - b| / max |b|."""
    errors = []
    for name, a, b in zip(names, actual, expected, strict=True):
        if name.endswith(UNCHECKED_SUFFIXES):
            continue
        scale = float(np.abs(b).max()) or 1.0
        errors.append(float(np.abs(a.astype(np.float64) - b).max()) / scale)
    return max(errors)


def export_onnx(model: torch.nn.Module, images: torch.Tensor, path: Path) -> Path:
    """Hand4Whole as ONNX (opset 17, dynamic batch), reused when already exported."""
    if not path.is_file():
        log(f"exporting Hand4Whole to {path} ...")
        started = time.perf_counter()
        # The wrapper must be in eval mode: export puts back the wrapper's own mode afterwards,
        # recursively, and a fresh module is in training mode (BatchNorm on batch statistics).
        torch.onnx.export(
            Hand4WholeOutputs(model).eval(), (images[:1],), str(path), dynamo=False, opset_version=17,
            input_names=["images"], dynamic_axes={"images": {0: "batch"}},
        )  # fmt: skip
        log(f"exported in {time.perf_counter() - started:.0f} s")
    return path


def quantize_int8(fp32: Path, path: Path, calibration: torch.Tensor) -> Path:
    """Static int8 QDQ model (per-channel int8 weights, uint8 activations) via ONNX Runtime's quantizer."""
    if path.is_file():
        return path
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": image[None].numpy()} for image in calibration])

        def get_next(self):
            return next(self.batches, None)

    log(f"quantizing to int8 QDQ ({len(calibration)} calibration images) ...")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(path), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        )  # fmt: skip
    log(f"quantized in {time.perf_counter() - started:.0f} s")
    return path


def onnxruntime_runner(path: Path, threads: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda images: session.run(None, {"images": images})


def openvino_runner(
    path: Path, threads: int, batch: int, shape: tuple[int, int], precision: str
) -> tuple[Callable[[np.ndarray], list[np.ndarray]], str]:
    """A compiled OpenVINO model and the inference precision it actually uses."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({"images": [batch, 3, *shape]})
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(images: np.ndarray) -> list[np.ndarray]:
        request.infer({0: images})
        return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]

    return run, str(compiled.get_property("INFERENCE_PRECISION_HINT"))


def medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """(wall ms, process CPU ms) medians per function, calls alternating round-robin after a warm-up."""
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    with torch.no_grad():
        for function in functions.values():
            function()
        for repeat in range(repeats):
            for name, function in functions.items():
                started_wall, started_cpu = time.perf_counter(), time.process_time()
                function()
                wall[name].append((time.perf_counter() - started_wall) * 1e3)
                cpu[name].append((time.process_time() - started_cpu) * 1e3)
            log(f"  repeat {repeat + 1}/{repeats}")
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in functions}


def benchmark(args: argparse.Namespace) -> dict:
    overrides = {} if args.width is None else {"width": args.width}
    cache = Path(args.cache) / (f"width{args.width}" if args.width else "paper")
    cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    hand4whole = bidrn.create_model("hand4whole", **overrides).eval()
    shape = tuple(hand4whole.config.crop_input)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(max(args.batch), 3, *shape, generator=generator)
    calibration = torch.rand(args.calibration, 3, *shape, generator=generator)
    onnx_fp32 = export_onnx(hand4whole, images, cache / "hand4whole-fp32.onnx")
    onnx_int8 = quantize_int8(onnx_fp32, cache / "hand4whole-int8-qdq.onnx", calibration)

    log("building and freezing BiDRN ...")
    if args.bidrn:
        from bidrn.deploy import load_model

        simulated = None
        exact, _ = load_model(args.bidrn, dense_precision="fp32")
    else:
        simulated = bidrn.create_model("bidrn", **overrides).eval()
        exact = freeze(simulated, example_inputs=(images[:1],))
    fast = copy.deepcopy(exact)
    precision = set_dense_precision(fast, args.dense_precision)
    frozen = {f"BiDRN frozen (bidrn.deploy, FP convs {precision})": fast}
    if precision != "fp32":
        frozen["BiDRN frozen (bidrn.deploy, FP convs fp32)"] = exact

    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_flags": cpu_flags(),
            "torch": torch.__version__,
            "kernels": kernels.active_isa(),
            "versions": runtime_versions(),
        },
        "model": "paper size" if args.width is None else f"width {args.width}",
        "rows": [],
    }
    thread_counts = args.threads or sorted({1, os.cpu_count() or 1})
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for batch in args.batch:
            report["rows"].append(
                benchmark_setting(
                    threads,
                    batch,
                    images[:batch],
                    hand4whole,
                    simulated,
                    frozen,
                    onnx_fp32,
                    onnx_int8,
                    shape,
                    args.repeats,
                )
            )
    return report


def benchmark_setting(
    threads, batch, images, hand4whole, simulated, frozen, onnx_fp32, onnx_int8, shape, repeats
) -> dict:
    log(f"threads {threads}, batch {batch}: preparing runtimes ...")
    array = images.numpy()
    ov_fp32, _ = openvino_runner(onnx_fp32, threads, batch, shape, "f32")
    ov_bf16, bf16_precision = openvino_runner(onnx_fp32, threads, batch, shape, "bf16")
    ov_int8, _ = openvino_runner(onnx_int8, threads, batch, shape, "")
    ort_fp32 = onnxruntime_runner(onnx_fp32, threads)
    ort_int8 = onnxruntime_runner(onnx_int8, threads)
    contenders = {
        **{name: (lambda model=model: model(images), "frozen") for name, model in frozen.items()},
        "Hand4Whole PyTorch eager fp32": (lambda: hand4whole(images), "fp32"),
        "Hand4Whole ONNX Runtime fp32": (lambda: ort_fp32(array), "fp32"),
        "Hand4Whole ONNX Runtime int8 (QDQ)": (lambda: ort_int8(array), "int8"),
        "Hand4Whole OpenVINO fp32": (lambda: ov_fp32(array), "fp32"),
        f"Hand4Whole OpenVINO bf16 (runs {bf16_precision})": (lambda: ov_bf16(array), "bf16"),
        "Hand4Whole OpenVINO int8 (QDQ)": (lambda: ov_int8(array), "int8"),
    }
    log("checking numerical agreement ...")
    with torch.no_grad():
        output = hand4whole(images)
        names = list(output.as_dict())  # output order of every runtime
        reference = as_arrays(output)
        reference_bidrn = as_arrays(simulated(images)) if simulated is not None else None
        errors = {}
        for name, (function, kind) in contenders.items():
            if kind == "frozen" and reference_bidrn is None:
                continue  # a trained file: no simulated model to compare with
            expected = reference_bidrn if kind == "frozen" else reference
            errors[name] = worst_error(as_arrays(function()), expected, names)
            log(f"  {name}: worst relative error {errors[name]:.2e} (tolerance {TOLERANCE[kind]:g})")
            if errors[name] > TOLERANCE[kind]:
                raise SystemExit(f"runtimes.py: {name} disagrees with its reference ({errors[name]:.3g})")
    load_before = load_average()
    log(f"timing (load average {load_before}) ...")
    times = medians({name: function for name, (function, _) in contenders.items()}, repeats)
    frozen_wall, frozen_cpu = times[next(iter(frozen))]
    return {
        "threads": threads,
        "batch": batch,
        "load_before": load_before,
        "load_after": load_average(),
        "contenders": [
            {
                "name": name,
                "wall_ms": wall,
                "cpu_ms": cpu,
                "bidrn_ratio_wall": frozen_wall / wall,
                "bidrn_ratio_cpu": frozen_cpu / cpu,
                "worst_relative_error": errors.get(name),
            }
            for name, (wall, cpu) in times.items()
        ],
    }


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return [flag for flag in CPU_FLAGS if flag in flags]


def runtime_versions() -> dict[str, str]:
    import onnxruntime
    import openvino

    return {"onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__}


def print_table(report: dict) -> None:
    machine = report["machine"]
    print(
        f"# {machine['cpu']} ({' '.join(machine['cpu_flags'])}); torch {machine['torch']}, "
        f"onnxruntime {machine['versions']['onnxruntime']}, openvino {machine['versions']['openvino']}; "
        f"bidrn kernels {machine['kernels']}; {report['model']}"
    )
    for row in report["rows"]:
        print(
            f"\n## {row['threads']} thread(s), batch {row['batch']} (load average {row['load_before']} -> "
            f"{row['load_after']}); ratio = first BiDRN row / contender, < 1 means BiDRN is faster"
        )
        print(f"| {'runtime':46s} | wall ms | ms/image | CPU ms | ratio wall | ratio CPU | max rel. error |")
        print(f"|{'-' * 48}|--------:|---------:|-------:|-----------:|----------:|---------------:|")
        for item in row["contenders"]:
            error = "" if item["worst_relative_error"] is None else f"{item['worst_relative_error']:.1e}"
            wall, cpu = item["wall_ms"], item["cpu_ms"]
            print(
                f"| {item['name']:46s} | {wall:7.1f} | {wall / row['batch']:8.1f} | {cpu:6.1f} | "
                f"{item['bidrn_ratio_wall']:10.2f} | {item['bidrn_ratio_cpu']:9.2f} | {error:>14s} |"
            )


def peak_rss(args: argparse.Namespace) -> None:
    """Peak RSS (``/usr/bin/time -v``) of ``bidrn predict`` on one image against ORT int8 Hand4Whole."""
    cache = Path(args.cache) / "paper"
    onnx_int8 = cache / "hand4whole-int8-qdq.onnx"
    if not onnx_int8.is_file():
        raise SystemExit(f"runtimes.py: {onnx_int8} missing; run the benchmark once first")
    image = Path(str(bidrn.__file__)).parent / "assets" / "samples" / "astronaut.jpg"
    with tempfile.TemporaryDirectory() as folder:
        frozen_file = Path(args.bidrn) if args.bidrn else Path(folder) / "bidrn.bidrn.safetensors"
        if not args.bidrn:
            log("freezing an (untrained) paper-size BiDRN for the file ...")
            from bidrn.deploy import save

            simulated = bidrn.create_model("bidrn").eval()
            frozen = freeze(simulated, example_inputs=(torch.rand(1, 3, *simulated.config.crop_input),))
            save(frozen, frozen_file, architecture={"name": "bidrn", "overrides": {}})
            del simulated, frozen
        commands = {
            "bidrn predict (frozen BiDRN, 1 image)": [
                sys.executable, "-m", "bidrn.cli", "predict", str(image), "--out", str(Path(folder) / "out"),
                "--checkpoint", str(frozen_file), "--device", "cpu",
            ],
            "ONNX Runtime int8 Hand4Whole (1 image)": [sys.executable, "-c", ORT_CHILD, str(onnx_int8)],
        }  # fmt: skip
        for name, command in commands.items():
            result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
            if result.returncode != 0 or match is None:
                raise SystemExit(f"runtimes.py: {name} failed: {result.stderr.strip()[-400:]}")
            print(f"{name:42s} peak RSS {int(match.group(1)) / 1024:7.1f} MB")


# One ORT int8 inference on one image in a fresh interpreter that imports nothing else (for peak RSS).
ORT_CHILD = """
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
_, _, height, width = session.get_inputs()[0].shape
images = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
session.run(None, {"images": images})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and all cores")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=11, help="timed calls per contender (median)")
    parser.add_argument("--width", type=float, default=None, help="width multiplier (default: paper size)")
    parser.add_argument("--calibration", type=int, default=8, help="int8 calibration images")
    parser.add_argument(
        "--bidrn", default=None, help="a frozen *.bidrn.safetensors to time instead of an untrained one"
    )
    parser.add_argument(
        "--cache", default="runs/runtimes", help="folder for the exported and quantized models"
    )
    parser.add_argument(
        "--dense-precision",
        choices=DENSE_PRECISIONS,
        default="auto",
        help="the frozen BiDRN's full-precision convs, as bidrn predict --dense-precision",
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--rss", action="store_true", help="measure peak RSS instead of latency")
    args = parser.parse_args()
    retain_freed_memory()  # as bidrn predict runs
    if args.rss:
        peak_rss(args)
        return
    report = benchmark(args)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
