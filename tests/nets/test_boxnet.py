import torch
import torch.nn.functional as F
from torch import nn

from bidrn.binary import BinaryConvTranspose2d, BinaryLinear
from bidrn.nets.boxnet import BinarizedSizeHead, BinarizedUpsampling, BoxNet
from bidrn.nets.config import BoxNetConfig


def silence(rprelu) -> None:
    with torch.no_grad():
        rprelu.shift_in.fill_(1e6)
        rprelu.slope.zero_()
        rprelu.shift_out.zero_()


def test_first_binarized_deconv_has_a_full_precision_projection_residual():
    torch.manual_seed(0)
    layer = BinarizedUpsampling(12, 4, BoxNetConfig(binarized=True), projection=True).eval()
    assert isinstance(layer.deconv, BinaryConvTranspose2d) and type(layer.projection) is nn.Conv2d
    silence(layer.rprelu)
    x = torch.randn(2, 12, 4, 3)
    expected = F.interpolate(layer.projection(torch.clamp(x, -1, 1)), scale_factor=2.0, mode="nearest")
    out = layer(x)
    assert out.shape == (2, 4, 8, 6)
    torch.testing.assert_close(out, layer.bn(expected))


def test_same_width_binarized_deconv_residual_is_nearest_upsampling():
    torch.manual_seed(0)
    layer = BinarizedUpsampling(4, 4, BoxNetConfig(binarized=True)).eval()
    silence(layer.rprelu)
    x = torch.randn(1, 4, 3, 3)
    expected = F.interpolate(torch.clamp(x, -1, 1), scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(layer(x), layer.bn(expected))


def test_without_projection_the_first_deconv_has_no_residual():
    layer = BinarizedUpsampling(12, 4, BoxNetConfig(binarized=True, first_residual="none")).eval()
    x = torch.randn(1, 12, 2, 2)
    assert layer.rprelu is None
    torch.testing.assert_close(layer(x), layer.bn(layer.deconv(torch.clamp(x, -1, 1))))


def test_binarized_size_head_keeps_its_last_layer_full_precision():
    head = BinarizedSizeHead(8, BoxNetConfig(binarized=True))
    assert isinstance(head.hidden, BinaryLinear) and type(head.out) is nn.Linear
    silence(head.rprelu)
    x = torch.randn(3, 8)
    torch.testing.assert_close(head(x), head.out(torch.clamp(x, -1, 1)))


def test_boxnet_outputs_centres_inside_the_heatmap_grid():
    for binarized in (False, True):
        torch.manual_seed(0)
        boxnet = BoxNet(16, 4 * 8, 8, BoxNetConfig(binarized=binarized)).eval()
        heatmaps = torch.softmax(torch.randn(2, 4, 8 * 4 * 3), dim=-1).view(2, 4, 8, 4, 3)
        boxes = boxnet(torch.randn(2, 16, 4, 3), heatmaps)
        assert boxes.centers.shape == boxes.sizes.shape == (2, 3, 2)
        assert boxes.centers[..., 0].max() <= 3 and boxes.centers[..., 1].max() <= 4
        assert boxes.centers.min() >= 0
