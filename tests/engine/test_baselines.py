import math

import numpy as np
import pytest
import torch

from bidrn.body import load_body_model
from bidrn.engine.baselines import (
    MEAN_MESH,
    MEAN_OUTPUT,
    MEAN_POSE,
    compare_with_constants,
    facing_away,
    mean_mesh,
    mean_parameters,
    mean_rotation,
    paired_interval,
    parameter_meshes,
    spread,
)
from bidrn.engine.metrics import TABLE1_COLUMNS, mesh_topology, whole_body_errors


@pytest.fixture(scope="module")
def body():
    return load_body_model()


def test_mean_rotation_of_rotations_about_one_axis_is_their_middle():
    angles = np.array([2.9, 3.0, 3.1])  # near a half turn, where axis-angle averages would break
    axis_angles = np.stack([[a, 0.0, 0.0] for a in angles])
    assert mean_rotation(axis_angles) == pytest.approx([3.0, 0.0, 0.0], abs=1e-6)
    flipped = np.array([[math.pi - 0.05, 0, 0], [-(math.pi - 0.05), 0, 0]])  # ±(π - 0.05): 0.1 rad apart
    assert abs(abs(mean_rotation(flipped)[0]) - math.pi) < 1e-6


def test_paired_interval_is_the_mean_gain_with_a_normal_interval():
    baseline = np.array([10.0, 12.0, 14.0, 16.0])
    model = np.array([9.0, 10.0, 11.0, 12.0])
    gain, low, high = paired_interval(model, baseline)
    gains = baseline - model
    half = 1.96 * gains.std(ddof=1) / 2
    assert (gain, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half))


def test_facing_away_and_spread_on_posed_meshes(body):
    topology = mesh_topology(body)
    zeros = np.zeros((2, 10))
    poses = np.zeros((2, 159))
    poses[0, :3] = [math.pi, 0, 0]  # upright, facing a y-down camera
    poses[1, :3] = [0, math.pi, 0] @ np.eye(3)  # turned around: y half turn, then...
    upright_back = torch.as_tensor(
        [[0.0, 0.0, math.pi]]
    )  # Rz(π)·... a half turn about z is y up, back to camera
    poses[1, :3] = upright_back.numpy()[0]
    meshes = parameter_meshes(body, poses, zeros, zeros).double()
    assert facing_away(meshes, topology).tolist() == [False, True]
    assert spread(meshes[:1].repeat(3, 1, 1), topology) == pytest.approx(0.0, abs=1e-9)
    assert spread(meshes, topology) > 100.0


def test_perfect_predictions_beat_every_constant_and_match_the_truth_spread(body):
    topology = mesh_topology(body)
    g = np.random.default_rng(0)
    poses = g.normal(scale=0.2, size=(6, 159))
    poses[:, :3] = [math.pi, 0, 0]
    shapes, expressions = g.normal(size=(6, 10)), np.zeros((6, 10))
    gt = parameter_meshes(body, poses, shapes, expressions)
    as_tensor = lambda values: torch.as_tensor(values, dtype=torch.float32)  # noqa: E731
    predictions = {"mesh": gt, "gt_mesh": gt, "pose": as_tensor(poses), "shape": as_tensor(shapes),
                   "expr": torch.zeros(6, 10)}  # fmt: skip
    per_sample = {name: values.tolist() for name, values in whole_body_errors(gt, gt, topology).items()}
    training = parameter_meshes(body, poses[:3], shapes[:3], expressions[:3])
    report = compare_with_constants(
        per_sample,
        predictions,
        body,
        topology,
        mean_parameters(poses, shapes, expressions),
        mean_mesh(training, topology),
    )
    assert set(report.rows) == {MEAN_POSE, MEAN_MESH, MEAN_OUTPUT}
    for label in report.rows:
        assert set(report.rows[label]) == set(TABLE1_COLUMNS)
        gain, low, _ = report.gains[label]["mpvpe_all"]
        assert gain == pytest.approx(report.rows[label]["mpvpe_all"], rel=1e-6) and low > 0
    assert report.spread["prediction"] == pytest.approx(report.spread["ground_truth"])
    assert report.facing_away == {"ground_truth": 0, "predicted_too": 0}
