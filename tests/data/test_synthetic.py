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
        # Crops are re-exposed (gain 0.7-1.2 per channel), so the photo shows as a strong green.
        green = (
            (corners[:, 1] > 100) & (corners[:, 1] > 3 * corners[:, 0]) & (corners[:, 1] > 3 * corners[:, 2])
        )
        assert green.sum() >= 2  # the person may cover some corners, not most
    (photos / "green.png").unlink()
    with pytest.raises(BidrnError, match=r"no \.jpg/\.jpeg/\.png background images"):
        generate(tmp_path / "none", 1, config=config, workers=1, progress=False)


def test_every_activity_template_lies_within_the_joint_limits():
    """Archetype means must be reachable: the clip to the joint limits would otherwise distort them."""
    limits = poses._BODY_LIMITS
    for name, (_, sampler) in poses.ACTIVITIES.items():
        for seed in range(12):
            template = sampler(np.random.default_rng(seed))
            inside = (template.means >= limits[..., 0] - 1e-9) & (template.means <= limits[..., 1] + 1e-9)
            assert inside.all(), (name, [poses.BODY_JOINTS[j] for j in np.nonzero(~inside.all(axis=1))[0]])
    for part, table in (("arm", poses.ARMS), ("leg", poses.LEGS)):
        for name in table:
            template = poses.Template().set("left", table[name]).set("right", table[name])
            inside = (template.means >= limits[..., 0]) & (template.means <= limits[..., 1])
            assert inside.all(), (part, name)


def test_pose_prior_covers_activities_and_mirrors_both_ways():
    rng = np.random.default_rng(5)
    params = [poses.sample_params(rng) for _ in range(300)]
    body_pose = np.stack([p.body_pose for p in params]).reshape(-1, 21, 3)
    names = list(poses.BODY_JOINTS)
    knees = np.linalg.norm(body_pose[:, [names.index("left_knee"), names.index("right_knee")]], axis=-1)
    assert (knees.max(axis=1) > 1.2).mean() > 0.1  # sitting, kneeling, squatting, running
    assert (knees.max(axis=1) < 0.5).mean() > 0.3  # standing and walking
    # Asymmetric poses in both directions: left knee bent more than right as often as the reverse.
    left_more = (knees[:, 0] - knees[:, 1] > 0.5).mean()
    right_more = (knees[:, 1] - knees[:, 0] > 0.5).mean()
    assert left_more > 0.04 and right_more > 0.04 and abs(left_more - right_more) < 0.06
    # Lying and bending over tilt the body: the pelvis' up axis is far from the camera's up sometimes.
    up = np.stack(
        [geometry.axis_angle_to_matrix(p.root_pose)[:, 1] for p in params]
    )  # body y in camera frame
    assert (up[:, 1] > -0.5).mean() > 0.02 and (up[:, 1] < -0.9).mean() > 0.7


def test_appearance_is_deterministic_and_dresses_the_body(body):
    from bidrn.data.synthetic import scene

    surface = scene.BodySurface.from_model(body.v_template.numpy(), body.lbs_weights.numpy())
    first = scene.sample_appearance(np.random.default_rng(11))
    again = scene.sample_appearance(np.random.default_rng(11))
    albedo, owner = scene.vertex_albedo(first, surface)
    albedo_again, owner_again = scene.vertex_albedo(again, surface)
    np.testing.assert_array_equal(albedo, albedo_again)
    np.testing.assert_array_equal(owner, owner_again)
    chest = np.argmin(np.linalg.norm(surface.canonical - [0.0, -0.05, 0.12], axis=1))
    nose = joint_sets.SMPLX_EXTRA_VERTEX_IDS[joint_sets.SMPLX_EXTRA_NAMES.index("nose")]
    assert owner[chest] >= 0 and owner[nose] == -1  # a top covers the chest, the face stays bare
    np.testing.assert_allclose(albedo[nose], first.skin)
    tops, hair = 0, 0
    rng = np.random.default_rng(0)
    crown = np.argmax(surface.canonical[:, 1])
    for _ in range(40):
        appearance = scene.sample_appearance(rng)
        colours, owners = scene.vertex_albedo(appearance, surface)
        tops += owners[chest] >= 0
        hair += np.allclose(colours[crown], appearance.hair)
    assert tops == 40 and 25 < hair < 40  # most people have hair, a few are bald


def test_rasteriser_culling_and_sort_key_change_nothing(body):
    from bidrn.data.synthetic import raster

    rng = np.random.default_rng(2)
    params = poses.sample_params(rng)
    with torch.no_grad():
        out = body(
            global_orient=torch.tensor(params.root_pose[None], dtype=torch.float32),
            body_pose=torch.tensor(params.body_pose[None], dtype=torch.float32),
        )
    vertices = out.vertices[0].double().numpy() + np.array([0.0, 0.0, 3.0])
    points = geometry.project(vertices, np.array([300.0, 300.0]), np.array([64.0, 80.0]))
    faces = np.asarray(body.faces, dtype=np.int64)
    culled = raster.rasterize(points, vertices[:, 2], faces, 160, 128)
    full = raster.rasterize(points, vertices[:, 2], faces, 160, 128, cull_back=False)
    assert culled.mask.sum() > 500
    np.testing.assert_array_equal(culled.face, full.face)
    # The packed int64 sort key orders like a stable (pixel, depth) lexsort, ties included.
    pixel = rng.integers(0, 50, size=2000)
    depth = rng.choice([1.0, 1.5, 2.0], size=2000)
    np.testing.assert_array_equal(raster._nearest_first(pixel, depth, 50), np.lexsort((depth, pixel)))


def test_framing_fits_wide_people_and_close_ups_cut_the_legs():
    from bidrn.data.synthetic.generate import _frame

    lying = np.array([[-1.0, -0.15, -0.1], [1.0, 0.15, 0.1]])  # 2 m wide, 0.3 m tall
    config = SynthConfig(truncation_prob=0.0, closeup_prob=0.0)
    for seed in range(20):
        focal, princpt, trans = _frame(np.random.default_rng(seed), lying, config)
        xy = geometry.project(lying + trans, focal, princpt)
        assert xy[:, 0].min() >= -1 and xy[:, 0].max() <= config.width + 1
    standing = np.array([[-0.3, -0.9, -0.1], [0.3, 0.9, 0.1]])
    closeup = SynthConfig(closeup_prob=1.0)
    for seed in range(20):
        focal, princpt, trans = _frame(np.random.default_rng(seed), standing, closeup)
        top, bottom = geometry.project(standing + trans, focal, princpt)[:, 1]
        assert 0 <= top < 0.2 * closeup.height and bottom > closeup.height


def test_bundled_backgrounds_are_photos_with_a_licence_row_each():
    from PIL import Image

    from bidrn.data.synthetic import scene

    folder = scene.bundled_backgrounds()
    shipped = sorted(p.name for p in folder.glob("*.jpg"))
    table = (folder / "LICENSES.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    listed = sorted(line.split("`")[1] for line in rows)
    assert len(shipped) >= 20 and listed == shipped
    allowed = ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "GPL-2+", "LGPL-3")
    for row in rows:
        author, licence = [cell.strip() for cell in row.split("|")[4:6]]
        assert author and licence.lstrip("[").split("]")[0].split(" ")[0] in allowed, row
    for name in ("GPL-2", "GPL-3", "LGPL-3"):
        assert (folder / "licenses" / name).stat().st_size > 5000
    for name in shipped:
        with Image.open(folder / name) as image:
            assert max(image.size) <= 512 and image.mode == "RGB"
    assert sum((folder / name).stat().st_size for name in shipped) < 4_000_000
