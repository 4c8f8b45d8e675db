"""Reproduce a paper table: train and evaluate every row under one protocol, write the results.

:class:`ExperimentRunner` owns one protocol's data and runs; :func:`run_table` uses it for a table
(:data:`bidrn.engine.protocols.TABLES`):

1. the protocol's synthetic data are rendered once (:func:`prepare_synthetic_data`) and, without
   augmentation, baked once at the model's resolution;
2. with a two-step protocol, one full-precision Hand4Whole is trained per seed (the *teacher*, shared by
   every table of the protocol; it is also Table 1's first row);
3. every row trains once per seed (:meth:`Protocol.seeds_of`), binarized rows starting from the teacher
   of their seed and, for ``distill`` rows, also learning from its outputs;
4. each run is evaluated on the test split with the Table 1 metrics next to the constants it must beat
   (:mod:`bidrn.engine.baselines`): the mean training pose, the mean training mesh and its own mean
   output, with the spread of its predictions and the back views it gets right;
5. rows are reported as mean ± standard deviation over their seeds.

Every run lives in ``<work>/<protocol>/<row key>/seed<s>/`` with its checkpoint and a ``result.json``
written after evaluation: a rerun of the same command skips finished runs and resumes an interrupted
one exactly. Outputs in ``<results>/<table>-<protocol>``: ``.json`` (the row objects and the constant
rows, with provenance: command, commit, device, wall time), ``.md`` (the table, its provenance and
plain statements of what holds) and ``-bars.png`` (needs the ``plots`` extra).
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import bidrn
from bidrn.engine.baselines import (
    MEAN_MESH,
    MEAN_OUTPUT,
    MEAN_POSE,
    ConstantParameters,
    compare_with_constants,
    constant_errors,
    dataset_parameters,
    mean_mesh,
    mean_parameters,
    parameter_meshes,
)
from bidrn.engine.checkpoint import load_checkpoint, load_weights_into
from bidrn.engine.complexity import count_complexity
from bidrn.engine.datasets import open_dataset, training_samples
from bidrn.engine.distillation import Distillation
from bidrn.engine.distributed import DistributedContext, barrier
from bidrn.engine.evaluation import evaluate, ground_truth_mesh
from bidrn.engine.figures import comparison_grid, error_bar_chart
from bidrn.engine.losses import HeatmapGeometry, WholeBodyLoss
from bidrn.engine.metrics import TABLE1_COLUMNS, MeshTopology, mesh_topology
from bidrn.engine.protocols import FIGURE_TABLE, FULL_PRECISION, TABLES, Protocol, TableRow
from bidrn.engine.reproducibility import seed_everything
from bidrn.engine.resolution import fit_to_model
from bidrn.engine.trainer import Trainer
from bidrn.errors import BidrnError

BIDRN = "bidrn"
BINARIZED_BASELINES = ("bnn", "xnor", "dorefa", "bireal", "reactnet", "recu", "fda")
_RESULT = "result.json"


def prepare_synthetic_data(
    protocol: Protocol, data_dir: str | Path, context: DistributedContext, workers: int | None = None
) -> tuple[Path, Path]:
    """Render the protocol's synthetic train and test splits once (rank 0) and return their folders.

    Folders that already hold a manifest are reused, so every row and every rerun sees the same data;
    the folder name carries the generator's version, so a changed generator renders afresh.
    """
    from bidrn.data.synthetic.generate import GENERATOR_VERSION, generate

    counts = f"{protocol.train_samples}-{protocol.test_samples}"
    root = Path(data_dir) / f"synth-v{GENERATOR_VERSION}-{counts}-seed{protocol.data_seed}"
    folders = (root / "train", root / "test")
    if context.is_main:
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


@dataclass
class ExperimentData:
    """What every run of a protocol shares.

    Attributes:
        train_set: training samples at the protocol's model size (baked without augmentation).
        test_set: test samples at that size.
        topology: the metrics' mesh topology.
        mean_pose: the "mean training pose" constant.
        training_mesh: the "mean training mesh" constant (V, 3).
    """

    train_set: Dataset
    test_set: Dataset
    topology: MeshTopology
    mean_pose: ConstantParameters
    training_mesh: torch.Tensor


class ExperimentRunner:
    """Trains and evaluates the runs of one protocol (see the module docstring).

    Args:
        protocol: the protocol.
        train_dir, test_dir: synthetic data folders (:func:`prepare_synthetic_data`).
        work_dir: where runs live.
        body_model: the SMPL-X layer.
        context: distributed context.
        cache_dir: where baked samples go (default: ``work_dir/<protocol>/data-cache``).
    """

    def __init__(
        self,
        protocol: Protocol,
        train_dir: Path,
        test_dir: Path,
        work_dir: str | Path,
        body_model: nn.Module,
        context: DistributedContext,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.protocol = protocol
        self.work_dir = Path(work_dir) / protocol.name
        self.body_model = body_model
        self.context = context
        reference = self.build(FULL_PRECISION)
        spec = f"synth:{train_dir}"
        train_set = training_samples(
            spec, reference, body_model, augment=protocol.augment, seed=protocol.train.seed,
            cache_dir=Path(cache_dir or self.work_dir / "data-cache"), context=context,
        )  # fmt: skip
        test_set = fit_to_model(
            open_dataset(f"synth:{test_dir}", train=False, body_model=body_model), reference
        )
        topology = mesh_topology(body_model)
        poses, shapes, expressions = dataset_parameters(train_set)
        self.data = ExperimentData(
            train_set=train_set,
            test_set=test_set,
            topology=topology,
            mean_pose=mean_parameters(poses, shapes, expressions),
            training_mesh=mean_mesh(parameter_meshes(body_model, poses, shapes, expressions), topology),
        )
        self.loss = WholeBodyLoss(geometry=HeatmapGeometry.of_model(reference))

    def build(self, model: str) -> nn.Module:
        """A fresh registered ``model`` at the protocol's size, body model attached."""
        return bidrn.create_model(model, body_model=self.body_model, **self.protocol.model_overrides)

    def run_dir(self, row: TableRow, seed: int) -> Path:
        """Folder of one run."""
        return self.work_dir / row.key / f"seed{seed}"

    def _trained(self, row: TableRow, seed: int) -> tuple[nn.Module, dict[str, Any]]:
        """Train (or resume) one run and return its model and training record."""
        run_dir = self.run_dir(row, seed)
        last = run_dir / "checkpoints" / "last.safetensors"
        teacher_row = TableRow("teacher", FULL_PRECISION)
        is_teacher = row.model == FULL_PRECISION and not row.distill
        recipe = (
            self.protocol.teacher_train if is_teacher and self.protocol.teacher_train else self.protocol.train
        )
        seed_everything(seed)
        model = self.build(row.model)
        extra = None
        teacher_path = None
        if not is_teacher and self.protocol.teacher_train is not None:
            teacher_path = self.run_dir(teacher_row, seed) / "checkpoints" / "last"
            if not (self.run_dir(teacher_row, seed) / _RESULT).is_file():
                self.result(teacher_row, seed)  # train the teacher of this seed first
        if row.distill:
            if teacher_path is None:
                raise BidrnError(
                    f"row {row.label!r} distils, but protocol {self.protocol.name} has no teacher"
                )
            teacher = self.build(FULL_PRECISION)
            load_weights_into(teacher, load_checkpoint(teacher_path, with_state=False), teacher_path)
            extra = Distillation(teacher.to(self.context.device))
        trainer = Trainer(
            model,
            self.data.train_set,
            self.loss,
            replace(recipe, seed=seed, progress_bar=self.context.is_main),
            run_dir,
            model_info={
                "model": row.model,
                "model_overrides": self.protocol.model_overrides,
                "training_statistics": self.data.mean_pose.as_dict(),
            },
            context=self.context,
            extra_terms=extra,
        )
        started = time.perf_counter()
        if last.is_file():
            trainer.resume(last)
        elif teacher_path is not None:
            trainer.initialize_from(teacher_path)
        result = trainer.fit()
        record = {
            "train_wall_s": round(time.perf_counter() - started, 1),
            "images_per_s": round(result.images_per_second, 2),
            "train_steps": result.global_step,
            "final_train_loss": round(result.last_losses["total"], 5) if result.last_losses else None,
            "initialised_from": str(teacher_path) if teacher_path else None,
        }
        return model, record

    def result(self, row: TableRow, seed: int) -> dict[str, Any]:
        """One run's result (trained and evaluated now, or read back from its ``result.json``)."""
        path = self.run_dir(row, seed) / _RESULT
        if path.is_file():
            return json.loads(path.read_text())
        model, record = self._trained(row, seed)
        params_m, ops_g = measure_complexity(model)
        started = time.perf_counter()
        evaluation = evaluate(
            model,
            self.data.test_set,
            self.data.topology,
            batch_size=self.protocol.eval_batch_size,
            context=self.context,
            progress=self.context.is_main,
            collect=True,
        )
        report = compare_with_constants(
            evaluation.per_sample,
            evaluation.predictions,
            self.body_model,
            self.data.topology,
            self.data.mean_pose,
            self.data.training_mesh,
        )
        outcome = {
            "method": row.model,
            "label": row.label,
            "distill": row.distill,
            "seed": seed,
            "params_m": round(params_m, 4),
            "ops_g": round(ops_g, 4),
            **{name: round(value, 3) for name, value in evaluation.metrics.items()},
            "test_samples": evaluation.count,
            "pa_mpjpe_body_joints": evaluation.body_joint_source,
            **report.as_dict(),
            **record,
            "eval_wall_s": round(time.perf_counter() - started, 1),
        }
        if self.context.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(outcome, indent=1) + "\n")
        barrier(self.context)
        return outcome

    def constant_rows(self) -> list[dict[str, Any]]:
        """The constant predictions as table rows (errors on the test split)."""
        truth = []
        for batch in DataLoader(self.data.test_set, batch_size=self.protocol.eval_batch_size):
            truth.append(ground_truth_mesh(batch["targets"], batch["meta_info"], self.body_model))
        gt = torch.cat(truth).double()
        pose = self.data.mean_pose
        constants = {
            MEAN_POSE: parameter_meshes(
                self.body_model, pose.pose[None], pose.shape[None], pose.expression[None]
            )[0],
            MEAN_MESH: self.data.training_mesh,
        }
        rows = []
        for label, mesh in constants.items():
            errors = constant_errors(mesh.double(), gt, self.data.topology)
            rows.append({"label": label, **{name: float(values.mean()) for name, values in errors.items()}})
        return rows


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the runs of its seeds: mean and standard deviation of every number."""
    first = runs[0]
    row: dict[str, Any] = {
        key: first[key]
        for key in ("method", "label", "distill", "params_m", "ops_g", "test_samples", "pa_mpjpe_body_joints")
    }
    row["seeds"] = [run["seed"] for run in runs]
    for name in TABLE1_COLUMNS:
        values = [run[name] for run in runs]
        row[name] = float(np.mean(values))
        row[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        row[f"{name}_per_seed"] = values
    row["mean_output_mpvpe_all"] = float(
        np.mean([run["baselines"][MEAN_OUTPUT]["mpvpe_all"] for run in runs])
    )
    row["spread_ratio"] = float(
        np.mean(
            [run["spread_mm"]["prediction"] / max(run["spread_mm"]["ground_truth"], 1e-9) for run in runs]
        )
    )
    row["back_views"] = [
        [run["facing_away"]["predicted_too"], run["facing_away"]["ground_truth"]] for run in runs
    ]
    row["train_wall_s"] = float(sum(run["train_wall_s"] for run in runs))
    row["images_per_s"] = float(statistics.median(run["images_per_s"] for run in runs))
    return row


def _cell(row: dict[str, Any], name: str) -> str:
    std = row.get(f"{name}_std")
    return f"{row[name]:.1f}" if std is None else f"{row[name]:.1f} ± {std:.1f}"


def markdown_table(rows: Sequence[dict[str, Any]], constants: Sequence[dict[str, Any]] = ()) -> str:
    """The rows as a markdown table with the paper's columns, constants last."""
    header = ["Method", "seeds", "Params (M)", "OPs (G)", "MPVPE all", "hand", "face", "PA-MPVPE all", "hand",
              "face", "PA-MPJPE body", "hand", "own mean output", "spread ratio"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["label"],
            str(len(row.get("seeds", [0]))),
            f"{row['params_m']:.2f}",
            f"{row['ops_g']:.3f}",
        ]
        cells += [_cell(row, name) for name in TABLE1_COLUMNS]
        cells += [f"{row['mean_output_mpvpe_all']:.1f}", f"{row['spread_ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for constant in constants:
        cells = [
            constant["label"],
            "–",
            "–",
            "–",
            *(f"{constant[name]:.1f}" for name in TABLE1_COLUMNS),
            "–",
            "0",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ordering_checks(rows: Sequence[dict[str, Any]], constants: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Plain-language statements of what holds in ``rows`` (mean ± std over seeds)."""
    by_method = {row["method"]: row for row in rows if not row.get("distill")}
    lines = []
    if constants:
        best = min(constants, key=lambda c: c["mpvpe_all"])
        learned = [row["label"] for row in rows if row["mpvpe_all"] < best["mpvpe_all"]]
        lines.append(
            f"Rows below the best constant ({best['label']}, MPVPE-all {best['mpvpe_all']:.1f} mm): "
            f"{len(learned)} of {len(rows)}."
        )
    if FULL_PRECISION in by_method:
        best_row = min(rows, key=lambda r: r["mpvpe_all"])
        holds = best_row["method"] == FULL_PRECISION and not best_row.get("distill")
        lines.append(
            f"Full precision best on MPVPE-all: {'yes' if holds else 'no'} "
            f"(best: {best_row['label']}, {best_row['mpvpe_all']:.1f} mm)."
        )
    baselines = [by_method[m] for m in BINARIZED_BASELINES if m in by_method]
    if BIDRN in by_method and baselines:
        ours = by_method[BIDRN]
        for other in baselines:
            margin = other["mpvpe_all"] - ours["mpvpe_all"]
            spread = max(value or 0.0 for value in (ours["mpvpe_all_std"], other["mpvpe_all_std"]))
            if margin > spread:
                verdict = f"beats it by {margin:.1f} mm, more than the seed spread ({spread:.1f} mm)"
            elif margin > 0:
                verdict = f"is ahead by {margin:.1f} mm, within the seed spread ({spread:.1f} mm)"
            else:
                verdict = f"is behind by {-margin:.1f} mm (seed spread {spread:.1f} mm)"
            lines.append(f"BiDRN vs {other['label']} (MPVPE-all): {verdict}.")
    return lines


def write_results(
    rows: Sequence[dict[str, Any]],
    table: str,
    protocol: Protocol,
    results_dir: Path,
    provenance: dict[str, Any],
    constants: Sequence[dict[str, Any]] = (),
) -> tuple[Path, Path]:
    """Write the JSON list and the markdown page of a (possibly partial) table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"{table}-{protocol.name}"
    json_path = stem.with_suffix(".json")
    document = {"provenance": provenance, "rows": list(rows), "constants": list(constants)}
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    body_joints = {row["pa_mpjpe_body_joints"] for row in rows}
    recipe = protocol.train
    teacher = protocol.teacher_train
    two_step = (
        f"two-step: full-precision Hand4Whole {teacher.epochs} epochs (lr {teacher.lr:g}), then each "
        f"binarized row starts from it for {recipe.epochs} epoch(s) (lr {recipe.lr:g})"
        if teacher
        else f"{recipe.epochs} epochs, lr {recipe.lr:g}"
    )
    page = [
        f"# {table} — protocol `{protocol.name}`",
        "",
        f"- Command: `{provenance['command']}`",
        f"- Git commit: `{provenance['git_commit']}`",
        f"- Device: {provenance['device']}",
        f"- Protocol: {protocol.description}; {protocol.train_samples} training / "
        f"{protocol.test_samples} test samples (synthetic), batch {recipe.batch_size}, {two_step}; "
        f"seeds {list(protocol.seeds)} for {', '.join(protocol.seeded_rows)}, seed {protocol.seeds[0]} "
        "for the other rows",
        f"- Wall time: {provenance['wall_s']:.0f} s for the runs below (reused runs cost nothing)",
        "- Errors in mm on the synthetic test split, mean ± std over seeds; Params/OPs measured at the "
        "protocol's size with the paper's convention (binary /32 params, /64 OPs). PA-MPJPE body uses "
        f"{'the 25 body supervision joints' if body_joints == {'body25'} else 'the 14-joint regressor'}. "
        "'own mean output': MPVPE-all of the row's average prediction given for every image; 'spread "
        "ratio': how much its meshes vary, relative to the ground truth's.",
        "",
        markdown_table(rows, constants),
        "",
        *ordering_checks(rows, constants),
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
    runner: ExperimentRunner,
    results_dir: str | Path = "results",
    command: str | None = None,
    rows: Sequence[TableRow] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every row of ``table`` over its seeds and write the results.

    Results are rewritten after every row, so a partial table is never lost.

    Returns:
        The aggregated row objects (as written to the JSON file).
    """
    protocol, context = runner.protocol, runner.context
    results_dir = Path(results_dir)
    provenance = {
        "command": command or "bidrn " + " ".join(sys.argv[1:]),
        "git_commit": git_commit(),
        "device": device_description(context.device)
        + (f" x {context.world_size} processes" if context.is_distributed else ""),
    }
    started = time.perf_counter()
    constants = runner.constant_rows()
    results: list[dict[str, Any]] = []
    for row in rows if rows is not None else TABLES[table]:
        runs = [runner.result(row, seed) for seed in protocol.seeds_of(row.model)]
        results.append(aggregate(runs))
        if context.is_main:
            stamp = {**provenance, "wall_s": time.perf_counter() - started}
            write_results(results, table, protocol, results_dir, stamp, constants)
    if context.is_main:
        write_bar_chart(results, table, protocol, results_dir)
    return results


@torch.no_grad()
def render_figure7(
    runner: ExperimentRunner,
    results_dir: str | Path = "results",
    count: int = 6,
) -> Path:
    """Figure 7: six test crops, then the mesh of every Table 1 model over each (trained runs needed).

    Meshes are drawn with the networks' canonical virtual camera (focal 5000 px on the 256×192 body
    image, docs/design/pipeline.md §5) rescaled to the crop.
    """
    from bidrn.body.render import render_overlay

    test_set = runner.data.test_set
    device = runner.context.device
    picks = sorted({int(i) for i in np.linspace(0, len(test_set) - 1, count).round()})
    crops = torch.stack([test_set[i]["inputs"]["img"] for i in picks])
    images = [(crop.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8) for crop in crops]
    height, width = images[0].shape[:2]
    focal = (5000.0 * width / 192, 5000.0 * height / 256)
    princpt = (width / 2, height / 2)
    grid = [[image] for image in images]
    labels = ["input"]
    seed = runner.protocol.seeds[0]
    for row in TABLES[FIGURE_TABLE]:
        stem = runner.run_dir(row, seed) / "checkpoints" / "last"
        if not stem.with_name("last.safetensors").is_file():
            raise BidrnError(
                f"{stem}: no trained {row.model}; run `bidrn experiment {FIGURE_TABLE} "
                f"--protocol {runner.protocol.name}` first"
            )
        model = runner.build(row.model)
        load_weights_into(model, load_checkpoint(stem, with_state=False), stem)
        meshes = model.to(device).eval()(crops.to(device)).mesh_cam.cpu().numpy()
        faces = np.asarray(model.body_model.faces)
        for grid_row, image, mesh in zip(grid, images, meshes, strict=True):
            grid_row.append(render_overlay(image, mesh, faces, focal, princpt))
        labels.append(row.label)
    return comparison_grid(grid, labels, Path(results_dir) / f"figure7-{runner.protocol.name}.png")
