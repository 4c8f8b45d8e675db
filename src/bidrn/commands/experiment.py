"""``bidrn experiment``: reproduce one of the paper's tables (or Figure 7) under a named protocol.

Examples::

    bidrn experiment table1 --protocol synth-cpu           # 9 rows on a CPU, results/table1-synth-cpu.*
    bidrn experiment table2c --protocol synth-cpu          # reuses table1's teachers and BiDRN runs
    bidrn experiment distillation --protocol synth-cpu     # BiDRN and BNN with and without distillation
    bidrn experiment table1 --protocol synth               # paper size, on a GPU
    torchrun --nproc_per_node=8 -m bidrn.cli experiment table1 --protocol synth
    bidrn experiment figure7 --protocol synth-cpu          # needs the trained table1 models

The synthetic data of a protocol are rendered once into ``--data-dir``; every trained model lives
under ``--work`` and a rerun of the same command skips finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

EXPERIMENTS = (
    "table1",
    "table2a",
    "table2b",
    "table2c",
    "table2d",
    "table3",
    "table4",
    "distillation",
    "figure7",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn experiment``."""
    from bidrn.engine.protocols import PROTOCOLS

    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--protocol", required=True, choices=tuple(PROTOCOLS))
    parser.add_argument("--results", default=Path("results"), type=Path, help="where tables and figures go")
    parser.add_argument("--work", default=Path("runs/experiments"), type=Path, help="trained models")
    parser.add_argument("--data-dir", default=Path("runs/data"), type=Path, help="rendered synthetic data")
    parser.add_argument("--rows", default=None, help="comma-separated registry names: run only these rows")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the protocol's)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="override the rows' epochs (not the teacher's)"
    )
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: protocol's)")
    parser.add_argument("--body-model", default=None, metavar="PATH", help="default: the embedded stand-in")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: the protocol's")


def run(args: argparse.Namespace) -> int:
    """Render data, train and evaluate every row, write ``results/``."""
    import torch

    from bidrn.body import load_body_model
    from bidrn.engine.distributed import init_distributed, shutdown_distributed
    from bidrn.engine.experiments import ExperimentRunner, prepare_synthetic_data, render_figure7, run_table
    from bidrn.engine.protocols import TABLES, get_protocol
    from bidrn.errors import BidrnError

    protocol = get_protocol(args.protocol)
    train_config = protocol.train
    if args.epochs is not None:
        train_config = replace(train_config, epochs=args.epochs)
    if args.workers is not None:
        train_config = replace(train_config, num_workers=args.workers)
    protocol = replace(protocol, train=train_config)
    if args.seeds is not None:
        try:
            protocol = replace(protocol, seeds=tuple(int(seed) for seed in args.seeds.split(",")))
        except ValueError:
            raise BidrnError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    device = args.device or protocol.device
    if device == "cuda" and not torch.cuda.is_available():
        raise BidrnError(
            f"protocol {protocol.name} runs on a GPU and none is available; pass --device cpu to force"
        )
    context = init_distributed(device)
    try:
        body_model = load_body_model(args.body_model)
        train_dir, test_dir = prepare_synthetic_data(protocol, args.data_dir, context, workers=args.workers)
        runner = ExperimentRunner(protocol, train_dir, test_dir, args.work, body_model, context)
        if args.experiment == "figure7":
            path = render_figure7(runner, args.results)
            print(f"bidrn experiment: wrote {path}")
            return 0
        rows = TABLES[args.experiment]
        if args.rows:
            wanted = args.rows.split(",")
            unknown = sorted(set(wanted) - {row.model for row in rows})
            if unknown:
                raise BidrnError(f"--rows: {', '.join(unknown)} not in {args.experiment}")
            rows = tuple(row for row in rows if row.model in wanted)
        results = run_table(args.experiment, runner, args.results, rows=rows)
        if context.is_main:
            for row in results:
                std = row["mpvpe_all_std"]
                spread = f" ± {std:.1f}" if std is not None else ""
                label, params = row["label"], row["params_m"]
                print(f"{label:>40s}  MPVPE all {row['mpvpe_all']:7.1f}{spread} mm  ({params:.2f} M)")
            print(f"bidrn experiment: wrote {args.results}/{args.experiment}-{protocol.name}.md and .json")
    finally:
        shutdown_distributed()
    return 0
