"""``bidrn eval``: the Table 1 metrics of a checkpoint on a dataset with meshes.

Examples::

    bidrn eval --checkpoint runs/bidrn/checkpoints/last --data synth:data/synth-test --json out.json
    bidrn eval --checkpoint model.safetensors --data ehf:data/EHF --body-model SMPLX_NEUTRAL.npz
    bidrn eval --checkpoint model.bidrn.safetensors --data synth:data/synth-test   # frozen 1-bit model
    torchrun --nproc_per_node=4 -m bidrn.cli eval --checkpoint ... --data agora:data/AGORA:validation

A training checkpoint is evaluated as trained (simulated binary layers); a frozen file from
``bidrn export`` is evaluated on the packed 1-bit kernels, as ``bidrn predict`` runs it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from bidrn.commands.predict import add_dense_precision_argument
from bidrn.commands.train import add_model_arguments, parse_overrides
from bidrn.errors import BidrnError

if TYPE_CHECKING:
    from torch import nn

    from bidrn.engine.baselines import BaselineReport
    from bidrn.engine.evaluation import EvaluationResult
    from bidrn.engine.metrics import MeshTopology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn eval``."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint stem, .safetensors or .json")
    parser.add_argument("--data", required=True, metavar="SPEC", help="evaluation data KIND:PATH[:SPLIT]")
    parser.add_argument("--json", default=None, type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--model", default=None, help="registry name if the checkpoint does not record it")
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument(
        "--j14-regressor",
        default=None,
        type=Path,
        metavar="NPY",
        help="(14, V) .npy regressor for PA-MPJPE body (default: the 25 body joints)",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=("mean-pose", "mean-mesh", "mean-output"),
        help="also print constant predictions on the same data: the mean training pose (recorded in the "
        "checkpoint, or computed from --baseline-data), the mean training mesh (needs --baseline-data), the "
        "model's mean output; with the model's 95%% intervals of gain, its prediction spread and back views",
    )
    parser.add_argument(
        "--baseline-data", default=None, metavar="SPEC", help="training data the constants are computed from"
    )
    add_model_arguments(parser)
    add_dense_precision_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Rebuild the checkpoint's model, evaluate it and print (and optionally save) the metrics."""
    import numpy as np
    import torch

    from bidrn.body import load_body_model
    from bidrn.deploy.loading import is_frozen_file, load_model
    from bidrn.engine.datasets import open_dataset
    from bidrn.engine.distributed import init_distributed, shutdown_distributed
    from bidrn.engine.evaluation import evaluate, result_document
    from bidrn.engine.metrics import mesh_topology
    from bidrn.engine.resolution import fit_to_model
    from bidrn.errors import InputFileError

    # A training checkpoint is evaluated as trained (simulated); a frozen file runs frozen.
    frozen = None if is_frozen_file(args.checkpoint) else False
    j14 = None
    if args.j14_regressor is not None:
        try:
            j14 = torch.from_numpy(np.load(args.j14_regressor, allow_pickle=False))
        except (OSError, ValueError) as error:
            raise InputFileError(args.j14_regressor, f"not a readable .npy array ({error})") from None
    context = init_distributed(args.device)
    try:
        model, info = load_model(
            args.checkpoint,
            frozen=frozen,
            device=context.device,
            model_name=args.model,
            overrides=parse_overrides(args.set) if frozen is False else None,
            dense_precision=args.dense_precision,
        )
        body_model = load_body_model(args.body_model or info.body_model)
        model.attach_body_model(body_model)
        dataset = fit_to_model(open_dataset(args.data, train=False, body_model=body_model), model)
        topology = mesh_topology(body_model, j14)
        result = evaluate(
            model,
            dataset,
            topology,
            batch_size=args.batch_size,
            num_workers=args.workers,
            context=context,
            collect=bool(args.baseline),
        )
        report = None
        if args.baseline:
            report = _baselines(args, result, body_model, topology, info.training_statistics)
        if context.is_main:
            _print(result, report)
            if args.json is not None:
                document = result_document(
                    result, method=info.name, checkpoint=str(args.checkpoint), data=args.data
                )
                if report is not None:
                    document.update(report.as_dict())
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(document, indent=1) + "\n")
    finally:
        shutdown_distributed()
    return 0


def _baselines(
    args: argparse.Namespace,
    result: EvaluationResult,
    body_model: nn.Module,
    topology: MeshTopology,
    statistics: dict[str, list[float]] | None,
) -> BaselineReport:
    """The constants that ``--baseline`` asks for, evaluated on the same ground truth as the model."""
    from bidrn.engine.baselines import (
        ConstantParameters,
        compare_with_constants,
        dataset_parameters,
        mean_mesh,
        mean_parameters,
        parameter_meshes,
    )
    from bidrn.engine.datasets import open_dataset

    training = None
    if args.baseline_data is not None:
        training = dataset_parameters(open_dataset(args.baseline_data, train=False, body_model=body_model))
    mean_pose = None
    if "mean-pose" in args.baseline:
        if training is not None:
            mean_pose = mean_parameters(*training)
        elif statistics:
            mean_pose = ConstantParameters.from_dict(statistics)
        else:
            raise BidrnError(
                "--baseline mean-pose: the checkpoint records no training statistics; pass --baseline-data"
            )
    training_mesh = None
    if "mean-mesh" in args.baseline:
        if training is None:
            raise BidrnError("--baseline mean-mesh needs --baseline-data (the training data)")
        training_mesh = mean_mesh(parameter_meshes(body_model, *training), topology)
    return compare_with_constants(
        result.per_sample, result.predictions, body_model, topology, mean_pose, training_mesh
    )


def _print(result: EvaluationResult, report: BaselineReport | None) -> None:
    """The model's errors, the baselines' beside them, then the model's gains with 95 % intervals."""
    from bidrn.engine.baselines import BODY_COLUMNS
    from bidrn.engine.metrics import TABLE1_COLUMNS

    labels = list(report.rows) if report is not None else []
    print(f"{'':>14s}  {'model':>9s}" + "".join(f"  {label:>30s}" for label in labels))
    for column in TABLE1_COLUMNS:
        values = "".join(f"  {report.rows[label][column]:27.1f} mm" for label in labels)
        print(f"{column:>14s}  {result.metrics[column]:6.1f} mm{values}")
    print(f"{'samples':>14s}  {result.count:9d}   (PA-MPJPE body joints: {result.body_joint_source})")
    if report is None:
        return
    for label in labels:
        gains = ", ".join(
            f"{column} {gain:+.1f} [{low:+.1f}, {high:+.1f}]"
            for column, (gain, low, high) in report.gains[label].items()
            if column in BODY_COLUMNS
        )
        print(f"gain over {label} (mm, 95% interval): {gains}")
    spread, away = report.spread, report.facing_away
    ratio = spread["prediction"] / max(spread["ground_truth"], 1e-9)
    print(
        f"spread: predictions {spread['prediction']:.1f} mm, ground truth {spread['ground_truth']:.1f} mm "
        f"(ratio {ratio:.2f})"
    )
    print(
        f"back views: {away['ground_truth']} test people face away from the camera; "
        f"the model turns {away['predicted_too']} of them away"
    )
