"""Rotary position embeddings (RoPE): positions enter attention by rotating the queries and keys.

DINOv3 (``ViTConfig.rope="dinov3"``) has no absolute position table: each patch token's query and
key are rotated by angles that depend on the patch's place in the grid, before Q·K^T; the class
and register tokens are not rotated. The maths, as DINOv3 (Meta's RopePositionEmbedding, timm's
``RotaryEmbeddingDinoV3``, transformers' ``DINOv3ViTRopePositionEmbedding``) computes it at eval:

* patch centres, each axis normalised by its own length and mapped to [-1, 1]:
  ``c = 2 * (i + 0.5) / g - 1`` for row index i of g rows, and the same for the columns;
* ``head_dim / 4`` periods ``theta ** (4 k / head_dim)``, k = 0 .. head_dim/4 - 1 (theta = 100);
* angles ``2 pi c / period``, the row's frequencies then the column's (head_dim / 2 angles),
  repeated twice ("rotate-half" layout: channel j pairs with j + head_dim / 2);
* ``x' = x * cos + rotate_half(x) * sin`` with ``rotate_half([x1, x2]) = [-x2, x1]``.

Training-time coordinate augmentation (shift / jitter / rescale) does not exist here: the tables
depend on the patch grid, head size and theta only. A model of one size computes them once, in float64
then cast to float32, when it is built. The tables carry one row per token, the prefix
tokens' rows the identity (cos 1, sin 0: ``x * 1 + r * 0`` is ``x`` exactly), so the exported
graph rotates Q and K with two Muls and an Add and no slicing along the token axis, and
Q and K then go into the MatMul -> Softmax -> MatMul as usual.

A model of any size (``ViTConfig.dynamic_size``) computes them in the forward instead, in float32 (TensorRT
has no float64), from the input's (rows, cols) grid that the model hands over with
:meth:`RotaryEmbedding.use_grid`: an exported graph computes them from its input's shape. Each axis
keeps its own length, so a non-square grid gets what timm's ``dynamic_img_size=True`` models give it.

EVA-02 (``ViTConfig.rope="eva"``: timm's ``RotaryEmbeddingCat`` as its ``eva02_*`` models build it,
``rope_type='cat'``, ``in_pixels=False``, ``ref_feat_shape=(16, 16)``, 'ij' grid, interleaved layout):

* patch indices, each axis rescaled to the 16 x 16 grid EVA-02 was pre-trained on:
  ``c = i / g * 16`` for row index i of g rows, and the same for the columns (``i`` itself at 224 px,
  patch 14);
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


def _axes(grid) -> tuple:
    """(rows, cols) of a grid given as one side (square) or as (rows, cols); in a traced forward the sizes
    are symbolic (the input's shape), so nothing here may turn them into Python numbers."""
    return (grid, grid) if isinstance(grid, int) else tuple(grid)


def _indices(n, dtype: torch.dtype, device=None) -> torch.Tensor:
    """0 .. n - 1 as ``dtype``: counted in int64, then cast (timm's way), so a graph's Range is an integer one
    (ONNX's Range has no float16: a float32 Range would not survive the fp16 conversion of the graph)."""
    return torch.arange(n, device=device).to(dtype)


def _axial(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Per patch (row-major), its row's angles then its column's: (R, k) and (C, k) -> (R * C, 2k).
    Expanded and flattened behind a unit leading dim, so an exported graph's Reshape reads (1, -1, 2k): the
    token count left to the input's shape, where lint looks for it (the dims after the first)."""
    r, c = rows.shape[0], cols.shape[0]
    grid = torch.cat([rows[None, :, None, :].expand(1, r, c, -1), cols[None, None, :, :].expand(1, r, c, -1)], dim=-1)
    return grid.flatten(1, 2)[0]


def dinov3_angles(grid, head_dim: int, theta: float = 100.0, dtype: torch.dtype = torch.float64,
                  device=None) -> torch.Tensor:
    """The rotation angles of a patch grid (one side, or (rows, cols)), shape (rows * cols, head_dim // 2):
    per patch (row-major), the row coordinate's ``head_dim / 4`` angles, then the column's; each axis
    normalised by its own length."""
    if head_dim % 4:
        raise ValueError(f"DINOv3 RoPE needs a head size divisible by 4, got {head_dim}")
    periods = float(theta) ** (4.0 * torch.arange(head_dim // 4, dtype=dtype, device=device) / head_dim)

    def axis(g):  # patch centres on [-1, 1], then 2 pi c / period
        coords = (_indices(g, dtype, device) + 0.5) / g * 2.0 - 1.0
        return 2.0 * math.pi * coords[:, None] / periods

    rows, cols = _axes(grid)
    return _axial(axis(rows), axis(cols))


def dinov3_tables(grid, head_dim: int, theta: float = 100.0, num_prefix_tokens: int = 0,
                  dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos), float32, each (num_prefix_tokens + rows * cols, head_dim) in the rotate-half layout;
    the prefix tokens' rows are sin 0, cos 1 (no rotation). ``dtype``: the precision of the angles."""
    angles = dinov3_angles(grid, head_dim, theta, dtype, device)
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


def eva_angles(grid, head_dim: int, theta: float = 10000.0, ref_grid: int = EVA_REF_GRID,
               dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """EVA-02's rotation angles of a patch grid (one side, or (rows, cols)), shape (rows * cols, head_dim // 2):
    per patch (row-major), the row coordinate's ``head_dim / 4`` angles, then the column's; each axis
    rescaled to ``ref_grid`` on its own (timm's ``ref_feat_shape``)."""
    if head_dim % 4:
        raise ValueError(f"EVA-02 RoPE needs a head size divisible by 4, got {head_dim}")
    bands = float(theta) ** (-torch.arange(head_dim // 4, dtype=dtype, device=device) / (head_dim // 4))

    def axis(g):  # timm's order: index / grid * reference
        return (_indices(g, dtype, device) / g * ref_grid)[:, None] * bands

    rows, cols = _axes(grid)
    return _axial(axis(rows), axis(cols))


def eva_tables(grid, head_dim: int, theta: float = 10000.0, num_prefix_tokens: int = 0,
               dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos), float32, each (num_prefix_tokens + rows * cols, head_dim) in the interleaved layout
    (each angle twice in a row); the prefix tokens' rows are sin 0, cos 1 (no rotation)."""
    angles = eva_angles(grid, head_dim, theta, dtype=dtype, device=device)
    return _tables(angles.repeat_interleave(2, dim=-1), num_prefix_tokens)


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
    attention; calling it on Q or K (B, heads, tokens, head_dim) returns the rotated tensor.

    A model of any size hands over each input's (rows, cols) grid with :meth:`use_grid` before its blocks
    run; the rotation then uses tables computed from that grid instead of the fixed ones."""

    def __init__(self, kind: str, grid_size: int, head_dim: int, theta: float = 100.0, num_prefix_tokens: int = 0):
        super().__init__()
        if kind not in ("dinov3", "eva"):
            raise ValueError(f"rope must be one of {list(ROPES[1:])} to build a RotaryEmbedding, got {kind!r}")
        self.kind, self.head_dim, self.theta, self.num_prefix_tokens = kind, head_dim, theta, num_prefix_tokens
        sin, cos = self._tables_for(grid_size, torch.float64)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("cos", cos, persistent=False)
        # (rows, cols) of the input now going through the blocks, or None: the fixed tables. Sizes, not tensors
        # (torch.export refuses tensors assigned to a module in the forward; in a trace they are symbolic).
        self.grid: tuple | None = None

    def _tables_for(self, grid, dtype: torch.dtype, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        tables = dinov3_tables if self.kind == "dinov3" else eva_tables
        return tables(grid, self.head_dim, self.theta, self.num_prefix_tokens, dtype=dtype, device=device)

    def use_grid(self, grid: tuple | None) -> None:
        """Rotate by the tables of this (rows, cols) patch grid from now on (None: the fixed tables of the
        size the model was built for). The model calls it in every forward, before its blocks."""
        self.grid = None if grid is None else tuple(grid)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sin, cos): the fixed buffers, or with a grid in use, computed from it in float32 (the buffers'
        dtype and device: a cast model rotates in its own precision)."""
        if self.grid is None:
            return self.sin, self.cos
        sin, cos = self._tables_for(self.grid, torch.float32, self.sin.device)
        return sin.to(self.sin.dtype), cos.to(self.cos.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sin, cos = self.tables()
        if self.kind == "eva":  # interleaved pairs (EVA-02)
            return x * cos + rotate_pairs(x) * sin
        return apply_rope(x, sin, cos)

    def extra_repr(self) -> str:
        return f"{self.kind}, tokens={self.sin.shape[0]}, head_dim={self.sin.shape[1]}"
