"""``bidrn synth``: render synthetic whole-body training or test data from the body model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bidrn.errors import BidrnError

MAX_SIDE = 8192
"""Largest image side ``--size`` accepts (a synthetic render needs far less)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn synth``."""
    parser.add_argument("--out", required=True, help="output folder (shards + manifest.json)")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="base seed (non-negative)")
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="train or test; the two never share a random stream",
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: one per CPU)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=(320, 256),
        help=f"image height and width in pixels (32 to {MAX_SIDE})",
    )
    parser.add_argument("--backgrounds", default=None, help="folder of photos to use as backgrounds")
    parser.add_argument(
        "--body-model", default=None, help="SMPL-X .npz/.pkl (default: the embedded stand-in)"
    )
    parser.add_argument("--shard-size", type=int, default=100, help="samples per shard folder")
    parser.add_argument(
        "--contact-sheet",
        default=None,
        metavar="PNG",
        help="also save the first 16 samples with boxes and joints drawn",
    )
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that already has data")


def run(args: argparse.Namespace) -> int:
    """Generate the samples, print the rate, optionally save a contact sheet."""
    from bidrn.data.synthetic.generate import SynthConfig, generate

    if args.num <= 0:
        raise BidrnError(f"--num must be positive, got {args.num}")
    if args.seed < 0:
        raise BidrnError(f"--seed must be non-negative, got {args.seed}")
    if args.shard_size <= 0:
        raise BidrnError(f"--shard-size must be positive, got {args.shard_size}")
    if min(args.size) < 32 or max(args.size) > MAX_SIDE:
        raise BidrnError(
            f"--size must be between 32 and {MAX_SIDE} pixels per side, got {args.size[0]} {args.size[1]}"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BidrnError(f"--out {out}: exists and is not a folder")
    if (out / "manifest.json").exists() and not args.overwrite:
        raise BidrnError(
            f"--out {out}: already holds synthetic data (manifest.json); "
            "choose another folder or pass --overwrite"
        )
    config = SynthConfig(
        height=args.size[0],
        width=args.size[1],
        backgrounds=args.backgrounds,
        model_path=args.body_model,
        shard_size=args.shard_size,
    )
    start = time.perf_counter()
    out = generate(args.out, args.num, args.seed, args.split, config, args.workers, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.num} {args.split} samples to {out} in {seconds:.1f} s ({args.num / seconds:.1f} img/s)"
    )
    if args.contact_sheet:
        from bidrn.data.synthetic.dataset import SyntheticDataset
        from bidrn.data.visualize import contact_sheet

        contact_sheet(SyntheticDataset(out)).save(args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet}")
    return 0
