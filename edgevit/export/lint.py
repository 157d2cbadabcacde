"""ViT- and TensorRT-aware checks of an ONNX graph (``edgevit lint MODEL.onnx``).

Each finding has a severity (``error``: the graph will not build or will be wrong on TensorRT;
``warning``: it builds but loses accuracy or speed; ``info``: worth knowing), a stable code, a
message with the numbers, and the names of the nodes (or tensors) involved.

============================  ========  ================================================================
code                          severity  what
============================  ========  ================================================================
trt-unsupported-op            error     op missing from, or marked N in, TensorRT's ONNX operator table
trt-custom-domain             error     op outside the default ONNX domain (needs a TensorRT plugin)
trt-op-restriction            error     an op breaks a documented TensorRT restriction (an attribute value
                                        it rejects, an axes input computed at run time where an
                                        initializer is required, a second LayerNorm output in use)
trt-op-note                   info      an op with a documented restriction edgevit does not check
trt-opset                     warning   opset above the range the TensorRT version documents
decomposed-layernorm          error     LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div: the
                                        squares overflow in FP16 (docs/design.md §5.1)
baked-batch                   error     a Reshape constant fixes the batch of a dynamic-batch graph
baked-batch-output            error     the input batch is dynamic but an output's batch dim is fixed
static-batch                  info      a static-batch graph bakes its batch N > 1 into Reshape constants
attention-scale-after-qk      warning   scale applied to Q·K^T instead of to Q: TensorRT's MHA fusion
                                        wants Q (or K) pre-scaled
attention-no-scale            info      no scaling found near Q or K (folded into weights?)
attention-head-size           warning   head size not 16/32/64: TensorRT's INT8 fused MHA does not take it
attention-seq-len             warning   sequence (query or key/value) > 512 tokens, e.g. DINOv2 at 518 px
                                        (1,370): TensorRT's INT8 fused MHA does not take it
trt-qdq-zero-point            error     a QuantizeLinear/DequantizeLinear zero point is not 0 (asymmetric Q/DQ):
                                        TensorRT's ONNX parser rejects it
fp16-range-initializer        warning   weights beyond ±65504 overflow to inf in FP16
fp16-range-activation         warning   recorded activation range (metadata ``edgevit.ranges``) beyond
                                        ±65504
external-data-missing         error     an external-data file is absent or shorter than the graph needs
external-data-unchecked       info      external data referenced but no directory to look in
============================  ========  ================================================================

The checks walk the graph through :class:`edgevit.onnx_graph.Graph`. The TensorRT operator table
is one data file, ``tensorrt_onnx_ops.json``, read by :mod:`edgevit.export.tensorrt_ops`; it
names its source (onnx-tensorrt ``docs/operators.md`` at a commit) and the TensorRT version.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..onnx_graph import LAYOUT_OPS, Graph, load_onnx
from .findings import SEVERITIES, Finding, LintReport, grouped as _group, listed as _names
from .lint_dims import batch_dims, check_batch, check_size
from .tensorrt_ops import DEFAULT_TENSORRT_VERSION, tensorrt_op_support, tensorrt_op_table, version

FP16_MAX = 65504.0
FUSED_MHA_HEAD_SIZES = (16, 32, 64)
INT8_FUSED_MHA_MAX_SEQ = 512
RANGES_METADATA_KEY = "edgevit.ranges"
"""metadata_props key holding JSON ``{tensor name: [min, max]}`` (written by calibration)."""

# ---------------------------------------------------------------------------- checks
def _check_ops(g: Graph, trt: str) -> list[Finding]:
    table = tensorrt_op_table()
    checks = table.get("edgevit_checks", {})
    constant_inputs = checks.get("constant_inputs", {})
    first_output_only = set(checks.get("first_output_only", []))
    attribute_values = {k: v for k, v in checks.get("attribute_values", {}).items() if not k.startswith("_")}
    unsupported: dict[str, list[str]] = defaultdict(list)
    custom: dict[str, list[str]] = defaultdict(list)
    restricted: dict[str, list[str]] = defaultdict(list)
    notes: dict[str, list[str]] = defaultdict(list)
    for node in g.nodes:
        name = g.node_name(node)
        if node.domain not in ("", "ai.onnx"):
            custom[f"{node.domain}::{node.op_type}"].append(name)
            continue
        op = node.op_type
        info = tensorrt_op_support(op, trt)
        if not info["supported"]:
            unsupported[op].append(name)
            continue
        checked = False
        if op in constant_inputs and info["restrictions"]:
            checked = True
            for idx, what in constant_inputs[op].items():
                idx = int(idx)
                if idx < len(node.input) and node.input[idx] and not g.is_constant(node.input[idx]):
                    restricted[f"{op}: `{what}` (input {idx}) must be an initializer or Constant on "
                               f"TensorRT {trt}, but is computed at run time"].append(name)
        if op in first_output_only:
            checked = True
            used = [o for o in node.output[1:] if o and (g.consumers.get(o) or o in g.graph_outputs)]
            if used:
                restricted[f"{op}: only the first output is supported by TensorRT, but {used} is used"].append(name)
        if op in attribute_values:
            checked = True
            for message in _check_attribute_values(node, attribute_values[op]):
                restricted[message].append(name)
        if op == "Constant":
            checked = True
            bad = [a.name for a in node.attribute if a.name in ("sparse_value", "value_string", "value_strings")]
            if bad:
                restricted[f"Constant: attribute(s) {bad} unsupported by TensorRT"].append(name)
        if op in ("QuantizeLinear", "DequantizeLinear"):
            checked = True  # the zero point: _check_qdq_zero_points (trt-qdq-zero-point)
        if op == "Attention":
            checked = True
            restricted_attention = _check_attention_op_restrictions(g, node)
            for message in restricted_attention:
                restricted[message].append(name)
        if info["restrictions"] and not checked:
            notes[f"{op}: TensorRT {trt} restriction (not checked by edgevit): {info['restrictions']}"].append(name)

    out: list[Finding] = []
    for op, nodes in unsupported.items():
        info = tensorrt_op_support(op, trt)
        why = "marked unsupported (N)" if info.get("known") else "absent from"
        later = f"; TensorRT parses it from {info['added_in']} on" if info.get("added_in") else ""
        hint = ""
        if op == "Attention":
            hint = " (export with --attention decomposed for this target)"
        out.append(Finding(
            "error", "trt-unsupported-op",
            f"{op} is {why} TensorRT {trt}'s ONNX operator table{later}{hint}; {len(nodes)} node(s): {_names(nodes)}",
            tuple(nodes),
        ))
    for op, nodes in custom.items():
        out.append(Finding("error", "trt-custom-domain",
                           f"{op} is outside the default ONNX domain: TensorRT needs a plugin for it; "
                           f"{len(nodes)} node(s): {_names(nodes)}", tuple(nodes)))
    out += _group(restricted, "error", "trt-op-restriction")
    out += _group(notes, "info", "trt-op-note")

    lo, hi = table["documented_opset_range"]
    for opset in g.model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > hi and version(trt) <= version(table["tensorrt_version"]):
            out.append(Finding("warning", "trt-opset",
                               f"opset {opset.version} is above TensorRT {table['tensorrt_version']}'s documented "
                               f"range (opset {lo} to {hi}); export with --opset {min(hi, 18)} for this target"))
        elif opset.domain in ("", "ai.onnx") and opset.version < lo:
            out.append(Finding("warning", "trt-opset", f"opset {opset.version} is below TensorRT's range ({lo}-{hi})"))
    return out


def _check_attribute_values(node, allowed: dict) -> list[str]:
    from onnx import helper

    problems = []
    for attr in node.attribute:
        if attr.name not in allowed:
            continue
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        rule = allowed[attr.name]
        if rule == "all_ones":
            ok = all(int(v) == 1 for v in value)
        else:
            ok = value in rule
        if not ok:
            want = "empty or all ones" if rule == "all_ones" else f"one of {rule}"
            problems.append(f"{node.op_type}: attribute `{attr.name}`={value!r} is unsupported by TensorRT ({want})")
    return problems


def _check_attention_op_restrictions(g: Graph, node) -> list[str]:
    """The documented restrictions of ONNX Attention on TensorRT (>= 10.14)."""
    problems = []
    inputs = {4: "past_key", 5: "past_value", 6: "nonpad_kv_seqlen"}
    for idx, what in inputs.items():
        if idx < len(node.input) and node.input[idx]:
            problems.append(f"Attention: input `{what}` is unsupported by TensorRT")
    outputs = {1: "present_key", 2: "present_value", 3: "qk_matmul_output"}
    for idx, what in outputs.items():
        if idx < len(node.output) and node.output[idx]:
            problems.append(f"Attention: output `{what}` is unsupported by TensorRT")
    from onnx import helper

    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if attr.name in ("qk_matmul_output_mode", "softcap") and value:
            problems.append(f"Attention: attribute `{attr.name}`={value} is unsupported by TensorRT")
    for idx in (0, 1, 2, 3):
        if idx < len(node.input) and node.input[idx]:
            dims = g.shapes.get(node.input[idx])
            if dims is not None and len(dims) != 4:
                problems.append(f"Attention: Q, K, V and attn_mask must be 4D for TensorRT, input {idx} is {len(dims)}D")
    return problems


def _check_decomposed_layernorm(g: Graph) -> list[Finding]:
    """ReduceMean -> Sub -> Pow(2)|Mul(d,d) -> ReduceMean [-> Add -> Sqrt -> Div] on one tensor."""
    matches: list[list[str]] = []
    for sub in g.nodes:
        if sub.op_type != "Sub" or len(sub.input) < 2:
            continue
        x, mean = sub.input[0], sub.input[1]
        rm = g.producer.get(mean)
        if rm is None or rm.op_type != "ReduceMean" or rm.input[0] != x:
            continue
        d = sub.output[0]
        for sq in g.consumers.get(d, []):
            is_square = (sq.op_type == "Pow" and sq.input[0] == d and g.scalar(sq.input[1]) == 2.0) or (
                sq.op_type == "Mul" and sq.input[0] == d and sq.input[1] == d)
            if not is_square:
                continue
            var = [n for n in g.consumers.get(sq.output[0], []) if n.op_type == "ReduceMean"]
            if not var:
                continue
            chain = [rm, sub, sq, var[0]]
            tail = var[0]
            for want in ("Add", "Sqrt", ("Div", "Reciprocal")):
                nxt = [n for n in g.consumers.get(tail.output[0], [])
                       if n.op_type in (want if isinstance(want, tuple) else (want,))]
                if not nxt:
                    break
                tail = nxt[0]
                chain.append(tail)
            matches.append([g.node_name(n) for n in chain])
    if not matches:
        return []
    nodes = [n for m in matches for n in m]
    return [Finding(
        "error", "decomposed-layernorm",
        f"{len(matches)} LayerNorm(s) decomposed into ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div (first: "
        f"{' -> '.join(matches[0])}). The squares overflow FP16 (ViT-B/16 on TensorRT FP16: 85.3% -> 19.0% top-1); "
        "export with opset >= 17 so LayerNorm stays one LayerNormalization op",
        tuple(nodes),
    )]


def _scale_before(g: Graph, tensor: str):
    """The Mul/Div-by-scalar node feeding ``tensor`` through layout ops, or None."""
    node = g.producer_through(tensor, ("Mul", "Div"), hops=8, through=LAYOUT_OPS)
    return node if node is not None and g.scalar_operand(node) is not None else None


def _dequantized(g: Graph, tensor: str) -> bool:
    """Whether ``tensor`` comes from a DequantizeLinear through layout ops (a Q/DQ-quantized input)."""
    return g.producer_through(tensor, ("DequantizeLinear",), hops=4, through=LAYOUT_OPS) is not None


def _longest(*lengths) -> int | None:
    """The longest of the known (integer) sequence lengths, or None."""
    known = [n for n in lengths if isinstance(n, int)]
    return max(known) if known else None


def _check_attention(g: Graph) -> list[Finding]:
    quantized: set[str] = set()  # attention blocks whose MatMul inputs are Q/DQ-quantized
    scale_after: list[str] = []
    no_scale: list[str] = []
    head_bad: dict[int, list[str]] = defaultdict(list)
    seq_bad: dict[int, list[str]] = defaultdict(list)
    blocks = 0
    for sm in g.nodes:
        if sm.op_type != "Softmax":
            continue
        src = g.producer.get(sm.input[0])
        if src is not None and src.op_type == "Add" and len(src.input) == 2 and any(map(g.is_constant, src.input)):
            # a constant additive bias on the scores (BEiT's relative position bias): the MatMul is behind it
            src = g.producer.get(src.input[1] if g.is_constant(src.input[0]) else src.input[0])
        scaler = None
        if src is not None and g.scalar_operand(src) is not None:
            scaler, src = src, g.producer.get(src.input[g.scalar_operand(src)])
        if src is None or src.op_type != "MatMul":
            continue
        av = [n for n in g.consumers.get(sm.output[0], []) if n.op_type == "MatMul" and n.input[0] == sm.output[0]]
        if not av:
            continue
        blocks += 1
        names = [g.node_name(src)] + ([g.node_name(scaler)] if scaler else []) + [g.node_name(sm), g.node_name(av[0])]
        if scaler is not None:
            scale_after.extend(names)
        elif _scale_before(g, src.input[0]) is None and _scale_before(g, src.input[1]) is None:
            no_scale.extend(names)
        if any(_dequantized(g, t) for t in (*src.input[:2], *av[0].input[:2])):
            quantized.update(names)
        q_dims, kt_dims = g.shapes.get(src.input[0]), g.shapes.get(src.input[1])
        if q_dims and len(q_dims) >= 2:
            # Q (.., S_q, head), K^T (.., head, S_kv): a pooling query (SigLIP's MAP head) has S_q = 1
            head = q_dims[-1]
            seq = _longest(q_dims[-2], kt_dims[-1] if kt_dims and len(kt_dims) >= 2 else None)
            if isinstance(head, int) and head not in FUSED_MHA_HEAD_SIZES:
                head_bad[head].extend(names)
            if seq is not None and seq > INT8_FUSED_MHA_MAX_SEQ:
                seq_bad[seq].extend(names)
    for node in g.nodes:
        if node.op_type != "Attention":
            continue
        blocks += 1
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        q_dims, k_dims = g.shapes.get(node.input[0]), g.shapes.get(node.input[1])
        head = seq = None
        if q_dims and len(q_dims) == 4:
            head, seq = q_dims[3], _longest(q_dims[2], k_dims[2] if k_dims and len(k_dims) == 4 else None)
        elif q_dims and len(q_dims) == 3 and attrs.get("q_num_heads") and isinstance(q_dims[2], int):
            head = q_dims[2] // attrs["q_num_heads"]
            seq = _longest(q_dims[1], k_dims[1] if k_dims and len(k_dims) == 3 else None)
        name = g.node_name(node)
        if any(_dequantized(g, t) for t in node.input[:3] if t):
            quantized.add(name)
        if isinstance(head, int) and head not in FUSED_MHA_HEAD_SIZES:
            head_bad[head].append(name)
        if isinstance(seq, int) and seq > INT8_FUSED_MHA_MAX_SEQ:
            seq_bad[seq].append(name)
    out = []
    if scale_after:
        out.append(Finding(
            "warning", "attention-scale-after-qk",
            f"attention scale applied to Q·K^T after the MatMul ({_names(scale_after)}); TensorRT's MHA fusion "
            "matches MatMul -> Softmax -> MatMul with Q (or K) pre-scaled: softmax((Q*s)K^T)V "
            "(edgevit: model.set_attn_impl('math') before export)", tuple(scale_after)))
    if no_scale:
        out.append(Finding("info", "attention-no-scale",
                           f"no Mul/Div by a scalar found on Q, K or Q·K^T ({_names(no_scale)}); fine if the "
                           "scale is folded into the Q weights", tuple(no_scale)))
    def unfused(nodes) -> str:
        if quantized & set(nodes):
            return "this graph quantizes that attention, so TensorRT runs it unfused"
        return "an int8 graph that quantizes attention (--quantize-attention) runs it unfused"

    for head, nodes in head_bad.items():
        out.append(Finding(
            "warning", "attention-head-size",
            f"head size {head} is not one of {list(FUSED_MHA_HEAD_SIZES)}, the head sizes TensorRT's INT8 fused MHA "
            f"takes ({len(nodes)} node(s): {_names(nodes)}): {unfused(nodes)}; fp16/fp32 attention fusion depends on "
            "the TensorRT version and GPU (edgevit build's fusion report shows which blocks fused)", tuple(nodes)))
    for seq, nodes in seq_bad.items():
        out.append(Finding(
            "warning", "attention-seq-len",
            f"sequence length {seq} > {INT8_FUSED_MHA_MAX_SEQ}: {seq} tokens per image reach attention "
            f"({_names(nodes)}), more than TensorRT's INT8 fused MHA takes: {unfused(nodes)}. Keep attention in fp16 "
            "(quantize without --quantize-attention), or export at a smaller --img-size (at most "
            f"{INT8_FUSED_MHA_MAX_SEQ} tokens, class and register tokens included: edgevit info shows them)",
            tuple(nodes)))
    g.attention_blocks = blocks
    return out


def _float_initializers(g: Graph):
    from onnx import TensorProto, numpy_helper

    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    for t in g.model.graph.initializer:
        if t.data_type not in floats:
            continue
        if t.data_location == TensorProto.EXTERNAL and not g.base_dir:
            continue
        try:
            arr = numpy_helper.to_array(t, base_dir=str(g.base_dir) if g.base_dir else "")
        except Exception:  # missing external data: reported by its own check
            continue
        yield t.name, arr
    for node in g.nodes:
        if node.op_type == "Constant":
            arr = g.constant(node.output[0], max_size=1 << 62)
            if arr is not None and arr.dtype.kind == "f":
                yield node.output[0], arr


def _check_fp16_range(g: Graph) -> list[Finding]:
    out = []
    big = []
    for name, arr in _float_initializers(g):
        if arr.size == 0:
            continue
        peak = float(np.max(np.abs(arr.astype(np.float64))))
        if peak > FP16_MAX:
            big.append((peak, name))
    if big:
        big.sort(reverse=True)
        listed = ", ".join(f"{n} (max |x| {p:.4g})" for p, n in big[:5])
        out.append(Finding(
            "warning", "fp16-range-initializer",
            f"{len(big)} initializer(s) exceed the FP16 range ±{FP16_MAX:g} and become inf in FP16: {listed}; keep "
            "their consumers in FP32", tuple(n for _, n in big)))
    meta = {p.key: p.value for p in g.model.metadata_props}
    if RANGES_METADATA_KEY in meta:
        try:
            ranges = json.loads(meta[RANGES_METADATA_KEY])
        except ValueError:
            out.append(Finding("warning", "fp16-range-activation",
                               f"metadata {RANGES_METADATA_KEY!r} is not valid JSON; recorded ranges ignored"))
            ranges = {}
        over = []
        for tensor, rng in ranges.items():
            lo, hi = (rng.get("min"), rng.get("max")) if isinstance(rng, dict) else rng
            peak = max(abs(float(lo)), abs(float(hi)))
            if peak > FP16_MAX:
                over.append((peak, tensor))
        if over:
            over.sort(reverse=True)
            nodes = [g.node_name(g.producer[t]) if t in g.producer else t for _, t in over]
            listed = ", ".join(f"{t} (max |x| {p:.4g})" for p, t in over[:5])
            out.append(Finding(
                "warning", "fp16-range-activation",
                f"{len(over)} recorded activation range(s) exceed ±{FP16_MAX:g}: {listed}; these overflow in FP16",
                tuple(nodes)))
    return out


def _check_external_data(g: Graph) -> list[Finding]:
    from onnx import TensorProto

    needed: dict[str, int] = {}
    users: dict[str, list[str]] = defaultdict(list)
    for t in g.model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        needed[location] = max(needed.get(location, 0), end)
        users[location].append(t.name)
    if not needed:
        return []
    if g.base_dir is None:
        return [Finding("info", "external-data-unchecked",
                        f"the graph references external data {sorted(needed)}, but no directory was given to check it")]
    out = []
    for location, end in needed.items():
        file = g.base_dir / location
        if not file.exists():
            out.append(Finding("error", "external-data-missing",
                               f"external data file {location!r} (needed by {len(users[location])} initializer(s)) "
                               f"is missing from {g.base_dir}; copy it next to the .onnx file",
                               tuple(users[location])))
        elif file.stat().st_size < end:
            out.append(Finding("error", "external-data-missing",
                               f"external data file {location!r} has {file.stat().st_size} bytes but the graph reads "
                               f"up to byte {end}: it is truncated", tuple(users[location])))
    return out


def _check_qdq_zero_points(g: Graph) -> list[Finding]:
    """QuantizeLinear/DequantizeLinear with a non-zero zero point: TensorRT's ONNX parser rejects
    them (operator table: ``y_zero_point`` / ``x_zero_point`` must be 0). ONNX Runtime's
    ``quantize_static`` makes such (asymmetric) activations by default."""
    bad: list[str] = []
    for node in g.nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3 or not node.input[2]:
            continue
        zp = g.constant(node.input[2], max_size=1 << 16)
        if zp is not None and np.any(zp.astype(np.float64) != 0):
            bad.append(g.node_name(node))
    if not bad:
        return []
    return [Finding("error", "trt-qdq-zero-point",
                    f"{len(bad)} QuantizeLinear/DequantizeLinear node(s) have a non-zero zero point ({_names(bad)}): "
                    "TensorRT accepts symmetric quantization only (zero point 0). Make the int8 graph with "
                    "edgevit quantize (symmetric), or re-quantize with symmetric activations and weights "
                    "(ONNX Runtime quantize_static: "
                    "extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True})",
                    tuple(bad))]


def qdq_zero_point_findings(model, base_dir: str | os.PathLike | None = None) -> list[Finding]:
    """The ``trt-qdq-zero-point`` findings of a model alone (``edgevit build`` runs this before TensorRT)."""
    return _check_qdq_zero_points(Graph(model, Path(base_dir) if base_dir is not None else None))


# ---------------------------------------------------------------------------- entry point
def lint_onnx(model, tensorrt_version: str = DEFAULT_TENSORRT_VERSION, base_dir: str | os.PathLike | None = None
              ) -> LintReport:
    """Lint an ONNX model (path or ``onnx.ModelProto``) for TensorRT ``tensorrt_version``.

    External data is not loaded; its files are checked for presence and size next to the model
    (or in ``base_dir`` for a ModelProto).
    """
    version(tensorrt_version)
    path = None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        model = load_onnx(path)
        if path.is_dir():
            path = path / "model.onnx"
        base_dir = path.parent
    base = Path(base_dir) if base_dir is not None else None
    g = Graph(model, base)
    findings: list[Finding] = []
    findings += _check_ops(g, tensorrt_version)
    findings += _check_decomposed_layernorm(g)
    findings += check_batch(g)
    findings += check_size(g)
    findings += _check_attention(g)
    findings += _check_external_data(g)
    findings += _check_qdq_zero_points(g)
    findings += _check_fp16_range(g)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: order[f.severity])
    op_counts: dict[str, int] = defaultdict(int)
    for node in g.nodes:
        op_counts[node.op_type] += 1
    dynamic, static = batch_dims(g)
    stats = {
        "nodes": len(g.nodes),
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "ops": dict(sorted(op_counts.items())),
        "attention_blocks": getattr(g, "attention_blocks", 0),
        "batch": "dynamic" if dynamic else (sorted(static)[0] if static else None),
        "table_source": tensorrt_op_table()["source"]["commit"],
    }
    return LintReport(str(path) if path else None, tensorrt_version, findings, stats)


__all__ = ["Finding", "LintReport", "lint_onnx", "load_onnx", "qdq_zero_point_findings", "tensorrt_op_support",
           "tensorrt_op_table"]
