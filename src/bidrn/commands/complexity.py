"""``bidrn complexity``: Params and OPs of registered models with the paper's convention.

Counts one forward pass on one person crop at the model's size (512×384 at paper size: body
256×192, two hand crops 256×256, face 192×192) with :func:`bidrn.engine.complexity.count_complexity`:
Params = FP + binary/32, OPs = FP MACs (+1 per BatchNorm output) + binary MACs/64.

    bidrn complexity                 # every paper variant next to the paper's numbers
    bidrn complexity bidrn bnn       # chosen models
    bidrn complexity --json          # machine-readable list of objects
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from bidrn.engine.complexity import count_complexity
from bidrn.errors import BidrnError
from bidrn.nets.registry import create_model, get_entry, list_models

__all__ = ["add_arguments", "measure", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="registered model names (default: every variant the paper reports)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = paper)")


def measure(name: str, width: float = 1.0) -> dict[str, float | str]:
    """Params/OPs of model ``name`` for one crop: ``model, params_m, ops_g`` and their FP/binary split."""
    torch.manual_seed(0)
    model = create_model(name, width=width).eval()
    crop = torch.rand(1, 3, *model.config.crop_input)
    return {"model": name, **count_complexity(model, crop).as_dict()}


def _relative(measured: float, paper: float) -> str:
    return f"{(measured / paper - 1) * 100:+.1f}%"


def _header() -> str:
    header = (
        f"{'model':<20} {'Params (M)':>10} {'paper':>7} {'diff':>7}   "
        f"{'OPs (G)':>8} {'paper':>7} {'diff':>7}  source"
    )
    return f"{header}\n{'-' * len(header)}"


def _row(row: dict[str, float | str]) -> str:
    name = str(row["model"])
    params, ops = float(row["params_m"]), float(row["ops_g"])
    paper = get_entry(name).paper
    if paper is None:
        return f"{name:<20} {params:>10.2f} {'':>7} {'':>7}   {ops:>8.2f}"
    return (
        f"{name:<20} {params:>10.2f} {paper.params_m:>7.2f} {_relative(params, paper.params_m):>7}   "
        f"{ops:>8.2f} {paper.ops_g:>7.2f} {_relative(ops, paper.ops_g):>7}  {paper.table}"
    )


def run(args: argparse.Namespace) -> int:
    """Count and print: the table row by row as each model is counted, or (``--json``) the list at the end.

    Counting every paper variant at full width takes minutes on a small CPU, so the table is
    printed as it grows and ``--json`` reports each finished model on stderr.
    """
    names = args.models or [name for name in list_models() if get_entry(name).paper is not None]
    for name in names:
        get_entry(name)  # unknown names fail before any counting
    if not (math.isfinite(args.width) and args.width > 0):
        raise BidrnError(f"--width must be positive, got {args.width}")
    if not args.json:
        print(_header(), flush=True)
    rows = []
    for number, name in enumerate(names, start=1):
        rows.append(measure(name, args.width))
        if args.json:
            print(f"bidrn complexity: counted {name} ({number}/{len(names)})", file=sys.stderr, flush=True)
        else:
            print(_row(rows[-1]), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0
