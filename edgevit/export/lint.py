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
                                        squares overflow in FP16 (design.md §3)
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

The TensorRT operator table is one data file, ``tensorrt_onnx_ops.json`` beside this module;
it names its source (onnx-tensorrt ``docs/operators.md`` at a commit) and the TensorRT version.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import OnnxModelError

SEVERITIES = ("error", "warning", "info")
DEFAULT_TENSORRT_VERSION = "10.3"
FP16_MAX = 65504.0
FUSED_MHA_HEAD_SIZES = (16, 32, 64)
INT8_FUSED_MHA_MAX_SEQ = 512
RANGES_METADATA_KEY = "edgevit.ranges"
"""metadata_props key holding JSON ``{tensor name: [min, max]}`` (written by calibration)."""

_PASS_THROUGH = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Gather", "Split", "Identity",
                 "Cast", "Flatten", "Expand"}


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    message: str
    nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {self.severity!r}")

    def to_dict(self) -> dict:
        return {"severity": self.severity, "code": self.code, "message": self.message, "nodes": list(self.nodes)}


@dataclass
class LintReport:
    path: str | None
    tensorrt_version: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def by_severity(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        return self.by_severity("error")

    @property
    def warnings(self) -> list[Finding]:
        return self.by_severity("warning")

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings and infos allowed)."""
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "tensorrt_version": self.tensorrt_version,
            "ok": self.ok,
            "counts": {s: len(self.by_severity(s)) for s in SEVERITIES},
            "findings": [f.to_dict() for f in self.findings],
            "stats": self.stats,
        }


# ---------------------------------------------------------------------------- the op table
@lru_cache(maxsize=1)
def tensorrt_op_table() -> dict:
    """The parsed ``tensorrt_onnx_ops.json`` (op table, source, version, later additions)."""
    text = resources.files("edgevit.export").joinpath("tensorrt_onnx_ops.json").read_text()
    return json.loads(text)


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        raise ValueError(f"TensorRT version must look like '10.3', got {text!r}") from None


def tensorrt_op_support(op: str, tensorrt_version: str = DEFAULT_TENSORRT_VERSION) -> dict:
    """``{"supported": bool, "restrictions": str|None, "added_in": str|None}`` for a default-domain op."""
    table = tensorrt_op_table()
    target = _version(tensorrt_version)
    later = table["later_additions"].get(op)
    if later and target >= _version(later["added_in"]):
        return {"supported": True, "restrictions": later.get("restrictions"), "added_in": later["added_in"]}
    entry = table["ops"].get(op)
    if entry is None:
        return {"supported": False, "restrictions": None, "added_in": later["added_in"] if later else None,
                "known": False}
    restrictions = entry.get("restrictions")
    change = table.get("restriction_changes", {}).get(op)
    if restrictions and change and target >= _version(change["tensorrt_version"]):
        restrictions = None
    return {"supported": bool(entry["supported"]), "restrictions": restrictions,
            "added_in": later["added_in"] if later else None, "known": True}


# ---------------------------------------------------------------------------- loading
def load_onnx(path: str | os.PathLike, load_external_data: bool = False):
    """Read an ONNX file, or raise OnnxModelError saying why it is not one."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise OnnxModelError(f"{path}: no such file; give the path of an .onnx model")
    if path.is_dir():
        candidate = path / "model.onnx"
        if candidate.exists():
            path = candidate
        else:
            raise OnnxModelError(f"{path}: is a directory without model.onnx; give the .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # DecodeError, RuntimeError, OSError...
        raise OnnxModelError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "is it truncated or another format?"
        ) from exc
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise OnnxModelError(
            f"{path}: parses but holds no ONNX graph (ir_version {model.ir_version}, {len(model.graph.node)} nodes); "
            "not an ONNX model"
        )
    return model


# ---------------------------------------------------------------------------- graph helpers
class _Graph:
    """Producer/consumer maps, constants and inferred shapes of one ONNX model."""

    def __init__(self, model, base_dir: Path | None):
        import onnx

        self.model = model
        self.base_dir = base_dir
        self.nodes = list(_all_nodes(model.graph))
        self.producer = {}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.graph_outputs = {o.name for o in model.graph.output}
        self.shapes: dict[str, list] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
            infos = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
        except Exception:  # shape inference is a help, never a requirement
            infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
        for vi in infos:
            dims = _dims(vi)
            if dims is not None:
                self.shapes[vi.name] = dims
        for name, t in self.initializers.items():
            self.shapes.setdefault(name, list(t.dims))

    def node_name(self, node) -> str:
        return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"

    def is_constant(self, name: str) -> bool:
        if name in self.initializers:
            return True
        node = self.producer.get(name)
        return node is not None and node.op_type == "Constant"

    def constant(self, name: str, max_size: int = 64) -> np.ndarray | None:
        """The value of an initializer or Constant output (small ones only), else None."""
        from onnx import helper, numpy_helper

        if name in self.initializers:
            t = self.initializers[name]
            if int(np.prod(t.dims)) > max_size:
                return None
            try:
                return numpy_helper.to_array(t, base_dir=str(self.base_dir) if self.base_dir else "")
            except Exception:
                return None
        node = self.producer.get(name)
        if node is None or node.op_type != "Constant":
            return None
        for attr in node.attribute:
            value = helper.get_attribute_value(attr)
            if attr.name == "value":
                arr = numpy_helper.to_array(value)
                return arr if arr.size <= max_size else None
            if attr.name in ("value_float", "value_int"):
                return np.array(value)
            if attr.name in ("value_floats", "value_ints"):
                return np.array(list(value))
        return None

    def scalar(self, name: str) -> float | None:
        arr = self.constant(name, max_size=1)
        return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


def _all_nodes(graph) -> Iterator:
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_nodes(g)


def _dims(value_info) -> list | None:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _group(findings: dict, severity: str, code: str) -> Iterable[Finding]:
    """Turn {message: [node names]} into findings."""
    for message, nodes in findings.items():
        yield Finding(severity, code, message, tuple(dict.fromkeys(nodes)))


def _names(nodes: list[str], limit: int = 4) -> str:
    more = f" (+{len(nodes) - limit} more)" if len(nodes) > limit else ""
    return ", ".join(nodes[:limit]) + more


# ---------------------------------------------------------------------------- checks
def _check_ops(g: _Graph, trt: str) -> list[Finding]:
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
        if opset.domain in ("", "ai.onnx") and opset.version > hi and _version(trt) <= _version(table["tensorrt_version"]):
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


def _check_attention_op_restrictions(g: _Graph, node) -> list[str]:
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


def _check_decomposed_layernorm(g: _Graph) -> list[Finding]:
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


def _batch_dims(g: _Graph) -> tuple[bool, set]:
    """(dynamic, {static batch values}) over the graph's real inputs."""
    dynamic, static = False, set()
    for inp in g.model.graph.input:
        if inp.name in g.initializers:
            continue
        dims = _dims(inp)
        if not dims:
            continue
        if isinstance(dims[0], int) and dims[0] > 0:
            static.add(dims[0])
        else:
            dynamic = True
    return dynamic, static


def _check_batch(g: _Graph) -> list[Finding]:
    dynamic, static = _batch_dims(g)
    baked: dict[str, list[str]] = defaultdict(list)
    static_baked: list[str] = []
    for node in g.nodes:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape = g.constant(node.input[1])
        if shape is None or shape.ndim != 1 or shape.size == 0:
            continue
        first = int(shape[0])
        if first in (-1, 0):  # -1 infers, 0 copies the input's dim (allowzero=0): batch-agnostic
            continue
        data_dims = g.shapes.get(node.input[0])
        lead = data_dims[0] if data_dims else None
        if dynamic and isinstance(lead, str):
            baked[f"Reshape target {shape.tolist()} fixes batch {first} on a tensor whose leading dim is the "
                  f"dynamic {lead!r}: other batch sizes fail or mix samples; use -1 (or 0) there"].append(
                g.node_name(node))
        elif static and lead in static and first == lead and first > 1:
            static_baked.append(g.node_name(node))
    out = list(_group(baked, "error", "baked-batch"))
    if static_baked:
        out.append(Finding("info", "static-batch",
                           f"static batch {sorted(static)[0]} is baked into {len(static_baked)} Reshape constant(s) "
                           f"({_names(static_baked)}); the graph runs at that batch only (export with --batch "
                           "MIN,OPT,MAX for a dynamic one)", tuple(static_baked)))
    if dynamic:
        for out_vi in g.model.graph.output:
            dims = g.shapes.get(out_vi.name) or _dims(out_vi)
            if dims and isinstance(dims[0], int) and dims[0] > 0:
                producer = g.producer.get(out_vi.name)
                out.append(Finding(
                    "error", "baked-batch-output",
                    f"input batch is dynamic but output {out_vi.name!r} has fixed batch {dims[0]}",
                    (g.node_name(producer),) if producer is not None else (out_vi.name,)))
    return out


def _scalar_operand(g: _Graph, node) -> int | None:
    """For a Mul (either side) or Div (divisor) by a scalar constant: the index of the other input."""
    if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
        return None
    for i in ((1,) if node.op_type == "Div" else (1, 0)):
        if g.scalar(node.input[i]) is not None:
            return 1 - i
    return None


def _walk_back_for_scale(g: _Graph, tensor: str, hops: int = 8):
    """The Mul/Div-by-scalar node feeding ``tensor`` through layout ops, or None."""
    for _ in range(hops):
        node = g.producer.get(tensor)
        if node is None:
            return None
        if node.op_type in ("Mul", "Div"):
            return node if _scalar_operand(g, node) is not None else None
        if node.op_type not in _PASS_THROUGH:
            return None
        tensor = node.input[0]
    return None


def _dequantized(g: _Graph, tensor: str, hops: int = 4) -> bool:
    """Whether ``tensor`` comes from a DequantizeLinear through layout ops (a Q/DQ-quantized input)."""
    for _ in range(hops):
        node = g.producer.get(tensor)
        if node is None:
            return False
        if node.op_type == "DequantizeLinear":
            return True
        if node.op_type not in _PASS_THROUGH:
            return False
        tensor = node.input[0]
    return False


def _longest(*lengths) -> int | None:
    """The longest of the known (integer) sequence lengths, or None."""
    known = [n for n in lengths if isinstance(n, int)]
    return max(known) if known else None


def _check_attention(g: _Graph) -> list[Finding]:
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
        scaler = None
        if src is not None and _scalar_operand(g, src) is not None:
            scaler, src = src, g.producer.get(src.input[_scalar_operand(g, src)])
        if src is None or src.op_type != "MatMul":
            continue
        av = [n for n in g.consumers.get(sm.output[0], []) if n.op_type == "MatMul" and n.input[0] == sm.output[0]]
        if not av:
            continue
        blocks += 1
        names = [g.node_name(src)] + ([g.node_name(scaler)] if scaler else []) + [g.node_name(sm), g.node_name(av[0])]
        if scaler is not None:
            scale_after.extend(names)
        elif _walk_back_for_scale(g, src.input[0]) is None and _walk_back_for_scale(g, src.input[1]) is None:
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


def _float_initializers(g: _Graph):
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


def _check_fp16_range(g: _Graph) -> list[Finding]:
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


def _check_external_data(g: _Graph) -> list[Finding]:
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


def _check_qdq_zero_points(g: _Graph) -> list[Finding]:
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
    return _check_qdq_zero_points(_Graph(model, Path(base_dir) if base_dir is not None else None))


# ---------------------------------------------------------------------------- entry point
def lint_onnx(model, tensorrt_version: str = DEFAULT_TENSORRT_VERSION, base_dir: str | os.PathLike | None = None
              ) -> LintReport:
    """Lint an ONNX model (path or ``onnx.ModelProto``) for TensorRT ``tensorrt_version``.

    External data is not loaded; its files are checked for presence and size next to the model
    (or in ``base_dir`` for a ModelProto).
    """
    _version(tensorrt_version)
    path = None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        model = load_onnx(path)
        if path.is_dir():
            path = path / "model.onnx"
        base_dir = path.parent
    base = Path(base_dir) if base_dir is not None else None
    g = _Graph(model, base)
    findings: list[Finding] = []
    findings += _check_ops(g, tensorrt_version)
    findings += _check_decomposed_layernorm(g)
    findings += _check_batch(g)
    findings += _check_attention(g)
    findings += _check_external_data(g)
    findings += _check_qdq_zero_points(g)
    findings += _check_fp16_range(g)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: order[f.severity])
    op_counts: dict[str, int] = defaultdict(int)
    for node in g.nodes:
        op_counts[node.op_type] += 1
    dynamic, static = _batch_dims(g)
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
