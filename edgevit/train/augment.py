"""Training augmentations on normalized batches: a random affine warp (rotation, zoom,
sub-pixel shift) and whole-pixel random shifts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, generator: torch.Generator, fill: torch.Tensor, degrees: float = 10.0,
                  translate: float = 0.1, scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """Random rotation, scale and (sub-pixel) translation per image, bilinear; uncovered
    pixels get ``fill`` (per channel, already normalized)."""
    b = x.shape[0]
    u = torch.rand(4, b, generator=generator, dtype=torch.float32)
    angle = (u[0] * 2 - 1) * math.radians(degrees)
    s = scale[0] + u[1] * (scale[1] - scale[0])
    tx, ty = (u[2] * 2 - 1) * translate * 2, (u[3] * 2 - 1) * translate * 2  # grid units: 2 = the image side
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    fill = fill.to(x).view(1, -1, 1, 1)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def random_shift(x: torch.Tensor, max_px: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``max_px`` pixels in x and y; borders repeat the edge pixels."""
    if max_px <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_px,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_px + 1, (2, b), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + offsets[0][:, None])[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w, device=x.device)[None] + offsets[1][:, None])[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
