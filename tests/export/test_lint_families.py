"""edgevit lint on what the ViT families bring to TensorRT: DINOv2 at 518 px (1,370 tokens), SigLIP's
attention pool (one query over every patch) and head sizes the INT8 fused MHA does not take."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgevit.export.lint import lint_onnx


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _attention(q_len, kv_len, head, heads=6, quantized=False):
    """MatMul(Q*s, K^T) -> Softmax -> MatMul(., V), Q pre-scaled as edgevit exports it; with
    ``quantized`` the two MatMuls read Q/DQ'd inputs, as --quantize-attention writes them."""
    q_shape, kv_shape = ["batch", heads, q_len, head], ["batch", heads, kv_len, head]
    inits = [numpy_helper.from_array(np.float32(head ** -0.5), "scale"),
             numpy_helper.from_array(np.float32(0.02), "qs_scale"),
             numpy_helper.from_array(np.int8(0), "zero")]
    nodes, q, k, v = [], "q", "k", "v"
    if quantized:
        for name in ("q", "k", "v"):
            nodes += [helper.make_node("QuantizeLinear", [name, "qs_scale", "zero"], [f"{name}_q"],
                                       name=f"{name}_quant"),
                      helper.make_node("DequantizeLinear", [f"{name}_q", "qs_scale", "zero"], [f"{name}_dq"],
                                       name=f"{name}_dequant")]
        q, k, v = "q_dq", "k_dq", "v_dq"
    nodes += [helper.make_node("Mul", [q, "scale"], ["qs"], name="q_scale"),
              helper.make_node("Transpose", [k], ["kt"], name="k_t", perm=[0, 1, 3, 2]),
              helper.make_node("MatMul", ["qs", "kt"], ["s"], name="qk"),
              helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["p", v], ["y"], name="av")]
    return _model(nodes, [_vi("q", q_shape), _vi("k", kv_shape), _vi("v", kv_shape)], [_vi("y", q_shape)], inits)


def _finding(report, code):
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, f"want one {code!r} finding; got {[(f.code, f.message) for f in report.findings]}"
    return found[0]


def _codes(report):
    return {f.code for f in report.findings}


def test_dinov2_at_518_is_too_long_for_int8_fused_mha():
    """37 x 37 patches + class token = 1,370 tokens; head 64 is fine."""
    report = lint_onnx(_attention(1370, 1370, 64))
    f = _finding(report, "attention-seq-len")
    assert f.severity == "warning" and "sequence length 1370 > 512" in f.message, f.message
    for words in ("int8 graph that quantizes attention (--quantize-attention) runs it unfused",
                  "smaller --img-size", "without --quantize-attention"):
        assert words in f.message, f"{words!r} missing: {f.message}"
    assert {"qk", "softmax", "av"} <= set(f.nodes), f.nodes
    assert "attention-head-size" not in _codes(report), report.findings


def test_dinov2_at_224_is_eligible():
    """16 x 16 patches + class token + 4 registers = 261 tokens: nothing to flag."""
    report = lint_onnx(_attention(261, 261, 64))
    assert not _codes(report) & {"attention-seq-len", "attention-head-size"}, report.findings


def test_quantized_attention_over_512_tokens_says_it_runs_unfused():
    f = _finding(lint_onnx(_attention(577, 577, 64, quantized=True)), "attention-seq-len")
    assert "this graph quantizes that attention, so TensorRT runs it unfused" in f.message, f.message


def test_attention_pool_is_judged_by_its_key_length():
    """SigLIP-so400m at 384 px: one pooling query over 729 patches, head 1152/16 = 72."""
    report = lint_onnx(_attention(1, 729, 72, heads=16))
    assert "sequence length 729 > 512" in _finding(report, "attention-seq-len").message
    head = _finding(report, "attention-head-size")
    assert "head size 72 is not one of [16, 32, 64]" in head.message and "INT8 fused MHA" in head.message, head.message


def test_attention_op_key_length_counts():
    """The opset-23 Attention op (4-D): the key/value length decides too."""
    nodes = [helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn")]
    model = _model(nodes, [_vi("q", ["batch", 12, 1, 64]), _vi("k", ["batch", 12, 1370, 64]),
                           _vi("v", ["batch", 12, 1370, 64])], [_vi("y", ["batch", 12, 1, 64])], opset=23)
    f = _finding(lint_onnx(model, tensorrt_version="10.14"), "attention-seq-len")
    assert "sequence length 1370 > 512" in f.message and f.nodes == ("attn",), f
