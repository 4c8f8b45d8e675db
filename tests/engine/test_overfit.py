"""The over-fit check: the whole training pipeline must memorise a few samples.

Synthetic samples are rendered, baked, trained on with the real trainer and loss, and evaluated with
the real metrics. If any piece stops carrying information from the targets to the weights (a wrong
target, a detached branch, a sign error in a loss, a broken data order), the error does not fall.
docs/training.md reports the same check at the protocol's size on 256 samples.
"""

import pytest
import torch

import bidrn
from bidrn.body import load_body_model
from bidrn.data.synthetic.generate import generate
from bidrn.engine.datasets import training_samples
from bidrn.engine.distributed import DistributedContext
from bidrn.engine.evaluation import evaluate
from bidrn.engine.losses import HeatmapGeometry, WholeBodyLoss
from bidrn.engine.metrics import mesh_topology
from bidrn.engine.trainer import TrainConfig, Trainer

CPU = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
TINY = {"width": 0.125, "body_input": (64, 64), "hand_input": (32, 32), "face_input": (32, 32)}


@pytest.mark.parametrize("model_name", ["hand4whole", "bidrn"])
def test_the_pipeline_memorises_two_samples(tmp_path, model_name):
    body = load_body_model()
    data = generate(tmp_path / "data", 2, seed=3, workers=1, progress=False)
    torch.manual_seed(0)
    model = bidrn.create_model(model_name, body_model=body, **TINY)
    samples = training_samples(f"synth:{data}", model, body, augment=False, cache_dir=tmp_path / "cache")
    topology = mesh_topology(body)

    def mpvpe() -> float:
        return evaluate(model, samples, topology, batch_size=2, context=CPU, progress=False).metrics[
            "mpvpe_all"
        ]

    before = mpvpe()
    config = TrainConfig(epochs=200, batch_size=2, lr=1e-3, lr_decay_epochs=(), progress_bar=False,
                         tensorboard=False, log_every_steps=50)  # fmt: skip
    Trainer(model, samples, WholeBodyLoss(geometry=HeatmapGeometry.of_model(model)), config, tmp_path / "run",
            context=CPU).fit()  # fmt: skip
    after = mpvpe()
    assert after < 0.2 * before and after < 80.0, (before, after)
