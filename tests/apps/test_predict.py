import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from safetensors.torch import save_file

import bidrn
from bidrn import deploy
from bidrn.apps.inputs import Frame, PersonBox, read_image_file
from bidrn.apps.predict import (
    Predictor,
    bundled_weights_path,
    image_camera,
    load_model,
    person_crop,
    predict_frames,
    samples_path,
)
from bidrn.body import load_body_model
from bidrn.body.export import layer_inputs, load_parameters
from bidrn.body.render import Intrinsics, get_rasterizer
from bidrn.data import geometry
from bidrn.engine.checkpoint import save_checkpoint
from bidrn.engine.datasets import open_dataset
from bidrn.engine.resolution import fit_to_model
from bidrn.errors import InputFileError
from bidrn.nets.wholebody import CANONICAL_BODY_INPUT, FOCAL

TINY = {"width": 0.25, "body_input": [128, 96], "hand_input": [64, 64], "face_input": [64, 64]}
_CACHE: dict[str, Path] = {}


def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """An untrained tiny BiDRN as a training checkpoint and as a frozen file (built once per session)."""
    if not _CACHE:
        folder = tmp_path_factory.mktemp("tiny-model")
        torch.manual_seed(0)
        model = bidrn.create_model("bidrn", **TINY).eval()
        info = {"model": "bidrn", "model_overrides": TINY}
        save_checkpoint(folder / "train", model, info)
        frozen = deploy.freeze(model, example_inputs=(torch.zeros(1, 3, *model.config.crop_input),))
        deploy.save(
            frozen, folder / "tiny.bidrn.safetensors", architecture={"name": "bidrn", "overrides": TINY}
        )
        _CACHE.update(training=folder / "train", frozen=folder / "tiny.bidrn.safetensors")
    return dict(_CACHE)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(checkpoints):
    return Predictor.load(checkpoints["frozen"], device="cpu")


def synthetic_dataset(body_model):
    return open_dataset(f"synth:{samples_path() / 'synth-test'}", train=False, body_model=body_model)


# -- crops and cameras -----------------------------------------------------------------------------
@pytest.mark.parametrize("crop_shape", [(512, 384), (256, 192), (192, 128)])
def test_crop_is_the_evaluation_crop_of_the_synthetic_sample(crop_shape):
    """predict's crop of the annotated box equals what `bidrn eval` feeds the model, bit for bit."""
    body_model = load_body_model()
    dataset = synthetic_dataset(body_model)
    model = bidrn.create_model("bidrn", width=0.0625, body_input=(crop_shape[0] // 2, crop_shape[1] // 2))
    expected = fit_to_model(dataset, model)[0]["inputs"]["img"]
    record = dataset.record(0)
    crop = person_crop(read_image_file(record.image_path), record.bbox, crop_shape)
    assert crop.pixels.shape == expected.shape
    assert torch.equal(crop.pixels, expected)
    np.testing.assert_allclose(crop.box, dataset[0]["meta_info"]["bbox"].numpy(), rtol=1e-6)


def test_image_camera_is_the_canonical_camera_moved_through_the_crop():
    """Projecting with the image camera, then warping into the 512x384 crop, equals projecting with the
    canonical 256x192 body camera scaled x2 (the crop is twice the body image)."""
    rng = np.random.default_rng(1)
    points = rng.uniform([-0.5, -0.9, 4.0], [0.5, 0.9, 30.0], size=(20, 3))
    for _ in range(5):
        raw = np.concatenate([rng.uniform(0, 200, 2), rng.uniform(40, 300, 2)])
        box = geometry.prepare_person_box(raw, 600, 500)
        focal, princpt = image_camera(box)
        in_image = geometry.project(points, np.array(focal), np.array(princpt))
        in_crop = geometry.apply_affine(geometry.crop_affine(box), in_image)
        height, width = CANONICAL_BODY_INPUT
        canonical = geometry.project(points, 2 * np.array(FOCAL), np.array([width, height], dtype=float))
        np.testing.assert_allclose(in_crop, canonical, atol=1e-6)
        assert focal[0] == pytest.approx(focal[1])  # prepared boxes have the crop's aspect


def test_box_outside_the_image_gives_no_crop():
    image = np.zeros((64, 48, 3), np.uint8)
    assert person_crop(image, (100, 100, 20, 20), (256, 192)) is None
    whole = person_crop(image, (0, 0, 48, 64), (256, 192))
    assert whole.pixels.shape == (3, 256, 192)


# -- model loading ---------------------------------------------------------------------------------
def test_training_checkpoint_runs_frozen_by_default_on_cpu_and_matches_simulated(checkpoints):
    # The exact path: the reduced precisions `auto` picks on some CPUs move single predictions
    # (tests/deploy/test_bidrn_model.py checks them against fp32).
    frozen, info = load_model(checkpoints["training"], "cpu", dense_precision="fp32")
    assert info.file_format == "training" and info.frozen
    assert any(isinstance(m, deploy.PackedBinaryLayer) for m in frozen.modules())
    simulated, info = load_model(str(checkpoints["training"]) + ".json", "cpu", frozen=False)
    assert not info.frozen
    assert not any(isinstance(m, deploy.PackedBinaryLayer) for m in simulated.modules())
    from_file, info = load_model(checkpoints["frozen"], "cpu", dense_precision="fp32")
    assert info.file_format == "frozen" and info.name == "bidrn" and info.overrides == TINY
    images = torch.rand(2, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = [m(images) for m in (frozen, simulated, from_file)]
    for other in outputs[1:]:
        torch.testing.assert_close(other.body_pose, outputs[0].body_pose, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(other.cam_trans, outputs[0].cam_trans, atol=1e-3, rtol=1e-3)


def test_frozen_file_cannot_run_simulated(checkpoints):
    with pytest.raises(InputFileError, match="runs only frozen"):
        load_model(checkpoints["frozen"], "cpu", frozen=False)


def test_full_precision_checkpoint_runs_unfrozen_and_cannot_be_frozen(tmp_path):
    overrides = {"width": 0.0625, "body_input": [64, 64], "hand_input": [64, 64], "face_input": [64, 64]}
    model = bidrn.create_model("hand4whole", **overrides)
    save_checkpoint(tmp_path / "fp", model, {"model": "hand4whole", "model_overrides": overrides})
    loaded, info = load_model(tmp_path / "fp", "cpu")
    assert not info.binarized and not info.frozen
    assert Predictor(loaded, load_body_model(), torch.device("cpu"), info).mode == "full precision"
    with pytest.raises(InputFileError, match="no binary layers to freeze"):
        load_model(tmp_path / "fp", "cpu", frozen=True)


def test_files_that_are_not_ours_are_refused(tmp_path):
    pickle_like = tmp_path / "model.pth"
    pickle_like.write_bytes(b"\x80\x04\x95" + bytes(100))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    for path in (pickle_like, foreign, garbage):
        with pytest.raises(InputFileError, match="not a bidrn checkpoint") as info:
            load_model(path)
        assert str(info.value).startswith(str(path))
    with pytest.raises(InputFileError, match="checkpoint not found"):
        load_model(tmp_path / "absent.bidrn.safetensors")
    with pytest.raises(InputFileError, match="is a folder"):
        load_model(tmp_path)


# -- prediction ------------------------------------------------------------------------------------
def test_outputs_are_complete_and_self_consistent(predictor, tmp_path):
    image = read_image_file(samples_path() / "astronaut.jpg")
    frames = [Frame(image, Path("astro.jpg"), "astro")]
    boxes = [PersonBox((100.0, 20.0, 300.0, 480.0), 0.9), PersonBox((5000.0, 0.0, 10.0, 10.0), 0.8)]
    warnings = []
    report = predict_frames(predictor, frames, tmp_path, lambda f: boxes, batch_size=4, warn=warnings.append)
    assert report.frames == 1 and report.people == 1
    assert len(warnings) == 1 and "lies outside" in warnings[0]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["predictions.jsonl"]
        + [f"astro_p0_{k}" for k in ("mesh.obj", "params.npz", "params.json", "overlay.png", "side.png")]
    )
    (line,) = tmp_path.joinpath("predictions.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["score"] == 0.9 and record["person"] == 0
    params, meta = load_parameters(tmp_path / "astro_p0_params.npz")
    json_params, json_meta = load_parameters(tmp_path / "astro_p0_params.json")
    assert meta == json_meta
    for name, value in params.items():
        np.testing.assert_allclose(value, json_params[name], rtol=1e-6, atol=1e-7)
    # Intrinsics in original-image pixels, the box, the layout: all recorded.
    box = geometry.prepare_person_box(np.array(boxes[0].xywh), *image.shape[:2])
    np.testing.assert_allclose(meta["bbox"], box)
    np.testing.assert_allclose(meta["focal"], [FOCAL[0] / 192 * box[2], FOCAL[1] / 256 * box[3]])
    np.testing.assert_allclose(meta["princpt"], [box[0] + box[2] / 2, box[1] + box[3] / 2])
    assert meta["detection_bbox"] == list(boxes[0].xywh) and meta["image_size"] == [512, 512]
    assert meta["flat_hand_mean"] is False and meta["use_pca"] is False
    assert meta["rotation_format"] == "axis-angle" and meta["inference"] == "frozen 1-bit"
    assert meta["body_model"] == "bidrn-standin-v1"
    # The .obj is the body model of the saved parameters, translated by cam_trans.
    import trimesh

    mesh = trimesh.load(tmp_path / "astro_p0_mesh.obj", process=False)
    tensors = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in params.items()}
    rebuilt = predictor.body_model(**layer_inputs(tensors)).vertices[0].numpy()
    np.testing.assert_allclose(mesh.vertices, rebuilt, atol=2e-4)


def test_batching_does_not_change_results(predictor, tmp_path):
    image = read_image_file(samples_path() / "astronaut.jpg")
    frames = [Frame(image[:, k * 40 : k * 40 + 400].copy(), Path(f"{k}.png"), f"f{k}") for k in range(3)]
    one = predict_frames(predictor, frames, tmp_path / "one", batch_size=1, render=False)
    three = predict_frames(predictor, frames, tmp_path / "three", batch_size=3, render=False)
    assert one.people == three.people == 3
    for a, b in zip(one.records, three.records, strict=True):
        assert a["focal"] == b["focal"]
        np.testing.assert_allclose(a["cam_trans"], b["cam_trans"], rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "one" / "f0_p0_overlay.png").exists()


def test_skipped_frames_are_reported_and_others_written(predictor, tmp_path):
    image = np.zeros((64, 48, 3), np.uint8)
    frames = [InputFileError("bad.jpg", "not an image"), Frame(image, Path("ok.png"), "ok")]
    warnings = []
    report = predict_frames(predictor, frames, tmp_path, render=False, warn=warnings.append)
    assert report.people == 1 and report.skipped == ["bad.jpg: not an image"]
    assert warnings == ["skipping bad.jpg: not an image"]
    assert report.images_per_second > 0 and report.model_people_per_second > 0


def silhouette(vertices, faces, focal, princpt, size):
    intrinsics = Intrinsics(focal[0], focal[1], princpt[0], princpt[1], size[1], size[0])
    return get_rasterizer("numpy").render(np.asarray(vertices), np.asarray(faces), intrinsics, (1, 1, 1)).mask


def mask_iou(first, second):
    return np.logical_and(first, second).sum() / np.logical_or(first, second).sum()


def truth_parameters(record):
    """The record's ground-truth SMPL-X parameters under Hand4Whole's names, as a batch of one."""
    names = ("root_pose", "body_pose", "lhand_pose", "rhand_pose", "jaw_pose", "shape", "expr")
    return {name: torch.as_tensor(getattr(record.smplx, name), dtype=torch.float32)[None] for name in names}


def oracle_translation(joints, targets_2d, focal, princpt):
    """Least-squares t with project(joints + t) = targets (linear in t once multiplied by depth)."""
    rows, rhs = [], []
    for axis in (0, 1):
        offset = targets_2d[:, axis] - princpt[axis]
        row = np.zeros((len(joints), 3))
        row[:, axis] = focal[axis]
        row[:, 2] = -offset
        rows.append(row)
        rhs.append(offset * joints[:, 2] - focal[axis] * joints[:, axis])
    return np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)[0]


def test_a_perfect_network_output_lands_on_the_person(predictor, tmp_path, monkeypatch):
    """End to end through predict_frames: the ground-truth pose with the translation an ideal network
    would give in its canonical crop camera is written with image intrinsics that put it on the person."""
    body_model = predictor.body_model
    record = synthetic_dataset(body_model).record(0)
    params = truth_parameters(record)
    posed = body_model(**layer_inputs(params))
    # The network's camera: canonical 256x192 body camera, i.e. 2 x focal on the 512x384 crop.
    box = geometry.prepare_person_box(record.bbox, *record.image_size)
    crop_joints = geometry.apply_affine(geometry.crop_affine(box), record.joints_2d)
    height, width = CANONICAL_BODY_INPUT
    translation = oracle_translation(
        posed.supervision_joints[0].double().numpy(), crop_joints, 2 * np.array(FOCAL), (width, height)
    )
    cam_trans = torch.as_tensor(translation, dtype=torch.float32)[None]
    output = SimpleNamespace(**params, cam_trans=cam_trans, mesh_cam=posed.vertices + cam_trans[:, None])
    monkeypatch.setattr(predictor, "run", lambda pixels: output)
    image = read_image_file(record.image_path)
    predict_frames(
        predictor, [Frame(image, record.image_path, "s")], tmp_path, lambda f: [PersonBox(tuple(record.bbox))]
    )
    saved, meta = load_parameters(tmp_path / "s_p0_params.npz")
    tensors = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in saved.items()}
    joints = body_model(**layer_inputs(tensors)).supervision_joints[0].double().numpy()
    reprojected = geometry.project(joints, np.array(meta["focal"]), np.array(meta["princpt"]))
    error = np.linalg.norm(reprojected - record.joints_2d, axis=1)
    assert np.median(error) < 0.03 * box[3], np.median(error)
    gt_vertices = posed.vertices[0] + torch.as_tensor(record.smplx.trans, dtype=torch.float32)
    size = image.shape[:2]
    gt_mask = silhouette(gt_vertices, body_model.faces, record.focal, record.princpt, size)
    mesh = np.asarray(trimesh.load(tmp_path / "s_p0_mesh.obj", process=False).vertices)
    predicted_mask = silhouette(mesh, body_model.faces, meta["focal"], meta["princpt"], size)
    iou = mask_iou(gt_mask, predicted_mask)
    assert iou > 0.7, iou
    overlay = np.asarray(Image.open(tmp_path / "s_p0_overlay.png"))
    changed = np.any(overlay != image, axis=2)
    assert np.logical_and(changed, gt_mask).sum() > 0.7 * gt_mask.sum()


# -- acceptance: the bundled weights align with the person -----------------------------------------
def test_bundled_weights_overlay_aligns_with_the_synthetic_person(tmp_path):
    """Issue 8, acceptance 2: the bundled weights measure IoU 0.52 here (results/bundled-weights.md).

    It measures the weights, so on the exact fp32 path: one sample's IoU moves by up to ±0.1 in
    bf16 or int8 (sign flips), while over 30 samples of a synthetic test split the mean IoU is
    0.409 (fp32), 0.401 (bf16) and 0.398 (int8).
    """
    predictor = Predictor.load(bundled_weights_path(), device="cpu", dense_precision="fp32")
    dataset = synthetic_dataset(predictor.body_model)
    record = dataset.record(0)
    image = read_image_file(record.image_path)
    report = predict_frames(
        predictor,
        [Frame(image, record.image_path, "synthetic")],
        tmp_path,
        lambda frame: [PersonBox(tuple(record.bbox))],
        render=False,
    )
    assert report.people == 1
    params, meta = load_parameters(tmp_path / "synthetic_p0_params.npz")
    tensors = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in params.items()}
    predicted = predictor.body_model(**layer_inputs(tensors)).vertices[0]
    gt_vertices = predictor.body_model(**layer_inputs(truth_parameters(record))).vertices[0]
    gt_vertices = gt_vertices + torch.as_tensor(record.smplx.trans, dtype=torch.float32)
    faces = predictor.body_model.faces
    size = image.shape[:2]
    gt_mask = silhouette(gt_vertices, faces, record.focal, record.princpt, size)
    predicted_mask = silhouette(predicted, faces, meta["focal"], meta["princpt"], size)
    iou = mask_iou(gt_mask, predicted_mask)
    assert gt_mask.sum() > 500
    assert iou >= 0.5, f"silhouette IoU {iou:.2f}"
