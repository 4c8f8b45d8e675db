"""Training images/s on this CPU: the code of an earlier commit against this checkout, side by side.

Usage::

    python benchmarks/train_throughput.py                      # before = 3fba929 (issue #16's baseline)
    python benchmarks/train_throughput.py --models bidrn --repeats 5 --before HEAD~3

Both contenders train the same registered model at the same size on the same synthetic images through
the real ``bidrn train`` command, one fresh process per run, alternating ``--repeats`` times:

* **before** — the earlier commit checked out into a temporary git worktree, run with the recipe its
  CPU protocol used (``synth-tiny``: batch 24, Hand4Whole's augmentation, samples built in the training
  process);
* **after** — this checkout with the recipe of the ``--protocol`` given (default ``synth-cpu``): its batch
  size, no augmentation (samples baked once at the model's resolution; the bake is timed separately and
  is not part of the steady rate), and its number of processes (DDP under ``torchrun``, one thread each).

Each run trains ``--steps`` optimizer steps and reports the throughput of its second logging window,
so start-up and the first step are excluded on both sides. The script prints every run and a table
of medians and the after/before ratio per model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "3fba929"
"""The commit issue #16 measured (synth-tiny: 2-7 images/s)."""
SIZES = ["width=0.25", "body_input=96,64", "hand_input=64,64", "face_input=64,64"]
"""synth-tiny's model size (96×64 body crops), so both commits train the same model (synth-cpu: 128×96)."""


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    completed = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"failed ({completed.returncode}): {' '.join(command)}\n{completed.stderr[-3000:]}")
    return completed.stdout + completed.stderr


def steady_rate(log: Path) -> float:
    """Images/s of the last logging window of a run (the first window holds start-up)."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return float(records[-1]["throughput/images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="hand4whole,bidrn,bnn")
    parser.add_argument("--before", default=BASELINE, help="git revision to compare against")
    parser.add_argument("--protocol", default="synth-cpu", help="the after side's training recipe")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (two log windows)")
    parser.add_argument("--samples", type=int, default=480, help="synthetic training images rendered")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    from bidrn.engine.protocols import get_protocol

    protocol = get_protocol(args.protocol)
    recipe = protocol.train
    work = args.work or Path(tempfile.mkdtemp(prefix="bidrn-train-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    before_tree = work / "before"
    if not before_tree.exists():
        run(["git", "worktree", "add", "--detach", str(before_tree), args.before], dict(os.environ), REPO)
    data = work / "data"
    if not (data / "manifest.json").exists():
        run([sys.executable, "-m", "bidrn.cli", "synth", "--out", str(data), "--num", str(args.samples),
             "--seed", "0", "--split", "train"], dict(os.environ), REPO)  # fmt: skip
    sizes = [item for size in SIZES for item in ("--set", size)]
    half = max(1, args.steps // 2)
    threads = max(1, (os.cpu_count() or 1) // protocol.processes)
    env_before = dict(os.environ, PYTHONPATH=str(before_tree / "src"))
    env_after = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS=str(threads))
    cache = work / "cache"
    load = os.getloadavg()
    results: dict[str, dict[str, list[float]]] = {}
    for model in args.models.split(","):
        common = ["--model", model, "--data", f"synth:{data}", "--epochs", "1", "--lr", "1e-3",
                  "--max-steps", str(args.steps), "--log-every", str(half), "--device", "cpu",
                  *sizes]  # fmt: skip
        # Bake once for this model size (timed apart from the steady rate).
        started = time.perf_counter()
        run([sys.executable, "-m", "bidrn.cli", "train", *common, "--output", str(work / "bake"),
             "--no-augmentation", "--cache", str(cache), "--max-steps", "1"], env_after, REPO)  # fmt: skip
        print(f"{model}: bake + one step {time.perf_counter() - started:.0f} s", flush=True)
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for repeat in range(args.repeats):
            out = work / f"{model}-before-{repeat}"
            run([sys.executable, "-m", "bidrn.cli", "train", *common, "--output", str(out),
                 "--batch-size", "24", "--workers", "0"], env_before, before_tree)  # fmt: skip
            rates["before"].append(steady_rate(out / "log.jsonl"))
            out = work / f"{model}-after-{repeat}"
            launcher = [sys.executable, "-m", "bidrn.cli"]
            if protocol.processes > 1:
                launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={protocol.processes}", "-m", "bidrn.cli"]  # fmt: skip
            options = ["--output", str(out), "--batch-size", str(recipe.batch_size), "--workers",
                       str(recipe.num_workers), "--no-augmentation", "--cache", str(cache)]  # fmt: skip
            run([*launcher, "train", *common, *options], env_after, REPO)
            rates["after"].append(steady_rate(out / "log.jsonl"))
            before, after = rates["before"][-1], rates["after"][-1]
            print(f"{model} run {repeat + 1}: before {before:.1f}  after {after:.1f} images/s", flush=True)
        results[model] = rates
    print(f"\nload average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"before = {args.before} (synth-tiny recipe); after = this checkout "
        f"({protocol.name}: batch {recipe.batch_size} x {protocol.processes} process(es))"
    )
    print(f"{'model':<12} {'before img/s':>13} {'after img/s':>12} {'ratio':>7}")
    for model, rates in results.items():
        before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
        print(f"{model:<12} {before:13.1f} {after:12.1f} {after / before:6.1f}x")


if __name__ == "__main__":
    main()
