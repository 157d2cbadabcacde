"""What a user wants to know about a model before deploying it."""

from __future__ import annotations

from ..formats import FP16, INT8
from ..output_kinds import OutputKind
from .checkpoint import load_model
from .vit import ViTConfig, count_params, macs_per_image

# TensorRT's fused multi-head attention kernels (docs/design.md §5.4): head sizes it supports and
# the longest sequence the INT8 fused MHA accepts.
FUSED_MHA_HEAD_SIZES = (16, 32, 64)
INT8_FUSED_MHA_MAX_SEQ = 512


def fused_mha_eligibility(cfg: ViTConfig) -> dict:
    head_ok = cfg.head_dim in FUSED_MHA_HEAD_SIZES
    seq_ok = cfg.num_tokens <= INT8_FUSED_MHA_MAX_SEQ
    reasons = []
    if not head_ok:
        reasons.append(f"head size {cfg.head_dim} is not one of {list(FUSED_MHA_HEAD_SIZES)}")
    if not seq_ok:
        reasons.append(f"sequence {cfg.num_tokens} > {INT8_FUSED_MHA_MAX_SEQ} (INT8 fused MHA limit)")
    return {
        FP16: head_ok,
        INT8: head_ok and seq_ok,
        "reasons": "; ".join(reasons) or "eligible",
    }


def model_family(cfg: ViTConfig) -> str:
    """The ViT family a config looks like: sam (windows, a decomposed relative position bias or a neck), beit (a
    relative position bias), dinov3 / eva02 (their RoPE), deit-distilled (a
    distillation token), siglip (attention pooling), clip (norm_pre or quick-GELU), gap (no class
    token, or mean pooling), dinov2 (LayerScale with patch 14 or register tokens), else vit. Read
    from the config fields alone."""
    if cfg.rel_pos_bias == "decomposed" or cfg.window_size or cfg.neck_dim:
        return "sam"  # SAM's image encoder: windowed attention, decomposed relative positions, the neck
    if cfg.rel_pos_bias != "none":
        return "beit"  # BEiT / BEiT v2 / Data2Vec-vision: a relative position bias
    if cfg.rope == "dinov3":
        return "dinov3"  # DINOv3: 2-D RoPE on the patch tokens, no position table
    if cfg.rope == "eva":
        return "eva02"  # EVA-02 / EVA-CLIP: EVA's RoPE with a SwiGLU MLP
    if cfg.distilled:
        return "deit-distilled"
    if cfg.pool == "map":
        return "siglip"
    if cfg.pre_norm or cfg.act == "quick_gelu":
        return "clip"
    if not cfg.class_token or cfg.pool == "mean":
        return "gap"
    if cfg.init_values is not None and (cfg.patch_size == 14 or cfg.reg_tokens):
        return "dinov2"
    return "vit"


def _positions(cfg: ViTConfig) -> str:
    """How positions enter the model: the table (learned, sin-cos, none), RoPE, a relative bias, and
    whether the table is resampled for other input sizes."""
    parts = [f"{cfg.pos_embed} table" if cfg.pos_embed != "none" else "no table"]
    if cfg.rope != "none":
        parts.append(f"{cfg.rope} RoPE on Q and K")
    if cfg.rel_pos_bias != "none":
        parts.append(f"relative position bias ({cfg.rel_pos_bias})")
    if cfg.dynamic_size != "none":
        how = [f"{cfg.dynamic_size} resampling of the table"] if cfg.pos_embed == "learned" else []
        how += ["RoPE tables from the grid"] if cfg.rope != "none" else []
        parts.append(f"any size ({', '.join(how)})")
    if cfg.window_size:
        glob = f", global in blocks {list(cfg.global_blocks)}" if cfg.global_blocks else ""
        parts.append(f"attention in {cfg.window_size}x{cfg.window_size} windows{glob}")
    return ", ".join(parts)


def output_kind(cfg: ViTConfig) -> OutputKind:
    """"logits" for a classifier, "features" for a headless model (num_classes=0)."""
    return cfg.output_kind


def model_info(source: str, arch: str | None = None, model_overrides: dict | None = None) -> dict:
    model = load_model(source, arch=arch, **(model_overrides or {}))
    cfg = model.config
    pre = model.preprocessing
    return {
        "source": str(source),
        "family": model_family(cfg),
        "output": output_kind(cfg),
        "params": count_params(model),
        "gmacs_per_image": round(macs_per_image(cfg) / 1e9, 6),
        "tokens": cfg.num_tokens,
        "prefix_tokens": cfg.num_prefix_tokens,
        "heads": cfg.num_heads,
        "head_dim": cfg.head_dim,
        "depth": cfg.depth,
        "embed_dim": cfg.embed_dim,
        "num_classes": cfg.num_classes,
        "pool": cfg.pool,
        "act": cfg.act if cfg.mlp == "mlp" else f"{cfg.mlp} (SiLU gate)",
        "positions": _positions(cfg),
        "guessed": dict(model.guessed),
        "input": {"name": "images", "shape": ["batch", *pre.input_size], "dtype": "float32",
                  "mean": pre.mean, "std": pre.std, "interpolation": pre.interpolation, "crop_pct": pre.crop_pct,
                  "pixel_max": pre.pixel_max},
        "fused_mha": fused_mha_eligibility(cfg),
    }
