"""How far the reduced-precision dense paths move a frozen model's errors: fp32, bf16 and int8 side by side.

Usage::

    bidrn synth --out runs/synth-test --num 200 --seed 1 --split test   # the synthetic test split
    python benchmarks/dense_precision.py --data synth:runs/synth-test   # the bundled weights
    python benchmarks/dense_precision.py --data synth:runs/synth-test --checkpoint model.bidrn.safetensors

The frozen file is loaded once per precision, ``dense_precision="fp32"`` (exact), ``"bf16"`` (its
full-precision convs in bfloat16) and, on CPUs with VNNI, ``"int8"`` (Block Residual projections
and stems in int8, the rest as bf16; :func:`bidrn.deploy.dense.set_dense_precision`), and evaluated on the
same samples. Printed: every Table 1 column for each and its difference to fp32, and the mean
distance between each reduced-precision mesh and the fp32 one, each centred (how much single
predictions move). The issue's rule: a reduced precision may be the default only if it moves
MPVPE by at most 1 mm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bidrn.apps.predict import bundled_weights_path
from bidrn.body import load_body_model
from bidrn.deploy import kernels
from bidrn.deploy.loading import load_model
from bidrn.engine.datasets import open_dataset
from bidrn.engine.distributed import init_distributed
from bidrn.engine.evaluation import EvaluationResult, evaluate
from bidrn.engine.metrics import mesh_topology
from bidrn.engine.resolution import fit_to_model


def precisions() -> tuple[str, ...]:
    """fp32 (the reference) and every reduced precision this CPU can run (int8 needs VNNI)."""
    return ("fp32", "bf16", "int8") if kernels.native_int8() else ("fp32", "bf16")


def run(checkpoint: Path, data: str, batch_size: int) -> dict[str, EvaluationResult]:
    """Evaluate ``checkpoint`` on ``data`` once per precision, collecting the predicted meshes."""
    context = init_distributed("cpu")
    models = {precision: load_model(checkpoint, dense_precision=precision) for precision in precisions()}
    body_model = load_body_model(models["fp32"][1].body_model)  # one file: one body model, one crop size
    dataset = fit_to_model(open_dataset(data, train=False, body_model=body_model), models["fp32"][0])
    topology = mesh_topology(body_model)
    results = {}
    for precision, (model, _) in models.items():
        model.attach_body_model(body_model)
        results[precision] = evaluate(
            model, dataset, topology, batch_size=batch_size, context=context, collect=True
        )
    return results


def mesh_gap_mm(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean distance (mm) between corresponding vertices of two (N, V, 3) meshes, each
    moved to its centroid (the metrics align roots too; a barely trained model's depth is arbitrary)."""
    centred = [mesh - mesh.mean(dim=1, keepdim=True) for mesh in (first, second)]
    return (centred[0] - centred[1]).norm(dim=-1).mean(dim=-1) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, metavar="SPEC", help="e.g. synth:runs/synth-test")
    parser.add_argument("--checkpoint", type=Path, default=None, help="frozen file (default: bundled)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or bundled_weights_path()

    results = run(checkpoint, args.data, args.batch_size)
    exact = results["fp32"]
    reduced = [precision for precision in results if precision != "fp32"]
    gaps = {p: mesh_gap_mm(exact.predictions["mesh"], results[p].predictions["mesh"]) for p in reduced}
    print(f"{checkpoint.name} on {args.data} ({exact.count} samples)")
    print(f"{'column':16s} {'fp32':>9s}" + "".join(f" {p:>9s} {p + '-fp32':>10s}" for p in reduced))
    for column, value in exact.metrics.items():
        others = [results[p].metrics[column] for p in reduced]
        cells = "".join(f" {other:9.2f} {other - value:+10.2f}" for other in others)
        print(f"{column:16s} {value:9.2f}{cells}")
    for precision, gap in gaps.items():
        print(
            f"mean vertex distance between the fp32 and {precision} meshes, each centred: "
            f"{gap.mean():.2f} mm (median {gap.median():.2f}, max {gap.max():.2f} over samples)"
        )
    if args.json is not None:
        document = {
            "checkpoint": str(checkpoint),
            "data": args.data,
            "samples": exact.count,
            "metrics": {precision: result.metrics for precision, result in results.items()},
            "centred_mesh_gap_mm": {
                precision: {name: getattr(gap, name)().item() for name in ("mean", "median", "max")}
                for precision, gap in gaps.items()
            },
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
