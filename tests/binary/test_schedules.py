import math

import pytest
import torch

from bidrn.binary import BinaryConv2d, BinaryLinear, set_progress
from bidrn.binary.schedules import fda_fourier_terms, fda_noise_scale, recu_tau

TOTAL = 14  # the paper's training length


def test_recu_tau_first_middle_last():
    assert recu_tau(0, TOTAL) == pytest.approx(0.85)
    assert recu_tau(7, TOTAL) == pytest.approx(0.85 + 0.14 * (math.exp(0.5) - 1) / (math.e - 1))
    assert recu_tau(13, TOTAL) == pytest.approx(0.85 + 0.14 * (math.exp(13 / 14) - 1) / (math.e - 1))
    assert recu_tau(13, TOTAL) < 0.99


def test_fda_terms_first_middle_last():
    assert fda_fourier_terms(0, TOTAL) == 10
    assert fda_fourier_terms(7, TOTAL) == 10 + 63 // 14 == 14
    assert fda_fourier_terms(13, TOTAL) == 10 + 117 // 14 == 18


def test_fda_lambda_first_middle_last():
    assert fda_noise_scale(0, TOTAL) == pytest.approx(0.05 * (1 + math.cos(math.pi / 14)))
    assert fda_noise_scale(7, TOTAL) == pytest.approx(0.05 * (1 + math.cos(math.pi * 8 / 14)))
    assert fda_noise_scale(13, TOTAL) == 0.0


@pytest.mark.parametrize("bad", [(-1, 5), (5, 5), (0, 0)])
def test_schedules_reject_epochs_outside_training(bad):
    with pytest.raises(ValueError, match="epoch"):
        recu_tau(*bad)


def test_set_progress_advances_every_binary_layer():
    model = torch.nn.Sequential(
        BinaryConv2d(4, 4, 3, method="recu"),
        BinaryConv2d(4, 4, 3, method="fda"),
        BinaryLinear(4, 2, method="bidrn"),
    )
    assert set_progress(model, 7, TOTAL) == 3
    assert model[0].recu_tau.item() == pytest.approx(recu_tau(7, TOTAL))
    assert model[1].fourier_terms.item() == 14
    assert model[1].noise_scale.item() == pytest.approx(fda_noise_scale(7, TOTAL))
    set_progress(model, TOTAL - 1, TOTAL)
    assert model[1].noise_scale.item() == 0.0
    assert model[1].fourier_terms.item() == 18


def test_fda_noise_vanishes_in_the_last_epoch_and_in_eval():
    torch.manual_seed(0)
    conv = BinaryConv2d(8, 8, 3, padding=1, method="fda")
    x = torch.randn(2, 8, 5, 5)
    conv.eval()
    clean = conv(x)
    conv.train()
    set_progress(conv, 0, TOTAL)
    assert not torch.allclose(conv(x), clean)
    set_progress(conv, TOTAL - 1, TOTAL)
    torch.testing.assert_close(conv(x), clean)
