"""The parts of SAM's ViT image encoder (Segment Anything, Meta 2023; timm ``samvit_*``, transformers
``SamVisionModel``) that a plain ViT lacks, as timm's ``vision_transformer_sam`` computes them:

* windowed attention (``ViTConfig.window_size``): the patch grid, padded with zeros at the bottom and
  right to whole windows, is cut into non-overlapping ``w x w`` windows that attend within themselves;
  the padded tokens take part unmasked, as upstream. The blocks of ``global_blocks`` attend over the
  whole grid. :func:`partition` / :func:`unpartition`;
* decomposed relative positions (``rel_pos_bias="decomposed"``): per block a row table ``rel_pos_h`` and
  a column table ``rel_pos_w``, ``(2s - 1, head_dim)`` for attention over an ``s x s`` grid; the bias of
  query (r, c) towards key (r', c') is ``q · rel_pos_h[r - r' + s - 1] + q · rel_pos_w[c - c' + s - 1]``
  with the unscaled query, added to the scores before the softmax (:func:`decomposed_bias`). It depends
  on the query, so the exported graph computes it: two MatMuls against constant gathers of the tables,
  then MatMul -> Add -> Softmax -> MatMul as for any additive bias;
* the neck (``neck_dim``): 1x1 conv, LayerNorm over channels, 3x3 conv, LayerNorm, no biases
  (:class:`Neck`, timm's ``neck.0`` .. ``neck.3``), on the patch grid after the last block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def partition(x: torch.Tensor, grid: tuple, window: int) -> torch.Tensor:
    """Tokens (B, rows*cols, C) of a (rows, cols) ``grid``, row-major, as windows (B * windows, window*window, C),
    each window's tokens row-major, the windows row-major per image; the grid is zero-padded to whole windows.
    In a trace the grid's sizes are symbolic (the input's shape): nothing here turns them into numbers."""
    rows, cols = grid
    B, _, C = x.shape
    pad_r, pad_c = (window - rows % window) % window, (window - cols % window) % window
    x = F.pad(x.reshape(B, rows, cols, C), (0, 0, 0, pad_c, 0, pad_r))
    n_r, n_c = (rows + pad_r) // window, (cols + pad_c) // window
    x = x.reshape(B, n_r, window, n_c, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B * n_r * n_c, window * window, C)


def unpartition(x: torch.Tensor, grid: tuple, window: int) -> torch.Tensor:
    """The inverse of :func:`partition`: windows (B * windows, window*window, C) back to (B, rows*cols, C),
    the padding cropped."""
    rows, cols = grid
    n_r, n_c = (rows + window - 1) // window, (cols + window - 1) // window
    C = x.shape[-1]
    x = x.reshape(-1, n_r, n_c, window, window, C).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(-1, n_r * window, n_c * window, C)[:, :rows, :cols]
    return x.reshape(x.shape[0], rows * cols, C)


def relative_index(side, device=None) -> torch.Tensor:
    """(side, side) int64: the table row of query position i towards key position j, ``i - j + side - 1``."""
    pos = torch.arange(side, device=device)
    return pos[:, None] - pos[None, :] + (side - 1)


def fit_table(table: torch.Tensor, side) -> torch.Tensor:
    """A (2s - 1, head_dim) table for attention over ``side`` positions: linear interpolation along the offsets
    (timm's samvit ``get_rel_pos``, align_corners False: the identity at the table's own size, so a graph of
    several sizes needs no branch)."""
    return F.interpolate(table.T[None], size=2 * side - 1, mode="linear")[0].T


def decomposed_bias(q: torch.Tensor, table_h: torch.Tensor, table_w: torch.Tensor, grid: tuple,
                    resample: bool = False) -> torch.Tensor:
    """SAM's additive attention bias (B, heads, N, N) for queries ``q`` (B, heads, N, head_dim) over a (rows, cols)
    ``grid`` (N = rows * cols), from the row and column tables ``(2*side - 1, head_dim)``; ``resample``: fit them
    to the grid first (:func:`fit_table`), for a model of any size."""
    rows, cols = grid
    if resample:
        table_h, table_w = fit_table(table_h, rows), fit_table(table_w, cols)
    r_table = table_h[relative_index(rows, q.device)].to(q.dtype)  # (q_row, k_row, head_dim)
    c_table = table_w[relative_index(cols, q.device)].to(q.dtype)  # (q_col, k_col, head_dim)
    B, H, N, D = q.shape
    grid_q = q.reshape(B, H, rows, cols, D)
    rel_h = grid_q @ r_table.transpose(1, 2)  # (B, H, q_row, q_col, k_row)
    rel_w = (grid_q.transpose(2, 3) @ c_table.transpose(1, 2)).transpose(2, 3)  # (B, H, q_row, q_col, k_col)
    return (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).reshape(B, H, N, N)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W) (timm's LayerNorm2d, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Neck(nn.Sequential):
    """SAM's neck on the patch tokens: (B, grid*grid, dim) -> (B, grid*grid, out) through a 1x1 conv,
    LayerNorm2d, a 3x3 conv (padding 1) and LayerNorm2d, no biases; timm's names ``neck.0`` .. ``neck.3``."""

    def __init__(self, dim: int, out: int):
        super().__init__(nn.Conv2d(dim, out, 1, bias=False), LayerNorm2d(out),
                         nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))

    def forward(self, x: torch.Tensor, grid: tuple) -> torch.Tensor:
        B, N, C = x.shape
        x = super().forward(x.transpose(1, 2).reshape(B, C, *grid))
        return x.flatten(2).transpose(1, 2)
