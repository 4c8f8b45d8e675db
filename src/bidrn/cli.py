"""The ``bidrn`` command: a thin layer over the library.

Each sub-command lives in its own module under :mod:`bidrn.commands` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``bidrn --help`` stays fast. Errors meant for users
(:class:`bidrn.errors.BidrnError`) and failed file operations (:class:`OSError`: a full disk, a
folder that cannot be written, an output path taken by a folder) are printed as one line and exit
with status 2; an interrupt exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from bidrn import __version__
from bidrn.errors import BidrnError, describe_os_error

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


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default: ``(default: X)`` is added where the help text does not give it.

    Options without a meaningful default (``None``, ``False`` for flags, an empty list, required
    options) are left as they are.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or not _has_default(action):
            return action.help
        return f"{text} (default: %(default)s)"


def _has_default(action: argparse.Action) -> bool:
    """Whether an option has a default worth showing in its help."""
    default = action.default
    return not (
        action.required
        or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        or default is None
        or default is False
        or default == argparse.SUPPRESS
        or (isinstance(default, list | tuple | dict) and not default)
    )


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give options without help text one that states their default (argparse skips empty help)."""
    for action in parser._actions:
        if action.help is None and _has_default(action):
            action.help = "default: %(default)s"


def _command_module(name: str):
    return importlib.import_module(f"bidrn.commands.{COMMANDS[name][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser; with ``only``, import just that sub-command's module."""
    parser = argparse.ArgumentParser(
        prog="bidrn",
        description="Binarized 3D whole-body human mesh recovery (BiDRN).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bidrn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=HelpFormatter
        )
        if name == only:
            _command_module(name).add_arguments(command_parser)
            _show_defaults(command_parser)
    return parser


TRAINING_COMMANDS = frozenset({"train", "experiment"})
"""Commands that keep OpenMP's default (spinning) wait policy; see :func:`sleep_idle_openmp_threads`."""


def sleep_idle_openmp_threads(command: str | None) -> None:
    """Let idle OpenMP threads sleep rather than spin, unless ``OMP_WAIT_POLICY`` is already set.

    torch's OpenMP threads spin after every parallel region by default. On a machine whose cores
    other processes also use, the spinning threads take the cores the work needs: the paper-size
    frozen BiDRN took up to 2.8 s at 2 threads against about 0.4 s at 1 thread there, and 0.45 s
    at 2 threads with ``PASSIVE``, which costs inference nothing measurable on an idle machine
    (docs/deployment.md). Training steps are many short regions, where sleeping costs 9-12 % at 2
    threads, so the training commands (:data:`TRAINING_COMMANDS`) keep the default. The runtime
    reads the variable when torch loads it, so this runs before any command imports torch.
    """
    if command not in TRAINING_COMMANDS:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bidrn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    sleep_idle_openmp_threads(command)
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
    except OSError as error:
        print(f"bidrn {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bidrn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
