import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from bidrn.binary import BinaryConv2d, BinaryLinear, RPReLU
from bidrn.engine.complexity import count_complexity


def test_single_conv():
    report = count_complexity(nn.Conv2d(3, 8, 3, padding=1), torch.zeros(1, 3, 10, 12))
    assert (report.params_fp, report.params_bin) == (8 * 3 * 9 + 8, 0)
    assert (report.ops_fp, report.ops_bin) == (8 * 10 * 12 * 3 * 9, 0)


def test_transposed_conv_counts_input_positions():
    report = count_complexity(nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1), torch.zeros(1, 4, 5, 7))
    assert report.params_fp == 4 * 6 * 16 + 6
    assert report.ops_fp == (4 * 5 * 7) * 6 * 16


def test_conv_bn_linear():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)
    )
    report = count_complexity(model.eval(), torch.zeros(1, 3, 8, 8))
    assert report.params_fp == 108 + 8 + 1450
    assert report.ops_fp == 144 * 27 + 144 + 10 * 144
    assert report.params_m == pytest.approx(1566 / 1e6)


def test_binarized_conv_divides_by_32_and_64():
    report = count_complexity(BinaryConv2d(16, 32, 3, padding=1), torch.zeros(1, 16, 8, 8))
    assert (report.params_fp, report.params_bin) == (0, 32 * 16 * 9)
    assert (report.ops_fp, report.ops_bin) == (0, 32 * 64 * 16 * 9)
    assert report.params_m == pytest.approx(4608 / 32 / 1e6)
    assert report.ops_g == pytest.approx(294912 / 64 / 1e9)


def test_method_extras_count_as_full_precision():
    report = count_complexity(BinaryConv2d(16, 32, 3, method="reactnet"), torch.zeros(1, 16, 8, 8))
    assert (report.params_fp, report.params_bin) == (16, 32 * 16 * 9)


def test_binarized_linear():
    report = count_complexity(BinaryLinear(64, 10), torch.zeros(1, 64))
    assert (report.params_fp, report.params_bin) == (10, 640)
    assert (report.ops_fp, report.ops_bin) == (0, 640)
    assert report.as_dict()["params_m"] == pytest.approx((10 + 640 / 32) / 1e6)


def test_repeated_calls_add_ops_but_not_params():
    conv = nn.Conv2d(2, 2, 1, bias=False)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(self.conv(x))

    report = count_complexity(Twice(), torch.zeros(1, 2, 3, 3))
    assert report.params_fp == 4
    assert report.ops_fp == 2 * (2 * 9 * 2)


def test_pruned_weights_count_only_where_kept():
    conv = nn.Conv2d(4, 4, 3, bias=False)
    prune.l1_unstructured(conv, "weight", amount=0.75)
    report = count_complexity(conv, torch.zeros(1, 4, 5, 5))
    assert report.params_fp == 36
    assert report.ops_fp == round(4 * 9 * 4 * 9 * 0.25)


def test_learned_element_wise_activations_cost_one_op_per_output():
    model = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), RPReLU(4), nn.PReLU(4), nn.ReLU(), nn.Hardtanh())
    report = count_complexity(model, torch.zeros(1, 2, 5, 6))
    conv_macs = 4 * 30 * 2
    assert report.params_fp == 8 + 3 * 4 + 4
    assert report.ops_fp == conv_macs + 2 * (4 * 30)
