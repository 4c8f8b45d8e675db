"""The benchmark scripts still start: each parses its options against the current package.

Benchmarks are not tests (they measure, and take minutes), but a script that no longer imports, e.g.
after a protocol was renamed, should fail here rather than in a user's hands.
"""

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bidrn.commands.bench import _cpu_info

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
AMX_PROBE = Path(__file__).resolve().parents[1] / "benchmarks" / "amx_binary_conv.cpp"


def test_the_benchmarks_folder_is_found():
    assert len(BENCHMARKS) >= 5


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.stem)
def test_benchmark_script_starts(script):
    command = [sys.executable, str(script), "--help"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("usage:")


@pytest.mark.skipif(
    shutil.which("g++") is None or platform.machine() != "x86_64", reason="needs g++ for x86-64"
)
def test_amx_probe_builds_and_agrees_with_its_reference(tmp_path):
    """The AMX probe compiles warning-free; on a CPU with AMX-INT8 its conv equals the scalar reference."""
    binary = tmp_path / "amx_binary_conv"
    flags = ["-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-mavx512f", "-mavx512bw", "-mavx512vl"]
    build = subprocess.run(
        ["g++", *flags, "-mamx-tile", "-mamx-int8", str(AMX_PROBE), "-o", str(binary)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if build.returncode != 0 and "-mamx" in build.stderr and "unrecognized" in build.stderr:
        pytest.skip("this g++ has no AMX intrinsics")
    assert build.returncode == 0, build.stderr[-2000:]
    # the binary may use AVX-512 anywhere: run it only where it can run
    if "amx_int8" not in (_cpu_info("flags") or "").split():
        pytest.skip("the CPU has no AMX-INT8 to run the probe on")
    refused = subprocess.run([str(binary), "1", "3", "16", "64", "32"], capture_output=True, text=True)
    assert refused.returncode == 2 and "H even" in refused.stderr  # shapes the probe does not tile
    # two 64-channel chunks, two pixel tiles per row, two 32-channel output blocks
    run = subprocess.run([str(binary), "2", "4", "32", "128", "64", "3"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "max error 0," in run.stdout
