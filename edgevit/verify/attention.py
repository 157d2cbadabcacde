"""The per-block attention check: the attention output (softmax(QK^T/sqrt(d))·V, heads merged,
before the output projection) of every block, compared with a float64 PyTorch math reference
computed from the same block input, so a row measures that block's attention alone.

- :func:`verify_attention_onnx`: an ONNX candidate, read through a debug copy of its graph whose
  attention tensors are marked as outputs (:mod:`edgevit.runtime.onnx_debug`);
- :func:`verify_attention_torch`: PyTorch itself, every SDPA backend and edgevit's own math
  attention (``naive``) per dtype.

Rows fail beyond the precision's attention limits in :data:`edgevit.tolerances.TOLERANCES`.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict

import numpy as np

from ..errors import EdgeVitWarning, OnnxModelError, VerificationError
from ..formats import BASE_PRECISION, FLOAT_PRECISIONS
from ..metrics import ErrorStats
from ..runtime.batching import batch_range, in_input_dtype, padded_chunks, single_input
from ..runtime.onnxruntime_runner import JUDGED_BY
from ..tolerances import Check, Tolerance, format_value, get_tolerance
from .artifacts import Side

BACKENDS = ("flash", "efficient", "cudnn", "math", "naive")
"""What ``--backends`` picks from: the SDPA backends, and ``naive`` (edgevit's own math attention)."""


def _attention_of(block, x, impl: str | None = None):
    """The attention output (B, N, C) of ``block`` for block input ``x``; the output
    projection is skipped by stopping at the ``attn_out`` hook. A windowed block's (SAM) is its windows
    per image, (B, windows * window**2, C), as the graph holds it before the windows are put back."""

    class _Stop(Exception):
        pass

    captured = {}

    def hook(_module, _inp, out):
        captured["out"] = out
        raise _Stop

    attn = block.attn
    previous = attn.attn_impl
    if impl is not None:
        attn.attn_impl = impl
    handle = attn.attn_out.register_forward_hook(hook)
    try:
        attn(block.norm1(x))
    except _Stop:
        pass
    finally:
        handle.remove()
        attn.attn_impl = previous
    out = captured["out"]
    return out.reshape(x.shape[0], -1, out.shape[-1])


def _float64_blocks(model, device):
    import torch

    return [copy.deepcopy(b).to(device=device, dtype=torch.float64).eval() for b in model.blocks]


def _capture_block_inputs(model, images: np.ndarray, device) -> list:
    """Each block's input (the residual stream entering it) from an fp32 forward pass."""
    import torch

    store: list = []
    handles = [b.register_forward_pre_hook(lambda m, args: store.append(args[0].detach())) for b in model.blocks]
    try:
        with torch.inference_mode():
            model(torch.from_numpy(np.ascontiguousarray(images)).to(device))
    finally:
        for h in handles:
            h.remove()
    return store


def _attention_row(block: int, acc: ErrorStats, tol: Tolerance, **extra) -> dict:
    stats = acc.to_dict()
    ok_elem = stats["violations"] == 0 and stats["nonfinite"] == 0
    ok_cos = stats["cosine_min"] >= tol.attn_min_cosine
    return {"block": block, **extra, "max_abs": stats["max_abs"], "mean_abs": stats["mean_abs"],
            "cosine_min": stats["cosine_min"], "violations": stats["violations"], "elements": stats["elements"],
            "nonfinite": stats["nonfinite"], "worst": stats["worst"],
            "atol": tol.attn_atol, "rtol": tol.attn_rtol, "min_cosine": tol.attn_min_cosine,
            "passed": bool(ok_elem and ok_cos), "status": "pass" if ok_elem and ok_cos else "FAIL"}


def _attention_checks(rows: list[dict], label) -> list[dict]:
    checks = []
    for row in rows:
        if row["status"] == "skipped":
            continue
        name = label(row)
        detail = ""
        if row["violations"] or row["nonfinite"]:
            w = row["worst"] or {}
            detail = (f"{row['violations']} of {row['elements']} elements exceed atol {row['atol']:g} + rtol "
                      f"{row['rtol']:g}*|ref|, {row['nonfinite']} non-finite; worst at {w.get('index')}: "
                      f"ref {format_value(w.get('reference'))} cand {format_value(w.get('candidate'))}")
        checks.append(asdict(Check(f"{name}.max_abs_error_within_atol_rtol", row["max_abs"], row["atol"], "<=",
                                   row["violations"] == 0 and row["nonfinite"] == 0, detail)))
        checks.append(asdict(Check(f"{name}.cosine_min", row["cosine_min"], row["min_cosine"], ">=",
                                   row["cosine_min"] >= row["min_cosine"])))
    return checks


def _as_bnc(value, batch: int, tokens: int, width: int, layout: str) -> np.ndarray:
    """A graph tensor as (batch, tokens, width): slimmed graphs may hold it flattened to
    (batch*tokens, width) around Gemm; per-head (B, H, N, D) outputs are merged."""
    arr = np.asarray(value)
    if arr.size != batch * tokens * width:
        raise VerificationError(
            f"a marked attention tensor has shape {arr.shape}, which does not hold "
            f"(batch {batch}, tokens {tokens}, width {width}); the graph's attention is not in a form edgevit recognizes"
        )
    if layout == "BHND" and arr.ndim == 4:
        return arr.transpose(0, 2, 1, 3).reshape(batch, tokens, width)
    return arr.reshape(batch, tokens, width)


def verify_attention_onnx(onnx_path, reference_model, images: np.ndarray, precision: str = BASE_PRECISION,
                          batch_size: int = 32, providers=None, threads: int | None = None,
                          tolerance: Tolerance | None = None, qdq: str = JUDGED_BY, contract=None) -> dict:
    """Per-block attention check of an ONNX candidate against a float64 PyTorch math reference.

    Q/DQ graphs run as ``qdq`` says (:data:`edgevit.runtime.onnxruntime_runner.QDQ_MODES`; by default the
    arithmetic the graph defines, so the verdict does not depend on this CPU's int8 kernels).

    A debug COPY of the graph marks each block's attention output and input as extra outputs
    (:mod:`edgevit.runtime.onnx_debug`, found structurally). The float64 reference starts from
    the candidate's OWN block input, so each row measures that block's attention alone rather
    than the error accumulated upstream; where a block input cannot be found in the graph,
    the block inputs are captured from the fp32 PyTorch reference instead (the report says
    which, as ``block_input_source``). The original file is never modified, and since marking
    outputs can change what TensorRT (or ORT) fuses, the final-output check always runs on
    the unmodified artifact.
    """
    import onnx
    import torch

    from ..runtime import get_runner
    from ..runtime.onnx_debug import find_attention_sites, mark_outputs

    tol = tolerance or get_tolerance(precision)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:
        raise OnnxModelError(f"{onnx_path}: could not be read as ONNX ({exc})") from exc
    sites = find_attention_sites(model)
    depth = reference_model.config.depth
    if len(sites) != depth:
        raise VerificationError(
            f"{onnx_path}: found {len(sites)} attention site(s) (Softmax->MatMul or Attention op) but the "
            f"reference has {depth} blocks; the graph's attention is not in a form edgevit recognizes"
        )
    use_own_inputs = all(s.block_input for s in sites)
    tokens, width = reference_model.config.num_tokens, reference_model.config.embed_dim
    names = [s.attn_output for s in sites] + ([s.block_input for s in sites] if use_own_inputs else [])
    debug = mark_outputs(model, names)
    ref_model = copy.deepcopy(reference_model).float().eval()
    blocks64 = _float64_blocks(ref_model, "cpu")
    accs = [ErrorStats(tol.attn_atol, tol.attn_rtol) for _ in sites]
    from ..runtime.normalized_feed import normalized_feed

    # contract: a raw-pixel graph's (edgevit.input_contract): it is fed the pixels of the normalized images
    with normalized_feed(get_runner("onnxruntime", debug, providers=providers, threads=threads, qdq=qdq),
                         contract) as runner:
        input_name, shape = single_input(runner.input_spec(), runner.name)
        for feed, n in padded_chunks(images, *batch_range(shape, None, batch_size)):
            chunk = feed[:n]
            out = runner.infer({input_name: in_input_dtype(feed, runner)})
            captured = None if use_own_inputs else _capture_block_inputs(ref_model, chunk, "cpu")
            for i, site in enumerate(sites):
                x = (_as_bnc(out[site.block_input], len(feed), tokens, width, "BNC")[:n] if use_own_inputs
                     else captured[i].numpy())
                x64 = torch.from_numpy(np.asarray(x, dtype=np.float64))
                with torch.inference_mode():
                    ref = _attention_of(blocks64[i], x64, "math").numpy()
                # the reference's tokens: a windowed block's (SAM) are its padded windows
                cand = _as_bnc(out[site.attn_output], len(feed), ref.shape[1], width, site.layout)[:n]
                accs[i].update(ref, cand.astype(np.float64))
    rows = [_attention_row(s.block, accs[i], tol, form=s.form) for i, s in enumerate(sites)]
    return {
        "kind": "onnx",
        "precision": precision,
        "form": sorted({s.form for s in sites}),
        "block_input_source": "candidate" if use_own_inputs else "reference",
        "sites": [s.to_dict() for s in sites],
        "rows": rows,
        "checks": _attention_checks(rows, lambda r: f"attention.block{r['block']}"),
        "note": "computed on a debug copy with extra outputs; final outputs were checked on the unmodified artifact",
    }


def _sdpa_backends():
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def _run_backend(block, x, backend: str):
    """Attention output of ``block`` with one SDPA backend forced (or edgevit's math impl)."""
    if backend == "naive":
        return _attention_of(block, x, "math")
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel([_sdpa_backends()[backend]]):
        return _attention_of(block, x, "sdpa")


def _probe_backend(block, x, backend: str, device) -> str | None:
    """None if ``backend`` runs here for this dtype and shape, else the reason it does not."""
    import torch

    if device.type == "cpu" and backend in ("efficient", "cudnn"):
        return f"{backend} attention has no CPU kernel (CUDA only)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.inference_mode():
                _run_backend(block, x[:1], backend)
            return None
        except RuntimeError as exc:
            reasons = [" ".join(str(w.message).split())[:200] for w in caught]
            first = " ".join(str(exc).split())[:200]
            return "; ".join(dict.fromkeys(reasons[:4] + [first]))


def verify_attention_torch(model, images: np.ndarray, device: str = "cpu", dtypes=FLOAT_PRECISIONS,
                           backends=None, batch_size: int = 32, reference=None,
                           tolerance_overrides: dict | None = None) -> dict:
    """Every SDPA backend (flash, efficient, cudnn, math) and ``naive`` (edgevit's own math
    attention, softmax((Q*d^-0.5) K^T) V written out: the form the decomposed ONNX export has),
    per dtype, per block, against a float64 math reference from the same block inputs.

    Block inputs are captured with forward pre-hooks on the fp32 ``model``; the float64
    reference uses ``reference``'s weights (default: ``model``'s). Each (dtype, backend) runs
    the block's norm1 -> qkv -> attention in that dtype with the backend forced through
    ``torch.nn.attention.sdpa_kernel``. Backends that cannot run (no CPU kernel, unsupported
    dtype or head size) are reported as skipped with the reason. Rows fail beyond the
    dtype's tolerance in :data:`edgevit.tolerances.TOLERANCES`.
    """
    import torch

    from ..runtime.torch_runner import resolve_device, torch_dtype

    dev = resolve_device(device)
    backends = tuple(backends or BACKENDS)
    dtypes = tuple(dtypes)
    started = time.perf_counter()
    fp32 = copy.deepcopy(model).to(device=dev, dtype=torch.float32).eval()
    blocks64 = _float64_blocks(reference if reference is not None else fp32, dev)
    per_dtype = {d: [copy.deepcopy(b).to(dtype=torch_dtype(d)).eval() for b in fp32.blocks] for d in dtypes}
    tols = {d: get_tolerance(d, **(tolerance_overrides or {})) for d in dtypes}
    depth = len(fp32.blocks)
    accs: dict = {}
    skipped: dict = {}
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        inputs = _capture_block_inputs(fp32, chunk, dev)
        for i in range(depth):
            with torch.inference_mode():
                ref = _attention_of(blocks64[i], inputs[i].to(torch.float64), "math")
            for d in dtypes:
                x = inputs[i].to(torch_dtype(d))
                for b in backends:
                    if (d, b) in skipped:
                        continue
                    if (d, b) not in accs:
                        reason = _probe_backend(per_dtype[d][i], x, b, dev)
                        if reason:
                            skipped[(d, b)] = reason
                            continue
                        accs[(d, b)] = [ErrorStats(tols[d].attn_atol, tols[d].attn_rtol) for _ in range(depth)]
                    try:
                        with torch.inference_mode():
                            out = _run_backend(per_dtype[d][i], x, b)
                    except RuntimeError as exc:  # eligible at the probe, not for this batch/block
                        skipped[(d, b)] = f"failed at block {i}: {str(exc).strip().splitlines()[0][:200]}"
                        accs.pop((d, b), None)
                        continue
                    accs[(d, b)][i].update(ref, out)  # on the device: only scalars come back
    if dev.type == "cuda":
        torch.cuda.synchronize()
    rows = []
    for d in dtypes:
        for b in backends:
            if (d, b) in skipped:
                rows.append({"block": None, "dtype": d, "backend": b, "status": "skipped",
                             "reason": skipped[(d, b)], "passed": True})
                continue
            for i in range(depth):
                rows.append(_attention_row(i, accs[(d, b)][i], tols[d], dtype=d, backend=b))
    env = {"torch": torch.__version__, "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    return {
        "kind": "torch",
        "device": str(dev),
        "environment": env,
        "dtypes": list(dtypes),
        "backends": list(backends),
        "block_input_source": "candidate (fp32 forward hooks)",
        "samples": int(len(images)),
        "rows": rows,
        "checks": _attention_checks(rows, lambda r: f"attention.{r['dtype']}.{r['backend']}.block{r['block']}"),
        "summary": _summarize(rows),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _summarize(rows: list[dict]) -> list[dict]:
    """One line per (dtype, backend): worst block."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row.get("dtype"), row.get("backend")), []).append(row)
    out = []
    for (d, b), items in groups.items():
        if items[0]["status"] == "skipped":
            out.append({"dtype": d, "backend": b, "status": "skipped", "reason": items[0]["reason"]})
            continue
        out.append({"dtype": d, "backend": b, "status": "pass" if all(r["passed"] for r in items) else "FAIL",
                    "max_abs": max(r["max_abs"] for r in items),
                    "mean_abs": float(np.mean([r["mean_abs"] for r in items])),
                    "cosine_min": min(r["cosine_min"] for r in items)})
    return out


def reference_model_for_attention(ref: Side, cand: Side, arch: str | None = None,
                                  model_overrides: dict | None = None, verify_hash: bool = True):
    """The PyTorch model whose weights the float64 attention reference uses: the REFERENCE model,
    or the checkpoint a manifest says the ONNX was exported from (:func:`.artifacts.source_model`)."""
    from .artifacts import source_model

    model, _, note = source_model([ref.manifest, cand.manifest], ref.model, arch, model_overrides, verify_hash)
    if model is None:
        raise VerificationError("--attention computes its float64 reference with the PyTorch weights: give the "
                                f"checkpoint as REFERENCE ({note})")
    if note:
        warnings.warn(note, EdgeVitWarning, stacklevel=2)
    return model


__all__ = ["BACKENDS", "reference_model_for_attention", "verify_attention_onnx", "verify_attention_torch"]
