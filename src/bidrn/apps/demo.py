"""The bundled model on the bundled samples, with the synthetic sample's error (``bidrn demo``).

Runs :func:`bidrn.apps.predict.predict_frames` on the packaged samples (``bidrn/assets/samples``):
a synthetic test render with ground truth (written by ``bidrn synth --split test --num 1 --seed
0``), cropped at its annotated person box exactly as ``bidrn eval`` crops it, and a public-domain
photograph (``astronaut.jpg``, whole image as the person box). The synthetic sample's Table 1
errors are computed by :func:`bidrn.engine.evaluation.evaluate` on ``synth:<samples>/synth-test``
— the code path of ``bidrn eval`` — and saved like ``bidrn eval --json`` next to the outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bidrn.apps.inputs import Frame, PersonBox, read_image_file
from bidrn.apps.predict import PredictionReport, Predictor, predict_frames, samples_path
from bidrn.deploy.dense import DensePrecision
from bidrn.engine.datasets import open_dataset
from bidrn.engine.distributed import DistributedContext
from bidrn.engine.evaluation import evaluate, result_document
from bidrn.engine.metrics import mesh_topology
from bidrn.engine.resolution import fit_to_model
from bidrn.errors import InputFileError

__all__ = ["PHOTO_NAME", "SYNTHETIC_NAME", "DemoResult", "run_demo"]

SYNTHETIC_NAME = "synthetic"
"""Output name of the synthetic sample (``synthetic_p0_*``, ``synthetic_metrics.json``)."""
PHOTO_NAME = "astronaut"
"""Output name of the photograph."""


@dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        predictor: the loaded model.
        report: the prediction report of both samples (records in sample order).
        metrics: the synthetic sample's Table 1 errors in mm (``mpvpe_all``, ``pa_mpvpe_all``, ...).
        metrics_path: where they were saved (``<synthetic output name>_metrics.json``).
        synthetic_root: the packaged synthetic test folder that was evaluated.
    """

    predictor: Predictor
    report: PredictionReport
    metrics: dict[str, float]
    metrics_path: Path
    synthetic_root: Path


def run_demo(
    out_dir: str | Path,
    weights: str | Path,
    device: str | torch.device | None = None,
    status: Callable[[str], None] = lambda message: None,
    dense_precision: DensePrecision = "auto",
) -> DemoResult:
    """Predict both samples into ``out_dir`` with ``weights``, evaluate the synthetic one and save its errors.

    ``status`` is told what is happening before each step (loading, predicting, evaluating);
    ``dense_precision`` is :func:`bidrn.deploy.load_model`'s.
    """
    status(f"loading {Path(weights).name}")
    predictor = Predictor.load(weights, device=device, dense_precision=dense_precision)
    synthetic_root = samples_path() / "synth-test"
    synthetic = open_dataset(f"synth:{synthetic_root}", train=False, body_model=predictor.body_model)
    record = synthetic.record(0)
    photo = samples_path() / f"{PHOTO_NAME}.jpg"
    frames = [
        Frame(read_image_file(record.image_path), record.image_path, SYNTHETIC_NAME),
        Frame(read_image_file(photo), photo, PHOTO_NAME),
    ]
    annotated = {SYNTHETIC_NAME: [PersonBox(tuple(float(v) for v in record.bbox))]}
    status("predicting the two samples")
    report = predict_frames(
        predictor, frames, out_dir, lambda frame: annotated.get(frame.name), batch_size=len(frames)
    )

    status("evaluating the synthetic sample against its ground truth")
    context = DistributedContext(rank=0, local_rank=0, world_size=1, device=predictor.device)
    result = evaluate(
        predictor.model,
        fit_to_model(synthetic, predictor.model),
        mesh_topology(predictor.body_model),
        batch_size=1,
        context=context,
        progress=False,
    )
    metrics_path = report.out_dir / f"{report.records[0]['name']}_metrics.json"
    document = result_document(
        result, method=predictor.info.name, checkpoint=str(weights), data=f"synth:{synthetic_root}"
    )
    try:
        text = json.dumps(document, indent=1, allow_nan=False)
    except ValueError:
        raise InputFileError(weights, "the evaluation of the synthetic sample is NaN or infinite") from None
    metrics_path.write_text(text + "\n")
    return DemoResult(predictor, report, dict(result.metrics), metrics_path, synthetic_root)
