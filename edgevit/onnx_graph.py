"""The one ONNX graph layer: load a model, look nodes up, follow producers and consumers, read
constants and inferred shapes, rename, bypass nodes, mark tensors as outputs, and apply
onnxscript pattern rewrites.

Everything in edgevit that walks an ONNX graph does it through :class:`Graph` (lint's checks,
the export rewrites, node naming, precision graphs, the runtime's attention debug copy). It
imports onnx and numpy only (onnxscript for :func:`apply_rewrites`), never torch, so the
deploy-side runtime may use it.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import OnnxModelError
from .formats import CAST, EXPORTED, PRECISION_TABLE, QDQ

LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Gather", "Split", "Identity",
                        "Cast", "Flatten", "Expand"})
"""Ops that move or retype values without computing on them (stepped over when walking back)."""


# A graph whose initializers hold more bytes than this is written with its tensors in a separate file:
# protobuf cannot serialize a message of 2 GiB or more.
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3
EXTERNAL_TENSOR_MIN_BYTES = 1024  # smaller tensors (shape constants) stay inline, readable by shape inference


def save_onnx(proto, path: str | os.PathLike, threshold: int = EXTERNAL_DATA_THRESHOLD,
              data_file: str | None = None) -> bool:
    """Write ``proto`` to ``path``; past ``threshold`` bytes of initializers, its tensors go to ``data_file``
    (beside ``path``; default: its name + ".data"), as TensorRT's parser and ONNX Runtime read them.
    Returns whether they did. OSError / ValueError from onnx as they are."""
    import onnx

    tensors = sum(len(t.raw_data) if t.raw_data else int(np.prod(t.dims)) * 4 for t in proto.graph.initializer)
    external = tensors > threshold
    if external:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_file or Path(path).name + ".data", size_threshold=EXTERNAL_TENSOR_MIN_BYTES)
    else:
        onnx.save_model(proto, str(path))
    return external


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


class Graph:
    """Producer/consumer maps, constants and (lazily) inferred shapes of one ONNX model.

    ``model``: an ``onnx.ModelProto`` (or a ``GraphProto``: no shapes then). ``subgraphs``: also
    index the nodes of If/Loop bodies. ``base_dir``: where external data lives, for constants.
    The maps are built once; a caller that edits the graph builds a new Graph.
    """

    def __init__(self, model, base_dir: Path | None = None, subgraphs: bool = True):
        self.model = model
        graph = model.graph if hasattr(model, "graph") else model
        self.graph = graph
        self.base_dir = base_dir
        self.nodes = list(all_nodes(graph)) if subgraphs else list(graph.node)
        self.producer: dict[str, object] = {}
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers.setdefault(inp, []).append(node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.graph_outputs = {o.name for o in graph.output}

    # ------------------------------------------------------------------ lookup
    def nodes_of(self, *op_types: str) -> list:
        """The nodes whose op is one of ``op_types``, in graph order."""
        return [n for n in self.nodes if n.op_type in op_types]

    def users(self, tensor: str) -> list:
        """The nodes consuming ``tensor`` (empty when none)."""
        return self.consumers.get(tensor, [])

    @staticmethod
    def node_name(node) -> str:
        return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"

    @staticmethod
    def attribute(node, name: str, default=None):
        """The value of ``node``'s attribute ``name``, or ``default``."""
        from onnx import helper

        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)

    def is_weighted(self, node) -> bool:
        """Whether one of the node's first two inputs is an initializer (a Linear's MatMul)."""
        return any(i in self.initializers for i in node.input[:2])

    def next_op(self, tensor: str, op_types: tuple[str, ...], input_index: int | None = None,
                through: tuple[str, ...] = ("Cast", "Identity")):
        """The node consuming ``tensor`` (stepping over ``through`` ops) whose op is in ``op_types``
        (at input ``input_index`` when given), or None."""
        frontier, seen = [tensor], set()
        while frontier:
            t = frontier.pop()
            if t in seen:
                continue
            seen.add(t)
            for node in self.users(t):
                if node.op_type in op_types and (input_index is None or (
                        len(node.input) > input_index and node.input[input_index] == t)):
                    return node
                if node.op_type in through:
                    frontier.extend(node.output)
        return None

    def producer_through(self, tensor: str, stop: Iterable[str], hops: int, through=LAYOUT_OPS):
        """The producer of ``tensor`` whose op is in ``stop``, reached through ``through`` ops in at
        most ``hops`` steps, or None."""
        for _ in range(hops):
            node = self.producer.get(tensor)
            if node is None:
                return None
            if node.op_type in stop:
                return node
            if node.op_type not in through:
                return None
            tensor = node.input[0]
        return None

    # ------------------------------------------------------------------ constants
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

    def scalar_operand(self, node) -> int | None:
        """For a Mul (either side) or Div (divisor) by a scalar constant: the index of the other input."""
        if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
            return None
        for i in ((1,) if node.op_type == "Div" else (1, 0)):
            if self.scalar(node.input[i]) is not None:
                return 1 - i
        return None

    # ------------------------------------------------------------------ shapes
    @cached_property
    def shapes(self) -> dict[str, list]:
        """Tensor name -> dims (int, symbolic name or None) from shape inference, best effort."""
        import onnx

        model = self.model
        shapes: dict[str, list] = {}
        if not hasattr(model, "graph"):
            infos = list(model.value_info) + list(model.input) + list(model.output)
        else:
            try:
                inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
                infos = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
            except Exception:  # shape inference is a help, never a requirement
                infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
        for vi in infos:
            d = dims(vi)
            if d is not None:
                shapes[vi.name] = d
        for name, t in self.initializers.items():
            shapes.setdefault(name, list(t.dims))
        return shapes


def all_nodes(graph) -> Iterator:
    """The nodes of ``graph`` and of the subgraphs in their attributes, depth first."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from all_nodes(g)


def dims(value_info) -> list | None:
    """A ValueInfo's dims: int, the symbolic name, or None; None when it has no shape."""
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


def count_ops(proto, op_type: str) -> int:
    """How many top-level nodes of ``proto`` run ``op_type``."""
    return sum(1 for n in proto.graph.node if n.op_type == op_type)


def default_opset(proto) -> int:
    """The model's default-domain (ai.onnx) opset, 0 when absent."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
"""The explicit-quantization ops (TensorRT's Q/DQ model)."""
_INT_QUANT_OPS = ("QLinearMatMul", "MatMulInteger", "ConvInteger", "QLinearConv")


def graph_precision(proto) -> tuple[str, str]:
    """(precision, what the graph holds) read off the graph alone (its weights need not be loaded), by
    the rows of :data:`edgevit.formats.PRECISION_TABLE`: the Q/DQ row whose element type its zero points
    (or quantized weights) have; else, for other float8 or integer Q/DQ, the first float8 / integer Q/DQ
    row; else the plain float row of most float initializers; else the exported (fp32) row."""
    from onnx import TensorProto as T

    rows = [p for p in PRECISION_TABLE if p.onnx]
    qdq_rows = [p for p in rows if p.graph == QDQ]
    float8 = {getattr(T, n) for n in dir(T) if n.startswith("FLOAT8")}
    types = {t.name: t.data_type for t in proto.graph.initializer}
    qdq = [n for n in proto.graph.node if n.op_type in QDQ_OPS]
    zero_points = [types.get(n.input[2]) for n in qdq if len(n.input) > 2 and n.input[2]]
    qdq_rows.sort(key=lambda p: getattr(T, p.element) not in float8)  # float8 first: their weights are float8

    def held(p) -> bool:
        code = getattr(T, p.element)
        return code in zero_points or (code in float8 and code in types.values())

    row = next((p for p in qdq_rows if held(p)), None)
    if row is None and float8 & (set(zero_points) | set(types.values())):
        row = next((p for p in qdq_rows if getattr(T, p.element) in float8), None)
    if row is not None and getattr(T, row.element) in float8:
        return row.name, f"float8 Q/DQ ({len(qdq)} QuantizeLinear/DequantizeLinear nodes with float8 zero points)"
    if row is not None or qdq or any(n.op_type in _INT_QUANT_OPS for n in proto.graph.node):
        row = row or next(p for p in qdq_rows if getattr(T, p.element) not in float8)
        kind = next((T.DataType.Name(t).lower() for t in (getattr(T, row.element), T.UINT8) if t in zero_points),
                    "8-bit integer")
        return row.name, f"{kind} Q/DQ ({len(qdq)} QuantizeLinear/DequantizeLinear nodes)"
    float_rows = [p for p in rows if p.float]
    float_types = [getattr(T, p.element) for p in float_rows]
    floats = [t for t in types.values() if t in float_types]
    for p, dtype in zip(float_rows, float_types):
        if p.graph == CAST and floats and floats.count(dtype) > len(floats) // 2:
            return p.name, f"{p.name} weights ({floats.count(dtype)} of {len(floats)} float initializers), no Q/DQ"
    base = next(p for p in float_rows if p.graph == EXPORTED)
    count = floats.count(getattr(T, base.element))
    return base.name, f"{base.name} weights ({count} of {len(floats)} float initializers), no Q/DQ"


def graph_facts(path: str | os.PathLike) -> dict | None:
    """What a manifest entry is checked against, read from the graph without its external data:
    {"precision", "holds" (:func:`graph_precision`), "output" (the single output's name or None),
    "output_shape" (its dims or None)}; None when the file is not a readable ONNX graph, or where the
    onnx package is not installed (a device application: the toolchain checked the graph)."""
    try:
        import onnx
    except ImportError:  # a device application: the toolchain checked the graph
        return None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a readable graph: the runner that opens it says so
        return None
    precision, holds = graph_precision(proto)
    single = proto.graph.output[0] if len(proto.graph.output) == 1 else None
    return {"precision": precision, "holds": holds, "output": single.name if single is not None else None,
            "output_shape": dims(single) if single is not None else None}


# ---------------------------------------------------------------------- editing
def rename_nodes(nodes: Iterable, names: Iterable[str]) -> int:
    """Give ``nodes`` the ``names``, pairwise. Returns how many were renamed."""
    count = 0
    for node, name in zip(nodes, names):
        node.name = name
        count += 1
    return count


def bypass_nodes(proto, op_type: str = "Identity") -> None:
    """Remove the one-input ``op_type`` nodes (Identity) whose output is not a graph output, in
    place, wiring their consumers to their input."""
    outputs = {o.name for o in proto.graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in proto.graph.node:
        if node.op_type == op_type and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            keep.append(node)
    for node in keep:
        node.input[:] = [rename.get(i, i) for i in node.input]
    del proto.graph.node[:]
    proto.graph.node.extend(keep)


def mark_outputs(model, names: list[str]):
    """A copy of ``model`` with the tensors ``names`` added as graph outputs (types inferred)."""
    import onnx
    from onnx import shape_inference

    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    existing = {o.name for o in debug.graph.output}
    try:
        inferred = shape_inference.infer_shapes(debug, strict_mode=False)
        types = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
                 + list(inferred.graph.input)}
    except Exception:  # shape inference is best effort; types are then guessed below
        types = {}
    for name in names:
        if name in existing:
            continue
        if name in types:
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(types[name])
        else:
            vi = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        debug.graph.output.append(vi)
        existing.add(name)
    return debug


def topologically_sorted(proto):
    """``proto`` with its nodes in topological order (stable), as the ONNX spec requires and
    ``onnx.checker`` checks: converters that append nodes (ONNX Runtime's float16 converter adds its
    input Casts at the end) leave graphs that only sorting consumers (ONNX Runtime, TensorRT) accept."""
    import onnx_ir as ir
    from onnx_ir.passes.common import TopologicalSortPass

    model = ir.serde.deserialize_model(proto)
    TopologicalSortPass()(model)
    return ir.serde.serialize_model(model)


def apply_rewrites(proto, rules) -> tuple[object, int]:
    """Apply onnxscript pattern-rewrite ``rules`` to ``proto`` (in ONNX IR). Returns (new
    ModelProto, number of rewrites). Nodes the rewrites leave unused are removed; the rest of
    the graph, its metadata and its node names are kept."""
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass
    from onnxscript.rewriter import pattern

    model = ir.serde.deserialize_model(proto)
    count = pattern.RewriteRuleSet(list(rules)).apply_to_model(model)
    if not count:
        return proto, 0
    RemoveUnusedNodesPass()(model)
    return ir.serde.serialize_model(model), count


__all__ = ["Graph", "LAYOUT_OPS", "QDQ_OPS", "all_nodes", "apply_rewrites", "bypass_nodes", "count_ops", "default_opset", "dims",
           "graph_facts", "graph_precision", "load_onnx", "mark_outputs", "rename_nodes", "topologically_sorted"]
