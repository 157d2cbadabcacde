"""BEiT's relative position bias: one learned value per head for every (row offset, column offset)
between two patches, added to the attention scores before the softmax.

For a ``g x g`` grid of patches the offsets span ``(2g - 1)^2`` pairs; three more entries hold the
class token's bias towards a patch, a patch's towards the class token, and the class token's towards
itself. The table is a weight, ``((2g - 1)^2 + 3, heads)``; which entry each (query, key) pair reads is
a function of the grid alone (:func:`relative_position_index`), so edgevit computes it and never
loads it: checkpoints that carry it (the original BEiT releases, older transformers) have it checked
against the computed one and dropped (:func:`check_index`).

The bias, ``table[index]`` as a ``(heads, N, N)`` tensor (``N = g*g + 1``), depends on weights only:
an exported graph folds it into one constant, the Add between the scores' MatMul and the Softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# cls -> patch, patch -> cls and cls -> cls read the last three rows of the table, in that order
_EXTRA = 3


def table_rows(grid_size: int) -> int:
    """Rows of the table of a ``grid_size x grid_size`` patch grid: (2g - 1)^2 offsets + 3 class-token entries."""
    return (2 * grid_size - 1) ** 2 + _EXTRA


def grid_of_table(rows: int) -> int:
    """The grid size a table of ``rows`` rows belongs to; ValueError when no square grid has that many."""
    side = math.isqrt(max(rows - _EXTRA, 0))
    if rows <= _EXTRA or side * side != rows - _EXTRA or side % 2 == 0:
        raise ValueError(f"a relative position table of {rows} rows is not (2g-1)^2 + 3 for any square grid g")
    return (side + 1) // 2


def relative_position_index(grid_size: int) -> torch.Tensor:
    """(N, N) int64, N = grid_size^2 + 1 (the class token first): the table row each (query, key) pair reads.

    Patch p at (row r, column c) and patch q at (r', c'): the offset (r - r', c - c') shifted to be
    non-negative, row-major in a (2g - 1) x (2g - 1) block. The class token's rows and columns read the
    three entries after that block."""
    g = grid_size
    span = 2 * g - 1
    rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + (g - 1)
    d_col = cols[:, None] - cols[None, :] + (g - 1)
    offsets = span * span
    index = torch.empty(g * g + 1, g * g + 1, dtype=torch.long)
    index[1:, 1:] = d_row * span + d_col
    index[0, :] = offsets  # class token -> patches
    index[:, 0] = offsets + 1  # patches -> class token
    index[0, 0] = offsets + 2  # class token -> itself
    return index


def check_index(stored: torch.Tensor, grid_size: int) -> bool:
    """Whether a stored ``relative_position_index`` buffer is the one the grid gives."""
    want = relative_position_index(grid_size)
    return tuple(stored.shape) == tuple(want.shape) and torch.equal(stored.long(), want)


def check_grid(state: dict, grid_size: int, patch_size: int) -> None:
    """ValueError when a relative position table of ``state`` (edgevit names, ``...pos_bias.table``)
    belongs to another grid than ``grid_size``: a model loaded at another image size than its
    checkpoint's. Refused, not resampled: timm resamples BEiT's table when it loads a checkpoint
    (``resize_rel_pos_bias_table``), transformers interpolates it differently at run time, so a
    resampled table would match at most one of them."""
    for key, table in state.items():
        if key == "pos_bias.table" or key.endswith(".pos_bias.table"):
            grid = grid_of_table(table.shape[0])
            if grid != grid_size:
                raise ValueError(
                    f"its relative position table {key} belongs to a {grid}x{grid} patch grid (img_size "
                    f"{grid * patch_size}), not the {grid_size}x{grid_size} of img_size {grid_size * patch_size}: "
                    "edgevit does not resample BEiT's relative position bias; load it at img_size "
                    f"{grid * patch_size} (drop --img-size / img_size=) and resize the images to that size")


class RelPosBias(nn.Module):
    """The (heads, N, N) additive attention bias of one grid: ``table[index]``.

    ``table`` is the weight (timm's / transformers' ``relative_position_bias_table``); ``index`` a
    non-persistent buffer computed from the grid."""

    def __init__(self, grid_size: int, num_heads: int):
        super().__init__()
        self.grid_size = grid_size
        self.table = nn.Parameter(torch.zeros(table_rows(grid_size), num_heads))
        self.register_buffer("index", relative_position_index(grid_size), persistent=False)

    def forward(self) -> torch.Tensor:
        n = self.index.shape[0]
        return self.table[self.index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, num_heads={self.table.shape[1]}"
