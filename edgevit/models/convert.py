"""Checkpoint converters: pure ``state_dict -> state_dict`` functions plus config inference.

Our parameter names are timm's, so a timm VisionTransformer state dict needs only unwrapping
and (for a new image size) a resampled ``pos_embed``; what the tensors cannot tell is guessed
(warned) or asked for (:func:`undecided`), and families edgevit does not load are named
(:data:`FOREIGN_LAYOUTS`, :func:`unsupported_family`). Hugging Face names and config.json are
:mod:`edgevit.models.hf_convert`'s. Every tensor must find its place in the model (a strict load).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from .config import ViTConfig

Tensor = torch.Tensor


def unwrap_state_dict(obj) -> dict[str, Tensor]:
    """Accept a bare state dict or one nested under ``model``/``state_dict``/``model_ema``;
    strip ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    for key in ("state_dict", "model", "model_ema", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise TypeError("expected a dict of tensors (a state dict)")
    out = {}
    for key, value in obj.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


SUPPORTED_FAMILIES = (
    "plain ViT and DeiT (timm vit_* / deit_*, HF ViT*, ViTMSN, ViTMAE, I-JEPA), DeiT distilled, DINOv2 with or "
    "without registers (also the SwiGLU giant), DINOv3 (timm vit_*_dinov3, HF DINOv3ViTModel), EVA-02 and EVA-CLIP "
    "(timm eva02_*), SAM's image encoder (timm samvit_*, HF SamModel / SamVisionModel), BEiT / BEiT v2 / "
    "Data2Vec-vision, CLIP / OpenCLIP vision towers (also OWL-ViT, OWLv2, MetaCLIP 2, Chinese-CLIP, AltCLIP, CLIPSeg, "
    "GIT), SigLIP vision towers and SiglipForImageClassification, EVA-01 (--rope none), global-pool and LayerScale "
    "ViTs (timm *_gap_*); README \"Families\" lists them"
)

# What the families we do not load leave in a state dict (timm names), recognised so the error
# names the feature instead of listing keys.
_UNSUPPORTED = [
    (r"relative_position|rel_pos(?!_[hw]$)", "relative position bias of another kind than BEiT's or SAM's (timm "
                                            "vit_relpos_* / vit_srelpos_*, Swin-style)"),
    # stored rotary tables (timm's vit_*_rope_mixed_*); timm's other Eva-class models keep theirs out of the
    # state dict: :func:`undecided` asks about those
    (r"(^|\.)(rope|freqs)\b", "rotary position embeddings with learned frequencies (timm vit_*_rope_mixed_*)"),
    (r"^patch_embed\.backbone\.|^patch_embed\.stem\.", "a hybrid CNN stem (R50+ViT, ViT-hybrid)"),
    # the SwiGLU MLP in Meta's original DINOv2 names (SwiGLUFFNFused); timm's and transformers' names load
    (r"mlp\.(w12|w3)\.", "a SwiGLU MLP in Meta's original DINOv2 names (mlp.w12 / mlp.w3; timm's "
                         "vit_giant_patch14_dinov2 and transformers' Dinov2 checkpoints of it load)"),
    (r"attn\.(q_norm|k_norm|norm)\.", "query/key normalisation in attention"),
    (r"^blocks\.\d+\.(attn|mlp)\.\d+\.|^blocks\.\d+\.\d+\.", "parallel blocks (ViT 18x2)"),
]


# Families edgevit does not load, recognised by their own key names before any mapping, so that a refusal
# names the family and what edgevit's ViT lacks for it instead of listing keys:
# (family, pattern over the keys, what is missing, config.json model_type values).
FOREIGN_LAYOUTS = [
    ("NVIDIA RADIO (C-RADIO, RADIOv2.5 / v3 / v4)",
     r"^(?:radio_model\.|model\.)?(?:input_conditioner\.|summary_idxs$|embeddings\.cls_register_token$|"
     r"(?:model\.)?patch_generator\.)",
     "its CPE patch generator (one position table cropped and resized per input size), several class tokens and "
     "the summary / feature adaptors", ("radio",)),
    ("timm NaFlexViT", r"^embeds\.(?:proj|pos_embed|reg_token|cls_token)",
     "the NaFlex patch embedding (a Linear over flattened patches, a position table resized per input)", ()),
    ("InternViT (InternVL's vision encoder)",
     r"(?:^|\.)encoder\.layers?\.\d+\.(?:attention\.projection_layer\.|ls[12]$|attn\.(?:q_norm|k_norm)\.)",
     "its block layout (query/key normalisation in the 6B models, LayerScale named ls1/ls2)",
     ("internvl_vision", "intern_vit_6b")),
    ("a Qwen2-VL / Qwen2.5-VL / Qwen3-VL vision encoder", r"(?:^|\.)merger\.",
     "its 3-D (video) patch embedding, 2-D rotary positions, window attention and the patch merger",
     ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen2_5_vl_vision", "qwen3_vl_vision")),
    ("AIMv2", r"(?:^|\.)(?:rms_norm[12]?\.weight$|ffn\.gate_proj\.)", "RMSNorm and a SwiGLU MLP",
     ("aimv2", "aimv2_vision_model")),
    ("CaiT (timm cait_*)", r"^blocks_token_only\.",
     "its class-attention blocks (the class token joins after the patch blocks) and talking-heads attention", ()),
    ("ConViT (timm convit_*)", r"\.gating_param$|\.attn\.pos_proj\.",
     "gated positional self-attention", ()),
    ("XCiT (timm xcit_*)", r"\.attn\.temperature$|\.local_mp\.|^pos_embeder\.",
     "cross-covariance (channel) attention and its local patch interaction", ()),
    ("transformers Siglip2VisionModel (SigLIP2 NaFlex)", r"^(?:vision_model\.)?embeddings\.patch_embedding\.weight$",
     "the NaFlex patch embedding (a Linear over flattened patches); the fixed-resolution SigLIP2 towers of timm "
     "(vit_*_siglip_*.v2_webli) load with --act gelu_tanh", ("siglip2", "siglip2_vision_model")),
]


def foreign_layout(state: dict[str, Tensor]) -> tuple[str, str, str] | None:
    """``(family, the key that shows it, what edgevit lacks)`` for a state dict in the names of a family of
    :data:`FOREIGN_LAYOUTS`, or None. A 2-D ``patch_embedding`` (a Linear) is SigLIP2's; a Conv2d one is
    CLIP's and SigLIP's."""
    for family, pattern, missing, _ in FOREIGN_LAYOUTS:
        for key, value in state.items():
            if re.search(pattern, key) and not (family.startswith("transformers Siglip2") and value.ndim == 4):
                return family, key, missing
    return None


def foreign_model_type(model_type) -> tuple[str, str] | None:
    """``(family, what edgevit lacks)`` for a ``config.json`` ``model_type`` of :data:`FOREIGN_LAYOUTS`."""
    return next(((family, missing) for family, _, missing, types in FOREIGN_LAYOUTS if model_type in types), None)


def unsupported_family(state: dict[str, Tensor], eva_layout: bool = False) -> str | None:
    """The feature of a ViT family edgevit does not implement that ``state`` (timm names) holds, or None.
    ``eva_layout``: the keys were timm's Eva block names (:func:`is_eva_layout`); with a SwiGLU MLP that is
    EVA-02 (as are SwiGLU blocks with timm Eva's separate q_proj / k_proj / v_proj: EVA-02 B / L), whose rotary
    position embedding timm does not store (EVA-01's MLP is plain)."""
    for pattern, feature in _UNSUPPORTED:
        if any(re.search(pattern, key) for key in state):
            return feature
    if "norm_pre.weight" in state and "attn_pool.latent" in state:
        return ("the layout of Meta's Perception Encoder core (timm vit_pe_core_*: a norm_pre and an attention pool "
                "over all tokens with its own head count), whose rotary position embeddings timm does not store in "
                "the state dict")
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    packed = fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1]
    swiglu = packed or "blocks.0.mlp.fc1_g.weight" in state
    if swiglu and (eva_layout or "blocks.0.attn.q_proj.weight" in state):
        return ("a SwiGLU MLP in timm's Eva layout that is not EVA-02's (edgevit's EVA-02 has a class token, a position "
                "table and no LayerScale), with a rotary position embedding timm does not store in the state dict")
    if eva_layout and "blocks.0.ls1.gamma" in state:  # EVA-01 has no LayerScale; timm's RoPE ViTs do
        return ("timm's RoPE ViTs in the Eva layout with LayerScale (vit_*_rope_*, Perception Encoder lang), whose "
                "rotary position embedding timm does not store in the state dict")
    if swiglu and "pos_embed" not in state:  # DINOv3's gate activation is its config's hidden_act: not in the weights
        return "a SwiGLU MLP without a position table, as in DINOv3 ViT-H+ / 7B (DINOv3's gated MLP is not supported)"
    return None


def resample_pos_embed(pos_embed: Tensor, grid_size: int, num_prefix_tokens: int = 1,
                       antialias: bool = True, mode: str = "bicubic") -> Tensor:
    """Resize a (1, prefix + g*g, D) position table to ``grid_size``, the prefix rows kept as is:
    bicubic, with antialias as timm's ``checkpoint_filter_fn`` (and HF Dinov2WithRegisters) do it,
    without as HF's ViT / DeiT / Dinov2 / CLIP / SigLIP ``interpolate_pos_encoding``; ``mode`` another
    interpolation (a model of any size resamples its table with its ``dynamic_size`` mode)."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise ValueError(f"pos_embed holds {grid.shape[1]} patch positions, not a square grid")
    if old == grid_size:
        return pos_embed
    dim = grid.shape[-1]
    grid = grid.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(grid_size, grid_size), mode=mode, antialias=antialias, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_size * grid_size, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def fields_from_state_dict(state: dict[str, Tensor]) -> dict:
    """The ViTConfig fields that the tensors decide (timm names). Never ``num_heads`` or ``act``:
    shapes cannot tell them. ``img_size`` only from a learned ``pos_embed`` (``pos_embed`` is
    "sincos" when the table is absent); ``num_classes`` 0 without a ``head``; ``pool`` only where
    the keys decide it (an attention pool, no class token, fc_norm, a [cls, mean] head, a second
    head). Raises KeyError for a state dict that is not a ViT."""
    if "patch_embed.proj.weight" not in state:
        raise KeyError("not a ViT state dict: no 'patch_embed.proj.weight' tensor")
    proj = state["patch_embed.proj.weight"]
    if proj.ndim != 4 or proj.shape[2] != proj.shape[3]:
        raise KeyError(f"the patch embedding 'patch_embed.proj.weight' has shape {tuple(proj.shape)}, not the "
                       "(dim, channels, patch, patch) of a square Conv2d patch embedding (a Linear over flattened "
                       "patches is NaFlex / SigLIP2, a 5-D one a video Conv3d as in Qwen-VL encoders)")
    dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if depth == 0:
        raise KeyError("not a ViT state dict: no 'blocks.N.' tensors")
    reg = state["reg_token"].shape[1] if "reg_token" in state else 0
    # the MLP's layout and hidden width (fc2's input): SwiGLU split in fc1_g / fc1_x, or packed in an fc1 twice
    # as wide as fc2's input (the gate first), else plain
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    if "blocks.0.mlp.fc1_g.weight" in state:
        mlp, hidden = "swiglu", state["blocks.0.mlp.fc1_g.weight"].shape[0]
    elif fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1]:
        mlp, hidden = "swiglu_packed", fc2.shape[1]
    else:
        mlp, hidden = "mlp", fc1.shape[0] if fc1 is not None else None
    fields = dict(
        embed_dim=dim,
        in_chans=in_chans,
        patch_size=patch,
        depth=depth,
        mlp_ratio=hidden / dim if hidden else 4.0,
        mlp=mlp,
        mlp_norm="blocks.0.mlp.norm.weight" in state,  # timm's SwiGLU / Mlp norm_layer (EVA-02's sub-LN)
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        class_token="cls_token" in state,
        distilled="dist_token" in state,
        reg_tokens=reg,
        init_values=1e-5 if "blocks.0.ls1.gamma" in state else None,  # presence only: gamma is a weight
        pre_norm="norm_pre.weight" in state,
        fc_norm="fc_norm.weight" in state,
        proj_dim=state["proj.weight"].shape[0] if "proj.weight" in state else 0,
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,  # 0: headless
    )
    head_in = state["head.weight"].shape[1] if "head.weight" in state else None
    if "attn_pool.latent" in state:
        fields["pool"] = "map"
    elif "head_dist.weight" in state:
        fields["pool"] = "cls_dist"
    elif head_in is not None and head_in == 2 * dim and not fields["proj_dim"] and fields["class_token"]:
        fields["pool"] = "cls_mean"
    elif fields["distilled"] and head_in is not None:
        fields["pool"] = "cls"  # one head on the class token beside a distillation token (HF DeiT)
    elif not fields["class_token"] or fields["fc_norm"]:
        fields["pool"] = "mean"
    if "pos_embed" in state:  # without one the tensors cannot tell a fixed sin-cos table from none (RoPE)
        fields["pos_embed"] = "learned"
        rows = state["pos_embed"].shape[1]
        prefix = int(fields["class_token"]) + int(fields["distilled"]) + reg
        # the table covers the patches only (timm no_embed_class) when only that reading is a square grid
        fields["no_embed_class"] = bool(prefix) and _is_square(rows) and not _is_square(rows - prefix)
        fields["img_size"] = math.isqrt(rows if fields["no_embed_class"] else rows - prefix) * patch
    return fields


def config_from_timm_state_dict(state: dict[str, Tensor], base: ViTConfig | None = None,
                                hf_layout: bool = False, conventions: dict | None = None) -> tuple[ViTConfig, dict]:
    """The architecture of a timm state dict, and the fields that had to be guessed.

    Shapes decide what they can (:func:`fields_from_state_dict`); the rest comes from ``base``
    (an ``arch``: check :func:`shape_conflicts` first), else from the conventions of the library
    that wrote the weights (a ``norm_pre`` is a CLIP tower: LayerNorm eps 1e-5; a headless
    distilled model pools the class and distillation tokens in timm, the class token in
    transformers' DeiTModel: ``hf_layout``), and what those cannot tell is guessed and returned as
    ``{field: value}``: heads as embed_dim / 64, a CLIP or SigLIP tower's activation as GELU
    (OpenAI's CLIP towers use quick-GELU, SigLIP2's and transformers' SigLIP the tanh GELU), a
    sincos model's image size as 224; ``conventions`` (a bare transformers file's library defaults,
    :func:`edgevit.models.hf_convert.hf_conventions`) replace those guesses and add their own. What no
    convention settles is :func:`undecided`'s."""
    fields = fields_from_state_dict(state)
    if base is not None:
        return base.replace(**fields), {}
    fields.setdefault("pos_embed", "sincos")  # timm's convention for a ViT without a table; RoPE families say "none"
    if fields["pre_norm"]:
        fields["norm_eps"] = 1e-5
    if fields["distilled"] and "pool" not in fields:
        fields["pool"] = "cls" if hf_layout else "cls_dist"
    guessed = {"num_heads": max(1, fields["embed_dim"] // 64)}
    if fields["pre_norm"] or fields.get("pool") == "map":
        guessed["act"] = "gelu"
    if "img_size" not in fields:
        guessed["img_size"] = 224
    guessed.update(conventions or {})
    return ViTConfig(**fields, **guessed), guessed


_EVA_KEYS = re.compile(r"^blocks\.\d+\.(gamma_[12]|attn\.[qv]_bias)$")


def is_eva_layout(state: dict) -> bool:
    """Whether ``state`` names its blocks as timm's Eva class does (``gamma_1``/``gamma_2``, separate
    ``q_bias``/``v_bias``): EVA-01, EVA-02, DINOv3, Perception Encoder and timm's vit_*_rope_* models."""
    return any(_EVA_KEYS.match(k) for k in state)


def undecided(fields: dict, eva_layout: bool = False) -> dict[str, str]:
    """``{ViTConfig field: why}`` for what tensors of these shapes (:func:`fields_from_state_dict`)
    leave open between two layouts that both exist, so that neither may be guessed: the loader
    refuses until the option that decides is given. ``eva_layout``: the keys were timm's Eva block
    names (:func:`is_eva_layout`), which never record whether the model rotates Q and K."""
    out = {}
    if eva_layout:
        out["rope"] = ("timm's Eva block names (gamma_1/gamma_2, separate q/v biases): EVA-01 has no rotary position "
                       "embedding, while EVA-02, DINOv3, Perception Encoder and timm's vit_*_rope_* rotate Q and K "
                       "with tables timm does not store in the state dict")
    prefix = int(fields["class_token"]) + int(fields["distilled"]) + fields["reg_tokens"]
    if fields.get("pool") == "map" and prefix:
        out["pool_include_prefix"] = (
            f"attention pooling beside {prefix} class/register token(s): timm pools the patch tokens only "
            "(vit_so150m_patch16_reg4_map_256) or all tokens (pool_include_prefix, as in test_vit3 and Meta's "
            "Perception Encoder)")
    if not fields["class_token"] and not fields["qkv_bias"] and fields["fc_norm"] and not prefix:
        out["post_norm"] = (
            "no class token, no qkv bias and an fc_norm: the keys of timm's res-post-norm ViT "
            "(vit_base_patch16_rpn_224, x + norm(attn(x))) and of a pre-norm ViT (x + attn(norm(x))) are the same")
    return out


def shape_conflicts(cfg: ViTConfig, fields: dict, names: dict[str, str] | None = None) -> list[str]:
    """Where ``cfg`` contradicts ``fields`` read from tensor shapes, one line per field, named
    by ``names`` (e.g. Hugging Face's) where given. The MLP is compared by its width, LayerScale
    by its presence."""
    names = names or {}
    out = []
    for key, value in fields.items():
        ours = getattr(cfg, key)
        if key == "mlp_ratio":
            ours, value = cfg.mlp_hidden, round(fields["embed_dim"] * value)
        elif key == "init_values":
            ours, value = ours is not None, value is not None
        if ours != value:
            name = names.get(key, {"mlp_ratio": "MLP width", "init_values": "LayerScale"}.get(key, key))
            out.append(f"{name} {ours!r} (weights: {value!r})")
    return out


def timm_layout(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Bring layouts that differ from timm's VisionTransformer only in detail to it:

    * Meta's DINOv2 checkpoints: ``register_tokens`` become ``reg_token`` with the class token's
      position folded into ``cls_token`` (timm's no_embed_class layout); ``mask_token`` (used only
      by masked pre-training) is dropped.
    * timm's CLIP towers (a ``norm_pre``) keep the image projection as a ``head`` with an all-zero
      bias: it becomes ``proj`` (no bias), so the model returns image embeddings ("features").
    """
    state = dict(state)
    state.pop("mask_token", None)
    if "register_tokens" in state:
        pos = state.pop("pos_embed")
        state["reg_token"] = state.pop("register_tokens")
        state["cls_token"] = state["cls_token"] + pos[:, :1]
        state["pos_embed"] = pos[:, 1:]
    bias = state.get("head.bias")
    if "norm_pre.weight" in state and bias is not None and not bias.any() and "head_dist.weight" not in state:
        state["proj.weight"] = state.pop("head.weight")
        del state["head.bias"]
    return state


def adapt_timm_state_dict(state: dict[str, Tensor], cfg: ViTConfig, antialias: bool = True) -> dict[str, Tensor]:
    """timm -> edgevit: same names; resample ``pos_embed`` to the config's grid (``antialias``:
    see :func:`resample_pos_embed`). A model of any size (``dynamic_size``) resamples its table in the forward
    with that mode and no antialias (:meth:`VisionTransformer.position_table`), so it is loaded at another size
    the same way: one image size then gives the same table whether the load or the graph resampled it."""
    state = dict(state)
    if cfg.pos_embed == "learned" and "pos_embed" in state:
        prefix = 0 if cfg.no_embed_class else cfg.num_prefix_tokens
        dynamic = cfg.dynamic_size != "none"
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], cfg.grid_size, prefix, antialias and not dynamic,
                                                cfg.dynamic_size if dynamic else "bicubic")
    elif cfg.pos_embed == "sincos":
        state.pop("pos_embed", None)  # fixed encoding: a buffer, not a weight
    return state
