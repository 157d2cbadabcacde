"""EVA-02 ViTs (BAAI, 2023) in timm's Eva layout: a learned position table and a class token, a SwiGLU
MLP, no LayerScale, and EVA-02's 2-D RoPE on the patch tokens' queries and keys (timm's
``RotaryEmbeddingCat``, interleaved, coordinates rescaled to a 16 x 16 grid: :mod:`edgevit.models.rope`,
``rope="eva"``), whose tables timm does not store in the state dict.

Two block layouts load:

* MIM / fine-tuned (``eva02_tiny_patch14_224``, ``eva02_small_patch14_224``): one fused ``attn.qkv`` with
  separate ``q_bias`` / ``v_bias`` (the key has no bias), the SwiGLU packed in one ``mlp.fc1`` of twice
  fc2's input (gate first);
* ``eva02_base_patch14_224`` / ``large``: separate ``attn.q_proj`` / ``k_proj`` / ``v_proj`` (concatenated
  into ``qkv``, a zero key bias), the SwiGLU split in ``mlp.fc1_g`` / ``fc1_x`` with ``mlp.norm`` (sub-LN);
  EVA-CLIP (``eva02_*_clip_*``) adds ``attn.norm``, a LayerNorm before the output projection
  (``attn_norm``; edgevit's ``attn.out_norm``).

Pooling as timm's Eva: the patch tokens' mean then ``fc_norm`` when the state has an ``fc_norm`` (timm's
default ``global_pool='avg'``), else the class token after the final ``norm`` (EVA-CLIP's 'token').
"""

from __future__ import annotations

import re

import torch

from ...specs import CLIP_MEAN, CLIP_STD
from ..vit import ViTConfig
from .common import join_qkv, timm_block_names

NAME = "eva02"
HF_MODEL_TYPES = ()

# timm's eva02_* configurations: OpenAI CLIP's statistics, bicubic, crop 0.9 (the 448 px ones 1.0)
PREPROCESSING = {"mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic", "crop_pct": 0.9}

# What every EVA-02 config fixes that the shapes cannot tell.
_FIELDS = {"rope": "eva", "rope_theta": 10000.0, "norm_eps": 1e-6, "act": "gelu"}  # act: SwiGLU gates with SiLU

_SPLIT_QKV = re.compile(r"^(blocks\.\d+\.attn\.)([qkv])_proj\.(weight|bias)$")
_FOREIGN = re.compile(r"(^|\.)(gamma_[12]|ls[12]\.gamma|rope\.|freqs)|^reg_token$|^storage_tokens$")


def _swiglu(state: dict) -> str | None:
    if "blocks.0.mlp.fc1_g.weight" in state and "blocks.0.mlp.fc1_x.weight" in state:
        return "swiglu"
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    if fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1]:
        return "swiglu_packed"
    return None


def recognise(state: dict) -> bool:
    """An EVA-02 state dict in timm's Eva layout: a class token and a ``pos_embed``, Eva attention names
    (``attn.q_bias`` / ``v_bias`` or ``attn.q_proj``), a SwiGLU MLP (``fc1`` twice fc2's input, or
    ``fc1_g`` / ``fc1_x``), and none of LayerScale's ``gamma_1``, registers (DINOv3) or stored rope tables."""
    if not all(k in state for k in ("patch_embed.proj.weight", "cls_token", "pos_embed")):
        return False
    if "blocks.0.attn.q_bias" not in state and "blocks.0.attn.q_proj.weight" not in state:
        return False
    return _swiglu(state) is not None and not any(_FOREIGN.search(k) for k in state)


def to_edgevit(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict in edgevit's names (one ``qkv`` with a zero key bias) and the fields EVA-02 fixes:
    EVA-02 RoPE (theta 10000), the SwiGLU layout, the sub-LNs, the pooling."""
    mlp = _swiglu(state)
    if not recognise(state) or mlp is None:
        raise ValueError("not an EVA-02 state dict in timm's Eva layout")
    out: dict[str, torch.Tensor] = {}
    split: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in timm_block_names(state).items():
        match = _SPLIT_QKV.match(key)
        if match:
            split.setdefault(match.group(1), {})[f"{match.group(2)}.{match.group(3)}"] = value
        elif key.endswith(".attn.norm.weight") or key.endswith(".attn.norm.bias"):  # EVA-CLIP's sub-LN
            out[key.replace(".attn.norm.", ".attn.out_norm.")] = value
        elif key != "mask_token":  # masked image modelling only
            out[key] = value
    for prefix, parts in split.items():  # timm: the key projection has no bias
        out.update(join_qkv(parts, prefix))
    fields = {**_FIELDS, "mlp": mlp, "mlp_norm": "blocks.0.mlp.norm.weight" in state,
              "attn_norm": "blocks.0.attn.norm.weight" in state,
              "pool": "mean" if "fc_norm.weight" in state else "cls"}
    return out, fields


def config_from_hf(hf: dict) -> ViTConfig:
    """EVA-02 has no Hugging Face transformers model type."""
    raise ValueError("EVA-02 has no transformers config.json (model_type); load timm's state dict")
