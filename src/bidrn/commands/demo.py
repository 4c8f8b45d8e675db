"""``bidrn demo``: the bundled model on the bundled samples, with the synthetic sample's error.

What it runs is :func:`bidrn.apps.demo.run_demo`; this module parses the options and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bidrn.commands.predict import add_dense_precision_argument

DEFAULT_OUT = Path("bidrn-demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn demo``."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--checkpoint", default=None, help="weights to use instead of the bundled ones (frozen or training)"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_dense_precision_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Predict the two samples, evaluate the synthetic one and print where everything is."""
    from bidrn.apps.demo import run_demo
    from bidrn.commands.predict import device_option, model_path

    weights = model_path(args.checkpoint)
    demo = run_demo(
        args.out,
        weights,
        device_option(args.device),
        dense_precision=args.dense_precision,
        status=lambda message: print(f"bidrn demo: {message} ...", file=sys.stderr, flush=True),
    )
    predictor, report = demo.predictor, demo.report
    print(f"bidrn demo: {weights.name} ({predictor.info.name}, {predictor.mode}, {predictor.device.type}), "
          f"body model {predictor.body_model_name}, {report.seconds:.1f} s")  # fmt: skip
    for record in report.records:
        files = ", ".join(record["files"].values())
        print(f"  {record['name']:<10s} {record['input']}\n             -> {files}")
    metrics, data = demo.metrics, f"synth:{demo.synthetic_root}"
    print(
        f"synthetic sample vs its ground truth: MPVPE {metrics['mpvpe_all']:.1f} mm, "
        f"PA-MPVPE {metrics['pa_mpvpe_all']:.1f} mm (as `bidrn eval --data {data}`; "
        f"saved in {demo.metrics_path.name})"
    )
    for name, used in report.renamed:
        print(f"  ({name} was taken in {args.out}: written as {used})")
    print(f"outputs: {report.out_dir.resolve()} (summary: {report.jsonl.name})")
    return 0
