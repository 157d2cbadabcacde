"""What a user wants to know about a model before deploying it."""

from __future__ import annotations

from .checkpoint import load_model
from .vit import ViTConfig, count_params, macs_per_image

# TensorRT's fused multi-head attention kernels (design.md §3): head sizes it supports and
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
        "fp16": head_ok,
        "int8": head_ok and seq_ok,
        "reasons": "; ".join(reasons) or "eligible",
    }


def model_info(source: str, arch: str | None = None) -> dict:
    model = load_model(source, arch=arch)
    cfg = model.config
    pre = model.preprocessing
    return {
        "source": str(source),
        "params": count_params(model),
        "gmacs_per_image": round(macs_per_image(cfg) / 1e9, 6),
        "tokens": cfg.num_tokens,
        "heads": cfg.num_heads,
        "head_dim": cfg.head_dim,
        "depth": cfg.depth,
        "embed_dim": cfg.embed_dim,
        "num_classes": cfg.num_classes,
        "guessed": dict(model.guessed),
        "input": {"name": "images", "shape": ["batch", *pre.input_size], "dtype": "float32",
                  "mean": pre.mean, "std": pre.std, "interpolation": pre.interpolation},
        "fused_mha": fused_mha_eligibility(cfg),
    }
