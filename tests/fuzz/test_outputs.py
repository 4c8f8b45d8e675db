"""Output paths: nothing overwritten, nothing lost to concurrent runs, strict JSON, group-readable files."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from bidrn.apps.inputs import Frame
from bidrn.apps.outputs import OutputFolder
from bidrn.apps.predict import predict_frames
from bidrn.body.export import PARAMETER_SIZES
from bidrn.errors import InputFileError
from tests.fuzz.helpers import assert_cli_error, assert_one_line, run_cli

ROOT = Path(__file__).resolve().parents[2]


def strict_json_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file parsed as standard JSON (no NaN / Infinity)."""

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def frame(name: str, index: int | None = None, value: int = 90) -> Frame:
    return Frame(np.full((96, 72, 3), value, dtype=np.uint8), Path(f"{name}.png"), name, index)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


# -- names ------------------------------------------------------------------------------------------------
def test_an_image_named_like_a_video_frame_keeps_both_outputs(predictor, tmp_path):
    frames = [frame("clip_000001", index=1, value=20), frame("clip_000001", value=200)]  # video frame, image
    report = predict_frames(predictor, frames, tmp_path, render=False)
    records = strict_json_lines(tmp_path / "predictions.jsonl")
    assert [r["name"] for r in records] == ["clip_000001", "clip_000001_2"]
    assert report.renamed == [("clip_000001", "clip_000001_2")]
    meshes = {r["files"]["mesh"] for r in records}
    assert len(meshes) == 2 and all((tmp_path / m).is_file() for m in meshes)


def test_a_rerun_into_the_same_folder_adds_and_overwrites_nothing(predictor, tmp_path):
    predict_frames(predictor, [frame("photo")], tmp_path, render=False)
    before = digest(tmp_path)
    predict_frames(predictor, [frame("photo", value=30)], tmp_path, render=False)
    after = digest(tmp_path)
    assert all(after[name] == before[name] for name in before if name != "predictions.jsonl")
    records = strict_json_lines(tmp_path / "predictions.jsonl")
    assert [r["name"] for r in records] == ["photo", "photo_2"]


def test_an_output_name_taken_by_a_folder_is_skipped_over(predictor, tmp_path):
    (tmp_path / "photo_p0_params.json").mkdir()
    predict_frames(predictor, [frame("photo")], tmp_path, render=False)
    (record,) = strict_json_lines(tmp_path / "predictions.jsonl")
    assert record["name"] == "photo_2" and (tmp_path / record["files"]["params_json"]).is_file()


def _claim_and_append(folder: str, worker: int, names: int, payload: int) -> None:
    with OutputFolder(folder) as out:
        for number in range(names):
            name = out.claim(f"frame{number}", [0, 1])
            out.append({"worker": worker, "frame": number, "name": name, "pad": "x" * payload})


def test_concurrent_writers_claim_distinct_names_and_lose_no_line(tmp_path):
    """Four processes, 50 frames each, lines of 20 kB (well past any atomic-append size)."""
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_claim_and_append, args=(str(tmp_path), k, 50, 20_000)) for k in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    records = strict_json_lines(tmp_path / "predictions.jsonl")
    assert sorted((r["worker"], r["frame"]) for r in records) == [(k, n) for k in range(4) for n in range(50)]
    names = [r["name"] for r in records]
    assert len(set(names)) == len(names) == 200
    assert len(list(tmp_path.glob("*_params.json"))) == 400  # two persons claimed per frame


@pytest.mark.slow
def test_two_concurrent_predict_commands_into_one_folder_lose_no_record(tiny, tmp_path):
    """Issue 13, acceptance 3: both runs' records present, every line valid JSON, no file shared."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(5):
        Image.fromarray(np.full((96, 72, 3), 40 * number, dtype=np.uint8)).save(photos / f"{number}.png")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "bidrn.cli", "predict", str(photos), "--out", str(out), "--no-render",
               "--checkpoint", str(tiny["frozen"]), "--batch-size", "1", "--device", "cpu"]  # fmt: skip
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=900)
        assert run.returncode == 0, err.decode()
    records = strict_json_lines(out / "predictions.jsonl")
    assert len(records) == 10
    assert sorted(r["input"] for r in records) == sorted([str(photos / f"{n}.png") for n in range(5)] * 2)
    files = [r["files"]["mesh"] for r in records]
    assert len(set(files)) == 10 and all((out / name).stat().st_size > 0 for name in files)


# -- bad output paths ---------------------------------------------------------------------------------------
def _image(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    Image.new("RGB", (48, 64), (90, 90, 90)).save(path)
    return path


def test_output_folder_taken_by_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    argv = ("predict", _image(tmp_path), "--out", tmp_path / "out", "--checkpoint", tmp_path / "never-read")
    assert_cli_error(capsys, argv, tmp_path / "out", "exists and is not a folder")


def test_output_folder_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("a file")
    argv = ("predict", _image(tmp_path), "--out", tmp_path / "file" / "out", "--checkpoint", tmp_path / "x")
    assert_cli_error(capsys, argv, "cannot create the output folder (Not a directory)")


def test_output_folder_that_cannot_be_created(tmp_path, capsys):
    argv = ("predict", _image(tmp_path), "--out", "/proc/1/bidrn-out/x", "--checkpoint", tmp_path / "x")
    assert_cli_error(capsys, argv, "/proc/1/bidrn-out/x", "cannot create the output folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    argv = ("predict", _image(tmp_path), "--out", folder, "--checkpoint", tmp_path / "x")
    assert_cli_error(capsys, argv, folder, "not writable")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("--num", "0"), "--num must be positive"),
        (("--num", "1", "--seed", "-1"), "--seed must be non-negative"),
        (("--num", "1", "--size", "99999", "64"), "--size must be between 32 and 8192"),
        (("--num", "1", "--shard-size", "0"), "--shard-size must be positive"),
    ],
)
def test_bad_synth_options(argv, fragment, tmp_path, capsys):
    assert_cli_error(capsys, ("synth", "--out", tmp_path / "s", *argv), fragment)


def test_synth_into_a_file_or_an_existing_dataset(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert_cli_error(
        capsys, ("synth", "--out", tmp_path / "file", "--num", "1"), "exists and is not a folder"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")
    assert_cli_error(capsys, ("synth", "--out", tmp_path / "data", "--num", "1"), "--overwrite")


def test_os_errors_reaching_the_command_line_are_one_line(monkeypatch, capsys):
    from bidrn.commands import complexity

    def disk_full(args):
        raise OSError(28, "No space left on device", "/data/out.json")

    monkeypatch.setattr(complexity, "run", disk_full)
    code, _, err = run_cli(capsys, "complexity")
    assert code == 2 and err.strip() == "bidrn complexity: error: /data/out.json: No space left on device"


# -- what gets written -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_follow_the_umask(umask, mode, predictor, tmp_path):
    previous = os.umask(umask)
    try:
        predict_frames(predictor, [frame("photo")], tmp_path, render=True)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert len(modes) == 6 and set(modes.values()) == {mode}, modes


def _broken_output(predictor, change):
    real = predictor.run

    def run(pixels):
        output = real(pixels)
        values = {name: getattr(output, name) for name in (*PARAMETER_SIZES, "mesh_cam")}
        change(values)
        return SimpleNamespace(**values)

    return run


def test_non_finite_network_output_stops_the_run_and_names_the_checkpoint(predictor, tmp_path, monkeypatch):
    def poison(values):
        values["cam_trans"] = torch.full_like(values["cam_trans"], float("nan"))
        values["mesh_cam"] = values["mesh_cam"] * float("nan")

    monkeypatch.setattr(predictor, "run", _broken_output(predictor, poison))
    message = assert_one_line(
        lambda: predict_frames(predictor, [frame("photo")], tmp_path), predictor.info.path, "NaN or infinite"
    )
    assert "cam_trans" in message and "mesh" in message
    assert not list(tmp_path.glob("*.obj")) and (tmp_path / "predictions.jsonl").read_text() == ""


def test_a_mesh_outside_the_image_is_reported_and_its_overlay_is_the_image(predictor, tmp_path, monkeypatch):
    def sideways(values):
        values["mesh_cam"] = values["mesh_cam"] + torch.tensor([1000.0, 0.0, 0.0])

    monkeypatch.setattr(predictor, "run", _broken_output(predictor, sideways))
    warnings: list[str] = []
    report = predict_frames(predictor, [frame("photo")], tmp_path, warn=warnings.append)
    assert len(warnings) == 1 and "lies entirely outside the image" in warnings[0]
    overlay = np.asarray(Image.open(tmp_path / report.records[0]["files"]["overlay"]))
    assert (overlay == 90).all()


def test_summary_refuses_a_non_finite_number(tmp_path):
    with OutputFolder(tmp_path) as folder:
        assert_one_line(
            lambda: folder.append({"score": float("nan")}), "predictions.jsonl", error=InputFileError
        )
    assert (tmp_path / "predictions.jsonl").read_text() == ""
