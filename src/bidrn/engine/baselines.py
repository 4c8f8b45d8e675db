"""What a model must beat: constant predictions, and statistics that tell learning from guessing.

A whole-body model that has not learned the task still scores a plausible-looking MPVPE, because the
metric aligns only the translation and most people stand upright. Every accuracy table therefore
carries constant predictions evaluated with the same metric:

* **constant: mean training pose** — one SMPL-X parameter set for every image: the chordal mean of each
  training rotation (root included) and the mean shape and expression (:func:`mean_parameters`);
* **constant: mean training mesh** — the mean of the pelvis-centred training meshes (the best
  constant under translation-aligned MPVPE, :func:`mean_mesh`);
* **model's mean output** — the model's own predictions averaged over the test set, which shows how
  much of its score comes from input-dependent answers.

:func:`paired_interval` gives the 95 % confidence interval of a model's per-sample gain over a
constant; :func:`spread` measures how much a set of meshes varies (a model that regresses to the mean
predicts bodies that vary much less than the real ones); :func:`facing_away` says which bodies turn
their back to the camera.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from bidrn.body.rotations import axis_angle_to_matrix
from bidrn.data.baked import BakedSamples
from bidrn.engine.metrics import TABLE1_COLUMNS, MeshTopology, whole_body_errors
from bidrn.nets.geometry import rotmat_to_axis_angle

BODY_COLUMNS = ("mpvpe_all", "pa_mpvpe_all", "pa_mpjpe_body")
"""The columns that describe the body (the hands and face have their own)."""

_BATCH = 256
_LEFT_HIP, _RIGHT_HIP = 1, 2
"""Rows of the SMPL-X joint regressor."""
_TARGET_KEYS = ("smplx_pose", "smplx_shape", "smplx_expr")


@dataclass(frozen=True)
class ConstantParameters:
    """One SMPL-X parameter set predicted for every image.

    Attributes:
        pose: ``(159,)`` axis-angle root | body 21 | left hand 15 | right hand 15 | jaw (hand poses
            relative to the mean hand, like the network's outputs).
        shape: ``(10,)`` β.
        expression: ``(10,)`` ψ.
    """

    pose: np.ndarray
    shape: np.ndarray
    expression: np.ndarray

    def as_dict(self) -> dict[str, list[float]]:
        """JSON-ready lists (stored in checkpoints as ``training_statistics``)."""
        return {
            "pose": self.pose.tolist(),
            "shape": self.shape.tolist(),
            "expression": self.expression.tolist(),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, list[float]]) -> ConstantParameters:
        """Inverse of :meth:`as_dict`."""
        return cls(*(np.asarray(values[key], dtype=np.float64) for key in ("pose", "shape", "expression")))


def mean_rotation(axis_angles: np.ndarray) -> np.ndarray:
    """Chordal mean ``(..., 3)`` of rotations ``(N, ..., 3)`` given as axis-angle.

    That is the rotation closest (Frobenius norm) to the average of their matrices, found by SVD.
    """
    matrices = axis_angle_to_matrix(torch.as_tensor(axis_angles, dtype=torch.float64)).mean(dim=0)
    u, _, vt = torch.linalg.svd(matrices)
    fix = torch.ones(*matrices.shape[:-2], 3, dtype=torch.float64)
    fix[..., 2] = torch.sign(torch.linalg.det(u @ vt))
    return rotmat_to_axis_angle(u @ torch.diag_embed(fix) @ vt).numpy()


def mean_parameters(poses: np.ndarray, shapes: np.ndarray, expressions: np.ndarray) -> ConstantParameters:
    """The "mean training pose" constant from ``(N, 159)`` poses and ``(N, 10)`` shapes and expressions."""
    rotations = np.asarray(poses, dtype=np.float64).reshape(len(poses), -1, 3)
    return ConstantParameters(
        pose=mean_rotation(rotations).reshape(-1),
        shape=np.asarray(shapes, dtype=np.float64).mean(axis=0),
        expression=np.asarray(expressions, dtype=np.float64).mean(axis=0),
    )


def parameter_meshes(
    body_model: nn.Module, poses: np.ndarray, shapes: np.ndarray, expressions: np.ndarray
) -> torch.Tensor:
    """``(N, V, 3)`` meshes of ``N`` parameter sets (no translation), computed in batches."""
    values = [torch.as_tensor(np.asarray(v), dtype=torch.float32) for v in (poses, shapes, expressions)]
    meshes = []
    for pose, shape, expression in zip(*(v.split(_BATCH) for v in values), strict=True):
        with torch.no_grad():
            output = body_model(
                global_orient=pose[:, 0:3],
                body_pose=pose[:, 3:66],
                left_hand_pose=pose[:, 66:111],
                right_hand_pose=pose[:, 111:156],
                jaw_pose=pose[:, 156:159],
                betas=shape,
                expression=expression,
            )
        meshes.append(output.vertices)
    return torch.cat(meshes)


def centred(meshes: torch.Tensor, topology: MeshTopology) -> torch.Tensor:
    """Meshes ``(N, V, 3)`` moved so that their pelvis (the regressor row MPVPE aligns) is at the origin."""
    pelvis = topology.joint_regressor[topology.pelvis].to(meshes)
    return meshes - torch.einsum("v,nvc->nc", pelvis, meshes)[:, None]


def mean_mesh(meshes: torch.Tensor, topology: MeshTopology) -> torch.Tensor:
    """The "mean training mesh" constant ``(V, 3)``: the mean of the pelvis-centred meshes."""
    return centred(meshes, topology).mean(dim=0)


def constant_errors(
    constant: torch.Tensor, gt_meshes: torch.Tensor, topology: MeshTopology
) -> dict[str, np.ndarray]:
    """Per-sample Table 1 errors (mm) of predicting the mesh ``constant`` (V, 3) for every ground truth."""
    errors: dict[str, list[np.ndarray]] = {name: [] for name in TABLE1_COLUMNS}
    for start in range(0, len(gt_meshes), _BATCH):
        gt = gt_meshes[start : start + _BATCH]
        for name, values in whole_body_errors(constant.expand_as(gt), gt, topology).items():
            errors[name].append(values.numpy())
    return {name: np.concatenate(values) for name, values in errors.items()}


def paired_interval(model: np.ndarray, baseline: np.ndarray) -> tuple[float, float, float]:
    """Mean per-sample gain ``baseline - model`` with its 95 % confidence interval (normal approximation).

    Returns:
        ``(gain, low, high)`` in the errors' unit; the model is significantly better when ``low > 0``.
    """
    gain = np.asarray(baseline, dtype=np.float64) - np.asarray(model, dtype=np.float64)
    half = 1.96 * gain.std(ddof=1) / math.sqrt(len(gain)) if len(gain) > 1 else float("inf")
    return float(gain.mean()), float(gain.mean() - half), float(gain.mean() + half)


def spread(meshes: torch.Tensor, topology: MeshTopology) -> float:
    """Mean distance (mm) of pelvis-centred meshes ``(N, V, 3)`` from their own mean mesh."""
    aligned = centred(meshes.double(), topology)
    return float((aligned - aligned.mean(dim=0)).norm(dim=-1).mean() * 1000.0)


def facing_away(meshes: torch.Tensor, topology: MeshTopology) -> np.ndarray:
    """Whether each mesh ``(N, V, 3)`` (camera frame: x right, y down, z away) turns its back to the camera.

    The body's forward axis is (left hip − right hip) × (neck − pelvis), SMPL-X's body frame (x to
    the body's left, y up, z forward); the body faces away when it points away from the camera.
    """
    joints = torch.einsum("jv,nvc->njc", topology.joint_regressor.to(meshes.dtype), meshes)
    left = joints[:, _LEFT_HIP] - joints[:, _RIGHT_HIP]
    up = joints[:, topology.neck] - joints[:, topology.pelvis]
    return (torch.linalg.cross(left, up)[:, 2] > 0).numpy()


def dataset_parameters(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SMPL-X targets ``(poses (N, 159), shapes (N, 10), expressions (N, 10))`` of a dataset.

    Only samples with complete SMPL-X ground truth count. Images are not decoded where the dataset
    allows (baked arrays, person records).
    """
    source = getattr(dataset, "dataset", dataset)  # a ResizedSamples view keeps its parameters
    if isinstance(source, BakedSamples):
        valid = np.all(np.asarray(source.arrays["meta_info", "smplx_pose_valid"]) > 0, axis=1)
        return tuple(np.asarray(source.arrays["targets", key])[valid] for key in _TARGET_KEYS)
    records = getattr(source, "records", None)
    if records is not None:
        kept = [r.smplx for r in records if r.smplx is not None and np.all(r.smplx_pose_valid)]
        return (
            np.stack([p.pose() for p in kept]),
            np.stack([p.shape for p in kept]),
            np.stack([p.expr for p in kept]),
        )
    samples = [dataset[i] for i in range(len(dataset))]
    kept = [s["targets"] for s in samples if bool(torch.all(s["meta_info"]["smplx_pose_valid"] > 0))]
    return tuple(np.stack([t[key].numpy() for t in kept]) for key in _TARGET_KEYS)


MEAN_POSE = "constant: mean training pose"
MEAN_MESH = "constant: mean training mesh"
MEAN_OUTPUT = "model's mean output"


@dataclass
class BaselineReport:
    """A model's test errors next to the constants it must beat (see the module docstring).

    Attributes:
        rows: label -> column -> mean error (mm) for every baseline that could be computed.
        gains: label -> column -> ``(gain, low, high)``: the model's mean per-sample improvement over
            that baseline and its 95 % interval (positive = the model is better).
        spread: ``{"prediction": mm, "ground_truth": mm}`` (:func:`spread`).
        facing_away: ``{"ground_truth": n, "predicted_too": m}``: test people showing their back, and how
            many of them the model also turns away.
    """

    rows: dict[str, dict[str, float]]
    gains: dict[str, dict[str, tuple[float, float, float]]]
    spread: dict[str, float]
    facing_away: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "baselines": self.rows,
            "gain_over_baseline": {k: {c: list(v) for c, v in g.items()} for k, g in self.gains.items()},
            "spread_mm": self.spread,
            "facing_away": self.facing_away,
        }


def compare_with_constants(
    per_sample: Mapping[str, list[float]],
    predictions: Mapping[str, torch.Tensor],
    body_model: nn.Module,
    topology: MeshTopology,
    mean_pose: ConstantParameters | None = None,
    training_mesh: torch.Tensor | None = None,
) -> BaselineReport:
    """Evaluate the constants on the same ground truth as the model and compare.

    Args:
        per_sample: the model's per-sample errors (``EvaluationResult.per_sample``).
        predictions: ``EvaluationResult.predictions`` (from ``evaluate(..., collect=True)``).
        body_model: the SMPL-X layer the meshes come from.
        topology: the metrics' mesh topology.
        mean_pose: the "mean training pose" constant, if known.
        training_mesh: the "mean training mesh" constant ``(V, 3)``, if known.
    """
    gt = predictions["gt_mesh"].double()
    output_mean = mean_parameters(
        predictions["pose"].numpy(), predictions["shape"].numpy(), predictions["expr"].numpy()
    )
    constants: dict[str, torch.Tensor] = {}
    if mean_pose is not None:
        constants[MEAN_POSE] = parameter_meshes(
            body_model, mean_pose.pose[None], mean_pose.shape[None], mean_pose.expression[None]
        )[0]
    if training_mesh is not None:
        constants[MEAN_MESH] = training_mesh
    constants[MEAN_OUTPUT] = parameter_meshes(
        body_model, output_mean.pose[None], output_mean.shape[None], output_mean.expression[None]
    )[0]
    rows, gains = {}, {}
    for label, mesh in constants.items():
        errors = constant_errors(mesh.double(), gt, topology)
        rows[label] = {name: float(values.mean()) for name, values in errors.items()}
        gains[label] = {
            name: paired_interval(np.asarray(per_sample[name]), errors[name]) for name in TABLE1_COLUMNS
        }
    away = facing_away(predictions["mesh"].double(), topology)
    truth_away = facing_away(gt, topology)
    return BaselineReport(
        rows=rows,
        gains=gains,
        spread={"prediction": spread(predictions["mesh"], topology), "ground_truth": spread(gt, topology)},
        facing_away={"ground_truth": int(truth_away.sum()), "predicted_too": int((truth_away & away).sum())},
    )
