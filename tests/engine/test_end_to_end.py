"""The commands end to end at the ``micro`` protocol: synthetic data -> train -> eval -> tables."""

import json

import pytest
import torch
from safetensors.torch import load_file

from bidrn.cli import main
from bidrn.engine.checkpoint import load_checkpoint


@pytest.mark.slow
def test_experiment_train_and_eval_commands(tmp_path, capsys):
    dirs = ["--results", str(tmp_path / "results"), "--work", str(tmp_path / "work"),
            "--data-dir", str(tmp_path / "data")]  # fmt: skip
    assert main(["experiment", "table1", "--protocol", "micro", "--rows", "hand4whole,bidrn", *dirs]) == 0
    document = json.loads((tmp_path / "results" / "table1-micro.json").read_text())
    rows = document["rows"]
    assert [row["method"] for row in rows] == ["hand4whole", "bidrn"]
    assert [row["seeds"] for row in rows] == [[0, 1], [0, 1]]  # micro seeds both rows
    assert all(row["mpvpe_all"] > 0 and row["params_m"] > 0 and row["ops_g"] > 0 for row in rows)
    assert rows[1]["params_m"] < rows[0]["params_m"]  # binarized weights count 1/32
    assert [c["label"] for c in document["constants"]] == [
        "constant: mean training pose",
        "constant: mean training mesh",
    ]
    # BiDRN started from the full-precision teacher of its seed (the two-step recipe).
    run = json.loads((tmp_path / "work" / "micro" / "bidrn" / "seed1" / "result.json").read_text())
    assert run["initialised_from"].endswith("hand4whole/seed1/checkpoints/last")

    # A rerun reuses the trained runs.
    assert main(["experiment", "table1", "--protocol", "micro", "--rows", "bidrn", *dirs]) == 0
    rerun = json.loads((tmp_path / "results" / "table1-micro.json").read_text())["rows"]
    assert rerun[0]["mpvpe_all"] == rows[1]["mpvpe_all"]

    checkpoint = tmp_path / "work" / "micro" / "bidrn" / "seed0" / "checkpoints" / "last"
    test_data = next((tmp_path / "data").glob("synth-*")) / "test"
    out = tmp_path / "eval.json"
    assert (
        main(["eval", "--checkpoint", str(checkpoint), "--data", f"synth:{test_data}", "--json", str(out)])
        == 0
    )
    evaluated = json.loads(out.read_text())
    assert evaluated["mpvpe_all"] == pytest.approx(rows[1]["mpvpe_all_per_seed"][0], abs=1e-2)

    train_dir = next((tmp_path / "data").glob("synth-*")) / "train"
    run = tmp_path / "run"
    common = ["train", "--model", "bidrn", "--data", f"synth:{train_dir}", "--output", str(run),
              "--epochs", "2", "--batch-size", "2", "--set", "width=0.0625", "--set", "body_input=64,64",
              "--set", "hand_input=64,64", "--set", "face_input=64,64"]  # fmt: skip
    assert main([*common, "--max-steps", "1"]) == 0
    assert main([*common, "--resume", "auto"]) == 0
    info = load_checkpoint(run / "checkpoints" / "last").info
    assert (info["epoch"], info["global_step"]) == (2, 4)
    assert "bidrn train: 4 steps (3 in this run)" in capsys.readouterr().out

    # The interrupted-and-resumed BiDRN run ends bit-identical to an uninterrupted one.
    straight = tmp_path / "straight"
    assert main([*common[:6], str(straight), *common[7:]]) == 0
    resumed = load_file(str(run / "checkpoints" / "last.safetensors"))
    uninterrupted = load_file(str(straight / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)
