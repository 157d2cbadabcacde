"""What an exported graph must hold, and the checks that prove it before export installs it.

:class:`GraphInfo` is what one PyTorch forward pass says the graph must compute (output name and
dims, the Linear / LayerNorm calls, the attention blocks); :func:`check_structure` (op counts and
I/O names), :func:`check_file` (onnx.checker, strict shape inference) and :func:`verify_export`
(ONNX Runtime against PyTorch, :func:`edgevit.metrics.compare`) raise ExportError when the graph is not
what was promised.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ExportError
from ..metrics import Comparison, compare
from ..models.vit import VisionTransformer
from ..onnx_graph import count_ops
from .names import module_calls

if TYPE_CHECKING:
    from .onnx import ExportConfig

INPUT_NAME = "images"
LAYERNORM_OPSET = 17  # the first opset with LayerNormalization
LARGER_BATCH = 8


class TokensOutput(torch.nn.Module):
    """``model.forward_tokens`` as the module's forward: the graph of ``--output-kind tokens``."""

    def __init__(self, model: VisionTransformer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_tokens(x)


def output_module(model: VisionTransformer, output: str) -> torch.nn.Module:
    """What the graph computes: ``model`` itself, or its patch tokens for ``output="tokens"``."""
    return TokensOutput(model) if output == "tokens" else model


@dataclass(frozen=True)
class GraphInfo:
    """What the exported graph must hold, from one PyTorch forward pass of what it computes: the
    output's name and dims after the batch, and the Linear / LayerNorm modules in call order
    (names for :func:`name_vit_nodes`; their counts for :func:`check_structure`)."""

    output: str
    dims: tuple[int, ...]
    linears: list[str]
    norms: list[str]
    attentions: int  # self-attention blocks: Softmax (decomposed) or Attention (fused) ops
    pools: int       # attention pools (SigLIP's MAP head): one Softmax each, in either form

    @classmethod
    def of(cls, model: VisionTransformer, output: str) -> "GraphInfo":
        from ..models.vit import Attention, AttentionPool

        c = model.config
        module = output_module(model, output)
        example = torch.zeros(1, c.in_chans, c.img_size, c.img_size)
        kinds = (torch.nn.Linear, torch.nn.LayerNorm, Attention, AttentionPool)
        out, calls = module_calls(module, example, kinds)
        strip = (lambda n: n.removeprefix("model.")) if module is not model else (lambda n: n)
        return cls(output, tuple(out.shape[1:]), [strip(n) for n in calls[torch.nn.Linear]],
                   [strip(n) for n in calls[torch.nn.LayerNorm]], len(calls[Attention]), len(calls[AttentionPool]))


def check_structure(proto, graph: GraphInfo, cfg: "ExportConfig") -> None:
    """The graph has the form promised: LayerNormalization ops, the attention form, I/O names."""
    depth = graph.attentions
    ln, want = count_ops(proto, "LayerNormalization"), len(graph.norms)
    if ln != want:
        raise ExportError(f"expected {want} LayerNormalization ops (one per nn.LayerNorm call of the model), "
                          f"found {ln}; use opset >= {LAYERNORM_OPSET}")
    attn, softmax = count_ops(proto, "Attention"), count_ops(proto, "Softmax")
    if cfg.attention == "fused" and attn != depth:
        raise ExportError(f"attention='fused': expected {depth} Attention ops, found {attn}")
    if cfg.attention == "decomposed" and (attn or softmax != depth + graph.pools):
        raise ExportError(f"attention='decomposed': expected {depth + graph.pools} Softmax and 0 Attention ops, "
                          f"found {softmax} and {attn}")
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [graph.output]):
        raise ExportError(f"graph inputs/outputs are {names}, expected [{INPUT_NAME!r}] -> [{graph.output!r}]")


def check_file(path: Path, graph: GraphInfo, cfg: "ExportConfig") -> None:
    """onnx.checker (full) and strict shape inference; the output must be (batch, *dims of PyTorch's)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False),
                                                     strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ExportError(f"the exported graph fails onnx.checker / shape inference: {str(exc)[:500]}") from exc
    out = inferred.graph.output[0].type.tensor_type.shape.dim
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in out]
    lo, _, _ = cfg.batch_bounds
    want_batch = lo if not cfg.dynamic else None
    if len(dims) != 1 + len(graph.dims) or tuple(dims[1:]) != graph.dims or (want_batch and dims[0] != want_batch) or (
            cfg.dynamic and isinstance(dims[0], int) and dims[0] > 0):
        raise ExportError(f"shape inference gives {graph.output} {dims}, expected "
                          f"[{'batch' if cfg.dynamic else lo}, {', '.join(map(str, graph.dims))}] (PyTorch's)")


def reference_images(model: VisionTransformer, n: int) -> np.ndarray | None:
    """Real inputs where the model has some: the bundled digits for 1x8x8 models.

    Hook: other bundled sets can be added here; None means random inputs only.
    """
    c = model.config
    if (c.in_chans, c.img_size) != (1, 8) or model.preprocessing is None:
        return None
    try:
        from ..data import load_digits
    except ImportError:  # edgevit.data without the digits loader: random inputs only
        return None
    images = load_digits(model.preprocessing, split="test").images[:n]
    return np.ascontiguousarray(images, dtype=np.float32)


def check_record(name: str, batch: int, c: Comparison) -> dict:
    """One input's line of the export check, in :class:`edgevit.metrics.Comparison`'s names."""
    record = {"input": name, "batch": batch, "max_abs": c.max_abs, "mean_abs": c.mean_abs,
              "reference_scale": c.reference_scale, "max_rel_to_scale": c.max_rel_to_scale,
              "cosine_min": c.cosine_min, "cosine_mean": c.cosine_mean}
    if c.knn_k is not None:
        record.update(knn_agreement=c.knn_agreement, knn_k=c.knn_k)
    else:
        record["top1_agreement"] = c.top1_agreement if c.top1_agreement is not None else 1.0
    return record


def verify_export(model: VisionTransformer, path: Path, cfg: "ExportConfig", output: str = "logits") -> dict:
    """Run the graph on ONNX Runtime and compare its ``output`` with what the PyTorch reference
    ("math" attention) computes for it: logits, features or ``forward_tokens``."""
    reference = output_module(copy.deepcopy(model).set_attn_impl("math").eval(), output)
    c = model.config
    lo, _, hi = cfg.batch_bounds
    batches = [lo] if not cfg.dynamic else sorted({lo, min(hi, max(lo + 1, LARGER_BATCH))})
    gen = torch.Generator().manual_seed(0)
    cases = [(f"random[{b}]", torch.randn(b, c.in_chans, c.img_size, c.img_size, generator=gen).numpy())
             for b in batches]
    digits = reference_images(model, hi if cfg.dynamic else lo)
    if digits is not None and len(digits):
        n = len(digits) if cfg.dynamic else lo
        if len(digits) >= n:
            cases.append((f"digits[{n}]", digits[:n]))
    from ..runtime import get_runner

    try:
        session = get_runner("onnxruntime", path)
        session.activate()
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {str(exc)[:500]}") from exc
    checks = []
    for name, x in cases:
        with torch.no_grad():
            ref = reference(torch.from_numpy(x)).numpy()
        try:
            got = session.infer({INPUT_NAME: x})[output]
        except Exception as exc:
            raise ExportError(f"ONNX Runtime failed on {name} input of shape {x.shape}: {str(exc)[:500]}") from exc
        if got.shape != ref.shape:
            raise ExportError(f"ONNX Runtime {output} have shape {got.shape} on {name}, PyTorch {ref.shape}")
        checks.append(check_record(name, int(x.shape[0]), compare(ref, got, output=output)))
    session.deactivate()
    worst = max(ch["max_abs"] for ch in checks)
    result = {
        "runtime": "onnxruntime CPUExecutionProvider",
        "reference": "PyTorch eager fp32, attn_impl=math" + (", forward_tokens" if output == "tokens" else ""),
        "output": output,
        "atol": cfg.atol,
        "max_abs": worst,
        "passed": worst <= cfg.atol,
        "digits": "used" if any(ch["input"].startswith("digits") for ch in checks) else "not applicable",
        "checks": checks,
    }
    if not result["passed"]:
        def agree(ch):
            return (f"top-1 agree {ch['top1_agreement']:.3f}" if "top1_agreement" in ch
                    else f"k-NN agree {ch['knn_agreement']:.3f}")

        lines = "; ".join(f"{ch['input']}: max abs {ch['max_abs']:.3e} (rel to scale {ch['max_rel_to_scale']:.2e}, "
                          f"cosine {ch['cosine_min']:.6f}, {agree(ch)})" for ch in checks)
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch beyond atol {cfg.atol:g}: worst max abs {worst:.3e}. {lines}. "
            "Nothing was written."
        )
    return result


__all__ = ["GraphInfo", "INPUT_NAME", "check_file", "check_record", "check_structure", "output_module",
           "verify_export"]
