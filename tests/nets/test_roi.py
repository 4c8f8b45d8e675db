import numpy as np
import pytest
import torch

from bidrn.nets.roi import restore_boxes, roi_align


def bilinear_crop(image: np.ndarray, box, out_h: int, out_w: int, ratio: int) -> np.ndarray:
    """Direct, loop-based bilinear crop: torchvision's roi_align(aligned=False) with zero outside."""
    channels, height, width = image.shape
    x1, y1, x2, y2 = box
    bin_w, bin_h = max(x2 - x1, 1) / out_w, max(y2 - y1, 1) / out_h

    def pixel(c, y, x):
        return image[c, y, x] if 0 <= y < height and 0 <= x < width else 0.0

    out = np.zeros((channels, out_h, out_w))
    for c in range(channels):
        for i in range(out_h):
            for j in range(out_w):
                total = 0.0
                for a in range(ratio):
                    for b in range(ratio):
                        y = y1 + (i + (a + 0.5) / ratio) * bin_h
                        x = x1 + (j + (b + 0.5) / ratio) * bin_w
                        y0, x0 = int(np.floor(y)), int(np.floor(x))
                        wy, wx = y - y0, x - x0
                        total += (
                            (1 - wy) * (1 - wx) * pixel(c, y0, x0)
                            + (1 - wy) * wx * pixel(c, y0, x0 + 1)
                            + wy * (1 - wx) * pixel(c, y0 + 1, x0)
                            + wy * wx * pixel(c, y0 + 1, x0 + 1)
                        )
                out[c, i, j] = total / ratio**2
    return out


@pytest.mark.parametrize(
    ("box", "size", "ratio"),
    [
        ((3.3, 5.7, 17.9, 21.2), (8, 8), 1),  # upsampling crop
        ((1.0, 2.5, 30.0, 26.0), (6, 5), 2),  # downsampling crop with 2x2 samples per bin
        ((-4.0, -3.0, 10.0, 9.0), (7, 7), 1),  # box leaving the image
    ],
)
def test_roi_align_matches_direct_bilinear_crop(box, size, ratio):
    torch.manual_seed(0)
    image = torch.rand(1, 3, 28, 33, dtype=torch.float64)
    crop = roi_align(image, torch.tensor([box], dtype=torch.float64), size, sampling_ratio=ratio)
    expected = bilinear_crop(image[0].numpy(), box, *size, ratio)
    np.testing.assert_allclose(crop[0].numpy(), expected, atol=1e-10)


def test_roi_align_adaptive_ratio_follows_the_largest_box():
    image = torch.rand(2, 1, 40, 40, dtype=torch.float64)
    boxes = torch.tensor([[0.0, 0.0, 30.0, 30.0], [5.0, 5.0, 12.0, 12.0]], dtype=torch.float64)
    adaptive = roi_align(image, boxes, (10, 10))
    torch.testing.assert_close(adaptive, roi_align(image, boxes, (10, 10), sampling_ratio=3))


def test_roi_align_takes_box_n_from_image_n():
    image = torch.stack((torch.zeros(1, 8, 8), torch.ones(1, 8, 8)))
    boxes = torch.tensor([[1.0, 1.0, 5.0, 5.0], [1.0, 1.0, 5.0, 5.0]])
    crops = roi_align(image, boxes, (4, 4))
    assert crops[0].abs().max() == 0 and torch.allclose(crops[1], torch.ones(1, 4, 4))


def test_restore_boxes_squares_and_enlarges_in_image_pixels():
    centers = torch.tensor([[3.0, 4.0]])  # heatmap cells of an 8x6 grid -> (96, 128) px in 256x192
    sizes = torch.tensor([[0.5, 1.0]])  # 16 x 32 px: height is the longer side
    box = restore_boxes(centers, sizes, (8, 6), (256, 192), aspect_ratio=1.0, scale=2.0)
    torch.testing.assert_close(box, torch.tensor([[64.0, 96.0, 128.0, 160.0]]))
    wide = restore_boxes(centers, torch.tensor([[2.0, 0.5]]), (8, 6), (256, 192), 1.0, 1.5)
    torch.testing.assert_close(wide, torch.tensor([[48.0, 80.0, 144.0, 176.0]]))
