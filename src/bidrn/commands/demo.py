"""``bidrn demo``: the bundled model on the bundled samples, with the synthetic sample's error.

Runs ``bidrn predict`` on the packaged samples (``bidrn/assets/samples``): a synthetic test render
with ground truth (written by ``bidrn synth --split test --num 1 --seed 0``), cropped at its
annotated person box exactly as ``bidrn eval`` crops it, and a public-domain photograph
(``astronaut.jpg``, whole image as the person box). The synthetic sample's Table 1 errors are
computed by :func:`bidrn.engine.evaluation.evaluate` on ``synth:<samples>/synth-test`` — the code
path of ``bidrn eval`` — and saved like ``bidrn eval --json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_OUT = Path("bidrn-demo")
SYNTHETIC_NAME = "synthetic"
PHOTO_NAME = "astronaut"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn demo``."""
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="weights to use instead of the bundled ones (frozen or training)"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    """Predict the two samples, evaluate the synthetic one and print where everything is."""
    from bidrn.apps.inputs import Frame, PersonBox, read_image_file
    from bidrn.apps.predict import Predictor, predict_frames, samples_path
    from bidrn.commands.predict import model_path
    from bidrn.engine.datasets import open_dataset
    from bidrn.engine.distributed import DistributedContext
    from bidrn.engine.evaluation import evaluate, result_document
    from bidrn.engine.metrics import mesh_topology
    from bidrn.engine.resolution import fit_to_model

    weights = model_path(args.checkpoint)
    predictor = Predictor.load(weights, device=args.device)
    synthetic_root = samples_path() / "synth-test"
    synthetic = open_dataset(f"synth:{synthetic_root}", train=False, body_model=predictor.body_model)
    record = synthetic.record(0)
    photo = samples_path() / f"{PHOTO_NAME}.jpg"
    frames = [
        Frame(read_image_file(record.image_path), record.image_path, SYNTHETIC_NAME),
        Frame(read_image_file(photo), photo, PHOTO_NAME),
    ]
    annotated = {SYNTHETIC_NAME: [PersonBox(tuple(float(v) for v in record.bbox))]}
    report = predict_frames(
        predictor, frames, args.out, lambda frame: annotated.get(frame.name), batch_size=len(frames)
    )

    context = DistributedContext(rank=0, local_rank=0, world_size=1, device=predictor.device)
    result = evaluate(
        predictor.model,
        fit_to_model(synthetic, predictor.model),
        mesh_topology(predictor.body_model),
        batch_size=1,
        context=context,
        progress=False,
    )
    metrics_path = report.out_dir / f"{SYNTHETIC_NAME}_metrics.json"
    document = result_document(
        result, method=predictor.info.name, checkpoint=str(weights), data=f"synth:{synthetic_root}"
    )
    metrics_path.write_text(json.dumps(document, indent=1) + "\n")

    print(f"bidrn demo: {weights.name} ({predictor.info.name}, {predictor.mode}, {predictor.device.type}), "
          f"body model {predictor.body_model_name}, {report.seconds:.1f} s")  # fmt: skip
    for record_line in report.records:
        files = ", ".join(record_line["files"].values())
        print(f"  {record_line['name']:<10s} {record_line['input']}\n             -> {files}")
    print(
        f"synthetic sample vs its ground truth: MPVPE {result.metrics['mpvpe_all']:.1f} mm, "
        f"PA-MPVPE {result.metrics['pa_mpvpe_all']:.1f} mm (as `bidrn eval --data synth:{synthetic_root}`; "
        f"saved in {metrics_path.name})"
    )
    print(f"outputs: {report.out_dir.resolve()} (summary: {report.jsonl.name})")
    return 0
