"""PyTorch ViT -> verified ONNX graph, and the TensorRT lint of ONNX graphs.

onnx.py (export_onnx, ExportConfig), rewrites.py (onnxscript rules applied at export), names.py
(module names on nodes), checks.py (what the graph must hold, ORT vs PyTorch), artifacts.py
(manifest, install), lint.py (checks on :mod:`edgevit.onnx_graph`), findings.py (the report),
tensorrt_ops.py (TensorRT's ONNX operator table).

``import edgevit.export`` imports neither torch, onnxruntime nor tensorrt: the exporter's names
(:mod:`.onnx`, which needs torch) load on first use, so the lint (and ``edgevit build``, which lints
the graph it builds) runs without torch.
"""

import importlib

from .lint import (
    Finding,
    LintReport,
    lint_onnx,
    load_onnx,
    tensorrt_op_support,
    tensorrt_op_table,
)
from ..specs import parse_batch
from .tensorrt_ops import ATTENTION_FORMS, DEFAULT_ATTENTION

_LAZY = {name: ".onnx" for name in ("DEFAULT_OPSET", "ExportConfig", "ExportResult", "canonicalize_gelu", "export_onnx",
                                     "fuse_attention")}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ATTENTION_FORMS", "DEFAULT_ATTENTION", "DEFAULT_OPSET", "ExportConfig", "ExportResult", "Finding",
    "LintReport", "canonicalize_gelu", "export_onnx", "fuse_attention", "lint_onnx", "load_onnx", "parse_batch",
    "tensorrt_op_support", "tensorrt_op_table",
]
