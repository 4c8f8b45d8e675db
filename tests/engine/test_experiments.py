import json

import pytest
import torch

from bidrn.commands.train import parse_overrides
from bidrn.engine.datasets import open_dataset
from bidrn.engine.distributed import DistributedContext
from bidrn.engine.experiments import markdown_table, ordering_checks, write_results
from bidrn.engine.metrics import TABLE1_COLUMNS
from bidrn.engine.protocols import PROTOCOLS, TABLES
from bidrn.errors import BidrnError, InputFileError

CPU = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def _row(method, label, mpvpe_all, std=None):
    row = {"method": method, "label": label, "distill": False, "params_m": 1.0, "ops_g": 0.1,
           "pa_mpjpe_body_joints": "body25", "seeds": [0, 1, 2] if std else [0],
           "mean_output_mpvpe_all": 300.0, "spread_ratio": 0.8}  # fmt: skip
    for name in TABLE1_COLUMNS:
        row[name], row[f"{name}_std"] = mpvpe_all / 2, std
    row["mpvpe_all"] = mpvpe_all
    return row


CONSTANTS = [
    {"label": "constant: mean training pose", **dict.fromkeys(TABLE1_COLUMNS, 350.0)},
    {"label": "constant: mean training mesh", **dict.fromkeys(TABLE1_COLUMNS, 318.0)},
]


def test_every_table_row_is_a_registered_model():
    import bidrn

    registered = set(bidrn.list_models())
    for table, rows in TABLES.items():
        assert {row.model for row in rows} <= registered, table
    assert [row.model for row in TABLES["table1"]] == [
        "hand4whole", "bnn", "xnor", "dorefa", "bireal", "reactnet", "recu", "fda", "bidrn",
    ]  # fmt: skip


def test_paper_protocol_keeps_the_paper_recipe():
    synth = PROTOCOLS["synth"]
    assert synth.model_overrides == {}
    assert (synth.train.epochs, synth.train.batch_size, synth.train.lr) == (14, 24, 1e-4)


def test_ordering_checks_compare_bidrn_with_each_baseline_against_the_seed_spread():
    rows = [_row("hand4whole", "Hand4Whole", 80.0, std=2.0), _row("bnn", "BNN", 150.0, std=5.0),
            _row("xnor", "XNOR", 124.0), _row("bidrn", "BiDRN", 120.0, std=6.0)]  # fmt: skip
    lines = ordering_checks(rows, CONSTANTS)
    assert (
        lines[0] == "Rows below the best constant (constant: mean training mesh, MPVPE-all 318.0 mm): 4 of 4."
    )
    assert lines[1].startswith("Full precision best on MPVPE-all: yes")
    assert lines[2] == "BiDRN vs BNN (MPVPE-all): beats it by 30.0 mm, more than the seed spread (6.0 mm)."
    assert lines[3] == "BiDRN vs XNOR (MPVPE-all): is ahead by 4.0 mm, within the seed spread (6.0 mm)."
    rows[1]["mpvpe_all"] = 70.0
    lines = ordering_checks(rows, CONSTANTS)
    assert "no (best: BNN" in lines[1] and "BiDRN vs BNN (MPVPE-all): is behind by 50.0 mm" in lines[2]


def test_results_files_hold_every_column_constants_and_provenance(tmp_path):
    rows = [_row("hand4whole", "Hand4Whole", 80.0, std=2.0), _row("bidrn", "BiDRN", 120.0)]
    provenance = {"command": "bidrn experiment table1 --protocol micro", "git_commit": "abc", "device": "cpu",
                  "wall_s": 12.0}  # fmt: skip
    json_path, md_path = write_results(rows, "table1", PROTOCOLS["micro"], tmp_path, provenance, CONSTANTS)
    written = json.loads(json_path.read_text())
    assert [r["method"] for r in written["rows"]] == ["hand4whole", "bidrn"]
    assert written["provenance"]["git_commit"] == "abc" and len(written["constants"]) == 2
    for key in ("params_m", "ops_g", *TABLE1_COLUMNS, "seeds", "mean_output_mpvpe_all"):
        assert key in written["rows"][0]
    page = md_path.read_text()
    assert "`bidrn experiment table1 --protocol micro`" in page and "| BiDRN | 1 |" in page
    assert "| Hand4Whole | 3 | 1.00 | 0.100 | 80.0 ± 2.0 |" in page
    assert "| constant: mean training mesh |" in page
    assert markdown_table(rows, CONSTANTS).count("\n") == 5


def test_cpu_protocol_runs_the_two_step_recipe_with_three_seeds_where_it_matters():
    cpu = PROTOCOLS["synth-cpu"]
    assert cpu.teacher_train is not None and not cpu.augment
    for model in ("hand4whole", "bidrn", "bnn", "recu"):
        assert cpu.seeds_of(model) == (0, 1, 2)
    assert cpu.seeds_of("xnor") == (0,)


def test_parse_overrides_reads_numbers_and_tuples():
    assert parse_overrides(["width=0.25", "body_input=128,96"]) == {"width": 0.25, "body_input": (128, 96)}
    with pytest.raises(BidrnError):
        parse_overrides(["width"])


def test_data_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(BidrnError, match="KIND:PATH"):
        open_dataset("nonsense", train=True, body_model=None)
    with pytest.raises(InputFileError, match="not found"):
        open_dataset(f"synth:{tmp_path / 'missing'}", train=True, body_model=None)
