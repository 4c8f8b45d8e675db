"""Where ``bidrn predict``'s resident memory goes, phase by phase (Linux).

Usage::

    python benchmarks/predict_memory.py photo.jpg --checkpoint model.bidrn.safetensors
    python benchmarks/predict_memory.py photo.jpg --checkpoint model.bidrn.safetensors --no-render

Runs ``bidrn predict`` in this process (any further options are passed on to it) while a thread
samples the resident set (``/proc/self/statm``) every 2 ms, and marks the start and end of each
phase: imports, loading the model and the body model, each inference, writing the mesh and
parameter files, and rendering. It prints, per phase, the resident memory when the phase began and
the peak until the next mark, then the process's peak (``ru_maxrss``, what ``/usr/bin/time -v``
reports). ``benchmarks/runtimes.py --rss`` measures the whole command against ONNX Runtime;
docs/deployment.md ("Memory") reads both.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_mb() -> float:
    """This process's resident set in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


class Timeline:
    """Resident memory sampled in the background, with named marks."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.start = time.perf_counter()
        self.samples: list[tuple[float, float]] = []
        self.marks: list[tuple[float, str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval_s,), daemon=True)
        self._thread.start()

    def _sample(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), resident_mb()))
            time.sleep(interval_s)

    def mark(self, label: str) -> None:
        """Note that ``label`` happens now."""
        self.marks.append((time.perf_counter(), label, resident_mb()))

    def wrap(self, owner: Any, name: str) -> None:
        """Mark every call of ``owner.name`` (a function or method) on entry and exit."""
        function: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(function)
        def marked(*args: Any, **kwargs: Any) -> Any:
            self.mark(f"> {name}")
            try:
                return function(*args, **kwargs)
            finally:
                self.mark(f"< {name}")

        setattr(owner, name, marked)

    def report(self) -> None:
        """Stop sampling and print each phase's starting and peak resident memory."""
        self.mark("end")
        self._stop.set()
        self._thread.join()
        print(f"{'s':>6}  {'mark':30s} {'MB at mark':>10} {'peak to next':>12}")
        for (begin, label, at_mark), (end, _, next_mark) in itertools.pairwise(self.marks):
            inside = [rss for when, rss in self.samples if begin <= when <= end]
            peak = max([at_mark, next_mark, *inside])
            print(f"{begin - self.start:6.2f}  {label:30s} {at_mark:10.1f} {peak:12.1f}")
        print(f"process peak (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="the photo (or folder, or video) to predict on")
    parser.add_argument("--checkpoint", default=None, help="the model file (default: the bundled model)")
    parser.add_argument("--out", default="runs/predict-memory", help="bidrn predict's output folder")
    args, predict_options = parser.parse_known_args()
    if not os.path.exists("/proc/self/statm"):
        raise SystemExit("predict_memory.py: needs Linux (/proc/self/statm)")

    timeline = Timeline()
    timeline.mark("start")
    import torch  # noqa: F401 (timed: the floor of any torch process)

    timeline.mark("torch imported")
    import bidrn.apps.predict as predict
    from bidrn.cli import main as bidrn_main

    timeline.mark("bidrn imported")
    for name in ("load_model", "load_body_model", "save_mesh", "render_overlay", "render_side_view"):
        timeline.wrap(predict, name)
    for name in ("run", "warm_up"):
        timeline.wrap(predict.Predictor, name)
    command = ["predict", args.image, "--out", args.out, "--device", "cpu", *predict_options]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    try:
        code = bidrn_main(command)
    except SystemExit as exit_:
        code = exit_.code
    if code:
        sys.exit(code)
    timeline.report()


if __name__ == "__main__":
    main()
