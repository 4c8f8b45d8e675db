"""``bidrn export``: freeze a training checkpoint to packed 1-bit weights (``*.bidrn.safetensors``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bidrn.deploy import frozen_layout, is_frozen_file, load_model, save
from bidrn.errors import InputFileError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn export``."""
    parser.add_argument(
        "--checkpoint", required=True, help="training checkpoint (stem, .safetensors or .json)"
    )
    parser.add_argument("--out", required=True, help="output file, e.g. model.bidrn.safetensors")
    parser.add_argument("--fp16", action="store_true", help="store full-precision parts as float16")


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint's model frozen, write the frozen file and summarize."""
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise InputFileError(out, "output folder does not exist")
    if is_frozen_file(args.checkpoint):
        raise InputFileError(
            args.checkpoint, "is already frozen (a `bidrn export` output); export takes a training checkpoint"
        )
    frozen, info = load_model(args.checkpoint, frozen=True, dense_precision="fp32")
    layout = frozen_layout(frozen)
    architecture = {
        "name": info.name,
        "overrides": info.overrides,
        "training_statistics": info.training_statistics,
    }
    save(frozen, out, fp16=args.fp16, architecture=architecture)
    print(
        f"wrote {out}: {len(layout['packed_layers'])} packed layers, "
        f"{len(layout['folded_batchnorms'])} BatchNorms folded, {out.stat().st_size / 2**20:.1f} MB"
    )
    return 0
