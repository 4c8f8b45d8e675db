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


def _row(method, label, mpvpe_all):
    row = {"method": method, "label": label, "params_m": 1.0, "ops_g": 0.1, "pa_mpjpe_body_joints": "body25"}
    row.update({name: mpvpe_all / 2 for name in TABLE1_COLUMNS})
    row["mpvpe_all"] = mpvpe_all
    return row


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


def test_ordering_checks_state_both_findings():
    rows = [_row("hand4whole", "Hand4Whole", 80.0), _row("bnn", "BNN", 150.0), _row("bidrn", "BiDRN", 120.0)]
    lines = ordering_checks(rows)
    assert lines[0].startswith("Full precision best on MPVPE-all: yes")
    assert "lower than every binarized baseline: yes" in lines[1]
    rows[1]["mpvpe_all"] = 70.0
    lines = ordering_checks(rows)
    assert "no (best: BNN" in lines[0]
    assert "NOT lower" in lines[1] and "BNN" in lines[1]


def test_results_files_hold_every_column_and_provenance(tmp_path):
    rows = [_row("hand4whole", "Hand4Whole", 80.0), _row("bidrn", "BiDRN", 120.0)]
    provenance = {"command": "bidrn experiment table1 --protocol micro", "git_commit": "abc", "device": "cpu",
                  "wall_s": 12.0}  # fmt: skip
    json_path, md_path = write_results(rows, "table1", PROTOCOLS["micro"], tmp_path, provenance)
    written = json.loads(json_path.read_text())
    assert [r["method"] for r in written] == ["hand4whole", "bidrn"]
    for key in ("params_m", "ops_g", *TABLE1_COLUMNS, "command", "git_commit", "device"):
        assert key in written[0]
    page = md_path.read_text()
    assert "`bidrn experiment table1 --protocol micro`" in page and "| BiDRN |" in page
    assert markdown_table(rows).count("\n") == 3


def test_parse_overrides_reads_numbers_and_tuples():
    assert parse_overrides(["width=0.25", "body_input=128,96"]) == {"width": 0.25, "body_input": (128, 96)}
    with pytest.raises(BidrnError):
        parse_overrides(["width"])


def test_data_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(BidrnError, match="KIND:PATH"):
        open_dataset("nonsense", train=True, body_model=None)
    with pytest.raises(InputFileError, match="not found"):
        open_dataset(f"synth:{tmp_path / 'missing'}", train=True, body_model=None)
