"""Where a model's MPVPE comes from: root orientation, articulation, 2-D joints (docs/training.md).

Usage::

    python benchmarks/error_sources.py runs/fp/checkpoints/last.safetensors --data synth:synth-test

For every sample of ``--data`` the script runs the model once and re-poses its prediction with parts
of the ground truth swapped in (oracles):

* **with true root**: the true global orientation, the model's articulation, shape and hands;
* **with true body pose**: the model's root orientation, the true body articulation;

and prints their MPVPE-all next to the model's own. It also prints the root orientation's geodesic
error, how many people face away from the camera and how many of them the model turns too
(counted as ``bidrn eval --baseline`` does), the correlation of true and predicted facing angles
(the yaw of the root's forward axis), and the
PositionNet's 2-D body-joint error in heatmap cells against the best constant (every joint at its
mean position over the split).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader

from bidrn.body import load_body_model
from bidrn.body.rotations import axis_angle_to_matrix
from bidrn.deploy.loading import load_model
from bidrn.engine.baselines import facing_away, parameter_meshes
from bidrn.engine.datasets import open_dataset
from bidrn.engine.evaluation import ground_truth_mesh
from bidrn.engine.losses import predicted_pose
from bidrn.engine.metrics import mesh_topology, whole_body_errors
from bidrn.engine.resolution import fit_to_model

BODY_JOINTS = 25
ROOT, BODY = slice(0, 3), slice(3, 66)
"""The root orientation and the body articulation in the 159-value pose."""


def geodesic_degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle of ``aᵀ b`` for batches of rotation matrices, in degrees."""
    cosine = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))


def facing_degrees(rotation: torch.Tensor) -> torch.Tensor:
    """Yaw of the body's forward (+z) axis in the camera frame: 0 faces the camera, ±180 faces away."""
    forward = rotation[:, :, 2]
    return torch.rad2deg(torch.atan2(forward[:, 0], -forward[:, 2]))


def with_parts_of_the_truth(out, true_pose: torch.Tensor, parts: slice) -> torch.Tensor:
    """The model's 159-value pose (``out``) with ``parts`` of it taken from ``true_pose``."""
    pose = predicted_pose(out).clone()
    pose[:, parts] = true_pose[:, parts]
    return pose


@torch.no_grad()
def error_sources(checkpoint: str, data: str, batch_size: int) -> dict[str, float]:
    body_model = load_body_model()
    topology = mesh_topology(body_model)
    model, _ = load_model(checkpoint, body_model=body_model, frozen=False)
    dataset = fit_to_model(open_dataset(data, train=False, body_model=body_model), model)
    columns: dict[str, list[float]] = {}
    true_joints = []

    def add(name: str, values: torch.Tensor) -> None:
        columns.setdefault(name, []).extend(values.double().tolist())

    for batch in DataLoader(dataset, batch_size=batch_size):
        out, targets = model(batch["inputs"]["img"]), batch["targets"]
        truth = ground_truth_mesh(targets, batch["meta_info"], body_model)
        true_pose = targets["smplx_pose"].float()
        add("model", whole_body_errors(out.mesh_cam, truth, topology)["mpvpe_all"])
        for name, parts in (("true_root", ROOT), ("true_body", BODY)):
            pose = with_parts_of_the_truth(out, true_pose, parts)
            meshes = parameter_meshes(body_model, pose, out.shape, out.expr)
            add(name, whole_body_errors(meshes, truth, topology)["mpvpe_all"])
        predicted_rotation = axis_angle_to_matrix(out.root_pose)
        true_rotation = axis_angle_to_matrix(true_pose[:, ROOT])
        add("root_error", geodesic_degrees(predicted_rotation, true_rotation))
        add("facing_true", facing_degrees(true_rotation))
        add("facing_predicted", facing_degrees(predicted_rotation))
        away = torch.as_tensor(facing_away(truth.double(), topology))
        add("away_true", away)
        add("away_predicted_too", away & torch.as_tensor(facing_away(out.mesh_cam.double(), topology)))
        joints = targets["joint_img"][:, :BODY_JOINTS, :2]
        add("joints_2d", (out.joint_img[:, :BODY_JOINTS, :2] - joints).norm(dim=-1).mean(dim=1))
        true_joints.append(joints)
    joints = torch.cat(true_joints)
    constant = (joints - joints.mean(dim=0, keepdim=True)).norm(dim=-1).mean(dim=1)
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    return {
        "samples": float(len(joints)),
        "mpvpe_all": arrays["model"].mean(),
        "mpvpe_all_with_true_root": arrays["true_root"].mean(),
        "mpvpe_all_with_true_body_pose": arrays["true_body"].mean(),
        "root_error_median_deg": float(np.median(arrays["root_error"])),
        "facing_away_true": arrays["away_true"].sum(),
        "facing_away_predicted_too": arrays["away_predicted_too"].sum(),
        "facing_correlation": float(np.corrcoef(arrays["facing_true"], arrays["facing_predicted"])[0, 1]),
        "joints_2d_error_cells": arrays["joints_2d"].mean(),
        "joints_2d_constant_cells": float(constant.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="training checkpoint or frozen file")
    parser.add_argument("--data", default="synth:synth-test", help="evaluation data spec")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    for name, value in error_sources(args.checkpoint, args.data, args.batch_size).items():
        print(f"{name:32s} {value:9.3f}")


if __name__ == "__main__":
    main()
