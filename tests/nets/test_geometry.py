import math

import torch

from bidrn.nets.geometry import (
    rot6d_to_axis_angle,
    rot6d_to_axis_angles,
    rot6d_to_rotmat,
    rotmat_to_axis_angle,
    sample_features,
    soft_argmax_2d,
    soft_argmax_3d,
)


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    angle = axis_angle.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = axis_angle / angle
    zero = torch.zeros_like(k[..., 0])
    cross = torch.stack(
        (zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0], -k[..., 1], k[..., 0], zero), dim=-1
    ).view(*k.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype).expand_as(cross)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return eye + s * cross + (1 - c) * cross @ cross


def test_rot6d_gives_orthonormal_matrices_with_unit_determinant():
    torch.manual_seed(0)
    rot6d = torch.randn(500, 6, dtype=torch.float64) * 3
    rotmat = rot6d_to_rotmat(rot6d)
    eye = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    torch.testing.assert_close(rotmat.transpose(1, 2) @ rotmat, eye)
    torch.testing.assert_close(torch.linalg.det(rotmat), torch.ones(500, dtype=torch.float64))


def test_rot6d_first_column_is_normalised_first_input_column():
    rot6d = torch.tensor([[2.0, 0.0, 0.0, 3.0, 0.0, 0.0]])  # columns (2, 0, 0) and (0, 3, 0)
    torch.testing.assert_close(rot6d_to_rotmat(rot6d)[0], torch.eye(3))


def test_rotmat_to_axis_angle_inverts_rodrigues_over_the_whole_range():
    torch.manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(400, 3, dtype=torch.float64), dim=-1)
    angle = torch.rand(400, 1, dtype=torch.float64) * (math.pi - 1e-3)
    axis_angle = axis * angle
    torch.testing.assert_close(rotmat_to_axis_angle(rodrigues(axis_angle)), axis_angle, atol=1e-7, rtol=1e-7)


def test_axis_angle_of_identity_is_zero_with_finite_gradient():
    rot6d = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]], requires_grad=True)
    axis_angle = rot6d_to_axis_angle(rot6d)
    axis_angle.sum().backward()
    assert torch.all(axis_angle == 0)
    assert torch.isfinite(rot6d.grad).all()


def test_axis_angles_of_several_tensors_equal_one_call_each():
    generator = torch.Generator().manual_seed(2)
    shapes = [(4, 15, 6), (2, 6), (2, 21, 6), (2, 6)]
    rot6d = [torch.randn(*shape, generator=generator) for shape in shapes]
    converted = rot6d_to_axis_angles(*rot6d)
    assert [tuple(c.shape) for c in converted] == [(*shape[:-1], 3) for shape in shapes]
    for together, alone in zip(converted, rot6d, strict=True):
        assert torch.equal(together, rot6d_to_axis_angle(alone))


def test_soft_argmax_3d_finds_a_sharp_peak():
    heatmaps = torch.full((1, 2, 8, 8, 6), -1e4)
    heatmaps[0, 0, 3, 5, 1] = 0.0  # z=3, y=5, x=1
    heatmaps[0, 1, 7, 0, 5] = 0.0
    coords, probabilities = soft_argmax_3d(heatmaps)
    # Cell i spans [i, i + 1): a peak in one cell sits at its centre.
    torch.testing.assert_close(coords, torch.tensor([[[1.5, 5.5, 3.5], [5.5, 0.5, 7.5]]]))
    torch.testing.assert_close(probabilities.sum(dim=(2, 3, 4)), torch.ones(1, 2))


def test_soft_argmax_2d_of_flat_map_is_the_centre():
    coords = soft_argmax_2d(torch.zeros(1, 1, 64, 48))
    torch.testing.assert_close(coords, torch.tensor([[[24.0, 32.0]]]))


def test_sample_features_reads_cells_and_interpolates():
    features = torch.arange(24.0).view(1, 1, 4, 6)  # value of cell (x, y) = 6 y + x, at its centre
    xy = torch.tensor([[[0.5, 0.5], [5.5, 3.5], [3.0, 2.0], [0.0, 0.0], [6.0, 4.0]]])
    expected = torch.tensor([[[0.0], [23.0], [11.5], [0.0], [23.0]]])  # beyond the outer centres: border
    torch.testing.assert_close(sample_features(features, xy), expected)
