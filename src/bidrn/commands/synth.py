"""``bidrn synth``: render synthetic whole-body training or test data from the body model."""

from __future__ import annotations

import argparse
import time

from bidrn.errors import BidrnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn synth``."""
    parser.add_argument("--out", required=True, help="output folder (shards + manifest.json)")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="train or test; the two never share a random stream (default train)",
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: one per CPU)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=(320, 256),
        help="image height and width in pixels (default 320 256)",
    )
    parser.add_argument("--backgrounds", default=None, help="folder of photos to use as backgrounds")
    parser.add_argument(
        "--body-model", default=None, help="SMPL-X .npz/.pkl (default: the embedded stand-in)"
    )
    parser.add_argument("--shard-size", type=int, default=100, help="samples per shard folder (default 100)")
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

    if args.shard_size <= 0 or min(args.size) < 32:
        raise BidrnError("--shard-size must be positive and --size at least 32x32")
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
