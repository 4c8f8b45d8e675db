"""What every fuzz test asserts: one line naming the input and a non-zero exit, never a traceback."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from bidrn.cli import main
from bidrn.errors import BidrnError


def run_cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    """``bidrn ARGV`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_cli_error(capsys: pytest.CaptureFixture[str], argv: tuple[Any, ...], *fragments: Any) -> str:
    """``bidrn ARGV`` exits 2 with one stderr line ``bidrn CMD: error: ...`` holding every fragment."""
    code, _, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bidrn {argv[0]}: error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    return lines[0]


def assert_one_line(call: Callable[[], Any], *fragments: Any, error: type[BidrnError] = BidrnError) -> str:
    """``call()`` raises ``error`` (what the command line prints as one line) holding every fragment."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message, message
    for fragment in fragments:
        if isinstance(fragment, re.Pattern):
            assert fragment.search(message), (fragment.pattern, message)
        else:
            assert str(fragment) in message, (fragment, message)
    return message
