"""What more than one family shares: key mappings (timm's Eva and Beit blocks, which name LayerScale and the
attention biases their own way) and config.json value checks."""

from __future__ import annotations

import re

import torch

_GAMMA = re.compile(r"^(blocks\.\d+\.)gamma_([12])$")
_SPLIT_BIAS = re.compile(r"^(blocks\.\d+\.attn\.)q_bias$")


def timm_block_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm Eva / Beit block names to edgevit's: ``gamma_1`` / ``gamma_2`` (LayerScale) become
    ``ls1.gamma`` / ``ls2.gamma``; separate ``q_bias`` and ``v_bias`` (the key has no bias) become
    one ``qkv.bias`` with zeros for the key, which computes the same projection."""
    out = {}
    for key, value in state.items():
        gamma = _GAMMA.match(key)
        split = _SPLIT_BIAS.match(key)
        if gamma:
            out[f"{gamma.group(1)}ls{gamma.group(2)}.gamma"] = value
        elif split:
            prefix = split.group(1)
            v_bias = state.get(f"{prefix}v_bias")
            if v_bias is None:
                raise KeyError(f"{prefix}q_bias without {prefix}v_bias: the attention biases are incomplete")
            out[f"{prefix}qkv.bias"] = torch.cat([value, torch.zeros_like(value), v_bias])
        elif not key.endswith("attn.v_bias") or f"{key[:-len('v_bias')]}q_bias" not in state:
            out[key] = value
    return out


def join_qkv(parts: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Separate query / key / value projections (``parts``: ``{"q.weight", "k.weight", "v.weight"[, "q.bias",
    ...]}``) as edgevit's one ``{prefix}qkv`` Linear; a missing bias (the key's, in DINOv3 and EVA-02) is
    zeros, which computes the same projection. KeyError when a weight is missing."""
    weights = [parts.get(f"{p}.weight") for p in "qkv"]
    if any(w is None for w in weights):
        raise KeyError(f"{prefix}: the query / key / value projection weights are incomplete")
    out = {f"{prefix}qkv.weight": torch.cat(weights)}
    if any(f"{p}.bias" in parts for p in "qkv"):
        zero = weights[0].new_zeros(weights[0].shape[0])
        out[f"{prefix}qkv.bias"] = torch.cat([parts.get(f"{p}.bias", zero) for p in "qkv"])
    return out



def square_int(hf: dict, key: str) -> int:
    """``hf[key]`` as a positive integer (a square ``[h, w]`` pair taken as its side); ValueError naming the key."""
    value = hf[key]
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer (or a square [h, w] pair), got {value!r}")
    return value


def hf_number(hf: dict, key: str, low: float = 0.0, high: float = float("inf")) -> float:
    """``hf[key]`` as a float strictly between ``low`` and ``high``; ValueError naming the key."""
    value = hf[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        raise ValueError(f"{key} must be a number in ({low:g}, {high:g}), got {value!r}")
    return float(value)
