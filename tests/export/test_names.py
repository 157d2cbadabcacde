"""edgevit.export.names: the exported graph's nodes get the PyTorch module names (hand-built graphs)."""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

from edgevit.export.names import module_calls, name_vit_nodes


def _w(name: str, shape=(4, 4)):
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def _vit_like(depth: int = 1, extra_linear: bool = False):
    """Conv -> per block: LN, qkv, QK^T, Softmax, AV, proj, LN, fc1, fc2 -> LN -> head (graph order)."""
    nodes, inits, t = [helper.make_node("Conv", ["images", "conv_w"], ["x0"], name="node_Conv_0")], [_w("conv_w", (4, 1, 1, 1))], "x0"
    for b in range(depth):
        nodes += [
            helper.make_node("LayerNormalization", [t, "g", "bb"], [f"n1_{b}"], name=f"ln_a{b}"),
            helper.make_node("MatMul", [f"n1_{b}", f"qkv_w{b}"], [f"qkv{b}"], name=f"mm_qkv{b}"),
            helper.make_node("MatMul", [f"qkv{b}", f"qkv{b}"], [f"s{b}"], name=f"mm_qk{b}"),
            helper.make_node("Softmax", [f"s{b}"], [f"p{b}"], name=f"sm{b}"),
            helper.make_node("MatMul", [f"p{b}", f"qkv{b}"], [f"a{b}"], name=f"mm_av{b}"),
            helper.make_node("MatMul", [f"a{b}", f"proj_w{b}"], [f"pr{b}"], name=f"mm_proj{b}"),
            helper.make_node("LayerNormalization", [f"pr{b}", "g", "bb"], [f"n2_{b}"], name=f"ln_b{b}"),
            helper.make_node("MatMul", [f"n2_{b}", f"fc1_w{b}"], [f"h{b}"], name=f"mm_fc1{b}"),
            helper.make_node("MatMul", [f"h{b}", f"fc2_w{b}"], [f"x{b + 1}"], name=f"mm_fc2{b}"),
        ]
        inits += [_w(f"{k}_w{b}") for k in ("qkv", "proj", "fc1", "fc2")]
        t = f"x{b + 1}"
    nodes += [helper.make_node("LayerNormalization", [t, "g", "bb"], ["nf"], name="ln_f"),
              helper.make_node("MatMul", ["nf", "head_w"], ["logits"], name="mm_head")]
    inits += [_w("head_w"), _w("g", (4,)), _w("bb", (4,))]
    if extra_linear:
        nodes.append(helper.make_node("MatMul", ["logits", "extra_w"], ["more"], name="mm_extra"))
        inits.append(_w("extra_w"))
    graph = helper.make_graph(nodes, "vit", [helper.make_tensor_value_info("images", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph)


def test_nodes_get_the_module_names():
    proto = _vit_like(depth=2)
    counts = name_vit_nodes(proto, depth=2)
    names = [n.name for n in proto.graph.node]
    assert counts == {"linear": 9, "norm": 5, "softmax": 2, "attention_matmul": 4, "attention": 0, "conv": 1,
                      "renamed": 14}, counts
    assert names[:10] == ["patch_embed.proj", "blocks.0.norm1", "blocks.0.attn.qkv", "blocks.0.attn.matmul_qk",
                          "blocks.0.attn.softmax", "blocks.0.attn.matmul_av", "blocks.0.attn.proj", "blocks.0.norm2",
                          "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"], names
    assert names[-2:] == ["norm", "head"], names
    assert "blocks.1.attn.matmul_av" in names


def test_given_module_names_are_used_in_call_order():
    proto = _vit_like(depth=1)
    linears = ["l.a", "l.b", "l.c", "l.d", "l.e"]
    counts = name_vit_nodes(proto, depth=1, linears=linears, norms=["n.a", "n.b", "n.c"])
    inits = {t.name for t in proto.graph.initializer}
    weighted = [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert counts["renamed"] == 8 and weighted == linears, (counts, weighted)


def test_a_count_mismatch_renames_nothing():
    proto = _vit_like(depth=1, extra_linear=True)
    before = [n.name for n in proto.graph.node]
    counts = name_vit_nodes(proto, depth=1)
    assert counts["renamed"] == 0 and counts["linear"] == 6, counts
    assert [n.name for n in proto.graph.node] == before


def test_module_calls_lists_instances_in_call_order():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.a(self.b(self.a(x)))

    out, calls = module_calls(Twice(), torch.zeros(1, 2), (torch.nn.Linear,))
    assert tuple(out.shape) == (1, 2)
    assert calls[torch.nn.Linear] == ["a", "b", "a"], calls
