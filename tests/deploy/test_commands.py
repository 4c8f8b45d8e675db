"""bidrn export / bidrn bench, driven through the CLI entry point."""

import json
import time

import pytest
import torch

import bidrn
from bidrn.cli import main
from bidrn.deploy import load
from bidrn.deploy.benchmark import median_ms
from bidrn.engine.checkpoint import save_checkpoint

TINY = {"width": 0.125, "body_input": [64, 48], "hand_input": [64, 64], "face_input": [64, 64]}


def test_export_writes_a_loadable_frozen_model(tmp_path, capsys):
    model = bidrn.create_model("bidrn", **TINY).eval()
    stem = tmp_path / "checkpoints" / "last"
    save_checkpoint(stem, model, {"model": "bidrn", "model_overrides": TINY})
    out = tmp_path / "tiny.bidrn.safetensors"
    assert main(["export", "--checkpoint", str(stem), "--out", str(out), "--fp16"]) == 0
    assert "packed layers" in capsys.readouterr().out
    frozen = load(out)
    images = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        expected, actual = model(images), frozen(images)
    assert torch.allclose(actual.cam_trans, expected.cam_trans, rtol=1e-2, atol=1e-3)


def test_export_reports_bad_checkpoints_in_one_line(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "missing" in error and "not found" in error and "Traceback" not in error


def test_fp_only_checkpoint_cannot_be_exported(tmp_path, capsys):
    model = bidrn.create_model("hand4whole", **TINY)
    stem = tmp_path / "fp"
    save_checkpoint(stem, model, {"model": "hand4whole", "model_overrides": TINY})
    assert main(["export", "--checkpoint", str(stem), "--out", str(tmp_path / "fp.bidrn.safetensors")]) == 2
    assert "no binary layers" in capsys.readouterr().err


def test_bench_layers_json(capsys):
    argv = ["bench", "--json", "--layers-only", "--batch", "1", "--threads", "1", "--repeats", "1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    progress = captured.err.splitlines()  # one line per row on stderr, before it is measured
    assert progress[0] == "[bench] threads 1, batch 1: layer conv3x3_256x256_16x12 (1/7)"
    assert len(progress) == len(report["layers"]) == 7
    names = [row["name"] for row in report["layers"]]
    assert "conv3x3_256x256_16x12" in names and "conv3x3_64x64_64x48" in names
    for row in report["layers"]:
        assert row["fp32_ms"] > 0 and row["packed_ms"] > 0
        assert abs(row["speedup"] - row["fp32_ms"] / row["packed_ms"]) < 1e-9
        assert abs(row["speedup_steady"] - row["fp32_steady_ms"] / row["packed_steady_ms"]) < 1e-9


def test_median_ms_bursts_report_time_per_call():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.002)

    times = median_ms({"slow": slow}, repeats=3, warmup=1, burst=4)
    assert len(calls) == 1 + 3 * 4
    assert 2.0 <= times["slow"] < 6.0  # per call, not per burst of four


@pytest.mark.slow
def test_bench_end_to_end_and_size_json(capsys):
    argv = [
        "bench",
        "--json",
        "--width",
        "0.125",
        "--batch",
        "1",
        "--threads",
        "1",
        "--repeats",
        "1",
        "--model-repeats",
        "1",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["end_to_end"]
    for key in ("hand4whole_fp32_ms", "bidrn_simulated_ms", "bidrn_frozen_ms", "speedup_vs_hand4whole_fp32"):
        assert row[key] > 0
    assert row["hand4whole_fp32_ms"] == min(
        row["hand4whole_fp32_nchw_ms"], row["hand4whole_fp32_channels_last_ms"]
    )
    assert row["speedup_vs_hand4whole_fp32"] == row["hand4whole_fp32_ms"] / row["bidrn_frozen_ms"]
    size = report["size"]
    assert 0 < size["bidrn_frozen_fp16_mb"] < size["bidrn_frozen_mb"] < size["hand4whole_fp32_mb"]
