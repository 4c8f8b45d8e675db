from dataclasses import dataclass

import pytest
import torch
from torch import nn

from bidrn.engine.distributed import DistributedContext
from bidrn.engine.evaluation import evaluate, ground_truth_mesh, result_document
from bidrn.engine.metrics import TABLE1_COLUMNS
from bidrn.errors import BidrnError
from tests.engine.test_metrics import _toy_topology

CPU = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
VERTICES = 12


@dataclass
class _Vertices:
    vertices: torch.Tensor


class _ToyBodyModel(nn.Module):
    """Vertices = a fixed template moved by the first 3 pose values (enough to tell meshes apart)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("template", torch.randn(VERTICES, 3, generator=g))

    def forward(self, global_orient, body_pose, left_hand_pose, right_hand_pose, jaw_pose, betas, expression):
        bend = torch.zeros(global_orient.shape[0], VERTICES, 3)
        bend[:, 5] = global_orient  # only a left-hand vertex moves
        return _Vertices(self.template + bend + betas[:, :1, None] * 0)


@dataclass
class _Output:
    mesh_cam: torch.Tensor


class _ToyModel(nn.Module):
    """Predicts the template shifted by 2 m (every metric aligns that away) plus a known bend."""

    def __init__(self, bend: float):
        super().__init__()
        self.body_model = _ToyBodyModel()
        self.bend = bend

    def forward(self, images):
        mesh = self.body_model.template.expand(images.shape[0], -1, -1).clone() + 2.0
        mesh[:, 5, 0] += self.bend
        return _Output(mesh)


class _Dataset(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, index):
        return {
            "inputs": {"img": torch.zeros(3, 4, 4)},
            "targets": {
                "smplx_pose": torch.zeros(159),
                "smplx_shape": torch.zeros(10),
                "smplx_expr": torch.zeros(10),
            },
            "meta_info": {"smplx_pose_valid": torch.ones(159), "smplx_shape_valid": torch.tensor(1.0)},
        }


def test_perfect_model_scores_zero_everywhere():
    result = evaluate(
        _ToyModel(bend=0.0), _Dataset(), _toy_topology(), batch_size=2, context=CPU, progress=False
    )
    assert result.count == 5
    for name in TABLE1_COLUMNS:
        assert result.metrics[name] == pytest.approx(0.0, abs=1e-3), name  # float32 meshes: micrometres
        assert len(result.per_sample[name]) == 5


def test_known_error_appears_in_whole_mesh_metric():
    result = evaluate(
        _ToyModel(bend=0.012), _Dataset(), _toy_topology(), batch_size=2, context=CPU, progress=False
    )
    # vertex 5 off by 12 mm, pelvis (vertices 0-3) unaffected: MPVPE all = 12 / 12 vertices.
    assert result.metrics["mpvpe_all"] == pytest.approx(1.0, abs=1e-3)
    document = result_document(result, method="toy")
    assert document["method"] == "toy" and document["count"] == 5


def test_gt_mesh_key_wins_over_parameters():
    mesh = torch.ones(2, VERTICES, 3)
    assert torch.equal(ground_truth_mesh({"smplx_mesh_cam": mesh}, {}, _ToyBodyModel()), mesh)


def test_incomplete_ground_truth_is_refused():
    targets = {
        "smplx_pose": torch.zeros(1, 159),
        "smplx_shape": torch.zeros(1, 10),
        "smplx_expr": torch.zeros(1, 10),
    }
    meta = {"smplx_pose_valid": torch.zeros(1, 159)}
    with pytest.raises(BidrnError, match="complete SMPL-X"):
        ground_truth_mesh(targets, meta, _ToyBodyModel())


class _MeshDataset(_Dataset):
    """Samples without SMPL-X targets whose ground truth comes from ``gt_mesh`` (like EHF)."""

    def __getitem__(self, index):
        return {"inputs": {"img": torch.zeros(3, 4, 4)}, "targets": {}, "meta_info": {}}

    def gt_mesh(self, index):
        return (_ToyBodyModel().template + 0.5).numpy()


def test_dataset_gt_mesh_method_supplies_ground_truth():
    result = evaluate(
        _ToyModel(bend=0.0), _MeshDataset(), _toy_topology(), batch_size=2, context=CPU, progress=False
    )
    assert result.metrics["mpvpe_all"] == pytest.approx(0.0, abs=1e-3)
