"""Rotary position embeddings (RoPE): positions enter attention by rotating the queries and keys.

DINOv3 (``ViTConfig.rope="dinov3"``) has no absolute position table: each patch token's query and
key are rotated by angles that depend on the patch's place in the grid, before Q·K^T; the class
and register tokens are not rotated. The maths, as DINOv3 (Meta's RopePositionEmbedding, timm's
``RotaryEmbeddingDinoV3``, transformers' ``DINOv3ViTRopePositionEmbedding``) computes it at eval:

* patch centres, each axis normalised by its own length and mapped to [-1, 1]:
  ``c = 2 * (i + 0.5) / g - 1`` for row and column index i of a g x g grid;
* ``head_dim / 4`` periods ``theta ** (4 k / head_dim)``, k = 0 .. head_dim/4 - 1 (theta = 100);
* angles ``2 pi c / period``, the row's frequencies then the column's (head_dim / 2 angles),
  repeated twice ("rotate-half" layout: channel j pairs with j + head_dim / 2);
* ``x' = x * cos + rotate_half(x) * sin`` with ``rotate_half([x1, x2]) = [-x2, x1]``.

Training-time coordinate augmentation (shift / jitter / rescale) does not exist here: the tables
depend on the image size, patch size, head size and theta only, and are computed once, in float64
then cast to float32, when the model is built. The tables carry one row per token, the prefix
tokens' rows the identity (cos 1, sin 0: ``x * 1 + r * 0`` is ``x`` exactly), so the exported
graph rotates Q and K with two Muls and an Add and no slicing along the token axis, and
Q and K then go into the MatMul -> Softmax -> MatMul as usual.

EVA-02 (``ViTConfig.rope="eva"``: timm's ``RotaryEmbeddingCat`` as its ``eva02_*`` models build it,
``rope_type='cat'``, ``in_pixels=False``, ``ref_feat_shape=(16, 16)``, 'ij' grid, interleaved layout):

* patch indices, each axis rescaled to the 16 x 16 grid EVA-02 was pre-trained on:
  ``c = i * 16 / g`` for row and column index i of a g x g grid (``i`` itself at 224 px, patch 14);
* ``head_dim / 4`` frequencies ``theta ** (-k / (head_dim / 4))``, k = 0 .. head_dim/4 - 1 (theta = 10000);
* angles ``c * frequency``, the row's then the column's (head_dim / 2 angles), each repeated in place
  ("interleaved" layout: channel 2j pairs with 2j + 1);
* ``x' = x * cos + rotate_pairs(x) * sin`` with ``rotate_pairs([x0, x1, x2, x3, ..]) = [-x1, x0, -x3, x2, ..]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..formats import ROPES  # noqa: F401  (the one list lives in formats: the CLI reads it without torch)


def dinov3_angles(grid_size: int, head_dim: int, theta: float = 100.0) -> torch.Tensor:
    """The rotation angles of a square ``grid_size`` patch grid, float64, shape (grid_size**2, head_dim // 2):
    per patch (row-major), the row coordinate's ``head_dim / 4`` angles, then the column's."""
    if head_dim % 4:
        raise ValueError(f"DINOv3 RoPE needs a head size divisible by 4, got {head_dim}")
    coords = (torch.arange(grid_size, dtype=torch.float64) + 0.5) / grid_size * 2.0 - 1.0
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    centres = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1)  # (N, 2): (y, x)
    periods = float(theta) ** (4.0 * torch.arange(head_dim // 4, dtype=torch.float64) / head_dim)
    return (2.0 * math.pi * centres[:, :, None] / periods).flatten(1)  # (N, 2, head_dim/4) -> (N, head_dim/2)


def dinov3_tables(grid_size: int, head_dim: int, theta: float = 100.0,
                  num_prefix_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos), float32, each (num_prefix_tokens + grid_size**2, head_dim) in the rotate-half layout;
    the prefix tokens' rows are sin 0, cos 1 (no rotation)."""
    angles = dinov3_angles(grid_size, head_dim, theta)
    return _tables(torch.cat([angles, angles], dim=-1), num_prefix_tokens)


def _tables(angles: torch.Tensor, num_prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos) of per-patch ``angles`` (N, head_dim), float32, after ``num_prefix_tokens`` rows of the
    identity rotation (sin 0, cos 1): the class and register tokens are not rotated."""
    identity = angles.new_zeros(num_prefix_tokens, angles.shape[-1])
    angles = torch.cat([identity, angles])
    return angles.sin().float(), angles.cos().float()


# EVA-02's RoPE grid: every timm eva02_* model rescales its patch coordinates to the 16 x 16 grid of its
# pre-training (ref_feat_shape=(16, 16)); the state dicts do not store it.
EVA_REF_GRID = 16


def eva_angles(grid_size: int, head_dim: int, theta: float = 10000.0, ref_grid: int = EVA_REF_GRID) -> torch.Tensor:
    """EVA-02's rotation angles of a square ``grid_size`` patch grid, float64, shape (grid_size**2, head_dim // 2):
    per patch (row-major), the row coordinate's ``head_dim / 4`` angles, then the column's."""
    if head_dim % 4:
        raise ValueError(f"EVA-02 RoPE needs a head size divisible by 4, got {head_dim}")
    coords = torch.arange(grid_size, dtype=torch.float64) * (ref_grid / grid_size)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    centres = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1)  # (N, 2): (y, x)
    bands = float(theta) ** (-torch.arange(head_dim // 4, dtype=torch.float64) / (head_dim // 4))
    return (centres[:, :, None] * bands).flatten(1)  # (N, 2, head_dim/4) -> (N, head_dim/2)


def eva_tables(grid_size: int, head_dim: int, theta: float = 10000.0,
               num_prefix_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos), float32, each (num_prefix_tokens + grid_size**2, head_dim) in the interleaved layout
    (each angle twice in a row); the prefix tokens' rows are sin 0, cos 1 (no rotation)."""
    return _tables(eva_angles(grid_size, head_dim, theta).repeat_interleave(2, dim=-1), num_prefix_tokens)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """[x0, x1, x2, x3, ..] -> [-x1, x0, -x3, x2, ..] over the last dimension (the interleaved layout)."""
    pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(x.shape)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] over the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., tokens, head_dim) by the tables (tokens, head_dim): ``x * cos + rotate_half(x) * sin``."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """The rotation of a model's Q and K: fixed sin / cos tables (non-persistent buffers: nothing in a
    checkpoint), one row per token, prefix tokens unrotated. One instance is shared by every block's
    attention; calling it on Q or K (B, heads, tokens, head_dim) returns the rotated tensor."""

    def __init__(self, kind: str, grid_size: int, head_dim: int, theta: float = 100.0, num_prefix_tokens: int = 0):
        super().__init__()
        if kind not in ("dinov3", "eva"):
            raise ValueError(f"rope must be one of {list(ROPES[1:])} to build a RotaryEmbedding, got {kind!r}")
        self.kind = kind
        tables = dinov3_tables if kind == "dinov3" else eva_tables
        sin, cos = tables(grid_size, head_dim, theta, num_prefix_tokens)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("cos", cos, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "eva":  # interleaved pairs (EVA-02)
            return x * self.cos + rotate_pairs(x) * self.sin
        return apply_rope(x, self.sin, self.cos)

    def extra_repr(self) -> str:
        return f"{self.kind}, tokens={self.sin.shape[0]}, head_dim={self.sin.shape[1]}"
