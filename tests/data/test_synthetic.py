"""Synthetic data: generation, storage, reading back, determinism and pose plausibility."""

import json

import numpy as np
import pytest
import torch

from bidrn.body import joint_sets
from bidrn.cli import main
from bidrn.data import geometry
from bidrn.data.augment import Augmentation
from bidrn.data.synthetic import poses
from bidrn.data.synthetic.dataset import SyntheticDataset
from bidrn.data.synthetic.generate import SynthConfig, generate
from bidrn.data.targets import build_sample
from bidrn.errors import BidrnError, InputFileError

body_module = pytest.importorskip("bidrn.body")
if not body_module.standin_path().is_file():
    pytest.skip("the embedded stand-in body model is not available", allow_module_level=True)

TINY = SynthConfig(height=96, width=80, shard_size=4, chunk_size=3)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, 6, seed=7, config=TINY, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def body():
    return body_module.load_body_model()


def test_layout_and_sample_count(synth_dir):
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    assert manifest["count"] == 6 and manifest["shards"] == ["train-00000", "train-00001"]
    assert len(list((synth_dir / "train-00000").glob("*.jpg"))) == 4
    data = SyntheticDataset(synth_dir)
    assert len(data) == 6
    assert data.records[5].ann_id == 5


def test_reprojected_3d_joints_match_stored_2d_joints(synth_dir):
    data = SyntheticDataset(synth_dir)
    for record in data.records:
        projected = geometry.project(record.joints_3d, record.focal, record.princpt)
        assert np.abs(projected - record.joints_2d).max() < 1.0
        assert np.abs(projected - record.joints_2d).max() < 1e-2  # float32 storage only


def test_stored_parameters_reproduce_the_stored_joints(synth_dir, body):
    record = SyntheticDataset(synth_dir).records[2]
    p = record.smplx
    out = body(
        betas=torch.tensor(p.shape[None], dtype=torch.float32),
        global_orient=torch.tensor(p.root_pose[None], dtype=torch.float32),
        body_pose=torch.tensor(p.body_pose[None], dtype=torch.float32),
        left_hand_pose=torch.tensor(p.lhand_pose[None], dtype=torch.float32),
        right_hand_pose=torch.tensor(p.rhand_pose[None], dtype=torch.float32),
        jaw_pose=torch.tensor(p.jaw_pose[None], dtype=torch.float32),
        expression=torch.tensor(p.expr[None], dtype=torch.float32),
        transl=torch.tensor(p.trans[None], dtype=torch.float32),
    )
    np.testing.assert_allclose(out.supervision_joints[0].numpy(), record.joints_3d, atol=1e-4)


def test_boxes_visibility_and_image_content(synth_dir):
    data = SyntheticDataset(synth_dir)
    for record in data.records:
        x, y, w, h = record.bbox
        assert w > 5 and h > 5 and x >= 0 and y >= 0 and x + w <= 80 and y + h <= 96
        assert 0.2 < record.visibility.mean() <= 1.0
        if record.lhand_box is not None:
            centre = (record.lhand_box[:2] + record.lhand_box[2:]) / 2
            wrist = record.joints_2d[joint_sets.LHAND_SLICE]
            assert np.linalg.norm(centre - wrist.mean(axis=0)) < max(w, h) * 0.3
    image = data.image_reader(data.records[0].image_path)
    assert image.shape == (96, 80, 3) and image.std() > 10


def test_samples_feed_targets_and_flip_twice_is_identity(synth_dir):
    data = SyntheticDataset(synth_dir)
    sample = data[0]
    assert sample["inputs"]["img"].shape == (3, 512, 384)
    assert float(sample["meta_info"]["smplx_joint_valid"].sum()) == 137
    record = data.records[1]
    image = data.image_reader(record.image_path)
    aug = Augmentation(scale=1.1, rotation_deg=-15, colour=(1.0, 0.9, 1.1))
    once = build_sample(record, image, aug)
    twice = build_sample(record.mirrored().mirrored(), image, aug)
    for key, value in once["targets"].items():
        torch.testing.assert_close(value, twice["targets"][key], msg=key)


def test_generation_is_deterministic_and_splits_differ(tmp_path, synth_dir):
    other = tmp_path / "again"
    generate(
        other,
        3,
        seed=7,
        config=SynthConfig(height=96, width=80, shard_size=4, chunk_size=2),
        workers=1,
        progress=False,
    )
    first = np.load(synth_dir / "train-00000" / "annotations.npz")
    second = np.load(other / "train-00000" / "annotations.npz")
    np.testing.assert_array_equal(first["joints_2d"][:3], second["joints_2d"])
    assert (synth_dir / "train-00000" / "00000001.jpg").read_bytes() == (
        other / "train-00000" / "00000001.jpg"
    ).read_bytes()
    test_split = tmp_path / "test"
    generate(test_split, 1, seed=7, split="test", config=TINY, workers=1, progress=False)
    third = np.load(test_split / "test-00000" / "annotations.npz")
    assert not np.allclose(third["body_pose"][0], first["body_pose"][0])


def test_pose_sampler_respects_joint_limits():
    rng = np.random.default_rng(0)
    draws = np.stack([poses.sample_body_pose(rng) for _ in range(300)]).reshape(300, 21, 3)
    names = list(poses.BODY_JOINTS)
    knees = draws[:, [names.index("left_knee"), names.index("right_knee")]]
    elbow_l, elbow_r = draws[:, names.index("left_elbow")], draws[:, names.index("right_elbow")]
    assert knees[..., 0].min() > -0.3  # knees only bend one way
    assert elbow_l[:, 1].max() < 0.35 and elbow_r[:, 1].min() > -0.35  # elbows too (mirrored)
    assert np.linalg.norm(draws, axis=-1).max() < np.pi
    # Not uniform noise: spine joints stay far tighter than shoulders.
    spread = draws.std(axis=0)
    assert spread[names.index("spine2")].max() < spread[names.index("left_shoulder")].max()


def test_hand_pose_is_an_offset_from_the_mean_hand():
    mean = np.full(45, 0.1)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    offset = poses.sample_hand_pose(rng_a, "left", mean)
    absolute = poses.sample_hand_pose(rng_b, "left", None)
    np.testing.assert_allclose(offset + mean, absolute)


def test_bad_inputs_give_clear_errors(tmp_path, synth_dir):
    with pytest.raises(InputFileError, match=r"manifest\.json: missing"):
        SyntheticDataset(tmp_path)
    with pytest.raises(BidrnError, match="already holds synthetic data"):
        generate(synth_dir, 1, config=TINY, workers=1, progress=False)
    broken = tmp_path / "broken"
    generate(broken, 2, config=TINY, workers=1, progress=False)
    arrays = dict(np.load(broken / "train-00000" / "annotations.npz"))
    del arrays["princpt"]
    np.savez(broken / "train-00000" / "annotations.npz", **arrays)
    with pytest.raises(InputFileError, match=r"annotations\.npz: missing key 'princpt'"):
        SyntheticDataset(broken)


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    sheet = tmp_path / "sheet.png"
    argv = ["synth", "--out", str(out), "--num", "2", "--seed", "3", "--size", "64", "48", "--workers", "1"]
    assert main([*argv, "--contact-sheet", str(sheet)]) == 0
    assert "wrote 2 train samples" in capsys.readouterr().out
    assert sheet.stat().st_size > 0
    assert main(argv) == 2
    assert "already holds synthetic data" in capsys.readouterr().err


def test_photo_backgrounds_from_a_folder(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (50, 40), (10, 200, 30)).save(photos / "green.png")
    config = SynthConfig(height=96, width=80, photo_prob=1.0, occluder_prob=0.0, backgrounds=str(photos))
    out = generate(tmp_path / "out", 2, seed=1, config=config, workers=1, progress=False)
    data = SyntheticDataset(out)
    for record in data.records:
        image = data.image_reader(record.image_path).astype(float)
        corners = np.stack([image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]])
        background = corners[np.abs(corners - [10, 200, 30]).max(axis=1) < 25]
        assert len(background) >= 2  # the person may cover some corners, not most
    (photos / "green.png").unlink()
    with pytest.raises(BidrnError, match=r"no \.jpg/\.jpeg/\.png background images"):
        generate(tmp_path / "none", 1, config=config, workers=1, progress=False)
