"""Rank-0 training logs: a JSON-lines file always, TensorBoard scalars when it is installed.

TensorBoard is an optional dependency (``pip install tensorboard``); without it the scalars are
still written to ``<run>/log.jsonl`` and one notice says so.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bidrn.engine.distributed import DistributedContext, mean_across_ranks
from bidrn.errors import BidrnError


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


class RunMonitor:
    """What a training run reports: windows of mean losses, learning rate, throughput, a progress bar.

    Every ``log_every_steps`` steps (and at every epoch end) the mean of each loss term over the window
    is averaged across ranks, checked for NaN/infinity, written to :class:`TrainingLog` with the
    learning rate, images/s and the share of time spent waiting for data, and shown on the bar.
    Use it as a context manager so files and the bar are closed.
    """

    def __init__(
        self,
        directory: str | Path,
        context: DistributedContext,
        images_per_step: int,
        log_every_steps: int,
        total_steps: int,
        done_steps: int = 0,
        progress_bar: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.context = context
        self.images_per_step = images_per_step
        self.log_every_steps = max(1, log_every_steps)
        self.log = TrainingLog(directory, enabled=context.is_main, tensorboard=tensorboard)
        self.bar = tqdm(
            total=total_steps,
            initial=done_steps,
            disable=not (progress_bar and context.is_main),
            unit="step",
            dynamic_ncols=True,
        )
        self.last_losses: dict[str, float] = {}
        self.start_window()

    def __enter__(self) -> RunMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()
        self.log.close()

    def start_window(self) -> None:
        """Begin a logging window (also called at every epoch start)."""
        self._sums: dict[str, Any] = {}
        self._steps = 0
        self._data_time = 0.0
        self._window_start = time.perf_counter()
        self._fetch_start = self._window_start

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` just spent on something else (validation) out of the window's throughput."""
        self._window_start += seconds
        self._fetch_start += seconds

    def write(self, step: int, scalars: dict[str, float], **fields: Any) -> None:
        """Log extra scalars (e.g. validation metrics) at ``step`` (main process only)."""
        self.log.write(step, scalars, **fields)

    def waiting_for_data(self) -> None:
        """The loop asks the loader for the next batch now."""
        self._fetch_start = time.perf_counter()

    def data_ready(self) -> None:
        """The batch asked for has arrived."""
        self._data_time += time.perf_counter() - self._fetch_start

    def record(
        self, terms: dict[str, Any], global_step: int, epoch: int, lr: float, flush: bool = False
    ) -> None:
        """Add one step's detached loss terms; write a record when the window is full or ``flush``."""
        for name, value in terms.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._steps += 1
        self.bar.update(1)
        if self._steps < self.log_every_steps and not flush:
            return
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        means = mean_across_ranks(
            {name: float(value) / self._steps for name, value in self._sums.items()}, self.context
        )
        if not math.isfinite(means["total"]):
            raise BidrnError(f"training diverged: loss is {means['total']} at step {global_step}")
        images_per_s = self._steps * self.images_per_step / elapsed
        scalars = {f"loss/{name}": value for name, value in means.items()}
        scalars.update(
            {
                "lr": lr,
                "throughput/images_per_s": images_per_s,
                "time/data_fraction": self._data_time / elapsed,
            }
        )
        self.log.write(global_step, scalars, epoch=epoch)
        self.bar.set_postfix(loss=f"{means['total']:.4f}", img_s=f"{images_per_s:.1f}")
        self.last_losses = means
        self.start_window()
