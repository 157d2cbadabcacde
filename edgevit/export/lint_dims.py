"""The lint checks of a graph's dynamic dims: a Reshape constant that fixes the batch of a dynamic-batch graph
(``baked-batch``, ``baked-batch-output``) or the patch grid of a graph of several sizes (``baked-size``).
:func:`edgevit.export.lint.lint_onnx` runs them with the others."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..onnx_graph import Graph
from ..onnx_graph import dims as value_dims
from .findings import Finding, grouped as _group, listed as _names


def batch_dims(g: Graph) -> tuple[bool, set]:
    """(dynamic, {static batch values}) over the graph's real inputs."""
    dynamic, static = False, set()
    for inp in g.model.graph.input:
        if inp.name in g.initializers:
            continue
        dims = value_dims(inp)
        if not dims:
            continue
        if isinstance(dims[0], int) and dims[0] > 0:
            static.add(dims[0])
        else:
            dynamic = True
    return dynamic, static


def check_batch(g: Graph) -> list[Finding]:
    dynamic, static = batch_dims(g)
    baked: dict[str, list[str]] = defaultdict(list)
    static_baked: list[str] = []
    for node in g.nodes:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape = g.constant(node.input[1])
        if shape is None or shape.ndim != 1 or shape.size == 0:
            continue
        first = int(shape[0])
        if first in (-1, 0):  # -1 infers, 0 copies the input's dim (allowzero=0): batch-agnostic
            continue
        data_dims = g.shapes.get(node.input[0])
        lead = data_dims[0] if data_dims else None
        if dynamic and isinstance(lead, str):
            baked[f"Reshape target {shape.tolist()} fixes batch {first} on a tensor whose leading dim is the "
                  f"dynamic {lead!r}: other batch sizes fail or mix samples; use -1 (or 0) there"].append(
                g.node_name(node))
        elif static and lead in static and first == lead and first > 1:
            static_baked.append(g.node_name(node))
    out = list(_group(baked, "error", "baked-batch"))
    if static_baked:
        out.append(Finding("info", "static-batch",
                           f"static batch {sorted(static)[0]} is baked into {len(static_baked)} Reshape constant(s) "
                           f"({_names(static_baked)}); the graph runs at that batch only (export with --batch "
                           "MIN,OPT,MAX for a dynamic one)", tuple(static_baked)))
    if dynamic:
        for out_vi in g.model.graph.output:
            dims = g.shapes.get(out_vi.name) or value_dims(out_vi)
            if dims and isinstance(dims[0], int) and dims[0] > 0:
                producer = g.producer.get(out_vi.name)
                out.append(Finding(
                    "error", "baked-batch-output",
                    f"input batch is dynamic but output {out_vi.name!r} has fixed batch {dims[0]}",
                    (g.node_name(producer),) if producer is not None else (out_vi.name,)))
    return out


def _folds_into_first(shape, dims) -> bool:
    """A target (-1, a, b, ..) whose a*b*.. is the product of a suffix of the input's static dims: every dynamic dim
    folds into the -1, whatever the size (SAM's windows, (B, rows/w, cols/w, w, w, C) -> (-1, w*w, C))."""
    if int(shape[0]) != -1:
        return False
    want, have = int(np.prod(shape[1:])), 1
    for d in reversed(dims):
        if have == want:
            return True
        if not isinstance(d, int):
            return False
        have *= d
    return have == want


def check_size(g: Graph) -> list[Finding]:
    """Dynamic height/width: a constant Reshape target (no -1 or 0 past the batch) on a tensor with a dynamic
    dim past the batch fixes the grid or token count to the export's size; other sizes fail or mix tokens."""
    sized = any(isinstance(d, str) for inp in g.model.graph.input if inp.name not in g.initializers
                for d in (value_dims(inp) or [])[1:])
    if not sized:
        return []
    baked = []
    for node in g.nodes:
        shape = g.constant(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
        dims = g.shapes.get(node.input[0]) if shape is not None else None
        if shape is None or shape.ndim != 1 or not dims:
            continue
        if (any(isinstance(d, str) for d in dims[1:]) and not any(int(v) in (-1, 0) for v in shape[1:])
                and not _folds_into_first(shape, dims)):
            baked.append(g.node_name(node))
    return [] if not baked else [Finding("error", "baked-size",
                    f"the input's height/width are dynamic, but {len(baked)} Reshape constant(s) ({_names(baked)}) fix a "
                    "dynamic dim (the patch grid or token count) to one size: other sizes fail or mix tokens; "
                    "compute the target from Shape (as torch.export does) or use -1", tuple(baked))]
