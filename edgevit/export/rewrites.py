"""The pattern rewrites export applies to the exporter's graph, written as onnxscript rewrite
rules (:func:`edgevit.onnx_graph.apply_rewrites`) rather than hand-written matching:

* :func:`canonicalize_gelu` puts the erf GELU in the order ONNX Runtime's GeluFusion matches;
* :func:`fuse_attention` turns Q-pre-scaled ``MatMul -> Softmax -> MatMul`` into the opset-23
  ``Attention`` op (for exporters that do not emit it).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ExportError
from ..onnx_graph import Graph, apply_rewrites, default_opset

ATTENTION_OPSET = 23


def _scalar(value) -> float | None:
    """The value of a one-element constant (initializer or Constant output), else None."""
    import onnx_ir as ir

    tensor = ir.convenience.get_const_tensor(value) if value is not None else None
    if tensor is None or math.prod(tensor.shape.numpy()) != 1:
        return None
    return float(tensor.numpy().reshape(-1)[0])


# ---------------------------------------------------------------------------- GELU
def _gelu_exporter_order(op, x, sqrt2, one, half):
    return op.Mul(x, op.Mul(half, op.Add(op.Erf(op.Div(x, sqrt2)), one)))


def _gelu_is_exact(context, x, sqrt2, one, half, **_) -> bool:
    root2 = _scalar(sqrt2)
    return root2 is not None and bool(np.isclose(root2, np.sqrt(2.0))) and _scalar(one) == 1.0 \
        and _scalar(half) == 0.5


def _gelu_fusable_order(op, x, sqrt2, one, half):
    return op.Mul(op.Mul(x, op.Add(op.Erf(op.Div(x, sqrt2)), one)), half)


def canonicalize_gelu(proto) -> tuple[object, int]:
    """Reorder the exporter's erf GELU, ``x * (0.5 * (1 + erf(x / sqrt2)))``, into
    ``(x * (1 + erf(x / sqrt2))) * 0.5``. Returns (proto, number of GELUs reordered).

    Exact in floating point (scaling by 0.5 is exact), still plain ONNX ops that TensorRT parses,
    and the order ONNX Runtime's GeluFusion matches, so ORT runs one Gelu kernel instead of five
    elementwise ops per block.
    """
    from onnxscript.rewriter import pattern

    rule = pattern.RewriteRule(_gelu_exporter_order, _gelu_fusable_order, _gelu_is_exact, name="CanonicalizeGelu")
    return apply_rewrites(proto, rule.commute())  # every operand order of the Adds and Muls


# ---------------------------------------------------------------------------- attention
def fuse_attention(proto):
    """Rewrite each ``MatMul(Q*s, Transpose(K)) -> Softmax -> MatMul(., V)`` into one opset-23
    ``Attention(Q, K, V, scale=s)``. Returns (new proto, number of blocks fused).

    Q, K, V must be 4D (batch, heads, tokens, head_dim), as in the ViT's "math" attention (ranks
    from ONNX shape inference). The graph's default-domain opset must already be >= 23.
    """
    from onnxscript.rewriter import pattern

    opset = default_opset(proto)
    if opset < ATTENTION_OPSET:
        raise ExportError(f"fuse_attention needs opset >= {ATTENTION_OPSET}, the graph has {opset}")
    shapes = Graph(proto).shapes

    def rank4(*values) -> bool:
        return all(v is not None and len(shapes.get(v.name) or ()) == 4 for v in values)

    def k_transposed(kt) -> bool:
        perm = kt.producer().attributes.get("perm") if kt.producer() is not None else None
        return perm is not None and list(perm.as_ints()) == [0, 1, 3, 2]

    def softmax_last(probs) -> bool:
        axis = probs.producer().attributes.get("axis")
        return (axis.as_int() if axis is not None else -1) in (-1, 3)

    def scaled(op, q, s, k, v, scale_op):
        kt = op.Transpose(k, _outputs=["kt"])
        probs = op.Softmax(op.MatMul(scale_op(op, q, s), kt), _outputs=["probs"])
        return op.MatMul(probs, v)

    def mul_q(op, q, s, k, v):
        return scaled(op, q, s, k, v, lambda op, q, s: op.Mul(q, s))

    def div_q(op, q, s, k, v):
        return scaled(op, q, s, k, v, lambda op, q, s: op.Div(q, s))

    def unscaled(op, q, k, v):
        kt = op.Transpose(k, _outputs=["kt"])
        return op.MatMul(op.Softmax(op.MatMul(q, kt), _outputs=["probs"]), v)

    def check(context, q, k, v, kt, probs, s=None, **_) -> bool:
        return (k_transposed(kt) and softmax_last(probs) and rank4(q, k, v)
                and (s is None or _scalar(s) is not None))

    def attention(scale_of):
        def replace(op, q, k, v, s=None, **_):
            return op.Attention(q, k, v, scale=float(scale_of(s)))
        return replace

    rules = [
        *pattern.RewriteRule(mul_q, attention(lambda s: _scalar(s)), check, name="FuseAttentionMulQ").commute(),
        pattern.RewriteRule(div_q, attention(lambda s: 1.0 / _scalar(s)), check, name="FuseAttentionDivQ"),
        pattern.RewriteRule(unscaled, attention(lambda s: 1.0), check, name="FuseAttention"),
    ]
    return apply_rewrites(proto, rules)


__all__ = ["ATTENTION_OPSET", "canonicalize_gelu", "fuse_attention"]
