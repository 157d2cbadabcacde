"""Checkpoint converters: pure ``state_dict -> state_dict`` functions plus config inference.

Our parameter names are timm's, so a timm VisionTransformer state dict needs only unwrapping
and (for a new image size) a resampled ``pos_embed``. Hugging Face ViT keys are mapped.
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


def resample_pos_embed(pos_embed: Tensor, grid_size: int, num_prefix_tokens: int = 1) -> Tensor:
    """Resize a (1, prefix + g*g, D) position table to ``grid_size``: bicubic with antialias
    (as timm's ``checkpoint_filter_fn``), the class token's row kept as is."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise ValueError(f"pos_embed holds {grid.shape[1]} patch positions, not a square grid")
    if old == grid_size:
        return pos_embed
    dim = grid.shape[-1]
    grid = grid.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(grid_size, grid_size), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_size * grid_size, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def fields_from_state_dict(state: dict[str, Tensor]) -> dict:
    """The ViTConfig fields that tensor shapes decide (timm names). Never ``num_heads``: shapes
    cannot tell it. ``img_size`` only from a learned ``pos_embed`` (``pos_embed`` is "sincos"
    when the table is absent), ``num_classes`` only from a ``head``. Raises KeyError for a
    state dict that is not a ViT."""
    if "patch_embed.proj.weight" not in state:
        raise KeyError("not a ViT state dict: no 'patch_embed.proj.weight' tensor")
    proj = state["patch_embed.proj.weight"]
    dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if depth == 0:
        raise KeyError("not a ViT state dict: no 'blocks.N.' tensors")
    fields = dict(
        embed_dim=dim,
        in_chans=in_chans,
        patch_size=patch,
        depth=depth,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim if "blocks.0.mlp.fc1.weight" in state else 4.0,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        pos_embed="learned" if "pos_embed" in state else "sincos",
    )
    if "head.weight" in state:
        fields["num_classes"] = state["head.weight"].shape[0]
    if "pos_embed" in state:
        fields["img_size"] = math.isqrt(state["pos_embed"].shape[1] - 1) * patch
    return fields


def config_from_timm_state_dict(state: dict[str, Tensor], base: ViTConfig | None = None) -> tuple[ViTConfig, dict]:
    """The architecture of a timm state dict, and the fields that had to be guessed.

    Shapes decide what they can (:func:`fields_from_state_dict`); the rest comes from ``base``
    (an ``arch``: check :func:`shape_conflicts` first), else heads are guessed as embed_dim / 64
    (timm's ViTs) and a sincos model's image size as 224, returned as ``{field: value}``."""
    fields = fields_from_state_dict(state)
    if "num_classes" not in fields:
        raise KeyError("not a ViT state dict: no 'head.weight' tensor")
    if base is not None:
        return base.replace(**fields), {}
    guessed = {"num_heads": max(1, fields["embed_dim"] // 64)}
    if "img_size" not in fields:
        guessed["img_size"] = 224
    return ViTConfig(**fields, **guessed), guessed


def shape_conflicts(cfg: ViTConfig, fields: dict, names: dict[str, str] | None = None) -> list[str]:
    """Where ``cfg`` contradicts ``fields`` read from tensor shapes, one line per field, named
    by ``names`` (e.g. Hugging Face's) where given. The MLP is compared by its width."""
    names = names or {}
    out = []
    for key, value in fields.items():
        ours = getattr(cfg, key)
        if key == "mlp_ratio":
            ours, value = cfg.mlp_hidden, round(fields["embed_dim"] * value)
        if ours != value:
            name = names.get(key, "MLP width" if key == "mlp_ratio" else key)
            out.append(f"{name} {ours!r} (weights: {value!r})")
    return out


def adapt_timm_state_dict(state: dict[str, Tensor], cfg: ViTConfig) -> dict[str, Tensor]:
    """timm -> edgevit: same names; resample ``pos_embed`` to the config's grid."""
    state = dict(state)
    if cfg.pos_embed == "learned" and "pos_embed" in state:
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], cfg.grid_size)
    elif cfg.pos_embed == "sincos":
        state.pop("pos_embed", None)  # fixed encoding: a buffer, not a weight
    return state


# Hugging Face ViT -> timm names. Two layouts: the hub's (transformers 4.x, and what 5.x
# save_pretrained writes) and the in-memory one of transformers 5.x.
_HF_RENAMES = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"(?:encoder\.layer|layers)\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"(?:encoder\.layer\.(\d+)\.intermediate\.dense|layers\.(\d+)\.mlp\.fc1)\.", r"blocks.\1\2.mlp.fc1."),
    (r"(?:encoder\.layer\.(\d+)\.output\.dense|layers\.(\d+)\.mlp\.fc2)\.", r"blocks.\1\2.mlp.fc2."),
    (r"layernorm\.", "norm."),
    (r"classifier\.", "head."),
]
_HF_QKV = re.compile(
    r"(?:encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)|layers\.(\d+)\.attention\.([qkv])_proj)\.(weight|bias)$"
)
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def is_hf_state_dict(state: dict) -> bool:
    return any(k.startswith(("vit.embeddings.", "embeddings.patch_embeddings.")) for k in state)


def hf_to_timm_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a ViTForImageClassification / ViTModel state dict to timm names; q, k and v are
    concatenated into one qkv projection. The ViTModel pooler (unused by classifiers) is dropped."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], list] = {}
    for key, value in state.items():
        key = key[len("vit."):] if key.startswith("vit.") else key
        if key.startswith("pooler."):
            continue
        match = _HF_QKV.match(key)
        if match:
            block = match.group(1) or match.group(3)
            which = match.group(2) or match.group(4)
            qkv.setdefault((block, match.group(5)), [None, None, None])[_QKV_ORDER[which]] = value
            continue
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
    return out


_HF_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


# ViTConfig field -> the Hugging Face config.json key it is read from (messages use the latter).
HF_NAMES = {"img_size": "image_size", "patch_size": "patch_size", "in_chans": "num_channels",
            "embed_dim": "hidden_size", "depth": "num_hidden_layers", "num_heads": "num_attention_heads",
            "mlp_ratio": "intermediate_size", "qkv_bias": "qkv_bias", "num_classes": "id2label"}
_HF_SIZES = {"image_size": 224, "patch_size": 16, "num_channels": 3, "hidden_size": 768,
             "num_hidden_layers": 12, "num_attention_heads": 12}


def _positive_int(hf: dict, key: str, default: int) -> int:
    value = hf.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def config_from_hf(hf: dict, num_classes: int | None = None) -> ViTConfig:
    """Build a ViTConfig from a Hugging Face ViT ``config.json`` (eps 1e-12, act, qkv_bias honoured).
    Raises ValueError naming the config.json key that is wrong (Hugging Face's names)."""
    act = hf.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in _HF_ACTS:
        raise ValueError(f"hidden_act {act!r} is not supported; supported: {sorted(_HF_ACTS)}")
    size = {key: _positive_int(hf, key, default) for key, default in _HF_SIZES.items()}
    dim, heads = size["hidden_size"], size["num_attention_heads"]
    hidden = _positive_int(hf, "intermediate_size", 4 * dim)
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
        num_classes=num_classes or len(labels) or 2,
        embed_dim=dim,
        depth=size["num_hidden_layers"],
        num_heads=heads,
        mlp_ratio=hidden / dim,
        qkv_bias=qkv_bias,
        norm_eps=float(eps),
        act=_HF_ACTS[act],
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


def preprocessing_from_hf(pre: dict | None, cfg: ViTConfig) -> Preprocessing:
    """From ``preprocessor_config.json``: HF's ViT resizes straight to the input size (no crop)."""
    pre = pre or {}
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(pre.get("resample", 2), "bilinear")
    return Preprocessing(
        input_size=(cfg.in_chans, cfg.img_size, cfg.img_size),
        mean=tuple(pre.get("image_mean", INCEPTION_MEAN))[: cfg.in_chans],
        std=tuple(pre.get("image_std", INCEPTION_STD))[: cfg.in_chans],
        interpolation=resample,
        crop_pct=1.0,
        pixel_max=1.0 / float(pre.get("rescale_factor", 1 / 255)),
    )
