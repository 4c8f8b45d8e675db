import pytest
import torch

import bidrn
from bidrn.body import load_body_model
from bidrn.data.baked import BakedSamples
from bidrn.data.synthetic.generate import generate
from bidrn.engine.datasets import open_dataset, training_samples
from bidrn.engine.resolution import fit_to_model

SIZE = {"width": 0.0625, "body_input": (64, 64), "hand_input": (64, 64), "face_input": (64, 64)}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), 3, seed=0, workers=1, progress=False)


def test_training_samples_are_baked_once_and_match_the_live_pipeline(synthetic, tmp_path):
    body = load_body_model()
    model = bidrn.create_model("hand4whole", **SIZE)
    spec = f"synth:{synthetic}"
    baked = training_samples(spec, model, body, augment=False, cache_dir=tmp_path)
    assert isinstance(baked, BakedSamples)
    live = fit_to_model(open_dataset(spec, train=False, body_model=body), model)
    for index in range(len(live)):
        want, got = live[index], baked[index]
        assert torch.allclose(got["inputs"]["img"], want["inputs"]["img"], atol=0.5 / 255 + 1e-6)
        for group in ("targets", "meta_info"):
            for key, value in want[group].items():
                assert torch.equal(got[group][key], value.float()), key
    # The same data and size reuse the folder; another model size bakes another one.
    again = training_samples(spec, model, body, augment=False, cache_dir=tmp_path)
    assert again.folder == baked.folder
    other = bidrn.create_model("hand4whole", **{**SIZE, "body_input": (96, 64)})
    assert training_samples(spec, other, body, augment=False, cache_dir=tmp_path).folder != baked.folder
    # With augmentation nothing is cached.
    assert not isinstance(training_samples(spec, model, body, augment=True, cache_dir=tmp_path), BakedSamples)
