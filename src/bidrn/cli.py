"""The ``bidrn`` command: a thin layer over the library.

Each sub-command lives in its own module under :mod:`bidrn.commands` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``bidrn --help`` stays fast. Errors meant for users
(:class:`bidrn.errors.BidrnError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bidrn.errors import BidrnError

#: sub-command name -> (module under bidrn.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the bundled model on the bundled sample images"),
    "predict": ("predict", "recover whole-body meshes from images, folders or videos"),
    "synth": ("synth", "render synthetic whole-body training data from the body model"),
    "train": ("train", "train a registered model (DDP under torchrun)"),
    "eval": ("evaluate", "evaluate a checkpoint with the paper's metrics"),
    "experiment": ("experiment", "reproduce one of the paper's tables or figures"),
    "complexity": ("complexity", "count Params and OPs with the paper's convention"),
    "export": ("export", "freeze a checkpoint to packed 1-bit weights"),
    "bench": ("bench", "measure packed 1-bit kernels against full precision"),
}


def _command_module(name: str):
    return importlib.import_module(f"bidrn.commands.{COMMANDS[name][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser; with ``only``, import just that sub-command's module."""
    parser = argparse.ArgumentParser(
        prog="bidrn", description="Binarized 3D whole-body human mesh recovery (BiDRN)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _command_module(name).add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bidrn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_command_module(args.command).run(args) or 0)
    except BidrnError as error:
        print(f"bidrn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bidrn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
