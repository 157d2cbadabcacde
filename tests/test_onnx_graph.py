"""edgevit.onnx_graph, the one graph layer, and the onnxscript rewrites of edgevit.export.rewrites,
on small hand-built graphs (numbers checked with ONNX Runtime against numpy)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevit.errors import OnnxModelError
from edgevit.export.rewrites import canonicalize_gelu, fuse_attention
from edgevit.onnx_graph import Graph, bypass_nodes, count_ops, load_onnx, mark_outputs

TOL = 1e-6


def _model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _run(proto, optimize: bool = True, **feeds):
    options = ort.SessionOptions()
    if not optimize:  # run the graph's own ops, not ONNX Runtime's fused kernels
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_graph_maps_constants_and_walks():
    nodes = [helper.make_node("Mul", ["x", "two"], ["y"], name="scale"),
             helper.make_node("Cast", ["y"], ["yc"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["yc"], ["yt"], perm=[1, 0]),
             helper.make_node("Softmax", ["yt"], ["z"], name="sm")]
    g = Graph(_model(nodes, [_f32("x", [2, 3])], [_f32("z", [3, 2])], [_const("two", 2.0)]))
    assert g.producer["y"].name == "scale" and [n.name for n in g.users("yt")] == ["sm"]
    assert g.users("nothing") == [] and g.graph_outputs == {"z"}
    assert g.scalar("two") == 2.0 and g.is_constant("two") and not g.is_constant("y")
    assert g.scalar_operand(g.producer["y"]) == 0, "the non-constant side of Mul(x, 2) is input 0"
    assert g.next_op("y", ("Transpose",)).op_type == "Transpose", "Cast is stepped over"
    assert g.producer_through("yt", ("Mul",), hops=4).name == "scale", "Transpose and Cast are layout ops"
    assert g.producer_through("z", ("Mul",), hops=4) is None, "Softmax computes: the walk stops there"
    assert g.shapes["z"] == [3, 2] and g.shapes["yt"] == [3, 2], g.shapes
    assert g.attribute(nodes[2], "perm") == [1, 0] and [n.name for n in g.nodes_of("Softmax")] == ["sm"]


def test_bypass_identities_and_mark_outputs():
    nodes = [helper.make_node("Identity", ["x"], ["i1"]), helper.make_node("Identity", ["i1"], ["i2"]),
             helper.make_node("Relu", ["i2"], ["r"]), helper.make_node("Neg", ["r"], ["y"])]
    proto = _model(nodes, [_f32("x", [2])], [_f32("y", [2])])
    bypass_nodes(proto, "Identity")
    assert count_ops(proto, "Identity") == 0 and list(proto.graph.node[0].input) == ["x"]
    debug = mark_outputs(proto, ["r", "y"])
    assert [o.name for o in debug.graph.output] == ["y", "r"] and len(proto.graph.output) == 1
    x = np.array([-1.0, 2.0], dtype=np.float32)
    y, r = _run(debug, x=x)
    np.testing.assert_array_equal(r, np.maximum(x, 0))
    np.testing.assert_array_equal(y, -np.maximum(x, 0))


def test_load_onnx_says_what_is_wrong(tmp_path):
    with pytest.raises(OnnxModelError, match="no such file"):
        load_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(OnnxModelError, match="not a(n)? (readable )?ONNX"):
        load_onnx(bad)


def _gelu_graph():
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["one", "e"], ["a"]), helper.make_node("Mul", ["a", "half"], ["h"]),
             helper.make_node("Mul", ["x", "h"], ["y"])]
    inits = [_const("sqrt2", math.sqrt(2.0)), _const("one", 1.0), _const("half", 0.5)]
    return _model(nodes, [_f32("x", [4, 8])], [_f32("y", [4, 8])], inits)


def test_canonicalize_gelu_reorders_exactly():
    proto = _gelu_graph()
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    (before,) = _run(proto, optimize=False, x=x)
    new, count = canonicalize_gelu(proto)
    assert count == 1
    g = Graph(new)
    (last,) = [n for n in g.nodes if n.output[0] == "y"]
    assert last.op_type == "Mul" and g.scalar(last.input[1]) == 0.5, "the 0.5 must be applied last"
    inner = g.producer[last.input[0]]
    assert inner.op_type == "Mul" and "x" in inner.input, "x * (1 + erf(x/sqrt2)) first"
    (after,) = _run(new, optimize=False, x=x)
    np.testing.assert_array_equal(after, before)  # scaling by 0.5 is exact


def test_canonicalize_gelu_leaves_other_constants_alone():
    proto = _gelu_graph()
    proto.graph.initializer[2].CopyFrom(_const("half", 0.25))  # not a GELU
    new, count = canonicalize_gelu(proto)
    assert count == 0 and new is proto


def _attention_graph(scale_op="Div", perm=(0, 1, 3, 2)):
    nodes = [helper.make_node(scale_op, ["q", "s"], ["qs"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=list(perm)),
             helper.make_node("MatMul", ["qs", "kt"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["o"])]
    shape = [1, 2, 5, 4]
    inputs = [_f32(n, shape) for n in ("q", "k", "v")]
    return _model(nodes, inputs, [_f32("o", shape)], [_const("s", 2.0)], opset=23)


def test_fuse_attention_takes_the_scale_of_a_divided_q():
    proto = _attention_graph("Div")
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, 2, 5, 4)).astype(np.float32) for _ in range(3))
    s = q / 2.0 @ np.swapaxes(k, -1, -2)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ v
    new, fused = fuse_attention(proto)
    assert fused == 1 and count_ops(new, "Softmax") == 0
    (attn,) = [n for n in new.graph.node if n.op_type == "Attention"]
    assert Graph(new).attribute(attn, "scale") == pytest.approx(0.5)
    onnx.checker.check_model(new, full_check=True)
    (got,) = _run(new, q=q, k=k, v=v)
    assert np.abs(got - want).max() <= TOL, f"max abs {np.abs(got - want).max():.3e}"


def test_fuse_attention_skips_a_transpose_that_is_not_k_transposed():
    new, fused = fuse_attention(_attention_graph("Mul", perm=(0, 2, 1, 3)))
    assert fused == 0 and count_ops(new, "Softmax") == 1
