"""Run under ``torchrun --nproc_per_node=2``: one training step with DDP (gloo), weights per rank."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from bidrn.engine.distributed import init_distributed, shutdown_distributed
from bidrn.engine.evaluation import evaluate
from bidrn.engine.trainer import TrainConfig, Trainer
from tests.engine.standins import TinyDataset, TinyModel, no_schedule, tiny_loss
from tests.engine.test_evaluation import _Dataset, _ToyModel
from tests.engine.test_metrics import _toy_topology


def main(output_dir: str) -> None:
    context = init_distributed(device="cpu")
    torch.manual_seed(0)
    model = TinyModel()
    config = TrainConfig(epochs=1, batch_size=2, lr=1e-2, max_steps=1, progress_bar=False, tensorboard=False)
    trainer = Trainer(
        model, TinyDataset(8), tiny_loss, config, output_dir, context=context, epoch_hook=no_schedule
    )
    trainer.fit()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(Path(output_dir) / f"rank{context.rank}.safetensors"))

    # Sharded evaluation: 5 samples over 2 ranks, gathered in dataset order on every rank.
    result = evaluate(
        _ToyModel(bend=0.012), _Dataset(), _toy_topology(), batch_size=2, context=context, progress=False
    )
    (Path(output_dir) / f"eval{context.rank}.json").write_text(json.dumps(result.per_sample))
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
