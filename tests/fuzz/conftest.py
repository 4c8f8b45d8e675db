import pytest

from bidrn.apps.predict import Predictor
from tests.apps.test_predict import tiny_checkpoints


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """An untrained tiny BiDRN: ``{"training": stem, "frozen": file}`` (built once per session)."""
    return tiny_checkpoints(tmp_path_factory)


@pytest.fixture(scope="session")
def predictor(tiny):
    """The tiny frozen model, loaded once."""
    return Predictor.load(tiny["frozen"], device="cpu")
