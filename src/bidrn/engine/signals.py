"""Stop training cleanly on SIGINT (Ctrl-C) or SIGTERM: finish the step, checkpoint, exit 130.

:class:`StopRequests` replaces the two handlers while training runs. A first signal only sets a
flag that the loop reads between steps (under DDP every rank agrees through one all-reduce, since
``torchrun`` forwards the signal to each rank at a slightly different moment); a second one restores
the default behaviour, so a stuck run can still be killed with another Ctrl-C.
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType

from bidrn.errors import BidrnError

EXIT_INTERRUPTED = 130
"""Exit status of a run stopped by a signal (128 + SIGINT, the shell's convention)."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterruptedError(BidrnError):
    """Training stopped on a signal after writing a checkpoint; the command exits with 130."""

    exit_code = EXIT_INTERRUPTED


class StopRequests:
    """Context manager that turns SIGINT/SIGTERM into a flag (outside the main thread it does nothing)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.received = number
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # a second signal gets the default behaviour

    def __enter__(self) -> StopRequests:
        try:
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals cannot be caught here
            self._previous.clear()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.received is not None
