import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch

from bidrn.apps.predict import samples_path
from bidrn.body import load_body_model
from bidrn.body.export import layer_inputs, load_parameters
from bidrn.cli import main
from bidrn.engine.datasets import open_dataset
from bidrn.engine.evaluation import ground_truth_mesh
from bidrn.engine.metrics import mesh_topology, whole_body_errors
from tests.apps.test_predict import tiny_checkpoints

OUTPUTS = ("mesh.obj", "params.npz", "params.json", "overlay.png", "side.png")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory)


@pytest.fixture(scope="module")
def demo_run(checkpoints, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        # fp32 full-precision convs: the demo's errors are compared with the simulated model's below
        code = main(["demo", "--out", str(out_dir), "--checkpoint", str(checkpoints["training"]),
                     "--dense-precision", "fp32"])  # fmt: skip
    return code, stdout.getvalue(), out_dir


def eval_demo_sample(checkpoint, report, capsys):
    """`bidrn eval` of ``checkpoint`` on the packaged synthetic sample; returns its JSON report."""
    data = f"synth:{samples_path() / 'synth-test'}"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", data, "--json", str(report),
                 "--device", "cpu", "--dense-precision", "fp32"]) == 0  # fmt: skip
    return json.loads(report.read_text())


def printed_mpvpe(text):
    match = re.search(r"MPVPE ([0-9.]+) mm, PA-MPVPE ([0-9.]+) mm", text)
    assert match, text
    return float(match.group(1)), float(match.group(2))


def test_demo_writes_every_output_for_both_samples(demo_run):
    code, out, out_dir = demo_run
    assert code == 0
    for name in ("synthetic", "astronaut"):
        for suffix in OUTPUTS:
            assert (out_dir / f"{name}_p0_{suffix}").stat().st_size > 0
    records = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["synthetic", "astronaut"]
    params = json.loads((out_dir / "synthetic_p0_params.json").read_text())["metadata"]
    assert params["inference"] == "frozen 1-bit" and params["dense_precision"] == "fp32"
    assert str(out_dir.resolve()) in out


def test_demo_mpvpe_is_what_bidrn_eval_computes(demo_run, checkpoints, tmp_path, capsys):
    _, out, out_dir = demo_run
    mpvpe, pa_mpvpe = printed_mpvpe(out)
    saved = json.loads((out_dir / "synthetic_metrics.json").read_text())
    assert round(saved["mpvpe_all"], 1) == mpvpe and round(saved["pa_mpvpe_all"], 1) == pa_mpvpe
    # `bidrn eval` on the same weights (simulated there, frozen in the demo: equal up to float rounding).
    evaluated = eval_demo_sample(checkpoints["training"], tmp_path / "eval.json", capsys)
    assert evaluated["count"] == 1
    assert saved["mpvpe_all"] == pytest.approx(evaluated["mpvpe_all"], abs=0.05)
    assert saved["pa_mpvpe_all"] == pytest.approx(evaluated["pa_mpvpe_all"], abs=0.05)


def test_demo_mpvpe_belongs_to_the_mesh_it_wrote(demo_run):
    """The evaluated prediction is the one in synthetic_p0_params.npz (same crop, same model)."""
    _, _, out_dir = demo_run
    saved = json.loads((out_dir / "synthetic_metrics.json").read_text())
    params, _ = load_parameters(out_dir / "synthetic_p0_params.npz")
    body_model = load_body_model()
    tensors = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in params.items()}
    predicted = body_model(**layer_inputs(tensors)).vertices
    sample = open_dataset(f"synth:{samples_path() / 'synth-test'}", train=False, body_model=body_model)[0]
    batch = {k: {n: v[None] for n, v in sample[k].items()} for k in ("targets", "meta_info")}
    gt = ground_truth_mesh(batch["targets"], batch["meta_info"], body_model)
    errors = whole_body_errors(predicted, gt, mesh_topology(body_model))
    assert float(errors["mpvpe_all"][0]) == pytest.approx(saved["mpvpe_all"], abs=1e-2)
    assert np.isfinite(saved["pa_mpvpe_all"])


def test_demo_without_bundled_weights_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from bidrn.apps import predict

    monkeypatch.setattr(
        predict, "bundled_weights_path", lambda: tmp_path / "bidrn-synth-tiny.bidrn.safetensors"
    )
    assert main(["demo", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bidrn demo: error: ")
    assert "bundled weights are missing" in err[0] and "--checkpoint" in err[0]


def test_bidrn_eval_reads_the_frozen_file_and_reproduces_the_demo(demo_run, checkpoints, tmp_path, capsys):
    _, _, out_dir = demo_run
    saved = json.loads((out_dir / "synthetic_metrics.json").read_text())
    evaluated = eval_demo_sample(checkpoints["frozen"], tmp_path / "eval-frozen.json", capsys)
    assert saved["mpvpe_all"] == pytest.approx(evaluated["mpvpe_all"], abs=1e-3)
    assert saved["pa_mpjpe_body"] == pytest.approx(evaluated["pa_mpjpe_body"], abs=1e-3)
