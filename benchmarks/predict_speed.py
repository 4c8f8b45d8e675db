"""`bidrn predict` on a folder of images: frozen 1-bit vs simulated model on this CPU, side by side.

Usage::

    python benchmarks/predict_speed.py                       # 50 images, the bundled weights' size
    python benchmarks/predict_speed.py --checkpoint runs/bidrn/checkpoints/last
    python benchmarks/predict_speed.py --size paper --images 12

Both contenders are the same training checkpoint run through the real command (one fresh process
each, alternated ``--repeats`` times): ``--frozen`` packs the binary layers on load and runs the
XOR-popcount kernels, ``--simulated`` runs the binary layers as ±1 floats in torch. Without
``--checkpoint`` an untrained model of the requested size is saved first (speed does not depend
on the weights' values). Pictures are not rendered (``--no-render``) unless ``--render`` is given,
so the figures are about the model. The script prints the command's own reports and a table of
the medians: crops/s through the model, images/s overall, and the frozen/simulated ratio
(target: >= 2x on CPU).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bidrn.engine.protocols import PROTOCOLS

SIZES = {"cpu": dict(PROTOCOLS["synth-cpu"].model_overrides), "paper": {}}
"""Model sizes: ``cpu`` is the synth-cpu protocol's (the bundled weights' size), ``paper`` the paper's."""
REPORT = re.compile(r"([0-9.]+) images/s overall, ([0-9.]+) crops/s through the model")


def make_images(folder: Path, count: int) -> None:
    """``count`` 320x256 crops of the packaged photograph, shifted and mirrored so no two are equal."""
    from bidrn.apps.predict import samples_path

    photo = np.asarray(Image.open(samples_path() / "astronaut.jpg").convert("RGB"))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        top, left = (index * 7) % 190, (index * 13) % 250
        crop = photo[top : top + 320, left : left + 256]
        Image.fromarray(crop[:, ::-1] if index % 2 else crop).save(folder / f"{index:03d}.png")


def make_checkpoint(stem: Path, size: str) -> Path:
    """An untrained BiDRN of ``size`` saved as a training checkpoint."""
    import torch

    import bidrn
    from bidrn.engine.checkpoint import save_checkpoint

    torch.manual_seed(0)
    overrides = SIZES[size]
    model = bidrn.create_model("bidrn", **overrides)
    save_checkpoint(stem, model, {"model": "bidrn", "model_overrides": overrides})
    return stem


def run_predict(
    folder: Path, out: Path, checkpoint: Path, mode: str, batch: int, render: bool
) -> tuple[float, float]:
    """One ``bidrn predict`` process; returns (images/s overall, crops/s through the model)."""
    command = [sys.executable, "-m", "bidrn.cli", "predict", str(folder), "--out", str(out)]
    command += ["--checkpoint", str(checkpoint), f"--{mode}", "--batch-size", str(batch), "--device", "cpu"]
    if not render:
        command.append("--no-render")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"bidrn predict failed:\n{result.stderr}")
    print(f"  [{mode}] {result.stdout.splitlines()[0]}")
    match = REPORT.search(result.stdout)
    if match is None:
        sys.exit(f"unexpected output: {result.stdout}")
    return float(match.group(1)), float(match.group(2))


def main() -> None:
    """Parse options, prepare images and checkpoint, run both modes alternately, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="training checkpoint (default: untrained)"
    )
    parser.add_argument("--render", action="store_true", help="also render overlays and side views")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        make_images(root / "images", args.images)
        checkpoint = args.checkpoint or make_checkpoint(root / "model" / "last", args.size)
        figures: dict[str, list[tuple[float, float]]] = {"frozen": [], "simulated": []}
        for repeat in range(args.repeats):
            for mode in figures:
                figures[mode].append(
                    run_predict(
                        root / "images",
                        root / f"out-{mode}-{repeat}",
                        checkpoint,
                        mode,
                        args.batch_size,
                        args.render,
                    )
                )
    median = {
        mode: tuple(statistics.median(v[i] for v in runs) for i in range(2)) for mode, runs in figures.items()
    }
    print(
        f"\n{args.images} images, batch {args.batch_size}, {args.size} model, CPU, median of {args.repeats}"
    )
    print(f"{'mode':<10s} {'crops/s (model)':>16s} {'images/s (overall)':>19s}")
    for mode, (overall, model) in median.items():
        print(f"{mode:<10s} {model:16.2f} {overall:19.2f}")
    print(
        f"frozen / simulated: {median['frozen'][1] / median['simulated'][1]:.2f}x model, "
        f"{median['frozen'][0] / median['simulated'][0]:.2f}x overall (target >= 2x)"
    )


if __name__ == "__main__":
    main()
