"""Fused BoxNet upsampling units: one packed transposed conv with RPReLU, residual and BN fused."""

import pytest
import torch
from torch import nn

from bidrn.deploy import freeze
from bidrn.deploy.upsampling import FusedUpsampling
from bidrn.nets.boxnet import BinarizedUpsampling
from bidrn.nets.config import BoxNetConfig
from tests.deploy.test_bidrn_model import randomize


@pytest.mark.parametrize(("in_channels", "projection"), [(32, False), (40, True)])
def test_fused_upsampling_matches_the_unit_and_keeps_its_state_dict(isa, in_channels, projection):
    config = BoxNetConfig(binarized=True)
    unit = randomize(BinarizedUpsampling(in_channels, 32, config, projection=projection))
    fused = freeze(nn.Sequential(unit))
    unfused = freeze(nn.Sequential(unit), fuse=False)
    assert isinstance(fused[0], FusedUpsampling)
    assert not isinstance(unfused[0], FusedUpsampling)
    assert fused.state_dict().keys() == unfused.state_dict().keys()
    x = torch.randn(2, in_channels, 5, 3)
    with torch.no_grad():
        expected, actual = unit(x), fused(x)
    assert actual.shape == (2, 32, 10, 6)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)


def test_new_parameters_replace_the_call_plans(isa):
    unit = randomize(BinarizedUpsampling(32, 32, BoxNetConfig(binarized=True)))
    fused = freeze(nn.Sequential(unit))
    x = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        fused(x)
        state = fused.state_dict()
        state["0.bn.bias"] = state["0.bn.bias"] + 1.0
        before = fused(x)
        fused.load_state_dict(state)
        torch.testing.assert_close(fused(x), before + 1.0)


def test_moving_the_model_replaces_the_call_plans(isa):
    """The plans point to the deconv's kernel operands, which moving the module rebuilds."""
    unit = randomize(BinarizedUpsampling(32, 32, BoxNetConfig(binarized=True)))
    fused = freeze(nn.Sequential(unit))
    x = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        before = fused(x)
        fused.to("cpu", torch.float32)  # _apply: the deconv drops its prepared operands
        assert fused[0]._plans == {}
        assert fused[0].deconv._prepared is None
        torch.testing.assert_close(fused(x), before, rtol=0, atol=0)
