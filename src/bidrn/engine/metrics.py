"""Mesh and joint errors of the paper's Table 1, all in millimetres.

The paper evaluates as Hand4Whole does (docs/design/pipeline.md §8.1):

* **MPVPE** (mean per-vertex position error): mean Euclidean distance between corresponding
  vertices after a *translation* alignment — the whole mesh by the pelvis, each hand by its wrist,
  the face by the neck (joints regressed from the meshes with the body model's joint regressor).
* **PA-MPVPE**: the same vertex subsets after a similarity Procrustes alignment of that subset alone
  (each hand separately, then averaged).
* **PA-MPJPE body**: 14 joints from the body model's ``SMPLX_to_J14``-style regressor when it
  provides one, otherwise the 25 body joints of the 137-joint supervision set (see
  :class:`MeshTopology`), after Procrustes.
* **PA-MPJPE hands**: per hand 21 joints (wrist, 15 finger joints, 5 finger-tip vertices) after
  Procrustes, averaged over both hands.

Every Procrustes alignment goes through :func:`similarity_procrustes`, a batched, reflection-safe
Umeyama solver. The public helpers :func:`mpvpe` and :func:`pa_mpjpe` take ``(B, N, 3)`` numpy
arrays or torch tensors in metres and return per-sample errors in millimetres, in the same kind of
container as their input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from bidrn.body import joint_sets

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

#: Column names of Table 1 in the order the paper prints them.
TABLE1_COLUMNS: tuple[str, ...] = (
    "mpvpe_all",
    "mpvpe_hand",
    "mpvpe_face",
    "pa_mpvpe_all",
    "pa_mpvpe_hand",
    "pa_mpvpe_face",
    "pa_mpjpe_body",
    "pa_mpjpe_hand",
)

_METRES_TO_MM = 1000.0


def _as_tensor(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(points).detach()
    if tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"expected points of shape (B, N, 3), got {tuple(tensor.shape)}")
    return tensor.to(dtype=torch.float64)


def _like_input(values: torch.Tensor, reference: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if isinstance(reference, torch.Tensor):
        return values.to(device=reference.device, dtype=reference.dtype)
    return values.cpu().numpy()


def similarity_procrustes(
    source: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity transform from ``source`` to ``target`` (Umeyama 1991).

    Finds, for every batch element, the scale ``s``, proper rotation ``R`` (``det R = +1``) and
    translation ``t`` minimising ``sum_i |s R x_i + t - y_i|²``. A reflection is never returned: when
    the optimal orthogonal matrix would have ``det = -1`` the smallest singular direction is flipped
    (Umeyama's ``S`` correction), which is what makes the solver safe on mirrored inputs.

    Args:
        source: ``(B, N, 3)`` points to be moved.
        target: ``(B, N, 3)`` corresponding points.

    Returns:
        ``(scale (B,), rotation (B, 3, 3), translation (B, 3))`` so that
        ``aligned = scale[:, None, None] * source @ rotation.transpose(1, 2) + translation[:, None]``.
    """
    source_mean = source.mean(dim=1, keepdim=True)
    target_mean = target.mean(dim=1, keepdim=True)
    source_centred = source - source_mean
    target_centred = target - target_mean
    count = source.shape[1]
    # Cross-covariance Σ = (1/n) Σ_i y_i x_iᵀ; its SVD gives the optimal rotation.
    covariance = target_centred.transpose(1, 2) @ source_centred / count
    left, singular, right_t = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(left) * torch.linalg.det(right_t))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    correction = torch.ones_like(singular)
    correction[:, -1] = sign
    rotation = left @ torch.diag_embed(correction) @ right_t
    source_variance = source_centred.pow(2).sum(dim=(1, 2)) / count
    scale = (singular * correction).sum(dim=1) / source_variance.clamp_min(torch.finfo(source.dtype).tiny)
    translation = (target_mean - scale[:, None, None] * source_mean @ rotation.transpose(1, 2))[:, 0]
    return scale, rotation, translation


def procrustes_align(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` moved onto ``target`` by the best similarity transform (batched, ``(B, N, 3)``)."""
    scale, rotation, translation = similarity_procrustes(source, target)
    return scale[:, None, None] * source @ rotation.transpose(1, 2) + translation[:, None]


def _mean_distance_mm(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return (pred - gt).norm(dim=-1).mean(dim=-1) * _METRES_TO_MM


def mpvpe(pred: ArrayLike, gt: ArrayLike) -> ArrayLike:
    """Per-sample mean per-vertex position error in millimetres, **without** any alignment.

    Args:
        pred: ``(B, N, 3)`` predicted points in metres (array or tensor).
        gt: ``(B, N, 3)`` ground-truth points in metres.

    Returns:
        ``(B,)`` errors in millimetres, numpy if ``pred`` is numpy, else a tensor. Callers align
        first (see :func:`translate_to`).
    """
    return _like_input(_mean_distance_mm(_as_tensor(pred), _as_tensor(gt)), pred)


def pa_mpjpe(pred: ArrayLike, gt: ArrayLike) -> ArrayLike:
    """Per-sample error in millimetres after similarity Procrustes alignment of ``pred`` onto ``gt``.

    Args:
        pred: ``(B, N, 3)`` predicted joints (or vertices) in metres.
        gt: ``(B, N, 3)`` ground truth in metres.

    Returns:
        ``(B,)`` errors in millimetres, in the container type of ``pred``.
    """
    pred_t, gt_t = _as_tensor(pred), _as_tensor(gt)
    return _like_input(_mean_distance_mm(procrustes_align(pred_t, gt_t), gt_t), pred)


def translate_to(points: torch.Tensor, anchor: torch.Tensor, target_anchor: torch.Tensor) -> torch.Tensor:
    """Shift ``points`` (B, N, 3) so that ``anchor`` (B, 3) lands on ``target_anchor`` (B, 3)."""
    return points - anchor[:, None] + target_anchor[:, None]


@dataclass(frozen=True)
class MeshTopology:
    """Which vertices and joints the Table 1 metrics read from a body-model mesh.

    Attributes:
        joint_regressor: ``(J, V)`` regressor of the skeleton joints from posed vertices.
        pelvis: row of ``joint_regressor`` used to align whole meshes (SMPL-X: 0).
        left_wrist, right_wrist: rows used to align each hand (SMPL-X: 20, 21).
        neck: row used to align the face (SMPL-X: 12).
        left_hand_vertices, right_hand_vertices: vertex ids of each hand (MANO ids in SMPL-X).
        face_vertices: vertex ids of the face (FLAME ids in SMPL-X).
        left_hand_joints, right_hand_joints: the 16 regressor rows of each hand (wrist then 15
            finger joints).
        left_tip_vertices, right_tip_vertices: the 5 finger-tip vertex ids of each hand.
        body_joint_regressor: ``(K, V)`` regressor for PA-MPJPE body: the 14-joint regressor when
            the body model ships one, else a regressor of the 25 body supervision joints.
        body_joint_source: ``"j14"`` or ``"body25"``, recorded next to the results.
    """

    joint_regressor: torch.Tensor
    pelvis: int
    left_wrist: int
    right_wrist: int
    neck: int
    left_hand_vertices: torch.Tensor
    right_hand_vertices: torch.Tensor
    face_vertices: torch.Tensor
    left_hand_joints: torch.Tensor
    right_hand_joints: torch.Tensor
    left_tip_vertices: torch.Tensor
    right_tip_vertices: torch.Tensor
    body_joint_regressor: torch.Tensor
    body_joint_source: str

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float64) -> MeshTopology:
        """The same topology with regressors on ``device`` in ``dtype`` and ids on ``device``."""
        fields = {}
        for name, value in self.__dict__.items():
            if isinstance(value, torch.Tensor):
                is_float = value.is_floating_point()
                value = value.to(device=device, dtype=dtype if is_float else value.dtype)
            fields[name] = value
        return MeshTopology(**fields)


def _regress(regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    return torch.einsum("jv,bvc->bjc", regressor, vertices)


def _hand_joints(
    vertices: torch.Tensor, joints: torch.Tensor, joint_rows: torch.Tensor, tip_vertices: torch.Tensor
) -> torch.Tensor:
    return torch.cat([joints[:, joint_rows], vertices[:, tip_vertices]], dim=1)


def whole_body_errors(
    pred_vertices: torch.Tensor, gt_vertices: torch.Tensor, topology: MeshTopology
) -> dict[str, torch.Tensor]:
    """Every Table 1 column for a batch of meshes, per sample, in millimetres.

    Args:
        pred_vertices: ``(B, V, 3)`` predicted meshes in metres (any global translation).
        gt_vertices: ``(B, V, 3)`` ground-truth meshes in metres, same topology.
        topology: vertex/joint tables of the body model (see :class:`MeshTopology`).

    Returns:
        ``{column: (B,) float64 tensor}`` for every name in :data:`TABLE1_COLUMNS`.
    """
    pred = _as_tensor(pred_vertices)
    gt = _as_tensor(gt_vertices)
    topo = topology.to(pred.device)
    pred_joints = _regress(topo.joint_regressor, pred)
    gt_joints = _regress(topo.joint_regressor, gt)

    def anchored(rows_of: int, ids: torch.Tensor | None = None) -> torch.Tensor:
        aligned = translate_to(pred, pred_joints[:, rows_of], gt_joints[:, rows_of])
        target = gt
        if ids is not None:
            aligned, target = aligned[:, ids], gt[:, ids]
        return _mean_distance_mm(aligned, target)

    def procrustes(ids: torch.Tensor) -> torch.Tensor:
        return _mean_distance_mm(procrustes_align(pred[:, ids], gt[:, ids]), gt[:, ids])

    left, right = topo.left_hand_vertices, topo.right_hand_vertices
    pred_left = _hand_joints(pred, pred_joints, topo.left_hand_joints, topo.left_tip_vertices)
    gt_left = _hand_joints(gt, gt_joints, topo.left_hand_joints, topo.left_tip_vertices)
    pred_right = _hand_joints(pred, pred_joints, topo.right_hand_joints, topo.right_tip_vertices)
    gt_right = _hand_joints(gt, gt_joints, topo.right_hand_joints, topo.right_tip_vertices)
    pred_body = _regress(topo.body_joint_regressor, pred)
    gt_body = _regress(topo.body_joint_regressor, gt)
    return {
        "mpvpe_all": anchored(topo.pelvis),
        "mpvpe_hand": (anchored(topo.left_wrist, left) + anchored(topo.right_wrist, right)) / 2,
        "mpvpe_face": anchored(topo.neck, topo.face_vertices),
        "pa_mpvpe_all": _mean_distance_mm(procrustes_align(pred, gt), gt),
        "pa_mpvpe_hand": (procrustes(left) + procrustes(right)) / 2,
        "pa_mpvpe_face": procrustes(topo.face_vertices),
        "pa_mpjpe_body": _mean_distance_mm(procrustes_align(pred_body, gt_body), gt_body),
        "pa_mpjpe_hand": (
            _mean_distance_mm(procrustes_align(pred_left, gt_left), gt_left)
            + _mean_distance_mm(procrustes_align(pred_right, gt_right), gt_right)
        )
        / 2,
    }


#: Skeleton rows (of SMPL-X's 55-joint regressor) used for alignment (docs/design/pipeline.md §8.1).
SMPLX_PELVIS, SMPLX_NECK, SMPLX_LEFT_WRIST, SMPLX_RIGHT_WRIST = 0, 12, 20, 21


def _extra_vertex(smplx_index: int) -> int:
    return joint_sets.SMPLX_EXTRA_VERTEX_IDS[smplx_index - joint_sets.NUM_SMPLX_SKELETON_JOINTS]


def body25_regressor(joint_regressor: torch.Tensor) -> torch.Tensor:
    """``(25, V)`` regressor of the 25 body supervision joints from posed vertices.

    Skeleton joints use their ``joint_regressor`` row; the vertex-picked joints (toes, heels, ears,
    eyes, nose) are one-hot rows on their SMPL-X vertex, as the body model computes them.
    """
    rows = []
    for index in joint_sets.BODY_TO_SMPLX:
        if index < joint_sets.NUM_SMPLX_SKELETON_JOINTS:
            rows.append(joint_regressor[index])
        else:
            row = torch.zeros_like(joint_regressor[0])
            row[_extra_vertex(index)] = 1.0
            rows.append(row)
    return torch.stack(rows)


def mesh_topology(body_model: torch.nn.Module, j14_regressor: torch.Tensor | None = None) -> MeshTopology:
    """The :class:`MeshTopology` of an SMPL-X layer from :func:`bidrn.body.load_body_model`.

    Args:
        body_model: the layer; its ``J_regressor``, ``lhand_vertex_ids``, ``rhand_vertex_ids`` and
            ``face_vertex_ids`` are read.
        j14_regressor: optional ``(14, V)`` ``SMPLX_to_J14`` regressor for PA-MPJPE body. Without it
            PA-MPJPE body uses the 25 body supervision joints (:func:`body25_regressor`), which is
            *not* the paper's 14-joint protocol; the result records which one was used.
    """
    regressor = body_model.J_regressor.detach().to(torch.float64).cpu()
    skeleton = joint_sets.NUM_SMPLX_SKELETON_JOINTS
    left_fingers = range(joint_sets.SMPLX_LEFT_HAND_SLICE.start, joint_sets.SMPLX_LEFT_HAND_SLICE.stop)
    right_fingers = range(joint_sets.SMPLX_RIGHT_HAND_SLICE.start, joint_sets.SMPLX_RIGHT_HAND_SLICE.stop)
    # SMPL-X extra joints 66-70 / 71-75 are the left / right finger tips (vertex picks).
    left_tips = [_extra_vertex(i) for i in range(skeleton + 11, skeleton + 16)]
    right_tips = [_extra_vertex(i) for i in range(skeleton + 16, skeleton + 21)]

    def ids(values: object) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=torch.long)

    return MeshTopology(
        joint_regressor=regressor,
        pelvis=SMPLX_PELVIS,
        left_wrist=SMPLX_LEFT_WRIST,
        right_wrist=SMPLX_RIGHT_WRIST,
        neck=SMPLX_NECK,
        left_hand_vertices=ids(body_model.lhand_vertex_ids),
        right_hand_vertices=ids(body_model.rhand_vertex_ids),
        face_vertices=ids(body_model.face_vertex_ids),
        left_hand_joints=ids([SMPLX_LEFT_WRIST, *left_fingers]),
        right_hand_joints=ids([SMPLX_RIGHT_WRIST, *right_fingers]),
        left_tip_vertices=ids(left_tips),
        right_tip_vertices=ids(right_tips),
        body_joint_regressor=(
            body25_regressor(regressor) if j14_regressor is None else j14_regressor.to(torch.float64).cpu()
        ),
        body_joint_source="body25" if j14_regressor is None else "j14",
    )
