"""The benchmark scripts still start: each parses its options against the current package.

Benchmarks are not tests (they measure, and take minutes), but a script that no longer imports, e.g.
after a protocol was renamed, should fail here rather than in a user's hands.
"""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_the_benchmarks_folder_is_found():
    assert len(BENCHMARKS) >= 5


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.stem)
def test_benchmark_script_starts(script):
    command = [sys.executable, str(script), "--help"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("usage:")
