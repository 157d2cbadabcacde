"""DINOv3 ViTs (Meta, 2025): registers, LayerScale, no absolute position table, 2-D RoPE on the patch
tokens' queries and keys (:mod:`edgevit.models.rope`), LayerNorm eps 1e-5, and a key projection
without bias (the ``_qkvb`` variants carry a query and a value bias; the others none).

Three layouts load:

* timm (``vit_*_dinov3``, ``vit_*_dinov3_qkvb``: ``timm.models.eva.Eva``): ``reg_token``, ``gamma_1`` /
  ``gamma_2``, split ``q_bias`` / ``v_bias``, no ``pos_embed``. Pooling follows timm's default for these
  models the patch tokens' mean after the final norm (``global_pool='avg'``), LingBot-Vision's (the
  same keys) the class token: the weights cannot tell, so the loader asks (``--pool mean`` or
  ``--pool cls``; ``load_model(..., pool=...)``).
* Hugging Face ``DINOv3ViTModel`` (``model_type`` "dinov3_vit"): ``embeddings.*``, ``[model.]layer.N.*``
  with separate q / k / v projections, ``layer_scale1.lambda1``, ``mlp.up_proj`` / ``down_proj``.
  Features are ``pooler_output``: the class token after the final norm.
* Meta's original checkpoints: ``storage_tokens``, ``ls1.gamma``, a packed ``qkv.bias`` whose key
  part the ``bias_mask`` zeroes, ``rope_embed.periods``. Features: the class token, as upstream.

Dropped, as carrying nothing the deployed model computes: ``mask_token`` (masked pre-training), the
rope period buffers (recomputed from the config), ``bias_mask``. The SwiGLU MLP of ViT-H+ / 7B maps to
``mlp.fc1_g`` / ``fc1_x`` (HF ``gate_proj`` / ``up_proj``, ``use_gated_mlp``: ``mlp="swiglu"``).
"""

from __future__ import annotations

import re

import torch

from ..vit import ViTConfig
from .common import hf_number, join_qkv, square_int, timm_block_names

NAME = "dinov3"
HF_MODEL_TYPES = ("dinov3_vit",)

# What every DINOv3 config fixes that the shapes cannot tell.
_FIELDS = {"pos_embed": "none", "rope": "dinov3", "rope_theta": 100.0, "norm_eps": 1e-5, "act": "gelu"}

_HF_BLOCK = re.compile(r"^(?:model\.)?layer\.(\d+)\.(.+)$")
_HF_QKV = re.compile(r"^attention\.([qkv])_proj\.(weight|bias)$")
_HF_BLOCK_RENAMES = {
    "norm1": "norm1", "norm2": "norm2", "attention.o_proj": "attn.proj",
    "mlp.up_proj": "mlp.fc1", "mlp.down_proj": "mlp.fc2",
}
_HF_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
_HF_DROPPED = ("embeddings.mask_token", "rope_embeddings.inv_freq")
_META_DROPPED = re.compile(r"(^mask_token$|^rope_embed\.|\.bias_mask$|^local_cls_norm\.)")


def _layout(state: dict) -> str | None:
    if "embeddings.patch_embeddings.weight" in state and any(_HF_BLOCK.match(k) for k in state):
        return "hf"
    if "storage_tokens" in state and "blocks.0.attn.qkv.weight" in state:
        return "meta"
    if ("patch_embed.proj.weight" in state and "cls_token" in state and "reg_token" in state
            and "pos_embed" not in state and "blocks.0.gamma_1" in state and "fc_norm.weight" not in state
            and "norm.weight" in state
            and not any(re.search(r"relative_position|(^|\.)rope\.|freqs", k) for k in state)):
        return "timm"
    return None


def recognise(state: dict) -> bool:
    """A DINOv3 state dict in timm's Eva layout (registers and a class token, ``gamma_1``, no
    ``pos_embed``, no fc_norm, no relative position or rope tables), Hugging Face's DINOv3ViTModel
    layout (``embeddings.patch_embeddings.weight`` and ``layer.N.``) or Meta's (``storage_tokens``)."""
    return _layout(state) is not None


def to_edgevit(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict in edgevit's names and the config fields DINOv3 fixes (no position table,
    DINOv3 RoPE with theta 100, LayerNorm eps 1e-5, and the pooling of the layout's own model)."""
    layout = _layout(state)
    if layout == "hf":
        return _from_hf(state), {**_FIELDS, "pool": "cls"}
    if layout == "meta":
        return _from_meta(state), {**_FIELDS, "pool": "cls"}
    if layout == "timm":  # the pooling is not in the weights: undecided() asks for it
        out = timm_block_names(state)
        out.pop("mask_token", None)
        return out, dict(_FIELDS)
    raise ValueError("not a DINOv3 state dict (timm's, Hugging Face's or Meta's layout)")


def undecided(state: dict) -> dict[str, str]:
    """``{field: why}`` for what a DINOv3 state dict leaves open: in timm's layout, the pooling (timm's
    vit_*_dinov3 pool the patch mean, global_pool='avg'; LingBot-Vision, the same keys, and upstream DINOv3
    the class token)."""
    if _layout(state) != "timm":
        return {}
    return {"pool": "timm's DINOv3 layout: timm's vit_*_dinov3 pool the patch tokens' mean (global_pool='avg'), "
                    "LingBot-Vision (vit_*_lingbot, the same keys) and Meta's DINOv3 the class token"}


def _from_meta(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if _META_DROPPED.search(key):
            continue
        if key == "storage_tokens":
            key = "reg_token"
        elif key.endswith("attn.qkv.bias"):  # the key's third is masked to zero (LinearKMaskedBias)
            third = value.shape[0] // 3
            value = torch.cat([value[:third], torch.zeros_like(value[third:2 * third]), value[2 * third:]])
        out[key] = value
    return out


def _from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in _HF_DROPPED:
            continue
        block = _HF_BLOCK.match(key)
        if block is None:
            out[_HF_RENAMES.get(key, key)] = value  # unknown keys pass through: the strict load names them
            continue
        index, rest = block.groups()
        match = _HF_QKV.match(rest)
        if match:
            qkv.setdefault(index, {})[f"{match.group(1)}.{match.group(2)}"] = value
            continue
        if rest.startswith("layer_scale"):
            rest = re.sub(r"^layer_scale([12])\.lambda1$", r"ls\1.gamma", rest)
        elif rest.startswith("mlp.gate_proj.") or rest.startswith("mlp.up_proj.") and any(
                k.endswith(f"layer.{index}.mlp.gate_proj.weight") for k in state):
            # the gated MLP (use_gated_mlp: ViT-H+ / 7B): SwiGLU, refused by name downstream
            rest = rest.replace("mlp.gate_proj.", "mlp.fc1_g.").replace("mlp.up_proj.", "mlp.fc1_x.")
        else:
            name, _, kind = rest.rpartition(".")
            rest = f"{_HF_BLOCK_RENAMES.get(name, name)}.{kind}"
        out[f"blocks.{index}.{rest}"] = value
    for index, parts in qkv.items():  # HF: the key has no bias (key_bias=False)
        out.update(join_qkv(parts, f"blocks.{index}.attn."))
    # proj_bias / mlp_bias false: a zero bias computes the same Linear
    for key in [k for k in out if k.endswith((".attn.proj.weight", ".mlp.fc1.weight", ".mlp.fc2.weight"))]:
        bias = key[:-len("weight")] + "bias"
        if bias not in out:
            out[bias] = out[key].new_zeros(out[key].shape[0])
    return out


# DINOv3ViTConfig's defaults: save_pretrained writes only the values that differ from them.
_HF_DEFAULTS = {"image_size": 224, "patch_size": 16, "num_channels": 3, "hidden_size": 384, "intermediate_size": 1536,
                "num_hidden_layers": 12, "num_attention_heads": 6, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
                "rope_theta": 100.0, "query_bias": True, "key_bias": False, "value_bias": True,
                "layerscale_value": 1.0, "use_gated_mlp": False, "num_register_tokens": 0}
_HF_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu",
            "relu": "relu"}


def config_from_hf(hf: dict) -> ViTConfig:
    """The ViTConfig of a DINOv3ViTModel ``config.json`` (DINOv3ViTConfig's defaults where a key is absent).
    Headless (DINOv3ViTModel has no classifier): the features are ``pooler_output``, the final-normed class
    token. ValueError naming the config.json key on a bad or unsupported value."""
    hf = {**_HF_DEFAULTS, **hf}
    gated, act = hf["use_gated_mlp"], hf["hidden_act"]
    if not isinstance(gated, bool):
        raise ValueError(f"use_gated_mlp must be true or false, got {gated!r}")
    if gated and act not in ("silu", "swish"):  # down(act(gate x) * up x): edgevit's SwiGLU gates with SiLU
        raise ValueError(f"use_gated_mlp with hidden_act {act!r}: only a SiLU gate (SwiGLU, hidden_act 'silu') "
                         "is supported")
    if not gated and (not isinstance(act, str) or act not in _HF_ACTS):
        raise ValueError(f"hidden_act {act!r} is not supported; supported: {sorted(_HF_ACTS)}")
    size = {key: square_int(hf, key) for key in ("image_size", "patch_size", "num_channels", "hidden_size",
                                              "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    dim, heads = size["hidden_size"], size["num_attention_heads"]
    if dim % heads:
        raise ValueError(f"hidden_size ({dim}) must be divisible by num_attention_heads ({heads})")
    if (dim // heads) % 4:
        raise ValueError(f"hidden_size / num_attention_heads ({dim // heads}) must be divisible by 4 (DINOv3 RoPE)")
    if size["image_size"] % size["patch_size"]:
        raise ValueError(f"image_size ({size['image_size']}) must be divisible by patch_size ({size['patch_size']})")
    for key in ("query_bias", "key_bias", "value_bias"):
        if not isinstance(hf[key], bool):
            raise ValueError(f"{key} must be true or false, got {hf[key]!r}")
    registers = hf["num_register_tokens"]
    if not isinstance(registers, int) or isinstance(registers, bool) or registers < 0:
        raise ValueError(f"num_register_tokens must be a non-negative integer, got {registers!r}")
    return ViTConfig(
        img_size=size["image_size"],
        patch_size=size["patch_size"],
        in_chans=size["num_channels"],
        num_classes=0,
        embed_dim=dim,
        depth=size["num_hidden_layers"],
        num_heads=heads,
        mlp_ratio=size["intermediate_size"] / dim,
        qkv_bias=hf["query_bias"] or hf["key_bias"] or hf["value_bias"],
        norm_eps=hf_number(hf, "layer_norm_eps", 0.0, 1.0),
        act="gelu" if gated else _HF_ACTS[act],
        **({"mlp": "swiglu"} if gated else {}),  # gate_proj / up_proj: fc1_g / fc1_x (ViT-H+ / 7B)
        pos_embed="none",
        pool="cls",
        reg_tokens=registers,
        init_values=hf_number(hf, "layerscale_value"),
        rope="dinov3",
        rope_theta=hf_number(hf, "rope_theta"),
    )
