import numpy as np
import pytest

from bidrn.data import geometry


@pytest.mark.parametrize("angle", [0.0, 1e-8, 0.3, 2.0, np.pi - 1e-4, np.pi - 1e-9, np.pi])
def test_axis_angle_round_trip_including_near_pi(angle):
    rng = np.random.default_rng(int(angle * 1000))
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    rotation = geometry.axis_angle_to_matrix(axis * angle)
    back = geometry.matrix_to_axis_angle(rotation)
    np.testing.assert_allclose(geometry.axis_angle_to_matrix(back), rotation, atol=1e-7)
    assert np.linalg.norm(back) == pytest.approx(angle, abs=1e-6)


def test_sanitize_and_aspect():
    assert geometry.sanitize_box([-10, 5, 50, 40], 100, 120).tolist() == [0, 5, 40, 40]
    assert geometry.sanitize_box([200, 5, 50, 40], 100, 120) is None
    assert geometry.sanitize_box([10, 5, 0, 40], 100, 120) is None
    box = geometry.fit_box_aspect(np.array([10.0, 20.0, 30.0, 80.0]))
    assert box[2] / box[3] == pytest.approx(0.75)
    assert box[3] == pytest.approx(100.0)  # 80 * 1.25; width grown to 0.75 * 100
    np.testing.assert_allclose(box[:2] + box[2:] / 2, [25, 60])


def test_crop_affine_maps_box_centre_to_crop_centre_and_inverts():
    box = np.array([40.0, 30.0, 75.0, 100.0])
    affine = geometry.crop_affine(box, scale=1.3, rotation_deg=25.0)
    np.testing.assert_allclose(geometry.apply_affine(affine, np.array([[77.5, 80.0]])), [[192, 256]])
    points = np.random.default_rng(0).uniform(0, 200, size=(5, 2))
    roundtrip = geometry.apply_affine(geometry.invert_affine(affine), geometry.apply_affine(affine, points))
    np.testing.assert_allclose(roundtrip, points)
    assert np.hypot(*affine[0, :2]) == pytest.approx(384 / (75 * 1.3))
