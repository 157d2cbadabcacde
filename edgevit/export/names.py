"""Name the exported graph's nodes after the PyTorch modules they come from.

The dynamo exporter names nodes ``node_MatMul_12``; after :func:`name_vit_nodes` the Linear
MatMuls are ``blocks.0.attn.qkv`` ... ``head``, the patch embedding ``patch_embed.proj``, the
attention MatMuls ``blocks.0.attn.matmul_qk`` / ``blocks.0.attn.matmul_av``, the Softmax
``blocks.0.attn.softmax`` and the LayerNorms ``blocks.0.norm1`` ... ``norm``. Precision recipes
select layers by these names (``--exclude 'blocks.11.mlp.*'``), and TensorRT reports its layers
with them, so an engine's per-layer report reads like the model.
"""

from __future__ import annotations

LINEARS_PER_BLOCK = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def _initializers(proto) -> set[str]:
    return {t.name for t in proto.graph.initializer}


def name_vit_nodes(proto, depth: int) -> dict[str, int]:
    """Rename the ViT's nodes in place (graph order = block order). Returns counts per kind.

    Nodes are renamed only when the graph has exactly the ViT's structure (4 weighted MatMuls
    per block plus the head, two LayerNorms per block plus the final one); otherwise nothing is
    renamed and the counts say what was found.
    """
    inits = _initializers(proto)
    nodes = list(proto.graph.node)
    weighted = [n for n in nodes if n.op_type in ("MatMul", "Gemm") and any(i in inits for i in n.input[:2])]
    activation_mm = [n for n in nodes if n.op_type == "MatMul" and not any(i in inits for i in n.input[:2])]
    norms = [n for n in nodes if n.op_type == "LayerNormalization"]
    softmax = [n for n in nodes if n.op_type == "Softmax"]
    attention = [n for n in nodes if n.op_type == "Attention"]
    convs = [n for n in nodes if n.op_type == "Conv"]
    counts = {"linear": len(weighted), "norm": len(norms), "softmax": len(softmax),
              "attention_matmul": len(activation_mm), "attention": len(attention), "conv": len(convs)}
    if len(weighted) != 4 * depth + 1 or len(norms) != 2 * depth + 1:
        counts["renamed"] = 0
        return counts
    names = [f"blocks.{b}.{part}" for b in range(depth) for part in LINEARS_PER_BLOCK] + ["head"]
    for node, name in zip(weighted, names):
        node.name = name
    for node, name in zip(norms, [f"blocks.{b}.norm{k}" for b in range(depth) for k in (1, 2)] + ["norm"]):
        node.name = name
    if len(softmax) == depth and len(activation_mm) == 2 * depth:
        for b in range(depth):
            softmax[b].name = f"blocks.{b}.attn.softmax"
            activation_mm[2 * b].name = f"blocks.{b}.attn.matmul_qk"
            activation_mm[2 * b + 1].name = f"blocks.{b}.attn.matmul_av"
    if len(attention) == depth:
        for b, node in enumerate(attention):
            node.name = f"blocks.{b}.attn.attention"
    if len(convs) == 1:
        convs[0].name = "patch_embed.proj"
    counts["renamed"] = len(weighted) + len(norms)
    return counts
