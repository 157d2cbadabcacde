"""Find each block's attention output and input in an ONNX graph, and make a debug copy that
exposes them as extra graph outputs.

The search is structural (op types and edges, never tensor or node names), so it works on
graphs that onnxslim / onnxsim / fp16 converters renamed or folded:

* decomposed attention: ``Softmax -> MatMul(attn, V) -> Transpose -> Reshape``; the Reshape
  output is the (B, N, C) attention output (heads merged, before the output projection);
* fused attention: the opset-23 ``Attention`` op (or ORT's ``com.microsoft`` ``Attention`` /
  ``MultiHeadAttention``); with 4-D inputs its output is followed by ``Transpose -> Reshape``
  (taken as the attention output), with 3-D inputs the op's output is already (B, N, C);
* each block's input (the residual stream entering the block) is the input of the first
  ``LayerNormalization`` found walking backwards from the attention (or, for a decomposed
  LayerNorm, the tensor that feeds both a ``ReduceMean`` and a ``Sub``).

``Cast`` and ``Identity`` nodes between these ops are stepped over (fp16 graphs keep Softmax
in fp32 with casts around it).

Marking intermediate tensors as outputs can change what an optimizer fuses — TensorRT in
particular may no longer fuse an attention whose intermediate is an output, and ORT may skip
fusions too. The debug copy is for *localizing* errors only; the final-output check always
runs on the unmodified artifact (see :func:`edgevit.verify.verify`). The graph is walked with
:class:`edgevit.onnx_graph.Graph`, which also makes the debug copy (:func:`mark_outputs`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..onnx_graph import Graph, mark_outputs

# Q/DQ pairs sit between the Softmax and the AV MatMul of a graph quantized with --quantize-attention
PASS_THROUGH = ("Cast", "Identity", "QuantizeLinear", "DequantizeLinear")
FUSED_ATTENTION_OPS = ("Attention", "MultiHeadAttention")
MAX_BACKWARD_NODES = 200


@dataclass(frozen=True)
class AttentionSite:
    """Where block ``block``'s attention lives in the graph."""

    block: int
    form: str  # "decomposed" or "fused"
    attn_output: str  # tensor name of the attention output
    layout: str  # "BNC" (heads merged) or "BHND" (per head; merged by the caller)
    block_input: str | None  # tensor name of the residual stream entering the block, if found
    node: str  # name (or op type and index) of the Softmax / Attention node

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _block_input(g: Graph, start) -> str | None:
    """Walk backwards from ``start`` (a node) to the LayerNorm feeding this attention."""
    queue, seen, visited = deque([start]), set(), 0
    while queue and visited < MAX_BACKWARD_NODES:
        node = queue.popleft()
        visited += 1
        for inp in node.input:
            if not inp or inp in seen or inp in g.initializers:
                continue
            seen.add(inp)
            users = {n.op_type for n in g.users(inp)}
            if "ReduceMean" in users and "Sub" in users and node.op_type != "LayerNormalization":
                prod = g.producer.get(inp)
                if prod is None or prod.op_type not in ("ReduceMean",):
                    return inp  # decomposed LayerNorm: x feeds mean and x - mean
            prod = g.producer.get(inp)
            if prod is None:
                continue
            if prod.op_type == "LayerNormalization":
                return prod.input[0]
            queue.append(prod)
    return None


def _label(node, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def find_attention_sites(model) -> list:
    """Every attention in ``model`` (an ``onnx.ModelProto``), in graph order, one per block."""
    g = Graph(model, subgraphs=False)
    sites = []
    for index, node in enumerate(g.nodes):
        if node.op_type == "Softmax":
            matmul = g.next_op(node.output[0], ("MatMul",), input_index=0, through=PASS_THROUGH)
            if matmul is None:
                continue
            form = "decomposed"
        elif node.op_type in FUSED_ATTENTION_OPS:
            matmul = node
            form = "fused"
        else:
            continue
        out, layout = matmul.output[0], "BHND"
        transpose = g.next_op(out, ("Transpose",), through=PASS_THROUGH)
        if transpose is not None:
            reshape = g.next_op(transpose.output[0], ("Reshape",), through=PASS_THROUGH)
            if reshape is not None:
                out, layout = reshape.output[0], "BNC"
        if form == "fused" and layout == "BHND":
            attrs = {a.name for a in node.attribute}
            if "q_num_heads" in attrs or node.domain == "com.microsoft":
                layout = "BNC"  # 3-D inputs: the op merges heads itself
        sites.append(AttentionSite(
            block=len(sites), form=form, attn_output=out, layout=layout,
            block_input=_block_input(g, node), node=_label(node, index),
        ))
    return sites


__all__ = ["AttentionSite", "find_attention_sites", "mark_outputs"]
