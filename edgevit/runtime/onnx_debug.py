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
runs on the unmodified artifact (see :func:`edgevit.verify.verify`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

PASS_THROUGH = ("Cast", "Identity")
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


class _Graph:
    def __init__(self, graph):
        self.nodes = list(graph.node)
        self.initializers = {t.name for t in graph.initializer}
        self.producer = {}
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers.setdefault(inp, []).append(node)

    def next_op(self, tensor: str, op_types: tuple[str, ...], input_index: int | None = None):
        """The (node, index) consuming ``tensor`` (through Cast/Identity) whose op is in ``op_types``."""
        frontier, seen = [tensor], set()
        while frontier:
            t = frontier.pop()
            if t in seen:
                continue
            seen.add(t)
            for node in self.consumers.get(t, []):
                if node.op_type in op_types and (input_index is None or (
                        len(node.input) > input_index and node.input[input_index] == t)):
                    return node
                if node.op_type in PASS_THROUGH:
                    frontier.extend(node.output)
        return None

    def block_input(self, start) -> str | None:
        """Walk backwards from ``start`` (a node) to the LayerNorm feeding this attention."""
        queue, seen, visited = deque([start]), set(), 0
        while queue and visited < MAX_BACKWARD_NODES:
            node = queue.popleft()
            visited += 1
            for inp in node.input:
                if not inp or inp in seen or inp in self.initializers:
                    continue
                seen.add(inp)
                users = {n.op_type for n in self.consumers.get(inp, [])}
                if "ReduceMean" in users and "Sub" in users and node.op_type != "LayerNormalization":
                    prod = self.producer.get(inp)
                    if prod is None or prod.op_type not in ("ReduceMean",):
                        return inp  # decomposed LayerNorm: x feeds mean and x - mean
                prod = self.producer.get(inp)
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
    g = _Graph(model.graph)
    sites = []
    for index, node in enumerate(g.nodes):
        if node.op_type == "Softmax":
            matmul = g.next_op(node.output[0], ("MatMul",), input_index=0)
            if matmul is None:
                continue
            form = "decomposed"
        elif node.op_type in FUSED_ATTENTION_OPS:
            matmul = node
            form = "fused"
        else:
            continue
        out, layout = matmul.output[0], "BHND"
        transpose = g.next_op(out, ("Transpose",))
        if transpose is not None:
            reshape = g.next_op(transpose.output[0], ("Reshape",))
            if reshape is not None:
                out, layout = reshape.output[0], "BNC"
        if form == "fused" and layout == "BHND":
            attrs = {a.name for a in node.attribute}
            if "q_num_heads" in attrs or node.domain == "com.microsoft":
                layout = "BNC"  # 3-D inputs: the op merges heads itself
        sites.append(AttentionSite(
            block=len(sites), form=form, attn_output=out, layout=layout,
            block_input=g.block_input(node), node=_label(node, index),
        ))
    return sites


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
