"""How far the bf16 dense path moves a frozen model's errors: fp32 and bf16 side by side on one split.

Usage::

    bidrn synth --out runs/synth-test --num 200 --seed 1 --split test   # the synthetic test split
    python benchmarks/dense_precision.py --data synth:runs/synth-test   # the bundled weights
    python benchmarks/dense_precision.py --data synth:runs/synth-test --checkpoint model.bidrn.safetensors

The frozen file is loaded twice, with ``dense_precision="fp32"`` (exact) and ``"bf16"`` (its
full-precision convs in bfloat16, :func:`bidrn.deploy.dense.set_dense_precision`), and evaluated on
the same samples. Printed: every Table 1 column for both and their difference, and the mean
distance between the two predicted meshes, each centred (how much single predictions move). The
issue's rule: a reduced precision may be the default only if it moves MPVPE by at most 1 mm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bidrn.apps.predict import bundled_weights_path
from bidrn.body import load_body_model
from bidrn.deploy.loading import load_model
from bidrn.engine.datasets import open_dataset
from bidrn.engine.distributed import init_distributed
from bidrn.engine.evaluation import EvaluationResult, evaluate
from bidrn.engine.metrics import mesh_topology
from bidrn.engine.resolution import fit_to_model

PRECISIONS = ("fp32", "bf16")


def run(checkpoint: Path, data: str, batch_size: int) -> dict[str, EvaluationResult]:
    """Evaluate ``checkpoint`` on ``data`` once per precision, collecting the predicted meshes."""
    context = init_distributed("cpu")
    models = {precision: load_model(checkpoint, dense_precision=precision) for precision in PRECISIONS}
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
    exact, reduced = results["fp32"], results["bf16"]
    gap = mesh_gap_mm(exact.predictions["mesh"], reduced.predictions["mesh"])
    print(f"{checkpoint.name} on {args.data} ({exact.count} samples)")
    print(f"{'column':16s} {'fp32':>9s} {'bf16':>9s} {'bf16-fp32':>10s}")
    for column, value in exact.metrics.items():
        other = reduced.metrics[column]
        print(f"{column:16s} {value:9.2f} {other:9.2f} {other - value:+10.2f}")
    print(
        f"mean vertex distance between the fp32 and bf16 meshes, each centred: {gap.mean():.2f} mm "
        f"(median {gap.median():.2f}, max {gap.max():.2f} over samples)"
    )
    if args.json is not None:
        document = {
            "checkpoint": str(checkpoint),
            "data": args.data,
            "samples": exact.count,
            "metrics": {precision: result.metrics for precision, result in results.items()},
            "centred_mesh_gap_mm": {name: getattr(gap, name)().item() for name in ("mean", "median", "max")},
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
