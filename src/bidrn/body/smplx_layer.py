"""The SMPL-X body model as a differentiable torch layer, written from the SMPL / SMPL-X equations.

For shape ``β``, expression ``ψ`` and 55 joint rotations ``θ`` (axis-angle) the layer computes
(Loper et al. 2015, Eq. 1–4; Pavlakos et al. 2019, Eq. 1):

1. shaped template ``T(β, ψ) = T̄ + S β + E ψ`` (shape and expression blend shapes);
2. rest joints ``J = 𝒥 T(β, ψ)`` (joint regressor applied to the shaped template);
3. pose correctives ``T_P = T(β, ψ) + P · vec(R(θ_k) − I)`` over the 54 non-root joints;
4. the kinematic chain ``G_k = G_parent(k) · [R(θ_k) | J_k − J_parent(k)]`` and skinning matrices
   ``A_k = G_k · [I | −J_k]``;
5. linear blend skinning ``v_i = Σ_k w_ik A_k [T_P,i; 1]``, then ``+ transl``.

The 144 output joints are the 55 posed skeleton joints, 21 joints copied from fixed vertices
(nose, eyes, ears, toes, heels, finger tips), 51 face landmarks interpolated from barycentric
embeddings in mesh triangles, and 17 face-contour landmarks whose embedding is chosen from a
79-row table by the head's yaw angle (rounded to whole degrees in [−39°, 39°]), as the official
SMPL-X release defines them.

Hand poses follow the official conventions: with ``use_pca`` the inputs are coefficients of the
first ``num_pca_comps`` rows of ``hands_components``; unless ``flat_hand_mean`` the file's mean hand
pose is added, so a zero hand pose is a relaxed, slightly curled hand (Hand4Whole's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bidrn.body.joint_sets import (
    JOINT_TO_SMPLX,
    NUM_SMPLX_SKELETON_JOINTS,
    SMPLX_CONTOUR_SLICE,
    SMPLX_EXTRA_VERTEX_IDS,
    SMPLX_JAW_INDEX,
)
from bidrn.body.model_file import NUM_HAND_POSE, BodyModelArrays
from bidrn.body.rotations import axis_angle_to_matrix
from bidrn.errors import InputFileError

SHAPE_SPACE_DIM = 300
EXPRESSION_SPACE_DIM = 100
LEGACY_SPACE_DIM = 10
NUM_BODY_POSE_JOINTS = 21
NUM_HAND_JOINTS = 15
NECK_CHAIN = (12, 9, 6, 3, 0)
"""Neck, spine3, spine2, spine1, pelvis: the chain whose product gives the head yaw for the contour."""
MAX_CONTOUR_YAW = 39


@dataclass
class SMPLXOutput:
    """Result of one SMPL-X forward pass (all tensors batched, in metres, ``transl`` included)."""

    vertices: torch.Tensor | None
    """(B, V, 3) posed mesh vertices (``None`` when called with ``with_vertices=False``)."""
    joints: torch.Tensor
    """(B, 144, 3) joints in the official SMPL-X order (see :mod:`bidrn.body.joint_sets`)."""
    supervision_joints: torch.Tensor
    """(B, 137, 3) Hand4Whole's supervision joints (docs/design/body-model.md §3.2)."""
    full_pose: torch.Tensor
    """(B, 55, 3) axis-angle rotations actually applied (hand mean and PCA resolved)."""


def _split_shape_space(
    shapedirs: np.ndarray, num_betas: int, num_expression: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shape and expression directions, with the official layout rules.

    Files with at least 400 columns hold 300 shape then 100 expression directions (SMPL-X v1.1);
    smaller files use the v1.0 layout: 10 shape then 10 expression directions.
    """
    if shapedirs.shape[-1] >= SHAPE_SPACE_DIM + EXPRESSION_SPACE_DIM:
        num_betas = min(num_betas, SHAPE_SPACE_DIM)
        num_expression = min(num_expression, EXPRESSION_SPACE_DIM)
        expr_start = SHAPE_SPACE_DIM
    else:
        num_betas = min(num_betas, LEGACY_SPACE_DIM)
        num_expression = min(num_expression, LEGACY_SPACE_DIM)
        expr_start = LEGACY_SPACE_DIM
    return shapedirs[:, :, :num_betas], shapedirs[:, :, expr_start : expr_start + num_expression]


class SMPLXLayer(nn.Module):
    """SMPL-X as an ``nn.Module`` without learnable parameters; every input is passed per call.

    Build it with :func:`bidrn.body.load_body_model`. Attributes for callers:

    * ``faces`` — (F, 3) int64 numpy array of triangle vertex indices;
    * ``parents`` — tuple of the 55 parent indices (−1 for the pelvis);
    * ``lhand_vertex_ids``, ``rhand_vertex_ids``, ``face_vertex_ids`` — int64 numpy arrays for
      part-wise metrics;
    * ``J_regressor`` — (55, V) buffer; ``num_betas``, ``num_expression_coeffs``, ``num_vertices``;
    * ``has_pose_correctives`` — False when the file's pose-corrective blend shapes are all zero;
    * ``has_face_contour`` — False when the file had no dynamic-landmark table (the 17 contour
      joints then sit on the jaw joint);
    * ``source`` and ``metadata`` — the file path and its free-text metadata.
    """

    def __init__(
        self,
        arrays: BodyModelArrays,
        *,
        num_betas: int = 10,
        num_expression_coeffs: int = 10,
        use_pca: bool = False,
        num_pca_comps: int = 6,
        flat_hand_mean: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if arrays.num_vertices <= max(SMPLX_EXTRA_VERTEX_IDS):
            raise InputFileError(
                arrays.path,
                f"has {arrays.num_vertices} vertices; SMPL-X's extra joints need at least "
                f"{max(SMPLX_EXTRA_VERTEX_IDS) + 1}",
            )
        shapedirs, exprdirs = _split_shape_space(arrays.shapedirs, num_betas, num_expression_coeffs)
        self.num_betas = shapedirs.shape[-1]
        self.num_expression_coeffs = exprdirs.shape[-1]
        self.use_pca = use_pca
        self.num_pca_comps = (
            min(num_pca_comps, arrays.hands_components_left.shape[0]) if use_pca else NUM_HAND_POSE
        )
        self.flat_hand_mean = flat_hand_mean
        self.num_vertices = arrays.num_vertices
        self.faces = arrays.faces
        self.parents = tuple(int(p) for p in arrays.parents)
        self.lhand_vertex_ids = arrays.lhand_vertex_ids
        self.rhand_vertex_ids = arrays.rhand_vertex_ids
        self.face_vertex_ids = arrays.face_vertex_ids
        self.source = arrays.path
        self.metadata = arrays.metadata
        self.has_face_contour = arrays.dynamic_lmk_faces_idx is not None

        def buffer(name: str, value: np.ndarray, integer: bool = False) -> None:
            tensor = torch.as_tensor(np.ascontiguousarray(value))
            self.register_buffer(name, tensor.long() if integer else tensor.to(dtype), persistent=False)

        buffer("v_template", arrays.v_template)
        buffer("shapedirs", shapedirs)
        buffer("exprdirs", exprdirs)
        # Pose correctives; skipped entirely when the file's are all zero (as in the stand-in).
        self.has_pose_correctives = bool(np.any(arrays.posedirs))
        if self.has_pose_correctives:
            num_pose_basis = arrays.posedirs.shape[-1]
            buffer("posedirs", arrays.posedirs.reshape(-1, num_pose_basis).T)  # (486, V*3)
        buffer("J_regressor", arrays.J_regressor)
        buffer("lbs_weights", arrays.weights)
        buffer("faces_tensor", arrays.faces, integer=True)
        extra_ids = np.asarray(SMPLX_EXTRA_VERTEX_IDS)
        lmk_ids = arrays.faces[arrays.lmk_faces_idx]
        buffer("extra_vertex_ids", extra_ids, integer=True)
        buffer("lmk_vertex_ids", lmk_ids, integer=True)
        buffer("lmk_bary_coords", arrays.lmk_bary_coords)
        picked = [extra_ids.ravel(), lmk_ids.ravel()]
        if self.has_face_contour:
            dynamic_ids = arrays.faces[arrays.dynamic_lmk_faces_idx]
            buffer("dynamic_lmk_vertex_ids", dynamic_ids, integer=True)
            buffer("dynamic_lmk_bary_coords", arrays.dynamic_lmk_bary_coords)
            picked.append(dynamic_ids.ravel())
        # Joints without the mesh (training): only the vertices the joints read are skinned, and the
        # rest joints come from the regressor folded into the blend shapes (J = J̄ + 𝒥S β + 𝒥E ψ).
        landmark_vertices, positions = np.unique(np.concatenate(picked), return_inverse=True)
        buffer("landmark_vertex_ids", landmark_vertices, integer=True)
        sizes = np.cumsum([0, *(ids.size for ids in picked)])
        # The index tables again, pointing into the skinned subset instead of the whole mesh.
        buffer("extra_landmark_ids", positions[sizes[0] : sizes[1]], integer=True)
        buffer("lmk_landmark_ids", positions[sizes[1] : sizes[2]].reshape(lmk_ids.shape), integer=True)
        if self.has_face_contour:
            buffer("dynamic_lmk_landmark_ids", positions[sizes[2] :].reshape(dynamic_ids.shape), integer=True)
        regressor = np.asarray(arrays.J_regressor, dtype=np.float64)
        buffer("J_template", regressor @ np.asarray(arrays.v_template, dtype=np.float64))
        buffer("J_shapedirs", np.einsum("jv,vcs->jcs", regressor, shapedirs.astype(np.float64)))
        buffer("J_exprdirs", np.einsum("jv,vcs->jcs", regressor, exprdirs.astype(np.float64)))
        for side, comps, mean in (
            ("left", arrays.hands_components_left, arrays.hands_mean_left),
            ("right", arrays.hands_components_right, arrays.hands_mean_right),
        ):
            buffer(
                f"{side}_hand_components", comps[: self.num_pca_comps] if use_pca else np.eye(NUM_HAND_POSE)
            )
            buffer(f"{side}_hand_mean", np.zeros_like(mean) if flat_hand_mean else mean)

    # ------------------------------------------------------------------------------------------

    def _inputs(self, **given: torch.Tensor | None) -> tuple[int, dict[str, torch.Tensor]]:
        present = [v for v in given.values() if v is not None]
        batch = present[0].shape[0] if present and present[0].dim() > 1 else 1
        sizes = {
            "betas": self.num_betas,
            "expression": self.num_expression_coeffs,
            "global_orient": 3,
            "body_pose": 3 * NUM_BODY_POSE_JOINTS,
            "left_hand_pose": self.num_pca_comps if self.use_pca else NUM_HAND_POSE,
            "right_hand_pose": self.num_pca_comps if self.use_pca else NUM_HAND_POSE,
            "jaw_pose": 3,
            "leye_pose": 3,
            "reye_pose": 3,
            "transl": 3,
        }
        ref = self.v_template
        out = {}
        for name, size in sizes.items():
            value = given[name]
            if value is None:
                out[name] = ref.new_zeros(batch, size)
                continue
            value = value.to(device=ref.device, dtype=ref.dtype).reshape(batch, -1)
            if value.shape[1] != size:
                raise ValueError(f"{name} has {value.shape[1]} values per sample, expected {size}")
            out[name] = value
        return batch, out

    def forward(
        self,
        betas: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        left_hand_pose: torch.Tensor | None = None,
        right_hand_pose: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        leye_pose: torch.Tensor | None = None,
        reye_pose: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        with_vertices: bool = True,
    ) -> SMPLXOutput:
        """Pose and shape the body; omitted inputs are zero, the batch size comes from any given input.

        Shapes per sample: ``betas`` (num_betas), ``expression`` (num_expression_coeffs),
        ``global_orient``/``jaw_pose``/``leye_pose``/``reye_pose``/``transl`` (3), ``body_pose``
        (63 or 21×3), hand poses (45 axis-angle values, or num_pca_comps with ``use_pca``).
        ``with_vertices=False`` skips the mesh (``vertices`` is ``None``) and skins only the few
        hundred vertices the joints read: the same joints, much cheaper (training needs only them).
        """
        batch, x = self._inputs(
            betas=betas,
            global_orient=global_orient,
            body_pose=body_pose,
            left_hand_pose=left_hand_pose,
            right_hand_pose=right_hand_pose,
            jaw_pose=jaw_pose,
            leye_pose=leye_pose,
            reye_pose=reye_pose,
            expression=expression,
            transl=transl,
        )
        left_hand = x["left_hand_pose"] @ self.left_hand_components + self.left_hand_mean
        right_hand = x["right_hand_pose"] @ self.right_hand_components + self.right_hand_mean
        full_pose = torch.cat(
            (
                x["global_orient"],
                x["body_pose"],
                x["jaw_pose"],
                x["leye_pose"],
                x["reye_pose"],
                left_hand,
                right_hand,
            ),
            dim=1,
        ).reshape(batch, NUM_SMPLX_SKELETON_JOINTS, 3)

        rotations = axis_angle_to_matrix(full_pose)  # (B, 55, 3, 3)
        if with_vertices:
            v_shaped = self._shaped(slice(None), x["betas"], x["expression"])
            rest_joints = torch.einsum("jv,bvc->bjc", self.J_regressor, v_shaped)
            posed_joints, skinning = self._kinematic_chain(rotations, rest_joints)
            vertices = self._skin(slice(None), v_shaped, rotations, skinning)
            extra_ids, lmk_ids, dynamic_ids = "extra_vertex_ids", "lmk_vertex_ids", "dynamic_lmk_vertex_ids"
        else:
            rest_joints = (
                self.J_template
                + torch.einsum("jcs,bs->bjc", self.J_shapedirs, x["betas"])
                + torch.einsum("jcs,bs->bjc", self.J_exprdirs, x["expression"])
            )
            posed_joints, skinning = self._kinematic_chain(rotations, rest_joints)
            picked = self.landmark_vertex_ids
            shaped = self._shaped(picked, x["betas"], x["expression"])
            vertices = self._skin(picked, shaped, rotations, skinning)
            extra_ids, lmk_ids, dynamic_ids = (
                "extra_landmark_ids",
                "lmk_landmark_ids",
                "dynamic_lmk_landmark_ids",
            )

        joints = torch.cat(
            (
                posed_joints,
                vertices[:, getattr(self, extra_ids)],
                self._landmarks(vertices, getattr(self, lmk_ids), self.lmk_bary_coords),
                self._contour(vertices, full_pose, posed_joints, getattr(self, dynamic_ids, None)),
            ),
            dim=1,
        )
        offset = x["transl"][:, None, :]
        joints = joints + offset
        return SMPLXOutput(
            vertices=vertices + offset if with_vertices else None,
            joints=joints,
            supervision_joints=joints[:, list(JOINT_TO_SMPLX)],
            full_pose=full_pose,
        )

    def _shaped(
        self, vertex_ids: slice | torch.Tensor, betas: torch.Tensor, expression: torch.Tensor
    ) -> torch.Tensor:
        """Shaped template ``T̄ + S β + E ψ`` of the chosen vertices, (B, V', 3)."""
        return (
            self.v_template[vertex_ids]
            + torch.einsum("vcs,bs->bvc", self.shapedirs[vertex_ids], betas)
            + torch.einsum("vcs,bs->bvc", self.exprdirs[vertex_ids], expression)
        )

    def _skin(
        self,
        vertex_ids: slice | torch.Tensor,
        v_shaped: torch.Tensor,
        rotations: torch.Tensor,
        skinning: torch.Tensor,
    ) -> torch.Tensor:
        """Pose correctives and linear blend skinning of the chosen vertices, (B, V', 3)."""
        batch = v_shaped.shape[0]
        v_posed = v_shaped
        if self.has_pose_correctives:
            eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
            pose_feature = (rotations[:, 1:] - eye).reshape(batch, -1)
            posedirs = self.posedirs.view(self.posedirs.shape[0], -1, 3)[:, vertex_ids]
            v_posed = v_shaped + torch.einsum("bp,pvc->bvc", pose_feature, posedirs)
        per_vertex = torch.einsum("vj,bjrc->bvrc", self.lbs_weights[vertex_ids], skinning)
        return torch.einsum("bvrc,bvc->bvr", per_vertex[..., :3], v_posed) + per_vertex[..., 3]

    def _kinematic_chain(
        self, rotations: torch.Tensor, rest_joints: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed joint positions (B, 55, 3) and skinning transforms ``A_k`` (B, 55, 3, 4)."""
        world_rot: list[torch.Tensor] = []
        world_pos: list[torch.Tensor] = []
        for k, parent in enumerate(self.parents):
            if parent < 0:
                world_rot.append(rotations[:, k])
                world_pos.append(rest_joints[:, k])
            else:
                offset = rest_joints[:, k] - rest_joints[:, parent]
                world_rot.append(world_rot[parent] @ rotations[:, k])
                world_pos.append(world_pos[parent] + (world_rot[parent] @ offset[..., None])[..., 0])
        rot = torch.stack(world_rot, dim=1)
        pos = torch.stack(world_pos, dim=1)
        translation = pos - (rot @ rest_joints[..., None])[..., 0]
        return pos, torch.cat((rot, translation[..., None]), dim=-1)

    @staticmethod
    def _landmarks(vertices: torch.Tensor, vertex_ids: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
        """Barycentric interpolation: ``vertex_ids`` (..., L, 3) and ``bary`` (..., L, 3) per landmark."""
        if vertex_ids.dim() == 2:
            corners = vertices[:, vertex_ids]  # (B, L, 3 corners, 3)
            return torch.einsum("blkc,lk->blc", corners, bary)
        batch_index = torch.arange(vertices.shape[0], device=vertices.device)[:, None, None]
        corners = vertices[batch_index, vertex_ids]
        return torch.einsum("blkc,blk->blc", corners, bary)

    def _contour(
        self,
        vertices: torch.Tensor,
        full_pose: torch.Tensor,
        posed_joints: torch.Tensor,
        vertex_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        """The 17 face-contour landmarks, embedded by the head's yaw (rounded degrees).

        ``vertex_ids`` is the (79, 17, 3) embedding table as indices into ``vertices``.
        """
        num_contour = SMPLX_CONTOUR_SLICE.stop - SMPLX_CONTOUR_SLICE.start
        if not self.has_face_contour:
            return posed_joints[:, SMPLX_JAW_INDEX : SMPLX_JAW_INDEX + 1].expand(-1, num_contour, -1)
        chain = axis_angle_to_matrix(full_pose[:, list(NECK_CHAIN)])
        neck_rotation = chain[:, -1]
        for k in range(len(NECK_CHAIN) - 2, -1, -1):
            neck_rotation = neck_rotation @ chain[:, k]
        pitch = torch.atan2(
            -neck_rotation[:, 2, 0], torch.hypot(neck_rotation[:, 0, 0], neck_rotation[:, 1, 0])
        )
        yaw = torch.round(torch.clamp(torch.rad2deg(-pitch), max=MAX_CONTOUR_YAW)).long()
        row = torch.where(
            yaw >= 0,
            yaw,
            torch.where(yaw < -MAX_CONTOUR_YAW, 2 * MAX_CONTOUR_YAW, MAX_CONTOUR_YAW - yaw),
        )
        return self._landmarks(vertices, vertex_ids[row], self.dynamic_lmk_bary_coords[row])
