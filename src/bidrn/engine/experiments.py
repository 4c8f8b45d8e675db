"""Reproduce a paper table: train and evaluate every row under one protocol, write the results.

:func:`run_table` trains each row's model (:data:`bidrn.engine.protocols.TABLES`) on the protocol's
training set, evaluates it on the test set with the Table 1 metrics, measures Params/OPs with the
paper's convention (:func:`bidrn.engine.complexity.count_complexity`, at the protocol's model size)
and writes

* ``<results>/<table>-<protocol>.json`` — a list with one object per row: ``method`` (registry
  name), ``label``, ``params_m``, ``ops_g``, the eight Table 1 columns in millimetres, and the
  provenance of the number (``command``, ``git_commit``, ``device``, ``train_wall_s``,
  ``eval_wall_s``, ``images_per_s``);
* ``<results>/<table>-<protocol>.md`` — the same as a markdown table under a header with the
  command, commit, device, protocol and total wall time, plus the ordering checks the issue asks
  for (full precision best; BiDRN ahead of every binarized baseline);
* ``<results>/<table>-<protocol>-bars.png`` — a Figure-2-style bar chart of MPVPE all/hand/face
  (needs the optional ``plots`` extra, matplotlib).

Each row trains in ``<work>/<table>-<protocol>/<model>/`` (with ``training.json``: wall time,
images/s and final loss of its training call); a finished row is not retrained and an interrupted
one resumes exactly, so rerunning the same command continues where it stopped. A resumed row's
``train_wall_s`` and ``images_per_s`` cover the call that finished it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

import bidrn
from bidrn.engine.checkpoint import checkpoint_stem, load_checkpoint
from bidrn.engine.complexity import count_complexity
from bidrn.engine.distributed import DistributedContext, barrier, init_distributed
from bidrn.engine.evaluation import evaluate
from bidrn.engine.figures import comparison_grid, error_bar_chart
from bidrn.engine.losses import HeatmapGeometry, WholeBodyLoss
from bidrn.engine.metrics import TABLE1_COLUMNS, mesh_topology
from bidrn.engine.protocols import FIGURE_TABLE, TABLES, Protocol, TableRow
from bidrn.engine.reproducibility import seed_everything
from bidrn.engine.resolution import fit_to_model
from bidrn.engine.trainer import Trainer
from bidrn.errors import BidrnError

ModelFactory = Callable[[TableRow, Protocol], nn.Module]
FULL_PRECISION = "hand4whole"
BIDRN = "bidrn"
BINARIZED_BASELINES = ("bnn", "xnor", "dorefa", "bireal", "reactnet", "recu", "fda")


def prepare_synthetic_data(
    protocol: Protocol, data_dir: str | Path, context: DistributedContext, workers: int | None = None
) -> tuple[Path, Path]:
    """Render the protocol's synthetic train and test splits once (rank 0) and return their folders.

    Folders that already hold a manifest are reused, so every row and every rerun sees the same data.
    """
    root = Path(data_dir) / f"synth-{protocol.train_samples}-{protocol.test_samples}-seed{protocol.data_seed}"
    folders = (root / "train", root / "test")
    if context.is_main:
        from bidrn.data.synthetic.generate import generate

        for folder, split, count in zip(
            folders, ("train", "test"), (protocol.train_samples, protocol.test_samples), strict=True
        ):
            if not (folder / "manifest.json").is_file():
                generate(folder, count, seed=protocol.data_seed, split=split, workers=workers)
    barrier(context)
    return folders


def git_commit(directory: str | Path = ".") -> str:
    """``git describe --always --dirty`` of ``directory``, or ``"unknown"`` outside a checkout."""
    try:
        completed = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return completed.stdout.strip() or "unknown"


def device_description(device: torch.device) -> str:
    """Human-readable description of the device the numbers were produced on."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    threads = torch.get_num_threads()
    return f"CPU {platform.processor() or platform.machine()}, {threads} thread(s), torch {torch.__version__}"


def measure_complexity(model: nn.Module) -> tuple[float, float]:
    """``(params_m, ops_g)`` of ``model`` at its own input size, without the SMPL-X layer."""
    body_model = getattr(model, "body_model", None)
    crop_height, crop_width = model.config.crop_input
    device = next(model.parameters()).device
    was_training = model.training
    model.attach_body_model(None)
    model.eval()
    try:
        with torch.no_grad():
            report = count_complexity(model, torch.rand(1, 3, crop_height, crop_width, device=device))
    finally:
        model.attach_body_model(body_model)
        model.train(was_training)
    return report.params_m, report.ops_g


def default_model_factory(body_model: nn.Module) -> ModelFactory:
    """Build each row's registered model at the protocol's size with ``body_model`` attached."""

    def build(row: TableRow, protocol: Protocol) -> nn.Module:
        return bidrn.create_model(row.model, body_model=body_model, **protocol.model_overrides)

    return build


def _finished(stem: Path, epochs: int) -> bool:
    info_path = stem.with_name(stem.name + ".json")
    if not info_path.is_file():
        return False
    return int(json.loads(info_path.read_text()).get("epoch", 0)) >= epochs


def train_and_evaluate_row(
    row: TableRow,
    protocol: Protocol,
    train_set: Dataset,
    test_set: Dataset,
    model_factory: ModelFactory,
    run_dir: Path,
    context: DistributedContext,
) -> dict[str, Any]:
    """Train (or resume, or reuse) one row's model and evaluate it; returns its result object."""
    seed_everything(protocol.train.seed)
    model = model_factory(row, protocol)
    params_m, ops_g = measure_complexity(model)
    trainer = Trainer(
        model,
        fit_to_model(train_set, model),
        WholeBodyLoss(geometry=HeatmapGeometry.of_model(model)),
        replace(protocol.train, progress_bar=context.is_main),
        run_dir,
        model_info={"model": row.model, "model_overrides": protocol.model_overrides},
        context=context,
    )
    stem = checkpoint_stem(trainer.checkpoint_dir / "last")
    training_record = run_dir / "training.json"
    if _finished(stem, protocol.train.epochs) and training_record.is_file():
        model.load_state_dict(load_checkpoint(stem, with_state=False).weights)
        training = json.loads(training_record.read_text())
    else:
        started = time.perf_counter()
        if stem.with_name(stem.name + ".json").is_file():
            trainer.resume(stem)
        result = trainer.fit()
        training = {
            "train_wall_s": round(time.perf_counter() - started, 1),
            "images_per_s": round(result.images_per_second, 2),
            "final_train_loss": round(result.last_losses["total"], 5) if result.last_losses else None,
        }
        if context.is_main:
            training_record.write_text(json.dumps(training) + "\n")

    started = time.perf_counter()
    evaluation = evaluate(
        model,
        fit_to_model(test_set, model),
        mesh_topology(model.body_model),
        batch_size=protocol.eval_batch_size,
        context=context,
        progress=context.is_main,
    )
    return {
        "method": row.model,
        "label": row.label,
        "params_m": round(params_m, 4),
        "ops_g": round(ops_g, 4),
        **{name: round(value, 3) for name, value in evaluation.metrics.items()},
        "test_samples": evaluation.count,
        "pa_mpjpe_body_joints": evaluation.body_joint_source,
        **training,
        "eval_wall_s": round(time.perf_counter() - started, 1),
    }


def ordering_checks(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-language statements of whether the paper's ordering holds in ``rows``."""
    by_method = {row["method"]: row for row in rows}
    lines = []
    if FULL_PRECISION in by_method:
        best = min(rows, key=lambda r: r["mpvpe_all"])
        holds = best["method"] == FULL_PRECISION
        lines.append(
            f"Full precision best on MPVPE-all: {'yes' if holds else 'no'} "
            f"(best: {best['label']}, {best['mpvpe_all']:.1f} mm)."
        )
    baselines = [by_method[m] for m in BINARIZED_BASELINES if m in by_method]
    if BIDRN in by_method and baselines:
        ours = by_method[BIDRN]["mpvpe_all"]
        beaten = [r["label"] for r in baselines if r["mpvpe_all"] <= ours]
        if beaten:
            lines.append(
                f"BiDRN's MPVPE-all ({ours:.1f} mm) is NOT lower than every binarized baseline: "
                f"{', '.join(beaten)} match or beat it."
            )
        else:
            lines.append(f"BiDRN's MPVPE-all ({ours:.1f} mm) is lower than every binarized baseline: yes.")
    return lines


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table with the paper's columns."""
    header = ["Method", "Params (M)", "OPs (G)", "MPVPE all", "hand", "face", "PA-MPVPE all", "hand", "face",
              "PA-MPJPE body", "hand"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["label"], f"{row['params_m']:.2f}", f"{row['ops_g']:.3f}"]
        cells += [f"{row[name]:.1f}" for name in TABLE1_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(
    rows: Sequence[dict[str, Any]],
    table: str,
    protocol: Protocol,
    results_dir: Path,
    provenance: dict[str, Any],
) -> tuple[Path, Path]:
    """Write the JSON list and the markdown page of a (possibly partial) table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"{table}-{protocol.name}"
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps([{**row, **provenance} for row in rows], indent=1) + "\n")
    body_joints = {row["pa_mpjpe_body_joints"] for row in rows}
    page = [
        f"# {table} — protocol `{protocol.name}`",
        "",
        f"- Command: `{provenance['command']}`",
        f"- Git commit: `{provenance['git_commit']}`",
        f"- Device: {provenance['device']}",
        f"- Protocol: {protocol.description}; {protocol.train_samples} training / "
        f"{protocol.test_samples} test samples (synthetic), {protocol.train.epochs} epochs, batch "
        f"{protocol.train.batch_size}, lr {protocol.train.lr:g}",
        f"- Wall time: {provenance['wall_s']:.0f} s for the rows below",
        f"- Errors in mm on the synthetic test split; Params/OPs measured at the protocol's size with the "
        f"paper's convention (binary /32 params, /64 OPs). PA-MPJPE body uses "
        f"{'the 25 body supervision joints' if body_joints == {'body25'} else 'the 14-joint regressor'}.",
        "",
        markdown_table(rows),
        "",
        *ordering_checks(rows),
        "",
    ]
    md_path = stem.with_suffix(".md")
    md_path.write_text("\n".join(page))
    return json_path, md_path


def write_bar_chart(
    rows: Sequence[dict[str, Any]], table: str, protocol: Protocol, results_dir: Path
) -> Path | None:
    """The Figure-2-style chart of a table, or ``None`` (with a notice) without matplotlib."""
    try:
        return error_bar_chart(
            rows, results_dir / f"{table}-{protocol.name}-bars.png", f"{table}, {protocol.name}"
        )
    except BidrnError as error:
        print(f"bidrn experiment: no bar chart ({error})", file=sys.stderr)
        return None


def run_table(
    table: str,
    protocol: Protocol,
    train_set: Dataset,
    test_set: Dataset,
    model_factory: ModelFactory,
    results_dir: str | Path = "results",
    work_dir: str | Path = "runs/experiments",
    command: str | None = None,
    rows: Sequence[TableRow] | None = None,
    context: DistributedContext | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every row of ``table`` under ``protocol`` and write the results.

    Results are rewritten after every row, so a partial table is never lost.

    Returns:
        The row objects (as written to the JSON file, without provenance).
    """
    context = context or init_distributed(protocol.device)
    results_dir, work_dir = Path(results_dir), Path(work_dir)
    provenance = {
        "command": command or "bidrn " + " ".join(sys.argv[1:]),
        "git_commit": git_commit(),
        "device": device_description(context.device)
        + (f" x {context.world_size} processes" if context.is_distributed else ""),
    }
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for row in rows if rows is not None else TABLES[table]:
        run_dir = work_dir / f"{table}-{protocol.name}" / row.model
        results.append(
            train_and_evaluate_row(row, protocol, train_set, test_set, model_factory, run_dir, context)
        )
        if context.is_main:
            write_results(
                results, table, protocol, results_dir, {**provenance, "wall_s": time.perf_counter() - started}
            )
    if context.is_main:
        write_bar_chart(results, table, protocol, results_dir)
    return results


def _crop_image(sample: dict[str, Any]) -> np.ndarray:
    return (sample["inputs"]["img"].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def render_figure7(
    protocol: Protocol,
    test_set: Dataset,
    model_factory: ModelFactory,
    results_dir: str | Path = "results",
    work_dir: str | Path = "runs/experiments",
    count: int = 6,
    device: torch.device | None = None,
) -> Path:
    """Figure 7: six test crops, then the mesh of every Table 1 model over each (trained models needed).

    Meshes are drawn with the networks' canonical virtual camera (focal 5000 px on the 256×192 body
    image, architecture.md §5) rescaled to the data's 512×384 crop.
    """
    from bidrn.body.render import render_overlay
    from bidrn.engine.checkpoint import load_weights_into

    device = device or torch.device("cpu")
    picks = sorted({int(i) for i in np.linspace(0, len(test_set) - 1, count).round()})
    images = [_crop_image(test_set[i]) for i in picks]
    height, width = images[0].shape[:2]
    focal = (5000.0 * width / 192, 5000.0 * height / 256)
    princpt = (width / 2, height / 2)
    grid = [[image] for image in images]
    labels = ["input"]
    for row in TABLES[FIGURE_TABLE]:
        stem = Path(work_dir) / f"{FIGURE_TABLE}-{protocol.name}" / row.model / "checkpoints" / "last"
        if not stem.with_name("last.safetensors").is_file():
            raise BidrnError(
                f"{stem}: no trained {row.model}; run `bidrn experiment {FIGURE_TABLE} "
                f"--protocol {protocol.name}` first"
            )
        model = model_factory(row, protocol)
        load_weights_into(model, load_checkpoint(stem, with_state=False), stem)
        model = model.to(device).eval()
        view = fit_to_model(test_set, model)
        crops = torch.stack([view[i]["inputs"]["img"] for i in picks]).to(device)
        meshes = model(crops).mesh_cam.cpu().numpy()
        faces = np.asarray(model.body_model.faces)
        for grid_row, image, mesh in zip(grid, images, meshes, strict=True):
            grid_row.append(render_overlay(image, mesh, faces, focal, princpt))
        labels.append(row.label)
    return comparison_grid(grid, labels, Path(results_dir) / f"figure7-{protocol.name}.png")
