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

from bidrn.commands.train import add_model_arguments, parse_overrides


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
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Rebuild the checkpoint's model, evaluate it and print (and optionally save) the metrics."""
    import numpy as np
    import torch

    from bidrn.body import load_body_model
    from bidrn.deploy.loading import is_frozen_file, load_model
    from bidrn.engine.datasets import open_dataset
    from bidrn.engine.distributed import init_distributed, shutdown_distributed
    from bidrn.engine.evaluation import evaluate, result_document
    from bidrn.engine.metrics import TABLE1_COLUMNS, mesh_topology
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
        )
        body_model = load_body_model(args.body_model or info.body_model)
        model.attach_body_model(body_model.to(context.device))
        name = info.name
        dataset = fit_to_model(open_dataset(args.data, train=False, body_model=body_model), model)
        result = evaluate(
            model,
            dataset,
            mesh_topology(body_model, j14),
            batch_size=args.batch_size,
            num_workers=args.workers,
            context=context,
        )
        if context.is_main:
            for column in TABLE1_COLUMNS:
                print(f"{column:>14s}  {result.metrics[column]:8.2f} mm")
            print(f"{'samples':>14s}  {result.count:8d}   (PA-MPJPE body joints: {result.body_joint_source})")
            if args.json is not None:
                document = result_document(
                    result, method=name, checkpoint=str(args.checkpoint), data=args.data
                )
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(document, indent=1) + "\n")
    finally:
        shutdown_distributed()
    return 0
