"""Errors that reach users.

Every problem caused by a user's input (a file, a path, an option) is raised as
:class:`BidrnError` with a one-line message that names the input and the problem. The
command line prints that line and exits non-zero, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class BidrnError(Exception):
    """A problem with user input, reported as one line naming the input."""


class InputFileError(BidrnError, ValueError):
    """A file that is missing, unreadable, truncated or not in the expected format."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Rebuild from (path, problem) so the error survives crossing process boundaries."""
        return (type(self), (self.path, self.problem))
