import pytest

from bidrn.deploy import kernels


@pytest.fixture(params=kernels.supported_isas())
def isa(request):
    """Every kernel set this machine can run, plus the pure-torch reference path."""
    previous = kernels.active_isa()
    kernels.set_isa(request.param)
    yield request.param
    kernels.set_isa(previous)
