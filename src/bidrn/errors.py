"""Errors that reach users, and the checks every file reader makes before it opens a file.

Every problem caused by a user's input (a file, a path, an option) is raised as
:class:`BidrnError` with a one-line message that names the input and the problem. The
command line prints that line and exits non-zero, never a traceback. Library messages describe
the problem in the library's terms; the commands add the command-line flag where it helps.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class BidrnError(Exception):
    """A problem with user input, reported as one line naming the input."""


class InputFileError(BidrnError, ValueError):
    """A file that is missing, unreadable, truncated or not in the expected format."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Rebuild from (path, problem) so the error survives crossing process boundaries."""
        return (type(self), (self.path, self.problem))


def one_line(text: object) -> str:
    """``text`` (an exception or a message) with every run of whitespace, newlines included, as one space."""
    words = " ".join(str(text).split())
    return words if words or isinstance(text, str) else type(text).__name__


def require_regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it names a regular file (after following links), else an :class:`InputFileError`.

    Reading a FIFO blocks until someone writes to it and a device can be endless, so both are
    refused before anything opens them, as are folders and missing paths.

    Args:
        path: the file to check.
        what: what the file should be, for the message (``"image"``, ``"boxes file"``, ...).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(path, f"no such {what}") from None
    except OSError as error:
        reason = one_line(error.strerror or error)
        raise InputFileError(path, f"cannot access the {what} ({reason})") from None
    if stat.S_ISDIR(mode):
        article = "an" if what[:1] in "aeiou" else "a"
        raise InputFileError(path, f"is a folder, not {article} {what}")
    if not stat.S_ISREG(mode):
        raise InputFileError(path, "is not a regular file (a FIFO, socket or device); refusing to read it")
    return path


def describe_os_error(error: OSError) -> str:
    """One line naming the path(s) of a failed file operation and why it failed (for the command line)."""
    names = [str(name) for name in (error.filename, error.filename2) if name is not None]
    reason = one_line(error.strerror or error)
    return f"{' -> '.join(names)}: {reason}" if names else reason
