import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bidrn.engine.checkpoint import load_checkpoint, save_checkpoint
from bidrn.engine.distributed import DistributedContext
from bidrn.engine.trainer import TrainConfig, Trainer, channels_last_is_safe
from bidrn.engine.training_log import read_log
from bidrn.errors import BidrnError
from tests.engine.standins import TinyDataset, TinyModel, no_schedule, tiny_loss

CPU = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
REPO = Path(__file__).resolve().parents[2]


def tiny_trainer(tmp_path, name, seed_model=0, **overrides):
    torch.manual_seed(seed_model)
    settings = {
        "epochs": 3,
        "batch_size": 4,
        "lr": 1e-2,
        "lr_decay_epochs": (2,),
        "log_every_steps": 1,
        "progress_bar": False,
        "tensorboard": False,
        "seed": 7,
    }
    settings.update(overrides)
    config = TrainConfig(**settings)
    dataset = TinyDataset(22, augment=True)  # 5 steps per epoch, last 2 samples dropped
    return Trainer(
        TinyModel(dropout=0.3),
        dataset,
        tiny_loss,
        config,
        tmp_path / name,
        model_info={"model": "tiny", "model_overrides": {}},
        context=CPU,
        epoch_hook=no_schedule,
    )


def test_learning_rate_policy_steps_down_at_milestones():
    config = TrainConfig(lr=1e-4, lr_decay_epochs=(8, 12), lr_decay_factor=10)
    assert [config.learning_rate(e) for e in (0, 7, 8, 11, 12, 13)] == pytest.approx(
        [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6]
    )


def test_training_reduces_loss_and_writes_checkpoint(tmp_path):
    trainer = tiny_trainer(tmp_path, "run")
    result = trainer.fit()
    assert result.global_step == 15 and result.epochs_done == 3
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert len(records) == 15
    assert records[-1]["loss/total"] < records[0]["loss/total"]
    assert records[0]["lr"] == pytest.approx(1e-2) and records[-1]["lr"] == pytest.approx(1e-3)
    assert records[0]["throughput/images_per_s"] > 0
    assert trainer.model.progress == [(0, 3), (1, 3), (2, 3)]
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint.model_name == "tiny"
    assert checkpoint.info["epoch"] == 3 and checkpoint.info["global_step"] == 15
    assert torch.equal(checkpoint.weights["head.weight"], trainer.model.head.weight.detach())
    assert any(key.startswith("optimizer.") for key in checkpoint.state)
    assert checkpoint.verified
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.safetensors"]


@pytest.mark.parametrize("interrupt_at", [3, 5, 12])
def test_resume_reproduces_uninterrupted_run_exactly(tmp_path, interrupt_at):
    reference = tiny_trainer(tmp_path, "reference")
    reference.fit()

    first = tiny_trainer(tmp_path, "interrupted", max_steps=interrupt_at)
    first.fit()
    assert first.global_step == interrupt_at
    second = tiny_trainer(tmp_path, "interrupted", seed_model=99)  # different init, overwritten by resume
    second.resume(tmp_path / "interrupted" / "checkpoints" / "last")
    second.fit()

    for name, value in reference.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name
    losses = [r["loss/total"] for r in read_log(tmp_path / "reference" / "log.jsonl")]
    resumed = [r["loss/total"] for r in read_log(tmp_path / "interrupted" / "log.jsonl")]
    assert resumed == losses
    # The schedule hook saw the interrupted epoch again, then the rest.
    assert second.model.progress[0] == (interrupt_at // 5, 3)


def test_resume_from_weights_only_checkpoint_is_refused(tmp_path):
    trainer = tiny_trainer(tmp_path, "run", epochs=1)
    trainer.fit()
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last", trainer.model, {"model": "tiny"})
    with pytest.raises(BidrnError, match="weights only"):
        tiny_trainer(tmp_path, "other").resume(tmp_path / "run" / "checkpoints" / "last")


def test_initialize_from_copies_matching_weights(tmp_path):
    source = tiny_trainer(tmp_path, "source", epochs=1)
    source.fit()
    target = tiny_trainer(tmp_path, "target", seed_model=5)
    missing, unexpected = target.initialize_from(tmp_path / "source" / "checkpoints" / "last.safetensors")
    assert missing == [] and unexpected == []
    assert torch.equal(target.model.conv.weight, source.model.conv.weight)


def test_gradient_clipping_bounds_the_update(tmp_path):
    clipped = tiny_trainer(tmp_path, "clipped", max_steps=1, grad_clip_norm=1e-8, lr=1.0)
    before = {k: v.clone() for k, v in clipped.model.state_dict().items()}
    clipped.fit()
    # Adam normalises the step, so clipping shows in the moments, not the step size.
    moments = clipped.optimizer.state[clipped.model.head.weight]["exp_avg"]
    assert moments.abs().max() <= 1e-9
    assert not torch.equal(before["head.weight"], clipped.model.head.weight)


def test_channels_last_training_keeps_the_layout_and_the_numbers(tmp_path):
    channels_last = tiny_trainer(tmp_path, "channels-last", epochs=1)
    assert channels_last.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    channels_last.fit()
    nchw = tiny_trainer(tmp_path, "nchw", epochs=1, channels_last=False)  # seeds the RNG as the first did
    assert not nchw.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    nchw.fit()
    assert channels_last.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    for name, value in nchw.model.state_dict().items():
        torch.testing.assert_close(channels_last.model.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_channels_last_is_refused_where_onednn_computes_wrong_gradients():
    # oneDNN#6035: a strided 1x1 conv with fewer input channels than the ISA's channel block
    # (8 on AVX2, 16 on AVX-512) gets wrong weight gradients in channels-last.
    def net(*convs):
        return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), *convs)

    assert channels_last_is_safe(net(torch.nn.Conv2d(16, 32, 1, stride=2)))
    assert channels_last_is_safe(net(torch.nn.Conv2d(4, 8, 1, stride=1), torch.nn.Conv2d(4, 8, 3, stride=2)))
    assert not channels_last_is_safe(net(torch.nn.Conv2d(4, 8, 1, stride=2)))
    assert not channels_last_is_safe(net(torch.nn.Conv2d(32, 32, 1, stride=2, groups=4)))


def test_too_small_dataset_is_a_user_error(tmp_path):
    with pytest.raises(BidrnError, match="fewer than one batch"):
        tiny_trainer(tmp_path, "run", batch_size=64)


@pytest.mark.slow
def test_ddp_two_cpu_processes_hold_identical_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO / "tests" / "engine" / "ddp_worker.py"), str(tmp_path),
    ]  # fmt: skip
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    torch.manual_seed(0)
    initial = TinyModel().state_dict()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert not torch.equal(rank0["head.weight"], initial["head.weight"])

    # DDP averages gradients: one step on 2 x 2 samples equals one step on the same 4 samples.
    torch.manual_seed(0)
    single = Trainer(
        TinyModel(),
        TinyDataset(8),
        tiny_loss,
        TrainConfig(epochs=1, batch_size=4, lr=1e-2, max_steps=1, progress_bar=False, tensorboard=False),
        tmp_path / "single",
        context=CPU,
        epoch_hook=no_schedule,
    )
    single.fit()
    for name, value in single.model.state_dict().items():
        assert torch.allclose(value, rank0[name], atol=1e-6), name

    # Sharded evaluation gathers all 5 samples, in order, identically on both ranks.
    evaluated = [json.loads((tmp_path / f"eval{rank}.json").read_text()) for rank in (0, 1)]
    assert evaluated[0] == evaluated[1]
    assert len(evaluated[0]["mpvpe_all"]) == 5
    assert evaluated[0]["mpvpe_all"] == pytest.approx([1.0] * 5, abs=1e-3)


def test_validation_callback_runs_before_training_and_every_n_steps(tmp_path):
    calls = []

    def validate(model):
        assert not model.training
        calls.append(model.head.weight.detach().clone())
        return {"held_out/mpvpe_all": float(len(calls))}

    def evaluate_mode(model):
        model.eval()
        return validate(model)

    trainer = tiny_trainer(tmp_path, "run", epochs=1, validate_every_steps=2)
    trainer.validate = evaluate_mode
    trainer.fit()
    records = read_log(tmp_path / "run" / "log.jsonl")
    validation = [(r["step"], r["held_out/mpvpe_all"]) for r in records if "held_out/mpvpe_all" in r]
    assert validation == [(0, 1.0), (2, 2.0), (4, 3.0)]
    assert trainer.model.training  # put back into training mode after each validation
    assert not torch.equal(calls[0], calls[-1])
