from __future__ import annotations

import pytest

from bidrn.body import load_body_model, standin_path

from .random_model import write_random_model


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory):
    """A random SMPL-X-format file (10475 vertices, v1.0 20-column shape space)."""
    return write_random_model(tmp_path_factory.mktemp("model") / "SMPLX_NEUTRAL.npz", seed=3)


@pytest.fixture(scope="session")
def standin64():
    return load_body_model(standin_path(), dtype=__import__("torch").float64)


@pytest.fixture(scope="session")
def random64(random_model_path):
    return load_body_model(random_model_path, dtype=__import__("torch").float64)
