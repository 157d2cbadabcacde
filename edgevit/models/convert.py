"""Checkpoint converters: pure ``state_dict -> state_dict`` functions plus config inference.

Our parameter names are timm's, so a timm VisionTransformer state dict needs only unwrapping
and (for a new image size) a resampled ``pos_embed``. Hugging Face ViT, DeiT, Dinov2, CLIPVision
and SiglipVision keys are mapped. Every tensor must find its place in the model (a strict load);
the only ones dropped are named here: masked pre-training's ``mask_token``, index buffers, and the
tanh ``pooler`` of HF ViTModel / DeiTModel (dropped with a warning by the loader).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from ..data.preprocess import INCEPTION_MEAN, INCEPTION_STD, Preprocessing
from .vit import ViTConfig

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
    "plain ViT and DeiT (timm vit_* / deit_*, HF ViT*), DeiT distilled (timm deit_*_distilled_*, HF DeiT*), "
    "DINOv2 with or without registers (timm vit_*_dinov2, HF Dinov2*), CLIP / OpenCLIP vision towers "
    "(timm vit_*_clip_*, HF CLIPVisionModel[WithProjection]), SigLIP vision towers (timm vit_*_siglip_*, "
    "HF SiglipVisionModel), global-pool and LayerScale ViTs (timm *_gap_*)"
)

# What the families we do not load leave in a state dict (timm names), recognised so the error
# names the feature instead of listing keys.
_UNSUPPORTED = [
    (r"relative_position|rel_pos", "relative position bias (BEiT, Swin-style)"),
    # timm's Eva class (EVA-02, RoPE ViTs) keeps its rotary tables out of the state dict: its keys tell it
    (r"(^|\.)(rope|freqs)\b|^blocks\.\d+\.gamma_[12]$|attn\.[qv]_bias$",
     "rotary position embeddings or EVA blocks (EVA-02, RoPE ViTs: gamma_1, split q/v biases)"),
    (r"^patch_embed\.backbone\.|^patch_embed\.stem\.", "a hybrid CNN stem (R50+ViT, ViT-hybrid)"),
    (r"mlp\.(fc1_g|fc1_x|w12|w3|weights_in|weights_out)\.|mlp\.norm\.", "a SwiGLU MLP (DINOv2-g, EVA-02)"),
    (r"attn\.(q_norm|k_norm|norm)\.", "query/key normalisation in attention"),
    (r"^blocks\.\d+\.(attn|mlp)\.\d+\.|^blocks\.\d+\.\d+\.", "parallel blocks (ViT 18x2)"),
]


def unsupported_family(state: dict[str, Tensor]) -> str | None:
    """The feature of a ViT family edgevit does not implement that ``state`` (timm names) holds, or None."""
    for pattern, feature in _UNSUPPORTED:
        if any(re.search(pattern, key) for key in state):
            return feature
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    if fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1]:
        return "a SwiGLU MLP (packed: fc1 twice as wide as fc2's input, DINOv2-g)"
    return None


def resample_pos_embed(pos_embed: Tensor, grid_size: int, num_prefix_tokens: int = 1,
                       antialias: bool = True) -> Tensor:
    """Resize a (1, prefix + g*g, D) position table to ``grid_size``, the prefix rows kept as is:
    bicubic, with antialias as timm's ``checkpoint_filter_fn`` (and HF Dinov2WithRegisters) do it,
    without as HF's ViT / DeiT / Dinov2 / CLIP / SigLIP ``interpolate_pos_encoding``."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise ValueError(f"pos_embed holds {grid.shape[1]} patch positions, not a square grid")
    if old == grid_size:
        return pos_embed
    dim = grid.shape[-1]
    grid = grid.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(grid_size, grid_size), mode="bicubic", antialias=antialias, align_corners=False)
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
    dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if depth == 0:
        raise KeyError("not a ViT state dict: no 'blocks.N.' tensors")
    reg = state["reg_token"].shape[1] if "reg_token" in state else 0
    fields = dict(
        embed_dim=dim,
        in_chans=in_chans,
        patch_size=patch,
        depth=depth,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim if "blocks.0.mlp.fc1.weight" in state else 4.0,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        pos_embed="learned" if "pos_embed" in state else "sincos",
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
    elif head_in is not None and head_in == 2 * dim and not fields["proj_dim"]:
        fields["pool"] = "cls_mean"
    elif fields["distilled"] and head_in is not None:
        fields["pool"] = "cls"  # one head on the class token beside a distillation token (HF DeiT)
    elif not fields["class_token"] or fields["fc_norm"]:
        fields["pool"] = "mean"
    if "pos_embed" in state:
        rows = state["pos_embed"].shape[1]
        prefix = int(fields["class_token"]) + int(fields["distilled"]) + reg
        # the table covers the patches only (timm no_embed_class) when only that reading is a square grid
        fields["no_embed_class"] = bool(prefix) and _is_square(rows) and not _is_square(rows - prefix)
        fields["img_size"] = math.isqrt(rows if fields["no_embed_class"] else rows - prefix) * patch
    return fields


def config_from_timm_state_dict(state: dict[str, Tensor], base: ViTConfig | None = None) -> tuple[ViTConfig, dict]:
    """The architecture of a timm state dict, and the fields that had to be guessed.

    Shapes decide what they can (:func:`fields_from_state_dict`); the rest comes from ``base``
    (an ``arch``: check :func:`shape_conflicts` first), else from timm's conventions (a
    ``norm_pre`` is a CLIP tower: LayerNorm eps 1e-5; a headless distilled model pools the class
    and distillation tokens), and what those cannot tell is guessed and returned as
    ``{field: value}``: heads as embed_dim / 64, a CLIP tower's activation as GELU (OpenAI's
    own towers use quick-GELU), a sincos model's image size as 224."""
    fields = fields_from_state_dict(state)
    if base is not None:
        return base.replace(**fields), {}
    if fields["pre_norm"]:
        fields["norm_eps"] = 1e-5
    if fields["distilled"] and "pool" not in fields:
        fields["pool"] = "cls_dist"
    guessed = {"num_heads": max(1, fields["embed_dim"] // 64)}
    if fields["pre_norm"]:
        guessed["act"] = "gelu"
    if "img_size" not in fields:
        guessed["img_size"] = 224
    return ViTConfig(**fields, **guessed), guessed


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
    see :func:`resample_pos_embed`)."""
    state = dict(state)
    if cfg.pos_embed == "learned" and "pos_embed" in state:
        prefix = 0 if cfg.no_embed_class else cfg.num_prefix_tokens
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], cfg.grid_size, prefix, antialias)
    elif cfg.pos_embed == "sincos":
        state.pop("pos_embed", None)  # fixed encoding: a buffer, not a weight
    return state


# Hugging Face -> timm names, for ViT, DeiT, Dinov2[WithRegisters], CLIPVision and SiglipVision
# models. Two layouts each: the hub's (transformers 4.x, and what 5.x save_pretrained writes) and
# the in-memory one of transformers 5.x. The model prefix (vit., deit., dinov2., vision_model.)
# goes first, then a block's prefix becomes blocks.N.
_HF_MODEL_PREFIX = re.compile(r"^(?:vit|deit|dinov2|dinov2_with_registers|vision_model)\.")
_HF_BLOCK = re.compile(r"^(?:encoder\.layers?|layers)\.(\d+)\.")
_HF_BLOCK_RENAMES = [
    (r"(?:layernorm_before|norm1|layer_norm1)\.", "norm1."),
    (r"(?:layernorm_after|norm2|layer_norm2)\.", "norm2."),
    (r"(?:attention\.output\.dense|attention\.o_proj|self_attn\.out_proj)\.", "attn.proj."),
    (r"(?:intermediate\.dense|mlp\.fc1)\.", "mlp.fc1."),
    (r"(?:output\.dense|mlp\.fc2)\.", "mlp.fc2."),
    (r"layer_scale1\.lambda1$", "ls1.gamma"),
    (r"layer_scale2\.lambda1$", "ls2.gamma"),
]
_HF_QKV = re.compile(
    r"^(?:attention\.attention\.(query|key|value)|(?:attention|self_attn)\.([qkv])_proj)\.(weight|bias)$")
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}
_HF_RENAMES = [
    (r"embeddings\.cls_token$", "cls_token"),
    (r"embeddings\.distillation_token$", "dist_token"),
    (r"embeddings\.register_tokens$", "reg_token"),
    (r"embeddings\.position_embeddings$", "pos_embed"),
    (r"embeddings\.(?:patch_embeddings\.projection|patch_embedding)\.", "patch_embed.proj."),
    (r"pre_layrnorm\.", "norm_pre."),
    (r"(?:layernorm|post_layernorm)\.", "norm."),
    (r"(?:classifier|cls_classifier)\.", "head."),
    (r"distillation_classifier\.", "head_dist."),
    (r"visual_projection\.weight$", "proj.weight"),
    (r"head\.probe$", "attn_pool.latent"),
    (r"head\.attention\.out_proj\.", "attn_pool.proj."),
    (r"head\.layernorm\.", "attn_pool.norm."),
    (r"head\.mlp\.", "attn_pool.mlp."),
]
# Tensors that hold no weights of the deployed model: the masked-pretraining token and index buffers.
_HF_DROPPED = re.compile(r"^embeddings\.(?:mask_token|position_ids)$")
# The tanh pooler of HF ViTModel / DeiTModel (pooler_output): not part of a classifier or of timm's features.
HF_POOLER = re.compile(r"^pooler\.dense\.(?:weight|bias)$")


def is_hf_state_dict(state: dict) -> bool:
    return any(_HF_MODEL_PREFIX.sub("", k).startswith(("embeddings.patch_embedding", "embeddings.position_embedding"))
               for k in state)


def hf_to_timm_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a Hugging Face ViT / DeiT / Dinov2 / CLIPVision / SiglipVision state dict to timm names:
    q, k and v are concatenated into one qkv projection (the MAP head's packed in_proj split into
    q and kv), CLIP's (D,) class embedding and (N, D) position table get timm's shapes, Dinov2's
    register layout becomes timm's (see :func:`timm_layout`). The ``pooler.dense`` of ViTModel /
    DeiTModel is kept under its name for the caller to decide; keys no rule knows pass through,
    so a strict load reports them."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], list] = {}
    for key, value in state.items():
        key = _HF_MODEL_PREFIX.sub("", key)
        if _HF_DROPPED.match(key):
            continue
        block = _HF_BLOCK.match(key)
        if block:
            rest = key[block.end():]
            match = _HF_QKV.match(rest)
            if match:
                which = match.group(1) or match.group(2)
                qkv.setdefault((block.group(1), match.group(3)), [None, None, None])[_QKV_ORDER[which]] = value
                continue
            for pattern, repl in _HF_BLOCK_RENAMES:
                rest, n = re.subn(f"^{pattern}", repl, rest)
                if n:
                    break
            out[f"blocks.{block.group(1)}.{rest}"] = value
            continue
        if key.startswith("head.attention.in_proj_"):  # SigLIP's MAP head: nn.MultiheadAttention
            dim = value.shape[0] // 3
            kind = key.rsplit("_", 1)[1]
            out[f"attn_pool.q.{kind}"], out[f"attn_pool.kv.{kind}"] = value[:dim], value[dim:]
            continue
        if key == "embeddings.class_embedding":  # CLIP
            key, value = "cls_token", value.reshape(1, 1, -1)
        elif key == "embeddings.position_embedding.weight":  # CLIP, SigLIP: an nn.Embedding
            key, value = "pos_embed", value.unsqueeze(0)
        else:
            for pattern, repl in _HF_RENAMES:
                new, n = re.subn(f"^{pattern}", repl, key)
                if n:
                    key = new
                    break
        out[key] = value
    for (block, kind), parts in qkv.items():
        if any(p is None for p in parts):
            raise KeyError(f"block {block}: query/key/value {kind} tensors incomplete")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    if "reg_token" in out:  # Dinov2WithRegisters: registers follow the position-embedded class token
        out["register_tokens"] = out.pop("reg_token")
        out = timm_layout(out)
    return out


_HF_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu",
            "relu": "relu"}


# ViTConfig field -> the Hugging Face config.json key it is read from (messages use the latter).
HF_NAMES = {"img_size": "image_size", "patch_size": "patch_size", "in_chans": "num_channels",
            "embed_dim": "hidden_size", "depth": "num_hidden_layers", "num_heads": "num_attention_heads",
            "mlp_ratio": "intermediate_size", "qkv_bias": "qkv_bias", "num_classes": "id2label",
            "reg_tokens": "num_register_tokens"}
# config.json model_type -> (the classes it covers, its config class's defaults where they differ from
# ViT's: save_pretrained writes only the values that differ from them).
HF_FAMILIES = {
    "vit": ("ViTModel, ViTForImageClassification", {}),
    "deit": ("DeiTModel, DeiTForImageClassification[WithTeacher]", {}),
    "dinov2": ("Dinov2Model, Dinov2ForImageClassification", {"patch_size": 14, "layer_norm_eps": 1e-6}),
    "dinov2_with_registers": ("Dinov2WithRegistersModel, Dinov2WithRegistersForImageClassification",
                              {"layer_norm_eps": 1e-6, "num_register_tokens": 4}),
    "clip_vision_model": ("CLIPVisionModel, CLIPVisionModelWithProjection",
                          {"patch_size": 32, "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu"}),
    "siglip_vision_model": ("SiglipVisionModel", {"layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"}),
}
# Whole text-image models: only their vision tower is supported.
_HF_TOWERS = {"clip": "CLIPVisionModelWithProjection", "siglip": "SiglipVisionModel"}


def hf_family(model_type) -> str:
    """The supported ``model_type`` (None: a ViT), or ValueError saying what is supported."""
    model_type = model_type or "vit"
    if model_type in HF_FAMILIES:
        return model_type
    if model_type in _HF_TOWERS:
        tower = _HF_TOWERS[model_type]
        raise ValueError(
            f"model_type {model_type!r} is a whole image-text model; edgevit deploys its vision tower: save it "
            f"with transformers.{tower}.from_pretrained(PATH).save_pretrained(OUT) and load OUT")
    listed = "; ".join(f"{k} ({v[0]})" for k, v in HF_FAMILIES.items())
    raise ValueError(f"model_type {model_type!r} is not a ViT family edgevit loads; supported model_type values: "
                     f"{listed}. Families: {SUPPORTED_FAMILIES}")


_HF_SIZES = {"image_size": 224, "patch_size": 16, "num_channels": 3, "hidden_size": 768,
             "num_hidden_layers": 12, "num_attention_heads": 12}


def _positive_int(hf: dict, key: str, default: int) -> int:
    value = hf.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def config_from_hf(hf: dict) -> ViTConfig:
    """Build a ViTConfig from a Hugging Face ``config.json`` of a supported ``model_type``
    (:data:`HF_FAMILIES`: its defaults, eps, act, qkv_bias, mlp_ratio or intermediate_size,
    register tokens honoured). The prefix tokens, pooling and heads are the weights' to tell.
    Raises ValueError naming the config.json key that is wrong (Hugging Face's names)."""
    hf = {**HF_FAMILIES[hf_family(hf.get("model_type"))][1], **hf}
    if hf.get("use_swiglu_ffn"):
        raise ValueError("use_swiglu_ffn is true: a SwiGLU MLP (DINOv2-g) is not supported. "
                         f"Families: {SUPPORTED_FAMILIES}")
    act = hf.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in _HF_ACTS:
        raise ValueError(f"hidden_act {act!r} is not supported; supported: {sorted(_HF_ACTS)}")
    size = {key: _positive_int(hf, key, default) for key, default in _HF_SIZES.items()}
    dim, heads = size["hidden_size"], size["num_attention_heads"]
    ratio = hf.get("mlp_ratio", 4)  # Dinov2's config states a ratio, the others a width
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
        raise ValueError(f"mlp_ratio must be a positive number, got {ratio!r}")
    hidden = _positive_int(hf, "intermediate_size", int(dim * ratio))
    if dim % heads:
        raise ValueError(f"hidden_size ({dim}) must be divisible by num_attention_heads ({heads})")
    if size["image_size"] % size["patch_size"]:
        raise ValueError(f"image_size ({size['image_size']}) must be divisible by patch_size ({size['patch_size']})")
    eps, qkv_bias = hf.get("layer_norm_eps", 1e-12), hf.get("qkv_bias", True)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        raise ValueError(f"layer_norm_eps must be a number in (0, 1), got {eps!r}")
    if not isinstance(qkv_bias, bool):
        raise ValueError(f"qkv_bias must be true or false, got {qkv_bias!r}")
    labels = labels_from_hf(hf) or ()
    return ViTConfig(
        img_size=size["image_size"],
        patch_size=size["patch_size"],
        in_chans=size["num_channels"],
        num_classes=len(labels) or 2,
        embed_dim=dim,
        depth=size["num_hidden_layers"],
        num_heads=heads,
        mlp_ratio=hidden / dim,
        qkv_bias=qkv_bias,
        norm_eps=float(eps),
        act=_HF_ACTS[act],
        reg_tokens=_positive_int(hf, "num_register_tokens", 1) if "num_register_tokens" in hf else 0,
        no_embed_class="num_register_tokens" in hf,  # registers join after the position embedding
    )


def labels_from_hf(hf: dict) -> list[str] | None:
    """Class names from ``id2label`` in index order; ValueError unless its keys are 0..N-1."""
    id2label = hf.get("id2label")
    if not id2label:
        return None
    if not isinstance(id2label, dict) or sorted(map(str, id2label)) != sorted(map(str, range(len(id2label)))):
        raise ValueError(f"id2label must map the class indices 0..N-1 to names, got {str(id2label)[:80]}")
    names = {str(k): v for k, v in id2label.items()}
    return [str(names[str(i)]) for i in range(len(names))]


def hf_crop_size(pre: dict | None) -> int | None:
    """The square size a ``preprocessor_config.json`` center-crops to, if it crops."""
    pre = pre or {}
    crop = pre.get("crop_size")
    crop = crop.get("height") if isinstance(crop, dict) and crop.get("height") == crop.get("width") else crop
    return crop if pre.get("do_center_crop") and isinstance(crop, int) and not isinstance(crop, bool) else None


def preprocessing_from_hf(pre: dict | None, cfg: ViTConfig) -> Preprocessing:
    """From ``preprocessor_config.json``: ViT / SigLIP processors resize straight to the input size;
    CLIP / DINOv2 / DeiT ones resize the shorter side then center-crop (crop_pct = crop / shorter side)."""
    pre = pre or {}
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(pre.get("resample", 2), "bilinear")
    size, crop = pre.get("size"), hf_crop_size(pre)
    shorter = size.get("shortest_edge") if isinstance(size, dict) else None
    crop_pct = min(1.0, crop / shorter) if crop and isinstance(shorter, int) and shorter > 0 else 1.0
    return Preprocessing(
        input_size=(cfg.in_chans, cfg.img_size, cfg.img_size),
        mean=tuple(pre.get("image_mean", INCEPTION_MEAN))[: cfg.in_chans],
        std=tuple(pre.get("image_std", INCEPTION_STD))[: cfg.in_chans],
        interpolation=resample,
        crop_pct=crop_pct,
        pixel_max=1.0 / float(pre.get("rescale_factor", 1 / 255)),
    )
