"""The README's test command is the one .ci/run executes."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme_line = next(
        line for line in (ROOT / "README.md").read_text().splitlines() if "# test suite" in line
    )
    command = readme_line.split("#")[0].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    # in a subshell, so that `set -e` stops the script when an install fails (an && list's earlier
    # commands do not trigger it, and the NEON check after it would pass)
    assert f"({command})" in ci_lines
