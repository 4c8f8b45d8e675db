"""Named experiment protocols and the rows of the paper's tables.

A :class:`Protocol` fixes everything an experiment needs besides the model: model size, data amount,
training recipe, seeds and evaluation batch. Three are registered:

* ``synth-cpu`` — the CPU protocol whose numbers mean something: width ×0.25, 256×192 crops (128×96
  body, 64×64 hand and face crops), synthetic data rendered once and baked at that size, and the
  two-step recipe of binarized networks: a full-precision Hand4Whole is trained first (one per seed),
  then every binarized row starts from it (:func:`bidrn.nets.transfer.transfer_weights`) and trains
  on its own. Sized so that Table 1 (three seeds for full precision, BiDRN, BNN and ReCU, one for the
  other baselines) runs in about 90 minutes on a 2-core CPU; see docs/training.md for the figures.
* ``synth`` — the same structure at the paper's architecture and resolution (512×384 crops, widths
  ×1) and recipe (14 epochs, batch 24, Adam lr 1e-4); meant for a GPU.
* ``micro`` — a handful of samples at the smallest sizes the networks accept; only for testing the
  experiment runner end to end.

:data:`TABLES` maps each experiment name to its rows (label printed in the table, registry name of
the model, whether it distils from the full-precision teacher, :func:`bidrn.list_models`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bidrn.engine.trainer import TrainConfig
from bidrn.errors import BidrnError

FULL_PRECISION = "hand4whole"
"""The full-precision model: Table 1's first row and the teacher of the two-step recipe."""


@dataclass(frozen=True)
class Protocol:
    """One way of training and evaluating every row of a table.

    Attributes:
        name: registry name (``synth-cpu``, ``synth``, ``micro``).
        description: one line for the results file.
        model_overrides: size overrides passed to :func:`bidrn.create_model`.
        train: the training recipe of every row (the batch size is per process).
        teacher_train: the recipe of the full-precision model the binarized rows start from; ``None``
            trains binarized rows from scratch (one step).
        train_samples: synthetic training samples (generated once, shared by all rows).
        test_samples: synthetic test samples.
        augment: train with Hand4Whole's augmentation; without it samples are baked once at the model's
            resolution (synthetic test images come from the training distribution).
        seeds: the seeds of the rows in ``seeded_rows``; every other row runs ``seeds[0]``.
        seeded_rows: registry names reported as mean ± std over all ``seeds``.
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
    teacher_train: TrainConfig | None = None
    augment: bool = False
    seeds: tuple[int, ...] = (0,)
    seeded_rows: tuple[str, ...] = ()
    eval_batch_size: int = 64
    data_seed: int = 0
    device: str | None = None
    processes: int = 1

    def seeds_of(self, model: str) -> tuple[int, ...]:
        """The seeds a row of ``model`` runs."""
        return self.seeds if model in self.seeded_rows else self.seeds[:1]


_SEEDED = ("hand4whole", "bidrn", "bnn", "recu")

PROTOCOLS: dict[str, Protocol] = {
    "synth-cpu": Protocol(
        name="synth-cpu",
        description="width x0.25, 256x192 crops (128x96 body, 64x64 hands and face), two-step recipe, CPU",
        model_overrides={
            "width": 0.25,
            "body_input": (128, 96),
            "hand_input": (64, 64),
            "face_input": (64, 64),
        },
        teacher_train=TrainConfig(epochs=4, batch_size=32, lr=1e-3, lr_decay_epochs=(3,), log_every_steps=25),
        train=TrainConfig(epochs=1, batch_size=32, lr=5e-4, lr_decay_epochs=(), log_every_steps=25),
        train_samples=6_000,
        test_samples=200,
        seeds=(0, 1, 2),
        seeded_rows=_SEEDED,
        eval_batch_size=50,
        device="cpu",
    ),
    "synth": Protocol(
        name="synth",
        description="paper architecture and resolution, two-step recipe, 14 epochs, batch 24/GPU, lr 1e-4",
        model_overrides={},
        teacher_train=TrainConfig(epochs=14, batch_size=24, lr=1e-4, lr_decay_epochs=(8, 12), num_workers=8),
        train=TrainConfig(epochs=14, batch_size=24, lr=1e-4, lr_decay_epochs=(8, 12), num_workers=8),
        train_samples=24_000,
        test_samples=500,
        seeds=(0, 1, 2),
        seeded_rows=_SEEDED,
        eval_batch_size=64,
        device="cuda",
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
        teacher_train=TrainConfig(epochs=1, batch_size=2, lr=1e-3, lr_decay_epochs=(), log_every_steps=1),
        train=TrainConfig(epochs=1, batch_size=2, lr=1e-3, lr_decay_epochs=(), log_every_steps=1),
        train_samples=4,
        test_samples=2,
        seeds=(0, 1),
        seeded_rows=("hand4whole", "bidrn"),
        eval_batch_size=2,
        device="cpu",
    ),
}


@dataclass(frozen=True)
class TableRow:
    """One row of an experiment: the label printed, the registry model it trains, and its recipe.

    Attributes:
        label: the row's label in the table (the paper's where it has one).
        model: registry name (:func:`bidrn.list_models`).
        distill: also learn from the protocol's full-precision teacher's outputs
            (:class:`bidrn.engine.distillation.Distillation`; beyond the paper).
    """

    label: str
    model: str
    distill: bool = field(default=False)

    @property
    def key(self) -> str:
        """Folder name of the row's runs (the model, ``-distilled`` when it distils)."""
        return self.model + ("-distilled" if self.distill else "")


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
    "distillation": (
        TableRow("Hand4Whole (teacher)", "hand4whole"),
        TableRow("BiDRN", "bidrn"),
        TableRow("BiDRN + distillation", "bidrn", distill=True),
        TableRow("BNN", "bnn"),
        TableRow("BNN + distillation", "bnn", distill=True),
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
