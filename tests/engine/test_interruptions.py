"""Crash safety: a run killed inside a checkpoint save resumes exactly or is refused, never silently
different; SIGINT/SIGTERM finish the step, write a checkpoint and stop with exit status 130."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bidrn.data.synthetic.generate import generate
from bidrn.engine.signals import EXIT_INTERRUPTED, StopRequests, TrainingInterruptedError
from bidrn.errors import BidrnError
from tests.engine.test_trainer import tiny_trainer

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")


@contextlib.contextmanager
def one_thread():
    """Train as the killed worker does (``OMP_NUM_THREADS=1``): results are compared bit for bit,
    and sums over several threads are reduced in another order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    trainer = tiny_trainer(tmp_path_factory.mktemp("reference"), "run", checkpoint_every_steps=1)
    with one_thread():
        trainer.fit()
    return trainer.model.state_dict()


@one_thread()
def _resume_and_finish(run_dir: Path) -> dict[str, torch.Tensor] | None:
    """Weights after resuming the killed run and training to the end; None if resuming was refused."""
    trainer = tiny_trainer(run_dir, "run", seed_model=99, checkpoint_every_steps=1)
    last = run_dir / "run" / "checkpoints" / "last.safetensors"
    if last.exists():
        try:
            trainer.resume(last)
        except BidrnError:
            return None
    else:  # killed before the first checkpoint existed: the user starts again
        trainer = tiny_trainer(run_dir, "run", checkpoint_every_steps=1)
    trainer.fit()
    return trainer.model.state_dict()


@pytest.mark.parametrize("save_number", [1, 7, 15])
@pytest.mark.parametrize("point", ["write", "fsync", "replace", "directory"])
def test_kill_inside_a_save_never_resumes_into_a_different_run(tmp_path, reference, point, save_number):
    killed = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "engine" / "fault_worker.py"),
            str(tmp_path),
            point,
            str(save_number),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 9, killed.stderr[-2000:]
    resumed = _resume_and_finish(tmp_path)
    if resumed is not None:  # refusing is allowed; a different result is not
        for name, value in reference.items():
            assert torch.equal(value, resumed[name]), name


def test_a_damaged_checkpoint_is_refused_with_one_line(tmp_path):
    trainer = tiny_trainer(tmp_path, "run", epochs=1)
    trainer.fit()
    path = tmp_path / "run" / "checkpoints" / "last.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(BidrnError, match="damaged") as error:
        tiny_trainer(tmp_path, "again").resume(path)
    assert "\n" not in str(error.value)


def test_stop_request_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path, reference):
    trainer = tiny_trainer(tmp_path, "run", checkpoint_every_steps=1)
    stops = []

    def stop_after_step_six(images, output):
        stops.append(1)
        if len(stops) == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return {}

    trainer.extra_terms = stop_after_step_six
    with one_thread(), pytest.raises(TrainingInterruptedError, match="after step 6"):
        trainer.fit()
    resumed = tiny_trainer(tmp_path, "run", seed_model=99, checkpoint_every_steps=1)
    resumed.resume(tmp_path / "run" / "checkpoints" / "last")
    assert resumed.global_step == 6
    with one_thread():
        resumed.fit()
    for name, value in reference.items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_second_signal_restores_the_default_handler():
    # Whatever SIGINT's handler was on entry comes back on exit: Python's default_int_handler in a
    # terminal, SIG_IGN for a job started in the background (nohup, `&` in a script).
    sigint_before = signal.getsignal(signal.SIGINT)
    with StopRequests() as stops:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stops.requested and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is sigint_before


def test_train_command_exits_130_when_stopped(tmp_path, monkeypatch, capsys):
    from bidrn.cli import main
    from bidrn.engine import trainer as trainer_module

    def interrupted(self):
        raise TrainingInterruptedError("stopped by a signal after step 3; checkpoint x written")

    monkeypatch.setattr(trainer_module.Trainer, "fit", interrupted)
    data = tmp_path / "data"
    generate(data, 4, seed=0, workers=1, progress=False)
    sizes = ["--set", "width=0.0625", "--set", "body_input=64,64", "--set", "hand_input=64,64",
             "--set", "face_input=64,64"]  # fmt: skip
    output = ["--output", str(tmp_path / "run"), "--batch-size", "2"]
    status = main(["train", "--model", "hand4whole", "--data", f"synth:{data}", *output, *sizes])
    assert status == EXIT_INTERRUPTED
    assert "after step 3" in capsys.readouterr().err
