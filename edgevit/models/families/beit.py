"""BEiT, BEiT v2 and Data2Vec-vision: a ViT whose attention scores get a learned relative position bias.

Layouts read:

* timm's ``Beit`` (``beit_*``, ``beitv2_*``) and the original releases (microsoft/unilm, which also
  store the index buffers): ``blocks.N.attn.relative_position_bias_table`` (one table per block) or
  ``rel_pos_bias.relative_position_bias_table`` (one shared table), LayerScale ``gamma_1`` /
  ``gamma_2``, separate ``q_bias`` / ``v_bias`` (the key has none), mean pooling through ``fc_norm``;
* Hugging Face ``BeitModel`` / ``BeitForImageClassification`` / ``Data2VecVision*`` (``model_type``
  "beit" and "data2vec-vision"), as ``save_pretrained`` writes them and as transformers 5 holds
  BEiT in memory: ``relative_position_bias.relative_position_bias_table`` per layer, or one under
  ``encoder.`` / ``shared_position_bias.``; ``lambda_1`` / ``lambda_2``; a key projection without
  bias; ``pooler.layernorm`` (``use_mean_pooling``), which is timm's ``fc_norm``.

edgevit's names: the tables become ``blocks.N.attn.pos_bias.table`` / ``pos_bias.table``
(:class:`edgevit.models.relpos.RelPosBias`); stored ``relative_position_index`` buffers are checked
against the grid's and dropped. Most BEiT models have no absolute position embedding
(``use_abs_pos_emb=False`` / ``use_absolute_position_embeddings: false``): they load with an all-zero
learned ``pos_embed``, which adds nothing, so the outputs are the same and every loader and format
that reads the image size from the position table works unchanged.

A position table belongs to its grid: loading at another image size than the checkpoint's is
refused (:func:`edgevit.models.relpos.check_grid`), not resampled (timm and transformers resample it differently).
"""

from __future__ import annotations

import re

import torch

from ...errors import CheckpointError
from .. import hf_convert
from ..relpos import check_index, grid_of_table
from ..vit import ViTConfig
from .common import timm_block_names

NAME = "beit"
HF_MODEL_TYPES = ("beit", "data2vec-vision")

_TABLE = "relative_position_bias_table"
_INDEX = "relative_position_index"
# timm / unilm: a table per block, or one shared
_TIMM_BLOCK_TABLE = re.compile(rf"^(blocks\.\d+\.attn\.){_TABLE}$")
_TIMM_SHARED = re.compile(rf"^rel_pos_bias\.{_TABLE}$")
# Hugging Face, prefix stripped: per layer (save_pretrained's and transformers 5's in-memory names) or shared
_HF_PREFIX = re.compile(r"^(?:beit|data2vec_vision)\.")
_HF_BLOCK_TABLE = re.compile(
    rf"^(?:encoder\.layer\.(\d+)\.attention\.attention|layers\.(\d+))\.relative_position_bias\.{_TABLE}$")
_HF_SHARED = re.compile(rf"^(?:encoder\.relative_position_bias|shared_position_bias)\.{_TABLE}$")
_HF_INDEX = re.compile(rf"relative_position_bias\.{_INDEX}$")
_HF_LAMBDA = re.compile(r"^blocks\.(\d+)\.lambda_([12])$")
_HF_KEY_WEIGHT = re.compile(r"^((?:encoder\.layer\.\d+\.attention\.attention\.key|layers\.\d+\.attention\.k_proj))"
                            r"\.weight$")
_HF_SIGN = re.compile(r"^(?:beit|data2vec_vision)\.|(?:^|\.)lambda_[12]$|^pooler\.layernorm\.|relative_position_bias\.")


def recognise(state: dict) -> bool:
    """timm / unilm BEiT (a relative position table) or a Hugging Face BEiT / Data2Vec-vision state dict."""
    return any(_TIMM_BLOCK_TABLE.match(k) or _TIMM_SHARED.match(k) or _HF_SIGN.search(k) for k in state)


def _is_hf(state: dict) -> bool:
    return any(_HF_SIGN.search(k) and not k.startswith("rel_pos_bias.") for k in state)


def to_edgevit(state: dict) -> tuple[dict, dict]:
    """The state dict in edgevit's names, and the fields its layout fixes: ``rel_pos_bias`` ("block" /
    "shared"), ``num_heads`` and ``img_size`` (both read from the table: its columns are the heads, its
    rows the grid), ``pos_embed`` "learned" (an all-zero table where the model has none) and, for a
    Hugging Face state dict, its LayerNorm eps (1e-12). CheckpointError on index buffers that are not
    the grid's or on tables of different grids."""
    hf = _is_hf(state)
    state = _from_hf(state) if hf else _from_timm(state)
    if hf and "norm.weight" not in state and "fc_norm.weight" not in state:
        raise CheckpointError(
            "a Hugging Face BEiT / Data2Vec-vision backbone saved without its pooler (use_mean_pooling, but no "
            "pooler.layernorm: Data2VecVisionModel's default): its outputs pass through no final norm and it has no "
            "pooler_output to deploy. Save it with its pooler (Data2VecVisionModel.from_pretrained(PATH, "
            "add_pooling_layer=True) after fine-tuning it) or load an ImageClassification model")
    blocks = [k for k in state if k.endswith(".attn.pos_bias.table")]
    shared = state.get("pos_bias.table")
    if blocks and shared is not None:
        raise CheckpointError("holds both a shared relative position table and one per block; edgevit applies one "
                              "or the other (rel_pos_bias='shared' or 'block')")
    tables = [state[k] for k in blocks] or ([shared] if shared is not None else [])
    fields: dict = {"norm_eps": 1e-12, "act": "gelu"} if hf else {"act": "gelu"}  # every BEiT / Data2Vec: GELU
    if not tables and "pos_embed" not in state:
        raise CheckpointError(
            "a BEiT / Data2Vec-vision model with no position embedding at all (use_relative_position_bias, "
            "use_shared_relative_position_bias and use_absolute_position_embeddings all false): edgevit's ViT "
            "always encodes positions, so it does not load this layout")
    if tables:
        if len({tuple(t.shape) for t in tables}) != 1:
            raise CheckpointError("its relative position tables differ in shape: "
                                  + ", ".join(f"{k} {tuple(state[k].shape)}" for k in blocks))
        try:
            grid = grid_of_table(tables[0].shape[0])
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
        fields.update(rel_pos_bias="block" if blocks else "shared", num_heads=int(tables[0].shape[1]))
        patch = state["patch_embed.proj.weight"].shape[-1] if "patch_embed.proj.weight" in state else None
        if patch is not None:
            fields["img_size"] = grid * patch
        for key in [k for k in list(state) if k.endswith("." + _INDEX)]:
            _check_index(key, state.pop(key), grid)
        if "pos_embed" not in state and "cls_token" in state:
            # no absolute position embedding: a zero table keeps the image size readable and adds nothing
            dim = state["cls_token"].shape[-1]
            state["pos_embed"] = torch.zeros(1, grid * grid + 1, dim, dtype=state["cls_token"].dtype)
    return state, fields


def _check_index(key: str, stored: torch.Tensor, grid: int) -> None:
    if not check_index(stored, grid):
        raise CheckpointError(
            f"its {key} (shape {tuple(stored.shape)}) is not the relative position index of a {grid}x{grid} patch "
            "grid, the one its position table belongs to: the checkpoint is damaged or from another model")


def _from_timm(state: dict) -> dict:
    out = {}
    for key, value in timm_block_names(state).items():
        block, shared = _TIMM_BLOCK_TABLE.match(key), _TIMM_SHARED.match(key)
        if block:
            key = f"{block.group(1)}pos_bias.table"
        elif shared:
            key = "pos_bias.table"
        out[key] = value  # an index buffer keeps its name: to_edgevit checks it, then drops it
    return out


def _from_hf(state: dict) -> dict:
    state = {_HF_PREFIX.sub("", k): v for k, v in state.items()}
    ours, rest = {}, {}
    for key, value in state.items():
        block, shared = _HF_BLOCK_TABLE.match(key), _HF_SHARED.match(key)
        if block:
            ours[f"blocks.{block.group(1) or block.group(2)}.attn.pos_bias.table"] = value
        elif shared:
            ours["pos_bias.table"] = value
        elif _HF_INDEX.search(key):
            ours[key] = value  # checked, then dropped, by to_edgevit
        elif key.startswith("pooler.layernorm."):
            ours["fc_norm." + key[len("pooler.layernorm."):]] = value
        else:
            rest[key] = value
            weight = _HF_KEY_WEIGHT.match(key)
            if weight and f"{weight.group(1)}.bias" not in state:  # BEiT's key projection has no bias
                rest[f"{weight.group(1)}.bias"] = torch.zeros(value.shape[0], dtype=value.dtype)
    for key, value in hf_convert.hf_to_timm_state_dict(rest).items():
        lam = _HF_LAMBDA.match(key)
        ours[f"blocks.{lam.group(1)}.ls{lam.group(2)}.gamma" if lam else key] = value
    return ours


def config_from_hf(hf: dict) -> ViTConfig:
    """A BEiT / Data2Vec-vision ``config.json`` as a ViTConfig: ViT's keys (sizes, hidden_act,
    layer_norm_eps 1e-12, intermediate_size, id2label) plus ``use_relative_position_bias`` /
    ``use_shared_relative_position_bias`` (rel_pos_bias), ``layer_scale_init_value`` (LayerScale when
    > 0) and ``use_mean_pooling`` (mean pooling through fc_norm; else the normed class token).
    ValueError naming the key on bad values."""
    flags = {}
    for key, default in (("use_relative_position_bias", False), ("use_shared_relative_position_bias", False),
                         ("use_absolute_position_embeddings", False), ("use_mean_pooling", True)):
        flags[key] = hf.get(key, default)
        if not isinstance(flags[key], bool):
            raise ValueError(f"{key} must be true or false, got {flags[key]!r}")
    if flags["use_relative_position_bias"] and flags["use_shared_relative_position_bias"]:
        raise ValueError("use_relative_position_bias and use_shared_relative_position_bias are both true: edgevit "
                         "applies one relative position bias, per layer or shared, not both")
    scale = hf.get("layer_scale_init_value", 0.1)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise ValueError(f"layer_scale_init_value must be a number, got {scale!r}")
    if isinstance(hf.get("image_size"), (list, tuple)):
        size = hf["image_size"]
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"image_size must be one integer (a square image), got {size!r}")
        hf = {**hf, "image_size": size[0]}
    cfg = hf_convert.config_from_hf({**hf, "model_type": "vit", "qkv_bias": True})
    rel = ("block" if flags["use_relative_position_bias"] else
           "shared" if flags["use_shared_relative_position_bias"] else "none")
    mean = flags["use_mean_pooling"]
    return cfg.replace(rel_pos_bias=rel, init_values=float(scale) if scale > 0 else None,
                       pool="mean" if mean else "cls", fc_norm=mean)
