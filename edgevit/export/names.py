"""Name the exported graph's nodes after the PyTorch modules they come from.

The dynamo exporter names nodes ``node_MatMul_12``; after :func:`name_vit_nodes` the Linear
MatMuls are ``blocks.0.attn.qkv`` ... ``head``, the patch embedding ``patch_embed.proj``, the
attention MatMuls ``blocks.0.attn.matmul_qk`` / ``blocks.0.attn.matmul_av``, the Softmax
``blocks.0.attn.softmax`` and the LayerNorms ``blocks.0.norm1`` ... ``norm``; SAM's: the two MatMuls of
each block's decomposed relative position bias (the query against a constant 3-D table)
``blocks.0.attn.rel_pos_0`` / ``rel_pos_1``, the neck's convolutions ``neck.0`` / ``neck.2``. Precision recipes
select layers by these names (``--exclude 'blocks.11.mlp.*'``), and TensorRT reports its layers
with them, so an engine's per-layer report reads like the model.
"""

from __future__ import annotations

from ..onnx_graph import Graph, rename_nodes

LINEARS_PER_BLOCK = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def name_vit_nodes(proto, depth: int, linears: list[str] | None = None,
                   norms: list[str] | None = None) -> dict[str, int]:
    """Rename the ViT's nodes in place (graph order = block order). Returns counts per kind.

    ``linears`` / ``norms``: the module names of the Linear / LayerNorm calls of one forward pass in
    call order (:func:`module_calls`); None means a classifier's (4 Linears per block plus the head,
    two LayerNorms per block plus the final one). Nodes are renamed only when the graph has exactly
    as many weighted MatMuls and LayerNorms; otherwise nothing is renamed and the counts say what
    was found.
    """
    if linears is None:
        linears = [f"blocks.{b}.{part}" for b in range(depth) for part in LINEARS_PER_BLOCK] + ["head"]
    if norms is None:
        norms = [f"blocks.{b}.norm{k}" for b in range(depth) for k in (1, 2)] + ["norm"]
    g = Graph(proto, subgraphs=False)
    constant_mm = [n for n in g.nodes_of("MatMul", "Gemm") if g.is_weighted(n)]
    # a Linear's weight is 2-D; SAM's relative position MatMuls read (side, head_dim, side) tables
    weighted = [n for n in constant_mm if _constant_rank(g, n) == 2]
    rel_pos = [n for n in constant_mm if _constant_rank(g, n) != 2]
    activation_mm = [n for n in g.nodes_of("MatMul") if not g.is_weighted(n)]
    norm_nodes = g.nodes_of("LayerNormalization")
    softmax = g.nodes_of("Softmax")
    attention = g.nodes_of("Attention")
    convs = g.nodes_of("Conv")
    counts = {"linear": len(weighted), "norm": len(norm_nodes), "softmax": len(softmax),
              "attention_matmul": len(activation_mm), "attention": len(attention), "conv": len(convs)}
    if len(weighted) != len(linears) or len(norm_nodes) != len(norms):
        counts["renamed"] = 0
        return counts
    rename_nodes(weighted, linears)
    rename_nodes(norm_nodes, norms)
    if len(softmax) == depth and len(activation_mm) == 2 * depth:
        rename_nodes(softmax, (f"blocks.{b}.attn.softmax" for b in range(depth)))
        rename_nodes(activation_mm, (f"blocks.{b}.attn.matmul_{part}" for b in range(depth) for part in ("qk", "av")))
    if len(attention) == depth:
        rename_nodes(attention, (f"blocks.{b}.attn.attention" for b in range(depth)))
    if len(rel_pos) == 2 * depth:
        rename_nodes(rel_pos, (f"blocks.{b}.attn.rel_pos_{k}" for b in range(depth) for k in (0, 1)))
    if len(convs) in (1, 3):  # the patch embedding, then SAM's neck
        rename_nodes(convs, ["patch_embed.proj", "neck.0", "neck.2"])
    counts["renamed"] = len(weighted) + len(norm_nodes)
    return counts


def _constant_rank(g: Graph, node) -> int:
    """The rank of the node's first constant (initializer) input."""
    name = next(i for i in node.input[:2] if i in g.initializers)
    return len(g.initializers[name].dims)


def module_calls(module, example, kinds: tuple) -> tuple[object, dict[type, list[str]]]:
    """(output, calls) of one forward pass of ``module`` on ``example``: per module class in
    ``kinds``, the names of its instances in the order the pass calls them (twice if called twice)."""
    import torch

    calls: dict = {kind: [] for kind in kinds}
    handles = []
    for name, sub in module.named_modules():
        kind = next((k for k in kinds if isinstance(sub, k)), None)
        if kind is not None:
            handles.append(sub.register_forward_hook(lambda _m, _i, _o, k=kind, n=name: calls[k].append(n)))
    try:
        with torch.no_grad():
            out = module(example)
    finally:
        for h in handles:
            h.remove()
    return out, calls
