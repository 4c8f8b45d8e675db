"""Evaluate a whole-body model with the Table 1 metrics, in one process or under ``torchrun``.

For every sample the predicted mesh is ``output.mesh_cam`` (the model must have a body model
attached). The ground-truth mesh is, in order of preference: the sample's
``targets["smplx_mesh_cam"]``; ``dataset.gt_mesh(index)`` when the dataset has that method (EHF);
the body model applied to the sample's SMPL-X parameters (``smplx_pose``, ``smplx_shape``,
``smplx_expr``) — what Hand4Whole does for AGORA and what the synthetic data allow. All Table 1
metrics align first (translation or Procrustes), so the missing global translation of such a mesh
does not change any number.

Under ``torchrun`` every rank evaluates the indices ``rank, rank + world, ...`` (no padding, so no
sample counts twice) and rank 0 gathers the per-sample errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from bidrn.engine.distributed import DistributedContext, all_gather_objects, init_distributed
from bidrn.engine.losses import predicted_pose
from bidrn.engine.metrics import TABLE1_COLUMNS, MeshTopology, whole_body_errors
from bidrn.engine.trainer import default_collate_to
from bidrn.errors import BidrnError

GT_MESH_KEY = "smplx_mesh_cam"


@dataclass
class EvaluationResult:
    """Table 1 errors of one model on one dataset.

    Attributes:
        metrics: column name -> mean over samples, millimetres.
        per_sample: column name -> per-sample errors in dataset order (millimetres).
        count: number of samples evaluated.
        body_joint_source: ``"j14"`` or ``"body25"`` (see :func:`bidrn.engine.metrics.mesh_topology`).
        losses: mean of every loss term (and ``total``) over the samples, when a loss was given.
        predictions: with ``collect=True``, per sample in dataset order: ``mesh`` (N, V, 3) predicted
            and ``gt_mesh`` ground-truth vertices (m, float32), ``pose`` (N, 159), ``shape`` (N, 10)
            and ``expr`` (N, 10) predicted parameters.
    """

    metrics: dict[str, float]
    per_sample: dict[str, list[float]] = field(default_factory=dict)
    count: int = 0
    body_joint_source: str = "body25"
    losses: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)


def ground_truth_mesh(
    targets: Mapping[str, torch.Tensor], meta_info: Mapping[str, torch.Tensor], body_model: nn.Module
) -> torch.Tensor:
    """The batch's ground-truth vertices (B, V, 3): given meshes, else SMPL-X of the GT parameters.

    Raises:
        BidrnError: when a sample has neither a mesh nor fully valid SMPL-X parameters.
    """
    if GT_MESH_KEY in targets:
        return targets[GT_MESH_KEY]
    if "smplx_pose" not in targets:
        raise BidrnError(
            "dataset gives neither ground-truth meshes nor SMPL-X parameters to evaluate against"
        )
    pose_valid = meta_info.get("smplx_pose_valid")
    shape_valid = meta_info.get("smplx_shape_valid")
    if (pose_valid is not None and not bool(torch.all(pose_valid > 0))) or (
        shape_valid is not None and not bool(torch.all(shape_valid > 0))
    ):
        raise BidrnError(
            "evaluation needs complete SMPL-X ground truth; some samples have invalid parameters"
        )
    pose = targets["smplx_pose"].float()
    output = body_model(
        global_orient=pose[:, 0:3],
        body_pose=pose[:, 3:66],
        left_hand_pose=pose[:, 66:111],
        right_hand_pose=pose[:, 111:156],
        jaw_pose=pose[:, 156:159],
        betas=targets["smplx_shape"].float(),
        expression=targets["smplx_expr"].float(),
    )
    return output.vertices


class WithGroundTruthMesh(Dataset):
    """Adds ``targets["smplx_mesh_cam"] = dataset.gt_mesh(index)`` to every sample of ``dataset``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        mesh = torch.as_tensor(np.asarray(self.dataset.gt_mesh(index)), dtype=torch.float32)
        return {**sample, "targets": {**sample.get("targets", {}), GT_MESH_KEY: mesh}}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    topology: MeshTopology,
    batch_size: int = 64,
    num_workers: int = 0,
    context: DistributedContext | None = None,
    progress: bool = True,
    loss_fn: Callable[[Any, Mapping[str, Any], Mapping[str, Any]], dict[str, torch.Tensor]] | None = None,
    collect: bool = False,
) -> EvaluationResult:
    """Run ``model`` over ``dataset`` and compute every Table 1 column.

    Args:
        model: a whole-body model with a body model attached (``output.mesh_cam`` is read).
        dataset: sample dicts with ``inputs.img`` and either ``targets.smplx_mesh_cam`` or SMPL-X targets.
        topology: the body model's :class:`MeshTopology`.
        batch_size: samples per forward pass and process.
        num_workers: DataLoader workers.
        context: distributed context (default: :func:`init_distributed`).
        progress: show a progress bar on rank 0.
        loss_fn: also average this training loss over the samples (held-out loss for learning curves).
        collect: also return every predicted and ground-truth mesh and the predicted parameters.

    Returns:
        The result on every rank (gathered from all ranks).
    """
    context = context or init_distributed()
    model = model.to(context.device).eval()
    body_model = getattr(model, "body_model", None)
    if body_model is None:
        raise BidrnError("the model has no body model attached; evaluation needs its meshes")
    if hasattr(dataset, "gt_mesh"):
        dataset = WithGroundTruthMesh(dataset)
    indices = list(range(context.rank, len(dataset), context.world_size))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, num_workers=num_workers)
    errors: dict[str, list[float]] = {name: [] for name in TABLE1_COLUMNS}
    loss_sums: dict[str, float] = {}
    collected: dict[str, list[torch.Tensor]] = {}
    for batch in tqdm(loader, disable=not (progress and context.is_main), unit="batch", desc="evaluate"):
        batch = default_collate_to(batch, context.device)
        output = model(batch["inputs"]["img"])
        if output.mesh_cam is None:
            raise BidrnError("the model returned no mesh; attach a body model before evaluating")
        gt = ground_truth_mesh(batch["targets"], batch["meta_info"], body_model)
        for name, values in whole_body_errors(output.mesh_cam.float(), gt.float(), topology).items():
            errors[name].extend(values.cpu().tolist())
        if collect:
            parts = {"mesh": output.mesh_cam, "gt_mesh": gt, "pose": predicted_pose(output),
                     "shape": output.shape, "expr": output.expr}  # fmt: skip
            for name, value in parts.items():
                collected.setdefault(name, []).append(value.detach().float().cpu())
        if loss_fn is not None:
            terms = loss_fn(output, batch["targets"], batch["meta_info"])
            terms["total"] = sum(terms.values())
            size = batch["inputs"]["img"].shape[0]
            for name, value in terms.items():
                loss_sums[name] = loss_sums.get(name, 0.0) + float(value) * size
    local = {name: torch.cat(values) for name, values in collected.items()}
    gathered = all_gather_objects((indices, errors, loss_sums, local), context)
    order = np.argsort(
        np.concatenate([np.asarray(rank_indices, dtype=np.int64) for rank_indices, *_ in gathered])
    )
    per_sample = {
        name: np.concatenate(
            [np.asarray(rank_errors[name], dtype=np.float64) for _, rank_errors, *_ in gathered]
        )[order].tolist()
        for name in TABLE1_COLUMNS
    }
    count = len(per_sample[TABLE1_COLUMNS[0]])
    if count == 0:
        raise BidrnError("the evaluation dataset is empty")
    metrics = {name: float(np.mean(values)) for name, values in per_sample.items()}
    losses = {name: sum(sums.get(name, 0.0) for _, _, sums, _ in gathered) / count for name in loss_sums}
    predictions = {
        name: torch.cat([parts[name] for *_, parts in gathered])[torch.as_tensor(order)] for name in local
    }
    return EvaluationResult(
        metrics=metrics,
        per_sample=per_sample,
        count=count,
        body_joint_source=topology.body_joint_source,
        losses=losses,
        predictions=predictions,
    )


def result_document(result: EvaluationResult, **fields_: Any) -> dict[str, Any]:
    """JSON-ready summary of a result (means, count, joint source) plus any extra ``fields_``."""
    return {
        **fields_,
        **result.metrics,
        "count": result.count,
        "pa_mpjpe_body_joints": result.body_joint_source,
    }


def learning_curve_probe(
    datasets: Mapping[str, Dataset],
    topology: MeshTopology,
    loss_fn: Callable[[Any, Mapping[str, Any], Mapping[str, Any]], dict[str, torch.Tensor]],
    batch_size: int = 64,
    context: DistributedContext | None = None,
) -> Callable[[nn.Module], dict[str, float]]:
    """A trainer ``validate`` callback: Table 1 errors and mean loss terms on each named dataset.

    The scalars are named ``<name>/<column>`` and ``<name>/loss/<term>``, e.g. ``held_out/mpvpe_all``
    and ``train/loss/total`` when ``datasets`` is ``{"held_out": test_set, "train": train_subset}``.
    """

    def probe(model: nn.Module) -> dict[str, float]:
        scalars: dict[str, float] = {}
        for name, dataset in datasets.items():
            result = evaluate(
                model, dataset, topology, batch_size, context=context, progress=False, loss_fn=loss_fn
            )
            scalars.update({f"{name}/{column}": value for column, value in result.metrics.items()})
            scalars.update({f"{name}/loss/{term}": value for term, value in result.losses.items()})
        return scalars

    return probe
