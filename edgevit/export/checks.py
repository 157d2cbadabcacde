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
from ..input_contract import FLOAT_INPUT, InputContract
from ..metrics import Comparison, compare
from ..models.vit import VisionTransformer
from ..onnx_graph import count_ops
from ..output_kinds import OutputKind
from ..runtime.batching import score_bounded_batch
from .names import module_calls

if TYPE_CHECKING:
    from .onnx import ExportConfig

INPUT_NAME = "images"
LAYERNORM_OPSET = 17  # the first opset with LayerNormalization
LARGER_BATCH = 8  # the dynamic-batch check's larger batch, fewer (at least 2) for large attention (SAM at 1024 px)


class TokensOutput(torch.nn.Module):
    """``model.forward_tokens`` as the module's forward: the graph of ``--output-kind tokens``."""

    def __init__(self, model: VisionTransformer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_tokens(x)


def output_module(model: VisionTransformer, output: str) -> torch.nn.Module:
    """What the graph computes: ``model`` itself, or its patch tokens for ``output="tokens"``."""
    return model if OutputKind(output).own else TokensOutput(model)


class RawPixelInput(torch.nn.Module):
    """``--input uint8``: raw pixels in, preprocessing inside the graph. Casts to float32, transposes NHWC to
    NCHW, scales by ``1/pixel_max`` and normalizes by ``mean``/``std`` per channel with the arithmetic of
    edgevit's own :func:`edgevit.data.preprocess.normalize`, then runs ``inner``. Wrapping the module (rather
    than editing the ONNX graph afterwards) keeps one exported graph that the export's own check runs
    against the PyTorch model fed edgevit's preprocessing of the same pixels (:func:`verify_export`)."""

    def __init__(self, inner: torch.nn.Module, contract: InputContract):
        super().__init__()
        self.inner = inner
        self.nhwc = contract.layout == "NHWC"
        p = contract.preprocessing
        self.register_buffer("mean", torch.tensor(p.mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(p.std, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("pixel_max", torch.tensor(p.pixel_max, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        return self.inner((x / self.pixel_max - self.mean) / self.std)


def input_contract(model: VisionTransformer, cfg: "ExportConfig") -> InputContract:
    """The graph input ``cfg`` asks for (``cfg.input``: "float" or a raw dtype; ``cfg.input_layout``)."""
    if cfg.input == FLOAT_INPUT:
        return InputContract(INPUT_NAME, preprocessing=model.preprocessing)
    if model.preprocessing is None:
        raise ExportError(f"--input {cfg.input}: the model records no preprocessing (mean, std, pixel_max) for the "
                          "graph to apply; export it with --input float")
    return InputContract(INPUT_NAME, cfg.input, cfg.input_layout, False, model.preprocessing)


def graph_module(model: VisionTransformer, output: str, contract: InputContract) -> torch.nn.Module:
    """What the exported graph computes: :func:`output_module`, behind :class:`RawPixelInput` for raw pixels."""
    inner = output_module(model, output)
    return RawPixelInput(inner, contract) if contract.raw else inner


def example_input(contract: InputContract, batch: int, config, generator=None) -> torch.Tensor:
    """An input of the graph's dtype and layout (random pixels for a raw-pixel graph)."""
    if not contract.raw:
        return torch.randn(batch, config.in_chans, config.img_size, config.img_size, generator=generator)
    x = torch.randn(batch, config.in_chans, config.img_size, config.img_size, generator=generator).numpy()
    return torch.from_numpy(contract.feed(x))


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
    # with a dynamic height and width the token count of a tokens output is symbolic (None: any name)
    want = tuple(None if i == 0 and cfg.size_range and not OutputKind(graph.output).own else d
                 for i, d in enumerate(graph.dims))
    same = len(dims) == 1 + len(want) and all(
        (isinstance(d, str) and d != "?") if w is None else d == w for d, w in zip(dims[1:], want))
    if not same or (want_batch and dims[0] != want_batch) or (cfg.dynamic and isinstance(dims[0], int) and dims[0] > 0):
        shown = ", ".join("tokens" if w is None else str(w) for w in want)
        raise ExportError(f"shape inference gives {graph.output} {dims}, expected "
                          f"[{'batch' if cfg.dynamic else lo}, {shown}] (PyTorch's)")


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
    contract = input_contract(model, cfg)  # a raw-pixel graph is fed the pixels, PyTorch their numpy preprocessing
    c = model.config
    lo, _, hi = cfg.batch_bounds
    larger = max(2, score_bounded_batch(LARGER_BATCH, c.score_bytes))
    batches = [lo] if not cfg.dynamic else sorted({lo, min(hi, max(lo + 1, larger))})
    gen = torch.Generator().manual_seed(0)
    cases = [(f"random[{b}]", torch.randn(b, c.in_chans, c.img_size, c.img_size, generator=gen).numpy())
             for b in batches]
    if cfg.size_range:  # the ends of the range, square and not, at the smallest batch
        lo_px, hi_px = cfg.size_range
        cases += [(f"random[{lo}] at {h}x{w}", torch.randn(lo, c.in_chans, h, w, generator=gen).numpy())
                  for h, w in sorted({(lo_px, lo_px), (lo_px, hi_px), (hi_px, hi_px)})]
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
    checks, raw_cases = [], []
    for name, x in cases:
        with torch.no_grad():
            ref = reference(torch.from_numpy(contract.represented(x))).numpy()
        try:
            got = session.infer({INPUT_NAME: contract.feed(x)})[output]
        except Exception as exc:
            raise ExportError(f"ONNX Runtime failed on {name} input of shape {x.shape}: {str(exc)[:500]}") from exc
        if got.shape != ref.shape:
            raise ExportError(f"ONNX Runtime {output} have shape {got.shape} on {name}, PyTorch {ref.shape}")
        checks.append(check_record(name, int(x.shape[0]), compare(ref, got, output=output)))
        raw_cases.append((name, ref, got))
    session.deactivate()
    worst = max(ch["max_abs"] for ch in checks)
    result = {
        "runtime": "onnxruntime CPUExecutionProvider",
        "reference": "PyTorch eager fp32, attn_impl=math" + ("" if OutputKind(output).own else ", forward_tokens")
                     + (", fed edgevit's preprocessing (numpy) of the pixels the graph is fed" if contract.raw else ""),
        "input": contract.describe(),
        "output": output,
        "atol": cfg.atol,
        "max_abs": worst,
        "passed": worst <= cfg.atol,
        "digits": "used" if any(ch["input"].startswith("digits") for ch in checks) else "not applicable",
        "checks": checks,
    }
    consumer = consumer_check(raw_cases, output, contract)
    if consumer is not None:
        result["consumer"] = consumer
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


RAW_PIXEL_CONSUMER = "raw-pixel graph"
RUNTIME_CONSUMER = "edgevit runtime"


def consumer_check(cases: list, output: str, contract: InputContract) -> dict | None:
    """How the graph's consumer preprocesses, judged at the fp32 row of :mod:`edgevit.tolerances`: the graph's
    outputs on the real images among ``cases`` ((name, reference, graph outputs); the digits) against
    PyTorch's on edgevit's preprocessing of the same pixels. A raw-pixel graph is fed the pixels (its consumer
    preprocesses inside the graph; on all cases when the model has no bundled images); a float graph is fed
    edgevit's preprocessing, which is what edgevit's runtime applies to an application's images (None
    without real images: random normal input is no picture)."""
    from ..formats import BASE_PRECISION
    from ..tolerances import Verdict, get_tolerance

    real = [c for c in cases if not c[0].startswith("random")]
    if not real and not contract.raw:
        return None
    real = real or cases
    ref = np.concatenate([c[1] for c in real])
    got = np.concatenate([c[2] for c in real])
    tol = get_tolerance(BASE_PRECISION, output)
    comparison = compare(ref, got, tol, output=output)
    checks = tol.judge(comparison)
    return {"consumer": RAW_PIXEL_CONSUMER if contract.raw else RUNTIME_CONSUMER,
            "images": ", ".join(c[0] for c in real), "samples": int(len(ref)), "max_abs": comparison.max_abs,
            "top1_agreement": comparison.top1_agreement, "cosine_min": comparison.cosine_min, "atol": tol.atol,
            "verdict": Verdict.of(checks).value, "failed": [c.describe() for c in checks if not c.passed]}


def consumer_certificate(check: dict, artifact: str, sha256: str | None, contract: InputContract):
    """The :class:`edgevit.certificates.Certificate` of :func:`consumer_check`."""
    from ..certificates import Certificate

    p = contract.preprocessing
    numpy_steps = f"/ {p.pixel_max:g}, - mean, / std"
    if contract.raw:
        method = (f"{artifact} fed {contract.dtype} {contract.layout} pixels (edgevit's reader: resize/crop, then "
                  f"rounded and clipped to 0..{np.iinfo(contract.np_dtype).max}) on ONNX Runtime CPU vs the PyTorch "
                  f"fp32 model fed edgevit's preprocessing (numpy: {numpy_steps}) of the same pixels")
    else:
        method = (f"Engine.predict/embed read images with edgevit.data (resize/crop, numpy: {numpy_steps}), the "
                  f"preprocessing the reference is fed: {artifact} on ONNX Runtime CPU vs the PyTorch fp32 model")
    return Certificate(check["consumer"], artifact, f"{method}; images: {check['images']}", check["verdict"],
                       check["max_abs"], check["top1_agreement"], check["samples"], check["atol"],
                       artifact_sha256=sha256,
                       details={"input": contract.to_dict(), "pixel_max": p.pixel_max, "mean": list(p.mean),
                                "std": list(p.std), "cosine_min": check["cosine_min"],
                                **({"failed": check["failed"]} if check["failed"] else {})})


__all__ = ["GraphInfo", "RAW_PIXEL_CONSUMER", "RUNTIME_CONSUMER", "consumer_certificate", "consumer_check", "INPUT_NAME", "RawPixelInput", "example_input", "graph_module", "input_contract", "check_file", "check_record", "check_structure", "output_module",
           "verify_export"]
