import json

import numpy as np
import pytest
import torch
from PIL import Image

from bidrn.cli import main
from tests.apps.test_predict import tiny_checkpoints
from tests.media import png_header_only, write_grey_clip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory)


def photo(path, height=96, width=72, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def run_cli(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bidrn predict: error: ")
    for fragment in fragments:
        assert str(fragment) in lines[0]
    assert "Traceback" not in err


# -- every bad input: one line naming it, non-zero exit --------------------------------------------
def bad_inputs(tmp_path):
    """name -> (path given to predict, fragment expected in the error)."""
    text = tmp_path / "text.jpg"
    text.write_text("just some words")
    full = photo(tmp_path / "full.jpg", 200, 160)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "missing": (tmp_path / "missing.jpg", "no such file"),
        "text named jpg": (text, "not an image"),
        "truncated jpeg": (truncated, "cannot decode image"),
        "1x1": (tiny, "too small"),
        "20000x20000": (png_header_only(tmp_path / "huge.png", 20000, 20000), "megapixel"),
        "empty folder": (empty, "folder has no images"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "text named jpg", "truncated jpeg", "1x1", "20000x20000", "empty folder"]
)
def test_bad_single_input_is_a_one_line_error(case, tmp_path, capsys, checkpoints):
    path, fragment = bad_inputs(tmp_path)[case]
    code, _, err = run_cli(capsys, path, "--out", tmp_path / "out", "--checkpoint", checkpoints["frozen"])
    assert code == 2
    assert_one_line_error(err, path, fragment)


def test_malformed_boxes_json_is_a_one_line_error(tmp_path, capsys, checkpoints):
    image = photo(tmp_path / "a.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text('[{"file_name": "a.png", "bbox": [1, 2, 3]')
    code, _, err = run_cli(
        capsys, image, "--out", tmp_path / "o", "--boxes", boxes, "--checkpoint", checkpoints["frozen"]
    )
    assert code == 2
    assert_one_line_error(err, boxes, "not valid JSON")
    boxes.write_text('[{"file_name": "a.png", "bbox": [1, 2, 3]}]')
    code, _, err = run_cli(
        capsys, image, "--out", tmp_path / "o", "--boxes", boxes, "--checkpoint", checkpoints["frozen"]
    )
    assert code == 2
    assert_one_line_error(err, boxes, "entry[0]: 'bbox' must be four numbers")


@pytest.mark.parametrize("kind", ["pickle", "foreign safetensors", "missing"])
def test_checkpoint_that_is_not_ours_is_a_one_line_error(kind, tmp_path, capsys):
    from safetensors.torch import save_file

    image = photo(tmp_path / "a.png")
    if kind == "pickle":
        checkpoint = tmp_path / "model.pth"
        checkpoint.write_bytes(b"\x80\x04\x95" + bytes(64))
        fragment = "not a bidrn checkpoint"
    elif kind == "foreign safetensors":
        checkpoint = tmp_path / "model.safetensors"
        save_file({"weight": torch.zeros(3)}, str(checkpoint))
        fragment = "not a bidrn checkpoint"
    else:
        checkpoint = tmp_path / "absent.bidrn.safetensors"
        fragment = "checkpoint not found"
    code, _, err = run_cli(capsys, image, "--out", tmp_path / "o", "--checkpoint", checkpoint)
    assert code == 2
    assert_one_line_error(err, checkpoint, fragment)


def test_bad_options_are_one_line_errors(tmp_path, capsys, checkpoints):
    image = photo(tmp_path / "a.png")
    common = ("--out", tmp_path / "o", "--checkpoint", checkpoints["frozen"])
    code, _, err = run_cli(capsys, image, *common, "--bbox", "1,2,3")
    assert code == 2 and "--bbox" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, image, *common, "--simulated")
    assert code == 2
    assert_one_line_error(err, checkpoints["frozen"], "runs only frozen")


def test_missing_bundled_weights_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from bidrn.apps import predict

    monkeypatch.setattr(predict, "bundled_weights_path", lambda: tmp_path / "none.bidrn.safetensors")
    code, _, err = run_cli(capsys, photo(tmp_path / "a.png"), "--out", tmp_path / "o")
    assert code == 2
    assert_one_line_error(err, "bundled weights are missing", "--checkpoint")


# -- skipping when other inputs are fine -----------------------------------------------------------
def test_bad_inputs_among_good_ones_are_skipped_with_warnings(tmp_path, capsys, checkpoints):
    cases = bad_inputs(tmp_path)
    good = photo(tmp_path / "good.png")
    paths = [path for path, _ in cases.values()]
    options = ("--out", tmp_path / "out", "--checkpoint", checkpoints["frozen"], "--no-render")
    code, out, err = run_cli(capsys, *paths, good, *options)
    assert code == 0
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("bidrn predict: warning: skipping")]
    assert len(warnings) == len(cases)
    for path, fragment in cases.values():
        assert any(str(path) in line and fragment in line for line in warnings), (path, fragment)
    assert f"{len(cases)} skipped" in out
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["good"]


# -- the normal path -------------------------------------------------------------------------------
def test_folder_of_images_is_batched_and_reports_images_per_second(tmp_path, capsys, checkpoints):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(5):
        photo(folder / f"{index:03d}.png", seed=index)
    out_dir = tmp_path / "out"
    code, out, _ = run_cli(capsys, folder, "--out", out_dir, "--checkpoint", checkpoints["training"],
                           "--batch-size", "2", "--no-render")  # fmt: skip
    assert code == 0
    assert "5 images, 5 people" in out and "images/s overall" in out and "frozen 1-bit" in out
    records = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == [f"{i:03d}" for i in range(5)]
    assert all((out_dir / r["files"]["mesh"]).is_file() for r in records)


def test_boxes_file_gives_several_people_per_image(tmp_path, capsys, checkpoints):
    first, second = photo(tmp_path / "a.png", 120, 160), photo(tmp_path / "b.png", 120, 160, seed=1)
    detections = [
        {"file_name": "a.png", "bbox": [0, 0, 60, 110], "score": 0.9, "category_id": 1},
        {"file_name": "a.png", "bbox": [80, 10, 70, 100], "score": 0.8, "category_id": 1},
        {"file_name": "a.png", "bbox": [80, 10, 70, 100], "score": 0.1, "category_id": 1},
        {"file_name": "b.png", "bbox": [10, 10, 50, 90], "score": 0.95, "category_id": 1},
    ]
    boxes = tmp_path / "det.json"
    boxes.write_text(json.dumps(detections))
    out_dir = tmp_path / "out"
    code, out, _ = run_cli(capsys, first, second, "--boxes", boxes, "--out", out_dir,
                           "--checkpoint", checkpoints["frozen"])  # fmt: skip
    assert code == 0 and "2 images, 3 people" in out
    records = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    assert [(r["name"], r["person"], r["score"]) for r in records] == [
        ("a", 0, 0.9),
        ("a", 1, 0.8),
        ("b", 0, 0.95),
    ]
    for record in records:
        assert set(record["files"]) == {"mesh", "params_npz", "params_json", "overlay", "side"}
        overlay = np.asarray(Image.open(out_dir / record["files"]["overlay"]))
        assert overlay.shape == (120, 160, 3)


def test_single_bbox_applies_to_the_image(tmp_path, capsys, checkpoints):
    image = photo(tmp_path / "a.png", 120, 160)
    out_dir = tmp_path / "out"
    code, _, _ = run_cli(capsys, image, "--bbox", "10,20,40,80", "--out", out_dir,
                         "--checkpoint", checkpoints["frozen"], "--no-render")  # fmt: skip
    assert code == 0
    (record,) = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    # 40x80 box -> aspect 0.75 (60x80) -> x1.25 (75x100), same centre (30, 60).
    np.testing.assert_allclose(record["bbox"], [30 - 37.5, 60 - 50, 75, 100])


def test_video_input_through_the_command(tmp_path, capsys, checkpoints):
    path = write_grey_clip(tmp_path / "clip.mp4", width=64, height=96, frames=3, step=60)
    out_dir = tmp_path / "out"
    code, out, _ = run_cli(
        capsys, path, "--out", out_dir, "--checkpoint", checkpoints["frozen"], "--no-render"
    )
    assert code == 0 and "3 images, 3 people" in out
    records = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    assert [(r["name"], r["frame_index"]) for r in records] == [(f"clip_{i:06d}", i) for i in range(3)]


def test_video_without_pyav_asks_for_the_extra(tmp_path, capsys, checkpoints, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # makes `import av` fail
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00" * 32)
    code, _, err = run_cli(capsys, path, "--out", tmp_path / "out", "--checkpoint", checkpoints["frozen"])
    assert code == 2
    assert_one_line_error(err, path, "pip install 'bidrn[video]'")


def test_when_every_input_is_bad_the_exit_is_non_zero(tmp_path, capsys, checkpoints):
    first, second = tmp_path / "a.jpg", tmp_path / "b.jpg"
    first.write_text("text")
    second.write_text("more text")
    code, _, err = run_cli(
        capsys, first, second, "--out", tmp_path / "o", "--checkpoint", checkpoints["frozen"]
    )
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("bidrn predict: error: no person was predicted")
    assert sum(str(first) in line or str(second) in line for line in lines) == 2
    code, _, err = run_cli(capsys, tmp_path / "x.jpg", tmp_path / "y", "--out", tmp_path / "o")
    assert code == 2
    assert_one_line_error(err, "none of the 2 inputs is usable", tmp_path / "x.jpg", tmp_path / "y")


def test_missing_body_model_and_unavailable_device_are_one_line_errors(tmp_path, capsys, checkpoints):
    image = photo(tmp_path / "a.png")
    common = (image, "--out", tmp_path / "o", "--checkpoint", checkpoints["frozen"])
    code, _, err = run_cli(capsys, *common, "--body-model", tmp_path / "SMPLX_NEUTRAL.npz")
    assert code == 2
    assert_one_line_error(err, tmp_path / "SMPLX_NEUTRAL.npz")
    code, _, err = run_cli(capsys, *common, "--device", "tpu")
    assert code == 2
    assert_one_line_error(err, "--device", "expected cpu or cuda")
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, *common, "--device", "cuda")
        assert code == 2
        assert_one_line_error(err, "CUDA is not available")
