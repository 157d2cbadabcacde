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
        if model.cls_token is not None:  # class-token-free families (SigLIP, gap) have none
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


def digits_like_model(seed: int = 0, **overrides) -> VisionTransformer:
    """A tiny digits-shaped model (1x8x8, 10 classes, labels "0".."9", digits preprocessing) with
    seeded trained-like weights: the same numbers on every machine, no training."""
    from edgevit.data.preprocess import Preprocessing
    from edgevit.data.sources import DIGITS_CLASS_NAMES

    model = tiny_model(seed, **{**DIGITS_LIKE, **overrides})
    model.labels = list(DIGITS_CLASS_NAMES)
    model.preprocessing = Preprocessing(input_size=(1, 8, 8), mean=(0.3053,), std=(0.3760,),
                                        interpolation="bilinear", crop_pct=1.0, pixel_max=16.0)
    return model


def export_digits_like(outdir, batch=(1, 2, 8), seed: int = 0):
    """:func:`digits_like_model` exported to ``outdir`` with its manifest (no verification or lint: fast)."""
    from edgevit.export.onnx import ExportConfig
    from edgevit.export.onnx import export_onnx as _export

    model = digits_like_model(seed)
    _export(model, outdir, ExportConfig(batch=batch, verify=False, lint=False), force=True)
    return model


# Top-1 logit margin of the gate data of a quantization_robust_model (decided_gate_data): 10x the
# largest logit error of any of its precision graphs on the digits (bf16 0.008, fp8 0.0035, int8
# 0.0009, fp16 0.0005), so each keeps every label unless a layer breaks.
GATE_MARGIN = 0.08


def quantization_robust_model(seed: int = 0, depth: int = 4, branch_scale: float = 0.02, qkv_scale: float = 0.2,
                              full: tuple[str, ...] = ()) -> VisionTransformer:
    """A :func:`digits_like_model` whose precision graphs' accuracy verdicts are decided by
    construction, not by a training run: seeded weights (the same numbers on every machine), mean
    pooling over the patch tokens, and the output Linear of every residual branch (``attn.proj``,
    ``mlp.fc2``) scaled by ``branch_scale`` except the branches named in ``full`` (such as
    ``"blocks.1.mlp"``). The token stream is then mostly the unquantized patch embedding, so the
    quantized Linears move the logits little (see :data:`GATE_MARGIN`); a ``full`` branch keeps
    its normal weight on the output. ``qkv_scale`` softens the attention, so its fp8/int8 error
    stays well inside verify's attention tolerances too (fp8 cosine 0.997, limit 0.995)."""
    model = digits_like_model(seed, depth=depth, pool="mean")
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            block.attn.qkv.weight *= qkv_scale
            block.attn.qkv.bias *= qkv_scale
            for name, linear in ((f"blocks.{i}.attn", block.attn.proj), (f"blocks.{i}.mlp", block.mlp.fc2)):
                if name not in full:
                    linear.weight *= branch_scale
                    linear.bias *= branch_scale
    return model


def decided_gate_data(model: VisionTransformer, path, min_margin: float) -> Path:
    """Labelled data on which an accuracy gate's verdict is decided by construction: the bundled
    digits images (raw pixels, all 1,797), each labelled with ``model``'s own fp32 prediction, keeping
    only those whose top-1 logit beats every other by at least ``min_margin``. A graph whose logits
    move by less than ``min_margin / 2`` keeps every label (top-1 drop 0, agreement 1), however the
    CPU rounds; one that moves them by much more loses labels. Written as ``path`` (.npz)."""
    import numpy as np

    from edgevit.data.preprocess import preprocess_array
    from edgevit.data.sources import _digits_raw

    images, _ = _digits_raw()
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(preprocess_array(images, model.preprocessing)))
    top2 = logits.topk(2, dim=1).values
    keep = ((top2[:, 0] - top2[:, 1]) >= min_margin).numpy()
    np.savez(path, images=images[keep], labels=logits.argmax(1).numpy()[keep])
    return Path(path)


def rich_table(output: str, first: str) -> list[list[str]]:
    """Body rows (lists of stripped cells) of the first rich table in a command's ``output`` whose
    first column header is ``first``; a cell that wraps continues on a row whose first cell is empty."""
    rows, state = [], None
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("┏"):
            state = "header"
        elif text.startswith("┃") and state == "header":
            state = "mine" if text.strip("┃").split("┃")[0].strip() == first else "other"
        elif text.startswith("│") and state == "mine":
            rows.append([c.strip() for c in text.strip("│").split("│")])
        elif text.startswith("└") and state == "mine":
            return rows
    return rows


def run_cli(*args):
    """``edgevit ARGS...`` through click's test runner, as a user types it."""
    from click.testing import CliRunner

    from edgevit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_exit(res, code: int) -> None:
    """Exit status ``code`` by sys.exit, not by an exception escaping the command; no traceback."""
    escaped = res.exception if not isinstance(res.exception, SystemExit) else None
    assert escaped is None and res.exit_code == code, (
        f"exit {res.exit_code} (want {code}), escaped {escaped!r}\n{res.output}")
    assert "Traceback" not in res.output, res.output


def must_not_run(what: str):
    """A stand-in for a slow step that fails if it runs: the bad input must be refused before it."""
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} ran before the bad input was refused")
    return fail
