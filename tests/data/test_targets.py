import numpy as np
import pytest
import torch
from PIL import Image

from bidrn.body import joint_sets
from bidrn.data import geometry
from bidrn.data.augment import Augmentation, AugmentationConfig
from bidrn.data.targets import InvalidSampleError, build_sample, warp_image

from .helpers import random_image, random_record


def test_flip_twice_is_identity_on_every_target():
    record = random_record(seed=3)
    image = random_image()
    twice = record.mirrored().mirrored()
    mirrored_image = np.ascontiguousarray(image[:, ::-1][:, ::-1])
    aug = Augmentation(scale=1.1, rotation_deg=12.0, colour=(0.9, 1.0, 1.1))
    a = build_sample(record, image, aug)
    b = build_sample(twice, mirrored_image, aug)
    for group in ("inputs", "targets", "meta_info"):
        assert a[group].keys() == b[group].keys()
        for key in a[group]:
            torch.testing.assert_close(a[group][key], b[group][key], rtol=0, atol=1e-6, msg=key)


def test_flip_augmentation_equals_mirrored_record_and_image():
    record = random_record(seed=4)
    image = random_image(seed=4)
    aug = Augmentation(scale=0.9, rotation_deg=-20.0, flip=True)
    flipped = build_sample(record, image, aug)
    manual = build_sample(record.mirrored(), np.ascontiguousarray(image[:, ::-1]), Augmentation(0.9, -20.0))
    for key in flipped["targets"]:
        torch.testing.assert_close(
            flipped["targets"][key], manual["targets"][key], atol=1e-5, rtol=0, msg=key
        )
    torch.testing.assert_close(flipped["inputs"]["img"], manual["inputs"]["img"], atol=1 / 255 + 1e-6, rtol=0)


def test_flip_swaps_left_and_right_targets():
    record = random_record(seed=5)
    image = random_image(seed=5)
    plain = build_sample(record, image)
    flipped = build_sample(record, image, Augmentation(flip=True))
    l_wrist, r_wrist = joint_sets.JOINT_NAMES.index("L_Wrist"), joint_sets.JOINT_NAMES.index("R_Wrist")
    # The right wrist of the flipped sample sits where the left wrist was, mirrored in the crop.
    x_plain = float(plain["targets"]["joint_img"][l_wrist, 0])
    x_flip = float(flipped["targets"]["joint_img"][r_wrist, 0])
    assert x_flip == pytest.approx(6.0 - x_plain, abs=1e-4)
    torch.testing.assert_close(flipped["targets"]["lhand_bbox_size"], plain["targets"]["rhand_bbox_size"])
    pose_plain = plain["targets"]["smplx_pose"].view(53, 3)
    pose_flip = flipped["targets"]["smplx_pose"].view(53, 3)
    left_elbow = joint_sets.ROTATION_JOINT_NAMES.index("left_elbow")
    right_elbow = joint_sets.ROTATION_JOINT_NAMES.index("right_elbow")
    torch.testing.assert_close(
        pose_flip[right_elbow], pose_plain[left_elbow] * torch.tensor([1.0, -1.0, -1.0])
    )


@pytest.mark.parametrize("rotation", [-45.0, 17.0, 60.0])
def test_rotated_crop_joints_match_projection_of_rotated_scene(rotation):
    record = random_record(seed=6)
    sample = build_sample(record, random_image(seed=6), Augmentation(scale=1.2, rotation_deg=rotation))
    meta, targets = sample["meta_info"], sample["targets"]
    # Rotate the 3D scene the way the augmentation says, project with the crop camera.
    scene = record.joints_3d @ geometry.scene_rotation_for_crop(rotation).T
    projected = geometry.project(scene, meta["focal"].double().numpy(), meta["princpt"].double().numpy())
    expected = projected * [6 / 384, 8 / 512]
    np.testing.assert_allclose(targets["joint_img"][:, :2].double().numpy(), expected, atol=1e-4)
    # joint_cam is the same rotation, made part-relative.
    rel = scene - scene[joint_sets.BODY_ROOT]
    np.testing.assert_allclose(
        targets["joint_cam"][joint_sets.BODY_SLICE].double().numpy(), rel[joint_sets.BODY_SLICE], atol=1e-5
    )
    # The root orientation turns by the same rotation.
    root = geometry.axis_angle_to_matrix(targets["smplx_pose"][:3].double().numpy())
    expected_root = geometry.scene_rotation_for_crop(rotation) @ geometry.axis_angle_to_matrix(
        record.smplx.root_pose
    )
    np.testing.assert_allclose(root, expected_root, atol=1e-5)


def test_crop_image_content_follows_the_joints():
    record = random_record(seed=7)
    image = np.zeros((240, 320, 3), np.uint8)
    x, y = np.round(record.joints_2d[0]).astype(int)
    record.joints_2d[0] = [x, y]
    image[y - 1 : y + 2, x - 1 : x + 2] = 255
    sample = build_sample(record, image, Augmentation(scale=1.0, rotation_deg=30.0))
    px = sample["targets"]["joint_img"][0, :2].numpy() * [384 / 6, 512 / 8]
    crop = sample["inputs"]["img"][0].numpy()
    ys, xs = np.nonzero(crop > 0.05)
    weights = crop[ys, xs]
    centroid = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    assert np.hypot(*(centroid - px)) < 0.25


def test_targets_shapes_depth_bins_and_truncation():
    record = random_record(seed=8)
    record.joints_2d_valid[joint_sets.LHAND_SLICE.start] = True
    sample = build_sample(record, random_image(seed=8))
    t, m = sample["targets"], sample["meta_info"]
    assert sample["inputs"]["img"].shape == (3, 512, 384)
    assert float(sample["inputs"]["img"].min()) >= 0.0 and float(sample["inputs"]["img"].max()) <= 1.0
    assert t["joint_img"].shape == (137, 3) and m["joint_trunc"].shape == (137, 1)
    assert t["smplx_pose"].shape == (159,) and m["smplx_pose_valid"].shape == (159,)
    # Pelvis depth bin is the middle one; a hand joint 0.16 m behind its wrist lands past bin 8.
    assert float(t["joint_img"][joint_sets.BODY_ROOT, 2]) == pytest.approx(4.0)
    record.joints_3d[joint_sets.LHAND_SLICE.start, 2] = record.joints_3d[joint_sets.LHAND_ROOT, 2] + 0.16
    shifted = build_sample(record, random_image(seed=8))
    assert float(shifted["targets"]["joint_img"][joint_sets.LHAND_SLICE.start, 2]) == pytest.approx(
        8 + 4 / 15
    )
    # Outside [0, 8): truncated even though valid.
    assert float(shifted["meta_info"]["joint_trunc"][joint_sets.LHAND_SLICE.start, 0]) == 0.0
    # Invalid joints are never "inside".
    invalid = ~record.joints_2d_valid
    assert not m["joint_trunc"][torch.from_numpy(invalid), 0].any()


def test_large_shape_is_zeroed_and_invalid_box_is_masked():
    record = random_record(seed=9)
    record.smplx.shape[3] = 4.0
    record.lhand_box = None
    sample = build_sample(record, random_image(seed=9))
    assert torch.all(sample["targets"]["smplx_shape"] == 0)
    assert float(sample["meta_info"]["lhand_bbox_valid"]) == 0.0
    assert float(sample["meta_info"]["rhand_bbox_valid"]) == 1.0


def test_box_outside_image_raises_clear_error():
    record = random_record(seed=10)
    record.bbox = np.array([1000.0, 1000.0, 50.0, 80.0])
    with pytest.raises(InvalidSampleError, match="outside the 320x240 image"):
        build_sample(record, random_image())


def test_augmentation_sampling_ranges_and_determinism():
    config = AugmentationConfig()
    draws = [config.sample(np.random.default_rng(i)) for i in range(400)]
    scales = np.array([d.scale for d in draws])
    rotations = np.array([d.rotation_deg for d in draws])
    assert scales.min() >= 0.75 and scales.max() <= 1.25
    assert np.abs(rotations).max() <= 60.0
    assert 0.3 < np.mean(rotations == 0.0) < 0.5
    assert 0.4 < np.mean([d.flip for d in draws]) < 0.6
    assert config.sample(np.random.default_rng(5)) == config.sample(np.random.default_rng(5))
    assert AugmentationConfig(enabled=False).sample(np.random.default_rng(1)) == Augmentation()


def _warp_whole_image(image, affine, out_height, out_width):
    """The reference: Pillow warps the whole image (what warp_image did before windowing)."""
    inverse = geometry.invert_affine(affine)
    offset = inverse[:, 2] + 0.5 - inverse[:, :2] @ np.array([0.5, 0.5])
    coefficients = (*inverse[0, :2], offset[0], *inverse[1, :2], offset[1])
    size, bilinear = (out_width, out_height), Image.Resampling.BILINEAR
    return np.asarray(
        Image.fromarray(image).transform(size, Image.Transform.AFFINE, coefficients, resample=bilinear)
    )


def test_warp_image_hands_pillow_only_the_window_it_samples_and_changes_nothing():
    """Boxes inside, across and outside the image, zoomed and turned: identical to the whole-image warp."""
    rng = np.random.default_rng(0)
    for case in range(120):
        height, width = rng.integers(20, 400, 2)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        box = [
            rng.uniform(-width / 2, width),
            rng.uniform(-height / 2, height),
            *rng.uniform(2, 1.5 * max(height, width), 2),
        ]
        out_height, out_width = [(96, 72), (64, 64), (7, 5)][case % 3]
        turn = rng.uniform(-60, 60) if case % 2 else 0.0
        affine = geometry.crop_affine(np.array(box), rng.uniform(0.5, 2.0), turn, out_height, out_width)
        expected = _warp_whole_image(image, affine, out_height, out_width)
        assert np.array_equal(warp_image(image, affine, out_height, out_width), expected), case
