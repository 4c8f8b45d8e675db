"""``bidrn train``: train a registered model; under ``torchrun`` on several GPUs/nodes with DDP.

Examples::

    bidrn train --model bidrn --data synth:data/synth-train --output runs/bidrn
    torchrun --nproc_per_node=4 -m bidrn.cli train --model bidrn --data synth:data/synth-train
    bidrn train --model bidrn --data synth:data/synth-train --output runs/bidrn --resume auto
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from bidrn.errors import BidrnError


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["width=0.25", "body_input=128,96"]`` -> ``{"width": 0.25, "body_input": (128, 96)}``."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise BidrnError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise BidrnError(f"--set {item!r}: value must be a number or a comma-separated tuple") from None
        overrides[key] = value
    return overrides


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by commands that build a model (size overrides, body model)."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model size override, e.g. width=0.25 or body_input=128,96 (repeatable)",
    )
    parser.add_argument(
        "--body-model",
        default=None,
        metavar="PATH",
        help="SMPLX_NEUTRAL.npz/.pkl (default: the embedded stand-in)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn train``."""
    from bidrn.engine.trainer import TrainConfig

    defaults = TrainConfig()
    parser.add_argument("--model", required=True, help="registered model name (see bidrn.list_models())")
    parser.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="training data KIND:PATH[:SPLIT], several joined with '+' (kinds: synth, ehf, "
        "agora, h36m, coco, mpii)",
    )
    parser.add_argument("--output", default="runs/train", type=Path, help="run folder (checkpoints, logs)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="per process")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--lr-decay-epochs", type=int, nargs="*", default=list(defaults.lr_decay_epochs))
    parser.add_argument("--lr-decay-factor", type=float, default=defaults.lr_decay_factor)
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=defaults.warmup_steps,
        help="linear learning-rate warm-up (updates)",
    )
    parser.add_argument("--grad-clip", type=float, default=None, metavar="NORM", help="clip gradient norm")
    parser.add_argument(
        "--rotation-loss",
        choices=("matrix", "axis-angle"),
        default="matrix",
        help="compare pose rotations as matrices, or as axis-angle vectors like Hand4Whole",
    )
    parser.add_argument(
        "--teacher",
        default=None,
        metavar="CKPT",
        help="distil from this trained model (e.g. full-precision Hand4Whole) besides the ground truth",
    )
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of every distillation term")
    parser.add_argument("--no-amp", action="store_true", help="full precision on GPU (AMP is off on CPU)")
    parser.add_argument(
        "--no-channels-last",
        action="store_true",
        help="keep weights and images in the NCHW layout (default: channels-last, faster convolutions)",
    )
    parser.add_argument(
        "--no-augmentation",
        action="store_true",
        help="train on the crops as evaluation sees them (no scale/rotation/flip/colour jitter)",
    )
    parser.add_argument("--workers", type=int, default=defaults.num_workers, help="DataLoader workers")
    parser.add_argument(
        "--cache",
        default=None,
        type=Path,
        metavar="DIR",
        help="without augmentation, bake the samples once at the model's resolution into DIR and train "
        "from there (default: OUTPUT/data-cache; 'none' disables)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after N steps")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="also checkpoint every N steps (default: at epoch ends)",
    )
    parser.add_argument("--log-every", type=int, default=defaults.log_every_steps, metavar="STEPS")
    parser.add_argument(
        "--validate-data",
        default=None,
        metavar="SPEC",
        help="held-out data for learning curves: its errors and loss, and those of as many training "
        "samples, go to log.jsonl every --validate-every steps",
    )
    parser.add_argument("--validate-every", type=int, default=0, metavar="STEPS", help="0: never")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CKPT|auto",
        help="continue a run exactly; 'auto' = OUTPUT/checkpoints/last if it exists",
    )
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        help="start from the matching weights of a checkpoint (e.g. a full-precision model)",
    )
    parser.add_argument("--find-unused-parameters", action="store_true", help="DDP option")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Build model, data and trainer, then train."""
    from torch.utils.data import Subset

    import bidrn
    from bidrn.body import load_body_model
    from bidrn.engine.baselines import dataset_parameters, mean_parameters
    from bidrn.engine.datasets import open_dataset, training_samples
    from bidrn.engine.distillation import Distillation, DistillationWeights
    from bidrn.engine.distributed import init_distributed, shutdown_distributed
    from bidrn.engine.evaluation import learning_curve_probe
    from bidrn.engine.loading import model_from_checkpoint
    from bidrn.engine.losses import HeatmapGeometry, WholeBodyLoss
    from bidrn.engine.metrics import mesh_topology
    from bidrn.engine.reproducibility import seed_everything
    from bidrn.engine.resolution import fit_to_model
    from bidrn.engine.signals import EXIT_INTERRUPTED, TrainingInterruptedError
    from bidrn.engine.trainer import TrainConfig, Trainer

    if args.batch_size < 1 or args.epochs < 1:
        raise BidrnError(
            f"--batch-size and --epochs must be positive, got {args.batch_size} and {args.epochs}"
        )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay_epochs=tuple(args.lr_decay_epochs),
        lr_decay_factor=args.lr_decay_factor,
        warmup_steps=args.warmup_steps,
        grad_clip_norm=args.grad_clip,
        amp=not args.no_amp,
        channels_last=not args.no_channels_last,
        seed=args.seed,
        num_workers=args.workers,
        log_every_steps=args.log_every,
        checkpoint_every_steps=args.checkpoint_every,
        validate_every_steps=args.validate_every if args.validate_data else 0,
        max_steps=args.max_steps,
        find_unused_parameters=args.find_unused_parameters,
    )
    overrides = parse_overrides(args.set)
    cache = None if str(args.cache) == "none" else (args.cache or args.output / "data-cache")
    context = init_distributed(args.device)
    try:
        body_model = load_body_model(args.body_model)
        seed_everything(args.seed)  # the initial weights depend on the seed too
        model = bidrn.create_model(args.model, body_model=body_model, **overrides)
        dataset = training_samples(
            args.data,
            model,
            body_model,
            augment=not args.no_augmentation,
            seed=args.seed,
            cache_dir=cache,
            context=context,
            num_workers=args.workers,
        )
        model_info = {"model": args.model, "model_overrides": overrides, "body_model": args.body_model}
        poses, shapes, expressions = dataset_parameters(dataset)
        if len(poses):  # recorded for `bidrn eval --baseline mean-pose`
            model_info["training_statistics"] = mean_parameters(poses, shapes, expressions).as_dict()
        extra_terms = None
        if args.teacher is not None:
            teacher, _ = model_from_checkpoint(args.teacher, body_model=body_model)
            weight = args.distill_weight
            extra_terms = Distillation(
                teacher.to(context.device), DistillationWeights(weight, weight, weight, weight)
            )
        rotations = "axis_angle" if args.rotation_loss == "axis-angle" else "matrix"
        loss = WholeBodyLoss(geometry=HeatmapGeometry.of_model(model), rotations=rotations)
        validate = None
        if args.validate_data is not None:
            held_out = fit_to_model(
                open_dataset(args.validate_data, train=False, body_model=body_model), model
            )
            seen = Subset(dataset, range(min(len(held_out), len(dataset))))
            validate = learning_curve_probe(
                {"held_out": held_out, "train": seen}, mesh_topology(body_model), loss, context=context
            )
        trainer = Trainer(
            model,
            dataset,
            loss,
            config,
            args.output,
            model_info=model_info,
            context=context,
            extra_terms=extra_terms,
            validate=validate,
        )
        resume = args.resume
        if resume == "auto":
            last = trainer.checkpoint_dir / "last.safetensors"
            resume = str(last) if last.is_file() else None
        if resume is not None:
            trainer.resume(resume)
        elif args.init_from is not None:
            missing, unexpected = trainer.initialize_from(args.init_from)
            if context.is_main:
                print(
                    f"bidrn train: initialised from {args.init_from} "
                    f"({len(missing)} missing, {len(unexpected)} unused tensors)"
                )
        try:
            result = trainer.fit()
        except TrainingInterruptedError as stop:
            if context.is_main:
                print(f"bidrn train: {stop}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if context.is_main:
            print(
                f"bidrn train: {result.global_step} steps ({result.steps_run} in this run), "
                f"{result.epochs_done} epochs, "
                f"{result.images_per_second:.1f} images/s, checkpoint {result.checkpoint}"
            )
    finally:
        shutdown_distributed()
    return 0
