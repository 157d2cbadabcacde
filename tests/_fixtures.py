"""Tiny models and ONNX files for the runtime and verify tests (shared helpers, not tests)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from edgevit.models import ViTConfig, VisionTransformer

TINY = dict(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=2, num_heads=4)


def trained_like(model: VisionTransformer, seed: int = 0, qk_gain: float = 2.0) -> VisionTransformer:
    """Give a fresh model weights with trained-like scales: unit-variance linears, peaked
    attention (``qk_gain``), non-trivial LayerNorm affine and biases, spread-out logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                gain = qk_gain if name.endswith("attn.qkv.weight") else 1.0
                p.copy_(torch.randn(p.shape, generator=gen) * gain / math.sqrt(fan_in))
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        model.cls_token.copy_(torch.randn(model.cls_token.shape, generator=gen))
    return model.eval()


def tiny_model(seed: int = 0, **overrides) -> VisionTransformer:
    torch.manual_seed(seed)
    return trained_like(VisionTransformer(ViTConfig(**{**TINY, **overrides})), seed)


def export_onnx(model: VisionTransformer, path, attention: str = "decomposed") -> Path:
    """Export with dynamic batch: "decomposed" (math attention, opset 18: MatMul->Softmax->MatMul,
    Q pre-scaled) or "fused" (sdpa, opset 23 ``Attention`` op)."""
    import copy

    path = Path(path)
    m = copy.deepcopy(model).eval()
    m.set_attn_impl("math" if attention == "decomposed" else "sdpa")
    opset = 18 if attention == "decomposed" else 23
    cfg = m.config
    x = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, opset_version=opset, external_data=False)
    return path


DIGITS_LIKE = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=4)


def export_digits_like(outdir, batch=(1, 2, 8), seed: int = 0):
    """A tiny digits-shaped model (1x8x8, 10 classes, labels "0".."9", digits preprocessing)
    exported to ``outdir`` with its manifest (no verification or lint: fast)."""
    from edgevit.data.preprocess import Preprocessing
    from edgevit.data.sources import DIGITS_CLASS_NAMES
    from edgevit.export.onnx import ExportConfig
    from edgevit.export.onnx import export_onnx as _export

    model = tiny_model(seed, **DIGITS_LIKE)
    model.labels = list(DIGITS_CLASS_NAMES)
    model.preprocessing = Preprocessing(input_size=(1, 8, 8), mean=(0.3053,), std=(0.3760,),
                                        interpolation="bilinear", crop_pct=1.0, pixel_max=16.0)
    _export(model, outdir, ExportConfig(batch=batch, verify=False, lint=False), force=True)
    return model
