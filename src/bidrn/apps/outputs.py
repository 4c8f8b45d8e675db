"""The output folder of ``bidrn predict``: names nobody else holds and a summary that loses no line.

Several runs may write into one folder at the same time, and a folder may already hold an earlier
run's outputs. Nothing is ever overwritten:

Names
    A frame's files are ``NAME_pK_*`` for its persons ``K``. Before any of them is written, the
    frame claims its name by creating each person's ``NAME_pK_params.json`` exclusively
    (``O_CREAT | O_EXCL``, which the file system grants to one process only). If one of them
    exists already (an earlier run, another input with the same stem, an image
    ``clip_000001.jpg`` next to the frames of ``clip.mp4``) the claims are withdrawn and the frame
    becomes ``NAME_2``, ``NAME_3``, ... — so every name in a folder belongs to one frame of one run.

Summary
    ``predictions.jsonl`` is opened for appending and every record is written as one complete
    line in a single ``write`` under an exclusive ``flock`` (where the platform has it): lines of
    concurrent runs interleave whole, and a later run adds to the file instead of replacing it.
    Every line is strict JSON (a non-finite number is refused before it is written).

Files are created with the default permissions (``0666`` less the umask, e.g. ``0644``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bidrn.errors import InputFileError, one_line

try:
    import fcntl
except ImportError:  # Windows: appends of one short line are still written whole
    fcntl = None  # type: ignore[assignment]

__all__ = ["SUMMARY_NAME", "OutputFolder", "person_stem", "prepare_folder"]

SUMMARY_NAME = "predictions.jsonl"
"""The summary file: one JSON line per person written."""
CLAIM_SUFFIX = "_params.json"
"""Which of a person's files claims its name (every person has one)."""


def person_stem(name: str, person: int) -> str:
    """Prefix of the files of person ``person`` of the frame named ``name``."""
    return f"{name}_p{person}"


def prepare_folder(path: str | Path) -> Path:
    """Create the output folder (and its parents) and check it can be written; returns it.

    Raises:
        InputFileError: the path is taken by a file, cannot be created, or is not writable.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputFileError(path, "exists and is not a folder; choose another output folder") from None
    except OSError as error:
        raise InputFileError(path, f"cannot create the output folder ({one_line(error.strerror)})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputFileError(path, "the output folder is not writable")
    return path


class OutputFolder:
    """An output folder opened for one run: claims frame names and appends summary records.

    Args:
        path: the folder (created with its parents).

    Raises:
        InputFileError: the folder cannot be created or written (one line naming it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = prepare_folder(path)
        self.summary = self.path / SUMMARY_NAME
        try:
            self._fd = os.open(self.summary, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as error:
            raise InputFileError(
                self.summary, f"cannot open for appending ({one_line(error.strerror)})"
            ) from None
        self.renamed: list[tuple[str, str]] = []

    def claim(self, name: str, persons: Sequence[int]) -> str:
        """Claim a name for one frame whose persons ``persons`` will be written; returns the name to use.

        ``name`` itself when none of its persons' files exists, else ``name_2``, ``name_3``, ...
        (each such ``(name, new name)`` is recorded in :attr:`renamed`). Call it once per frame.
        """
        number = 1
        while not self._claim_files(candidate := name if number == 1 else f"{name}_{number}", persons):
            number += 1
        if candidate != name:
            self.renamed.append((name, candidate))
        return candidate

    def _claim_files(self, candidate: str, persons: Sequence[int]) -> bool:
        created: list[Path] = []
        for person in persons:
            path = self.path / (person_stem(candidate, person) + CLAIM_SUFFIX)
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                for claimed in created:
                    claimed.unlink(missing_ok=True)
                return False
            except OSError as error:
                raise InputFileError(
                    path, f"cannot create an output file ({one_line(error.strerror)})"
                ) from None
            created.append(path)
        return True

    def append(self, record: dict[str, Any]) -> None:
        """Append one record to ``predictions.jsonl`` as one strict-JSON line, whole."""
        try:
            line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        except ValueError:
            raise InputFileError(
                self.summary, "refusing to write a record with NaN or infinite numbers"
            ) from None
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
        finally:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the summary file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
