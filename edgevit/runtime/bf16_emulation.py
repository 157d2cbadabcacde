"""Run bf16 graphs on ONNX Runtime's CPU provider, which has almost no bf16 kernels.

ONNX Runtime 1.32's CPU provider runs Cast and LayerNormalization in bf16 but not MatMul, Add,
Mul, Gelu, ... (measured here: "NOT_IMPLEMENTED"). :func:`emulate_bf16` rewrites a bf16 graph
into an fp32 one that rounds every bf16 value exactly where the original graph holds it in bf16:
weights are stored as their bf16 values (exact in fp32), and after every op that produces a bf16
tensor a ``Cast(to=bf16) -> Cast(to=float)`` pair rounds the fp32 result to bf16. That is what a
GPU does for bf16 ops that accumulate in fp32 (TensorRT, cuBLAS), so accuracy measured on the
emulated graph is the bf16 graph's. The artifact on disk stays the true bf16 graph.
"""

from __future__ import annotations

import numpy as np


def has_bf16(proto) -> bool:
    from onnx import TensorProto

    if any(t.data_type == TensorProto.BFLOAT16 for t in proto.graph.initializer):
        return True
    return any(a.name == "to" and a.i == TensorProto.BFLOAT16 for n in proto.graph.node
               if n.op_type == "Cast" for a in n.attribute)


def emulate_bf16(proto):
    """An fp32 copy of a bf16 graph, with bf16 rounding at every bf16 tensor (see module doc)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    bf16, f32 = TensorProto.BFLOAT16, TensorProto.FLOAT
    proto = onnx.shape_inference.infer_shapes(proto)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output)}

    def to_fp32(t) -> None:
        if t.data_type == bf16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))

    for t in proto.graph.initializer:
        to_fp32(t)
    # bf16 graph inputs/outputs become float32 (numpy and ORT's Python API have no bf16 feed);
    # inputs are rounded to bf16 on entry, so results are those of the bf16 graph
    nodes = []
    for inp in proto.graph.input:
        if inp.type.tensor_type.elem_type == bf16:
            inp.type.tensor_type.elem_type = f32
            types[inp.name] = bf16
            nodes += _round_pair(helper, inp.name + "__entry", inp.name, bf16, f32)
    for out in proto.graph.output:
        if out.type.tensor_type.elem_type == bf16:
            out.type.tensor_type.elem_type = f32
    entry = {i.name: i.name + "__entry" for i in proto.graph.input if types.get(i.name) == bf16}
    for node in proto.graph.node:
        node.input[:] = [entry.get(i, i) for i in node.input]
        for attr in node.attribute:
            if attr.type == attr.TENSOR:
                to_fp32(attr.t)
            if node.op_type == "Cast" and attr.name == "to" and attr.i == bf16:
                attr.i = f32
        nodes.append(node)
        for i, out in enumerate(node.output):
            if types.get(out) == bf16:
                node.output[i] = out + "__unrounded"
                nodes += _round_pair(helper, out, node.output[i], bf16, f32)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    del proto.graph.value_info[:]
    return proto


def _round_pair(helper, out: str, src: str, bf16: int, f32: int) -> list:
    """Nodes computing ``out = float(bfloat16(src))``."""
    return [helper.make_node("Cast", [src], [out + "__as_bf16"], to=bf16),
            helper.make_node("Cast", [out + "__as_bf16"], [out], to=f32)]
