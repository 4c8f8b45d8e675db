"""``bidrn export``: freeze a training checkpoint to packed 1-bit weights (``*.bidrn.safetensors``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import bidrn
from bidrn.deploy import freeze, frozen_layout, save
from bidrn.engine.checkpoint import load_checkpoint, load_weights_into
from bidrn.errors import InputFileError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn export``."""
    parser.add_argument(
        "--checkpoint", required=True, help="training checkpoint (stem, .safetensors or .json)"
    )
    parser.add_argument("--out", required=True, help="output file, e.g. model.bidrn.safetensors")
    parser.add_argument("--fp16", action="store_true", help="store full-precision parts as float16")


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint's model, freeze it, write the frozen file and summarize."""
    checkpoint = load_checkpoint(args.checkpoint, with_state=False)
    if not checkpoint.model_name:
        raise InputFileError(args.checkpoint, "checkpoint does not record its model name")
    overrides = checkpoint.model_overrides
    model = bidrn.create_model(checkpoint.model_name, **overrides)
    load_weights_into(model, checkpoint, args.checkpoint)
    height, width = model.config.crop_input
    frozen = freeze(model.eval(), example_inputs=(torch.zeros(1, 3, height, width),))
    layout = frozen_layout(frozen)
    if not layout["packed_layers"]:
        raise InputFileError(
            args.checkpoint, f"model {checkpoint.model_name!r} has no binary layers to freeze"
        )
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise InputFileError(out, "output folder does not exist")
    save(
        frozen,
        out,
        fp16=args.fp16,
        architecture={
            "name": checkpoint.model_name,
            "overrides": overrides,
            "training_statistics": checkpoint.info.get("training_statistics"),
        },
    )
    print(
        f"wrote {out}: {len(layout['packed_layers'])} packed layers, "
        f"{len(layout['folded_batchnorms'])} BatchNorms folded, {out.stat().st_size / 2**20:.1f} MB"
    )
    return 0
