"""`bidrn train` options that only change what reaches the library."""

import pytest

import bidrn.engine.datasets
from bidrn.cli import main


class _StopBeforeTrainingError(Exception):
    pass


@pytest.mark.parametrize(("flags", "augmented"), [([], True), (["--no-augmentation"], False)])
def test_no_augmentation_opens_the_data_as_evaluation_does(tmp_path, monkeypatch, flags, augmented):
    seen = {}

    def fake_open_dataset(spec, train, body_model, seed=0):
        seen.update(spec=spec, train=train, seed=seed)
        raise _StopBeforeTrainingError

    monkeypatch.setattr(bidrn.engine.datasets, "open_dataset", fake_open_dataset)
    argv = ["train", "--model", "bidrn", "--data", "synth:somewhere", "--output", str(tmp_path),
            "--set", "width=0.0625", "--device", "cpu", "--seed", "3", *flags]  # fmt: skip
    with pytest.raises(_StopBeforeTrainingError):
        main(argv)
    assert seen == {"spec": "synth:somewhere", "train": augmented, "seed": 3}
