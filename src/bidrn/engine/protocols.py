"""Named experiment protocols and the rows of the paper's tables.

A :class:`Protocol` fixes everything an experiment needs besides the model: model sizes, data
amount, training recipe and evaluation batch. Three are registered:

* ``synth`` — the paper's architecture and resolution (512×384 crops, widths 1.0) and recipe
  (14 epochs, batch 24, Adam lr 1e-4) on synthetic data; meant for a GPU.
* ``synth-tiny`` — reduced widths (×0.25) and resolutions (192×128 crops: 96×64 body, 64² hand
  and face crops), 1,200 training and 120 test samples, 3 epochs of batch 24 at lr 1e-3 (÷10 at
  epoch 2): 3,600 training images per model, so that all nine rows of Table 1 train and evaluate on a
  2-core CPU in about two hours at the ~2–7 images/s these models reach there (small models on a CPU
  are dominated by per-operation overhead, so the paper's batch of 24 is also the fast choice). The
  higher learning rate buys more progress from the 150 steps such a budget allows.
* ``micro`` — a handful of samples at the smallest sizes the networks accept; only for testing
  the experiment runner end to end.

:data:`TABLES` maps each experiment name to its rows (label printed in the table, registry name
of the model, :func:`bidrn.list_models`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bidrn.engine.trainer import TrainConfig
from bidrn.errors import BidrnError


@dataclass(frozen=True)
class Protocol:
    """One way of training and evaluating every row of a table.

    Attributes:
        name: registry name (``synth-tiny``, ``synth``, ``micro``).
        description: one line for the results file.
        model_overrides: size overrides passed to :func:`bidrn.create_model`.
        train: the training recipe.
        train_samples: synthetic training samples (generated once, shared by all rows).
        test_samples: synthetic test samples.
        eval_batch_size: evaluation batch per process.
        data_seed: seed of the synthetic data (train and test use different streams).
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
        processes: DDP processes the recipe assumes (``torchrun --nproc_per_node``); on a CPU each
            process then runs one thread.
    """

    name: str
    description: str
    model_overrides: dict[str, Any]
    train: TrainConfig
    train_samples: int
    test_samples: int
    eval_batch_size: int = 64
    data_seed: int = 0
    device: str | None = None
    processes: int = 1


PROTOCOLS: dict[str, Protocol] = {
    "synth": Protocol(
        name="synth",
        description="paper architecture and resolution, 14 epochs, batch 24/GPU, lr 1e-4 decayed at 8, 12",
        model_overrides={},
        train=TrainConfig(epochs=14, batch_size=24, lr=1e-4, lr_decay_epochs=(8, 12), num_workers=8),
        train_samples=24_000,
        test_samples=500,
        eval_batch_size=64,
        device="cuda",
    ),
    "synth-tiny": Protocol(
        name="synth-tiny",
        description="width x0.25, 192x128 crops (96x64 body, 64x64 hands and face), CPU-sized",
        model_overrides={
            "width": 0.25,
            "body_input": (96, 64),
            "hand_input": (64, 64),
            "face_input": (64, 64),
        },
        train=TrainConfig(epochs=3, batch_size=24, lr=1e-3, lr_decay_epochs=(2,), num_workers=0),
        train_samples=1_200,
        test_samples=120,
        eval_batch_size=40,
        device="cpu",
    ),
    "synth-cpu": Protocol(
        name="synth-cpu",
        description="width x0.25, 256x192 crops (128x96 body, 64x64 hands and face), CPU-sized",
        model_overrides={
            "width": 0.25,
            "body_input": (128, 96),
            "hand_input": (64, 64),
            "face_input": (64, 64),
        },
        train=TrainConfig(epochs=3, batch_size=32, lr=1e-3, lr_decay_epochs=(2,), num_workers=0),
        train_samples=6_000,
        test_samples=200,
        eval_batch_size=50,
        device="cpu",
    ),
    "micro": Protocol(
        name="micro",
        description="smallest sizes, a handful of samples: a smoke test of the runner",
        model_overrides={
            "width": 0.0625,
            "body_input": (64, 64),
            "hand_input": (64, 64),
            "face_input": (64, 64),
        },
        train=TrainConfig(epochs=1, batch_size=2, lr=1e-3, lr_decay_epochs=(), log_every_steps=1),
        train_samples=4,
        test_samples=2,
        eval_batch_size=2,
        device="cpu",
    ),
}


@dataclass(frozen=True)
class TableRow:
    """One row of an experiment: the label the paper prints and the registry model it trains."""

    label: str
    model: str


TABLES: dict[str, tuple[TableRow, ...]] = {
    "table1": (
        TableRow("Hand4Whole", "hand4whole"),
        TableRow("BNN", "bnn"),
        TableRow("XNOR", "xnor"),
        TableRow("DoReFa", "dorefa"),
        TableRow("Bi-Real", "bireal"),
        TableRow("ReActNet", "reactnet"),
        TableRow("ReCU", "recu"),
        TableRow("FDA", "fda"),
        TableRow("BiDRN", "bidrn"),
    ),
    "table2a": (
        TableRow("base LCR", "bidrn-base-lcr"),
        TableRow("+ Down Scale Residual", "bidrn-dscr"),
        TableRow("+ Fusion Up Residual", "bidrn-fur"),
        TableRow("+ Fusion Down Residual", "bidrn-fdr"),
        TableRow("+ Down Sample Residual (BiDRN)", "bidrn"),
    ),
    "table2b": (
        TableRow("Hardtanh (BiDRN)", "bidrn"),
        TableRow("ReLU", "bidrn-relu"),
        TableRow("PReLU", "bidrn-prelu"),
    ),
    "table2c": (
        TableRow("no Block Residual", "bidrn-no-br"),
        TableRow("binarized Block Residual", "bidrn-binary-br"),
        TableRow("full-precision Block Residual (BiDRN)", "bidrn"),
    ),
    "table2d": (
        TableRow("body encoder binarized", "bidrn-body-only"),
        TableRow("hand encoder binarized", "bidrn-hand-only"),
        TableRow("face encoder binarized", "bidrn-face-only"),
    ),
    "table3": (
        TableRow("full-precision BoxNet", "bidrn-fp-boxnet"),
        TableRow("binarized BoxNet", "bidrn-binary-br"),
    ),
    "table4": (
        TableRow("Hand4Whole ResNet-18", "hand4whole-r18"),
        TableRow("BiDRN hand only", "bidrn-hand-only"),
        TableRow("Hand4Whole L1-pruned", "hand4whole-l1prune"),
        TableRow("BiDRN", "bidrn"),
    ),
}
#: Figure 7 compares the Table 1 models on synthetic test images.
FIGURE_TABLE = "table1"


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name`` or a :class:`BidrnError` listing the choices."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise BidrnError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}") from None
