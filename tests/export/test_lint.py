"""edgevit lint on crafted graphs (onnx.helper): each bad pattern is flagged, the legit ones are not."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgevit.cli import main
from edgevit.errors import OnnxModelError
from edgevit.export.lint import lint_onnx, tensorrt_op_support, tensorrt_op_table

FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=18, metadata=None):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def _vi(name, shape):
    return helper.make_tensor_value_info(name, FLOAT, shape)


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _codes(report, severity=None):
    return {f.code for f in report.findings if severity is None or f.severity == severity}


def _finding(report, code):
    found = [f for f in report.findings if f.code == code]
    assert found, f"no {code!r} finding; got {[(f.severity, f.code, f.message) for f in report.findings]}"
    return found[0]


# ---------------------------------------------------------------------------- LayerNorm
def _decomposed_layernorm(square="pow"):
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], name="ln_mean", keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["d"], name="ln_sub"),
        (helper.make_node("Pow", ["d", "two"], ["sq"], name="ln_pow") if square == "pow"
         else helper.make_node("Mul", ["d", "d"], ["sq"], name="ln_square")),
        helper.make_node("ReduceMean", ["sq", "axes"], ["var"], name="ln_var", keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="ln_add"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="ln_sqrt"),
        helper.make_node("Div", ["d", "std"], ["y"], name="ln_div"),
    ]
    inits = [_const("axes", [-1]), _const("two", 2.0, np.float32), _const("eps", 1e-6, np.float32)]
    return _model(nodes, [_vi("x", ["batch", 4, 8])], [_vi("y", ["batch", 4, 8])], inits)


@pytest.mark.parametrize("square", ["pow", "mul"])
def test_decomposed_layernorm_is_an_error(square):
    report = lint_onnx(_decomposed_layernorm(square))
    f = _finding(report, "decomposed-layernorm")
    assert f.severity == "error"
    assert {"ln_mean", "ln_sub", "ln_var", "ln_add", "ln_sqrt", "ln_div"} <= set(f.nodes), f.nodes
    assert not report.ok


def test_layernormalization_op_is_clean():
    nodes = [helper.make_node("LayerNormalization", ["x", "w", "b"], ["y"], name="ln", axis=-1, epsilon=1e-6)]
    inits = [_const("w", np.ones(8), np.float32), _const("b", np.zeros(8), np.float32)]
    report = lint_onnx(_model(nodes, [_vi("x", ["batch", 4, 8])], [_vi("y", ["batch", 4, 8])], inits))
    assert report.findings == [], [f.to_dict() for f in report.findings]


def test_layernormalization_extra_outputs_in_use_break_trt_restriction():
    nodes = [helper.make_node("LayerNormalization", ["x", "w", "b"], ["y", "mean"], name="ln", axis=-1)]
    inits = [_const("w", np.ones(8), np.float32), _const("b", np.zeros(8), np.float32)]
    model = _model(nodes, [_vi("x", ["batch", 4, 8])], [_vi("y", ["batch", 4, 8]), _vi("mean", ["batch", 4, 1])], inits)
    f = _finding(lint_onnx(model), "trt-op-restriction")
    assert f.nodes == ("ln",) and "first output" in f.message


# ---------------------------------------------------------------------------- batch
def _reshape_model(shape, batch_dim="batch"):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
    return _model(nodes, [_vi("x", [batch_dim, 4, 8])], [_vi("y", None)], [_const("shape", shape)])


@pytest.mark.parametrize("shape", [[2, 32], [1, 32]])
def test_batch_baked_into_reshape_of_dynamic_graph_is_an_error(shape):
    report = lint_onnx(_reshape_model(shape))
    f = _finding(report, "baked-batch")
    assert f.severity == "error" and f.nodes == ("reshape",)
    assert str(shape) in f.message, f.message


@pytest.mark.parametrize("shape", [[-1, 32], [0, 32], [0, -1]])
def test_minus_one_and_zero_batch_in_reshape_are_fine(shape):
    report = lint_onnx(_reshape_model(shape))
    assert "baked-batch" not in _codes(report), [f.to_dict() for f in report.findings]
    assert report.ok


def test_static_batch_graph_is_info_not_error():
    report = lint_onnx(_reshape_model([4, 32], batch_dim=4))
    assert "baked-batch" not in _codes(report)
    assert _finding(report, "static-batch").severity == "info"
    assert report.ok


def test_reshape_of_a_non_batch_tensor_is_not_flagged():
    # the leading dim of a weight-like constant tensor is not the batch
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["w2"], name="reshape_w"),
             helper.make_node("MatMul", ["x", "w2"], ["y"], name="mm")]
    inits = [_const("w", np.ones((2, 4, 8)), np.float32), _const("shape", [8, 8])]
    report = lint_onnx(_model(nodes, [_vi("x", ["batch", 4, 8])], [_vi("y", ["batch", 4, 8])], inits))
    assert "baked-batch" not in _codes(report), [f.to_dict() for f in report.findings]


def test_fixed_output_batch_on_dynamic_input_is_an_error():
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum_all", keepdims=0)]
    model = _model(nodes, [_vi("x", ["batch", 4])], [_vi("y", [4])], [_const("axes", [0])])
    assert _finding(lint_onnx(model), "baked-batch-output").severity == "error"


# ---------------------------------------------------------------------------- TensorRT op support
def test_op_table_names_its_source_and_version():
    table = tensorrt_op_table()
    assert table["tensorrt_version"] == "10.3"
    assert len(table["source"]["commit"]) == 40 and "onnx-tensorrt" in table["source"]["repository"]
    assert table["ops"]["LayerNormalization"]["supported"] is True
    assert "Attention" not in table["ops"]
    assert table["later_additions"]["Attention"]["added_in"] == "10.14"
    assert tensorrt_op_support("Attention", "10.3")["supported"] is False
    assert tensorrt_op_support("Attention", "10.14")["supported"] is True
    assert tensorrt_op_support("Unique")["supported"] is False


def test_unsupported_op_is_an_error():
    nodes = [helper.make_node("Unique", ["x"], ["y"], name="uniq")]
    report = lint_onnx(_model(nodes, [_vi("x", [5])], [_vi("y", None)]))
    f = _finding(report, "trt-unsupported-op")
    assert f.severity == "error" and f.nodes == ("uniq",) and "Unique" in f.message


def test_custom_domain_op_needs_a_plugin():
    node = helper.make_node("FastGelu", ["x"], ["y"], name="fg", domain="com.microsoft")
    model = _model([node], [_vi("x", ["batch", 8])], [_vi("y", ["batch", 8])])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert _finding(lint_onnx(model), "trt-custom-domain").nodes == ("fg",)


def test_attention_op_fails_trt_10_3_but_passes_10_14():
    nodes = [helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn", scale=0.125)]
    shape = ["batch", 4, 17, 64]
    model = _model(nodes, [_vi("q", shape), _vi("k", shape), _vi("v", shape)], [_vi("y", shape)], opset=23)
    old = lint_onnx(model, tensorrt_version="10.3")
    assert _finding(old, "trt-unsupported-op").nodes == ("attn",)
    assert "10.14" in _finding(old, "trt-unsupported-op").message
    assert "trt-opset" in _codes(old, "warning")
    new = lint_onnx(model, tensorrt_version="10.14")
    assert new.ok, [f.to_dict() for f in new.findings]


def test_runtime_computed_axes_break_the_initializer_restriction():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "idx"], ["ax"], name="pick", axis=0),
             helper.make_node("Sub", ["ax", "one"], ["last"], name="last_axis"),
             helper.make_node("ReduceMean", ["x", "last"], ["y"], name="mean", keepdims=1)]
    inits = [_const("idx", [2]), _const("one", [1])]
    report = lint_onnx(_model(nodes, [_vi("x", ["batch", 4, 8])], [_vi("y", None)], inits))
    f = _finding(report, "trt-op-restriction")
    assert f.nodes == ("mean",) and "axes" in f.message


def test_unsupported_attribute_value_is_an_error():
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode="cubic")]
    inits = [_const("scales", [1.0, 1.0, 2.0, 2.0], np.float32)]
    report = lint_onnx(_model(nodes, [_vi("x", ["batch", 3, 8, 8])], [_vi("y", None)], inits))
    f = _finding(report, "trt-op-restriction")
    assert f.nodes == ("resize",) and "mode" in f.message and "cubic" in f.message
    ok = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode="linear")]
    assert lint_onnx(_model(ok, [_vi("x", ["batch", 3, 8, 8])], [_vi("y", None)], inits)).ok


# ---------------------------------------------------------------------------- attention patterns
def _attention(scale_where="q", head=64, seq=17):
    shape = ["batch", 2, seq, head]
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 1, 3, 2])]
    if scale_where == "q":
        nodes += [helper.make_node("Mul", ["q", "scale"], ["qs"], name="q_scale"),
                  helper.make_node("MatMul", ["qs", "kt"], ["s"], name="qk"),
                  helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1)]
    else:
        nodes += [helper.make_node("MatMul", ["q", "kt"], ["s0"], name="qk"),
                  helper.make_node("Div", ["s0", "sqrt_d"], ["s"], name="qk_scale"),
                  helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1)]
    nodes.append(helper.make_node("MatMul", ["p", "v"], ["y"], name="av"))
    inits = [_const("scale", head ** -0.5, np.float32), _const("sqrt_d", head ** 0.5, np.float32)]
    return _model(nodes, [_vi("q", shape), _vi("k", shape), _vi("v", shape)], [_vi("y", shape)], inits)


def test_prescaled_attention_is_clean():
    report = lint_onnx(_attention("q"))
    assert report.stats["attention_blocks"] == 1
    assert not _codes(report) & {"attention-scale-after-qk", "attention-head-size", "attention-seq-len"}, \
        [f.to_dict() for f in report.findings]


def test_scale_after_qk_is_flagged():
    f = _finding(lint_onnx(_attention("after")), "attention-scale-after-qk")
    assert f.severity == "warning" and {"qk", "qk_scale", "softmax", "av"} <= set(f.nodes)


def test_attention_with_a_constant_bias_on_the_scores_is_checked_too():
    """BEiT's relative position bias: MatMul -> Add(constant) -> Softmax -> MatMul is attention all the same."""
    model = _attention("q", head=80)
    graph = model.graph
    softmax = next(n for n in graph.node if n.op_type == "Softmax")
    softmax.input[0] = "s_biased"
    position = list(graph.node).index(softmax)
    graph.node.insert(position, helper.make_node("Add", ["s", "bias"], ["s_biased"], name="pos_bias"))
    graph.initializer.append(_const("bias", np.zeros((1, 1, 1, 1)), np.float32))
    report = lint_onnx(model)
    assert report.stats["attention_blocks"] == 1, report.stats
    assert "head size 80" in _finding(report, "attention-head-size").message


def test_head_size_and_sequence_limits():
    report = lint_onnx(_attention("q", head=80, seq=577))
    assert "head size 80" in _finding(report, "attention-head-size").message
    assert "577 > 512" in _finding(report, "attention-seq-len").message


# ---------------------------------------------------------------------------- FP16 range, external data
def test_fp16_range_of_initializers_and_recorded_ranges():
    nodes = [helper.make_node("Mul", ["x", "w"], ["y"], name="mul")]
    w = np.ones(8, np.float32)
    w[3] = 1e5
    meta = {"edgevit.ranges": json.dumps({"y": [-70000.0, 3.0], "x": [-1, 1]})}
    report = lint_onnx(_model(nodes, [_vi("x", ["batch", 8])], [_vi("y", ["batch", 8])],
                              [numpy_helper.from_array(w, "w")], metadata=meta))
    f = _finding(report, "fp16-range-initializer")
    assert f.nodes == ("w",) and "1e+05" in f.message
    a = _finding(report, "fp16-range-activation")
    assert a.nodes == ("mul",) and "7e+04" in a.message


def test_missing_external_data_is_an_error(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    model = _model(nodes, [_vi("x", ["batch", 64])], [_vi("y", ["batch", 64])], [w])
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.onnx.data",
                    size_threshold=0)
    assert lint_onnx(tmp_path / "m.onnx").ok
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    assert "truncated" in _finding(lint_onnx(tmp_path / "m.onnx"), "external-data-missing").message
    data.unlink()
    f = _finding(lint_onnx(tmp_path / "m.onnx"), "external-data-missing")
    assert f.severity == "error" and f.nodes == ("w",)


# ---------------------------------------------------------------------------- bad input, CLI
def test_missing_and_non_onnx_files(tmp_path):
    with pytest.raises(OnnxModelError, match="no such file"):
        lint_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not a protobuf at all, just some text\n" * 20)
    with pytest.raises(OnnxModelError, match="not|no ONNX graph"):
        lint_onnx(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxModelError, match="no ONNX graph"):
        lint_onnx(empty)


def test_cli_lint_exit_codes_and_json(tmp_path):
    onnx.save(_decomposed_layernorm(), str(tmp_path / "bad.onnx"))
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    onnx.save(_model(nodes, [_vi("x", ["batch", 8])], [_vi("y", ["batch", 8])]), str(tmp_path / "good.onnx"))
    runner = CliRunner()
    res = runner.invoke(main, ["lint", str(tmp_path / "bad.onnx"), "--json"])
    assert res.exit_code == 1, res.output
    data = json.loads(res.output)
    assert data["ok"] is False and data["counts"]["error"] >= 1
    assert {"severity", "code", "message", "nodes"} <= set(data["findings"][0])
    res = runner.invoke(main, ["lint", str(tmp_path / "good.onnx")])
    assert res.exit_code == 0, res.output
    assert runner.invoke(main, ["lint", str(tmp_path / "missing.onnx")]).exit_code == 1
    (tmp_path / "text.onnx").write_text("hello")
    res = runner.invoke(main, ["lint", str(tmp_path / "text.onnx")])
    assert res.exit_code == 1 and "ONNX" in res.output


# ---------------------------------------------------------------------------- issue 11: TopK K, Swish, Q/DQ zero points
def test_topk_with_a_runtime_k_is_not_flagged():
    """Dynamic K is supported since TensorRT 8.6 (onnx-tensorrt Changelog); before, a computed K was an error."""
    nodes = [helper.make_node("ReduceMax", ["x"], ["m"], name="kmax", keepdims=0),
             helper.make_node("Cast", ["m"], ["k1"], name="kcast", to=TensorProto.INT64),
             helper.make_node("Reshape", ["k1", "one"], ["k"], name="kshape"),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")]
    model = _model(nodes, [_vi("x", [1, 10])], [_vi("v", [1, None])], [_const("one", [1])])
    report = lint_onnx(model)
    restrictions = [f.message for f in report.findings if f.code == "trt-op-restriction" and "TopK" in f.message]
    assert restrictions == [], restrictions


def test_swish_is_a_tensorrt_11_op():
    assert tensorrt_op_support("Swish", "10.3")["supported"] is False
    assert tensorrt_op_support("Swish", "11.0") == {"supported": True, "restrictions": None, "added_in": "11.0"}
    model = _model([helper.make_node("Swish", ["x"], ["y"], name="act")], [_vi("x", [1, 4])], [_vi("y", [1, 4])],
                   opset=24)
    assert "trt-unsupported-op" in _codes(lint_onnx(model, "10.3"), "error")
    assert "trt-unsupported-op" not in _codes(lint_onnx(model, "11.0"))


def _qdq(zero_point):
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq0")]
    inits = [_const("s", 0.05, np.float32), _const("zp", zero_point, np.int8 if zero_point <= 127 else np.uint8)]
    return _model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])], inits)


def test_non_zero_zero_point_is_an_error():
    f = _finding(lint_onnx(_qdq(128)), "trt-qdq-zero-point")
    assert f.severity == "error" and set(f.nodes) == {"q0", "dq0"} and "symmetric" in f.message, f
    assert "trt-qdq-zero-point" not in _codes(lint_onnx(_qdq(0)))
