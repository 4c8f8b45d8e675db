"""Per-layer packed 1-bit kernels vs torch fp32, for every kernel set this CPU runs (side by side).

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_kernels.py [--batch 1] [--repeats 50] [--threads 1]

For each layer shape of BiDRN (see bidrn.deploy.benchmark.LAYER_CASES) and each kernel set
(avx512, avx2, popcnt, generic), prints the median time of torch fp32 conv (faster of NCHW and
channels-last) and of the packed layer (packing + XOR-popcount conv + epilogue), and their ratio.
The CPU's model name and flags are printed first: ratios only mean something next to them.
"""

import argparse

import torch

from bidrn.commands.bench import _FLAGS, _cpu_info
from bidrn.deploy import benchmark, kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = sorted(set((_cpu_info("flags") or "").split()) & _FLAGS)
    print(
        f"# {_cpu_info('model name')}; flags {' '.join(flags)}; torch {torch.__version__}; "
        f"batch {args.batch}; threads {args.threads}; medians of {args.repeats}"
    )
    isas = [isa for isa in kernels.supported_isas() if isa != kernels.REFERENCE]
    print(f"{'layer':28s} {'fp32 ms':>8s} " + " ".join(f"{isa:>16s}" for isa in isas))
    results = {}
    for isa in isas:
        kernels.set_isa(isa)
        results[isa] = benchmark.benchmark_layers(args.batch, args.repeats)
    for index, case in enumerate(benchmark.LAYER_CASES):
        fp32 = min(results[isa][index]["fp32_ms"] for isa in isas)
        cells = []
        for isa in isas:
            packed = results[isa][index]["packed_ms"]
            cells.append(f"{packed:7.3f} ({fp32 / packed:5.1f}x)")
        print(f"{case.name:28s} {fp32:8.3f} " + " ".join(cells))


if __name__ == "__main__":
    main()
