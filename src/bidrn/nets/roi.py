"""Hand and face crops: box restoration and ``grid_sample`` RoI-align (docs/design/pipeline.md §4.6, §5.3).

:func:`restore_boxes` turns BoxNet's centre/size (body-heatmap cells) into square, enlarged xyxy boxes
in body-input pixels; :func:`roi_align` crops them from the input image. The crop follows
``torchvision.ops.roi_align(..., spatial_scale=1, aligned=False)``: output bin ``(i, j)`` of an
``h×w`` crop of box ``(x1, y1, x2, y2)`` averages ``s×s`` bilinear samples at
``x = x1 + (j + (m + 0.5)/s)·bw`` (``bw = max(x2 - x1, 1)/w``, likewise y), with pixel ``k`` at
coordinate ``k``. Samples outside the image read zeros (torchvision clamps the band between -1 and 0 to
the border pixel instead; only boxes that leave the image see the difference).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["MAX_ADAPTIVE_SAMPLING", "restore_boxes", "roi_align"]

MAX_ADAPTIVE_SAMPLING = 4
"""Cap of the adaptive samples per bin and axis, so that an absurd box (an untrained BoxNet) cannot
blow up memory; boxes up to 4× the crop size are sampled exactly as torchvision would."""


def restore_boxes(
    centers: torch.Tensor,
    sizes: torch.Tensor,
    heatmap_shape: tuple[int, int],
    image_shape: tuple[int, int],
    aspect_ratio: float,
    scale: float,
) -> torch.Tensor:
    """Square-ify and enlarge boxes given as centre/size in heatmap cells -> xyxy in image pixels.

    Args:
        centers: (..., 2) centres (x, y) in cells of a ``heatmap_shape`` (H, W) grid.
        sizes: (..., 2) sizes (w, h) in the same cells.
        heatmap_shape: (H, W) of the heatmap grid (8×6 for the paper's body).
        image_shape: (H, W) of the image the boxes are returned in (256×192 body input).
        aspect_ratio: target width / height of the crop (1 for hands and face).
        scale: enlargement factor applied to both sides (2.0 hands, 1.5 face).

    The shorter side grows until ``w / h == aspect_ratio`` (Hand4Whole's ``restore_bbox``).
    """
    cell = centers.new_tensor([image_shape[1] / heatmap_shape[1], image_shape[0] / heatmap_shape[0]])
    center = centers * cell
    size = sizes * cell
    width, height = size[..., 0], size[..., 1]
    square_width = torch.where(width < aspect_ratio * height, height * aspect_ratio, width)
    square_height = torch.where(width > aspect_ratio * height, width / aspect_ratio, height)
    half = torch.stack((square_width, square_height), dim=-1) * (scale / 2)
    return torch.cat((center - half, center + half), dim=-1)


def roi_align(
    images: torch.Tensor,
    boxes: torch.Tensor,
    output_size: tuple[int, int],
    sampling_ratio: int | None = None,
) -> torch.Tensor:
    """Crop ``boxes`` (N, 4) xyxy in pixels from ``images`` (N, C, H, W) -> (N, C, h, w).

    Box ``n`` is taken from image ``n``. ``sampling_ratio`` is the number ``s`` of samples per bin and
    axis; ``None`` uses ``ceil(box size / output size)`` of the largest box in the batch (torchvision's
    adaptive rule, shared by the batch so that one ``grid_sample`` call serves all boxes), at most
    :data:`MAX_ADAPTIVE_SAMPLING`.
    """
    if boxes.shape != (images.shape[0], 4):
        raise ValueError(f"expected one xyxy box per image, got boxes {tuple(boxes.shape)}")
    out_h, out_w = output_size
    boxes = boxes.detach()
    x1, y1 = boxes[:, 0], boxes[:, 1]
    box_w = (boxes[:, 2] - x1).clamp_min(1.0)
    box_h = (boxes[:, 3] - y1).clamp_min(1.0)
    if sampling_ratio is None:
        ratios = torch.cat((box_h / out_h, box_w / out_w))
        # a non-finite box samples nothing (zeros) at any ratio, so it must not set the batch's ratio
        largest = max(float(torch.nan_to_num(ratios, nan=1.0, posinf=1.0).max()), 1.0)
        sampling_ratio = min(math.ceil(largest), MAX_ADAPTIVE_SAMPLING)
    steps_x = (
        torch.arange(out_w * sampling_ratio, device=images.device, dtype=images.dtype) + 0.5
    ) / sampling_ratio
    steps_y = (
        torch.arange(out_h * sampling_ratio, device=images.device, dtype=images.dtype) + 0.5
    ) / sampling_ratio
    xs = x1[:, None] + steps_x[None] * (box_w / out_w)[:, None]  # (N, w·s)
    ys = y1[:, None] + steps_y[None] * (box_h / out_h)[:, None]  # (N, h·s)
    height, width = images.shape[-2:]
    gx = 2.0 * xs / max(width - 1, 1) - 1.0
    gy = 2.0 * ys / max(height - 1, 1) - 1.0
    grid = torch.stack(
        (gx[:, None, :].expand(-1, gy.shape[1], -1), gy[:, :, None].expand(-1, -1, gx.shape[1])), dim=-1
    )
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return F.avg_pool2d(crops, sampling_ratio) if sampling_ratio > 1 else crops
