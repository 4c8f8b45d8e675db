"""Rank-0 training logs: a JSON-lines file always, TensorBoard scalars when it is installed.

TensorBoard is an optional dependency (``pip install tensorboard``); without it the scalars are
still written to ``<run>/log.jsonl`` and one notice says so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _open_tensorboard(directory: Path) -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the tensorboard package is missing
        print("bidrn train: tensorboard is not installed; scalars go to log.jsonl only", file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(directory))


class TrainingLog:
    """Scalar log of one run, written only on the main process.

    Args:
        directory: the run directory (``log.jsonl`` and TensorBoard event files go there).
        enabled: False on non-main ranks, which then write nothing.
        tensorboard: try to write TensorBoard event files as well.
    """

    def __init__(self, directory: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self._lines = None
        self._writer = None
        if enabled:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            self._lines = (directory / "log.jsonl").open("a")
            self._writer = _open_tensorboard(directory / "tensorboard") if tensorboard else None

    def write(self, step: int, scalars: dict[str, float], **fields: Any) -> None:
        """Record ``scalars`` at global ``step`` (plus non-scalar ``fields`` in the JSON line)."""
        if not self.enabled:
            return
        self._lines.write(json.dumps({"step": step, **fields, **scalars}) + "\n")
        self._lines.flush()
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        """Flush and close the files."""
        if self._lines is not None:
            self._lines.close()
            self._lines = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
