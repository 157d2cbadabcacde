"""PyTorch ViT -> verified ONNX graph, and the TensorRT lint of ONNX graphs.

onnx.py (export_onnx, ExportConfig), rewrites.py (onnxscript rules applied at export), names.py
(module names on nodes), checks.py (what the graph must hold, ORT vs PyTorch), artifacts.py
(manifest, install), lint.py (checks on :mod:`edgevit.onnx_graph`), findings.py (the report),
tensorrt_ops.py (TensorRT's ONNX operator table).

``import edgevit.export`` imports torch and onnx but neither onnxruntime nor tensorrt.
"""

from .lint import Finding, LintReport, lint_onnx, load_onnx, tensorrt_op_support, tensorrt_op_table
from .onnx import (
    ATTENTION_FORMS,
    DEFAULT_ATTENTION,
    DEFAULT_OPSET,
    ExportConfig,
    ExportResult,
    canonicalize_gelu,
    compare_logits,
    export_onnx,
    fuse_attention,
    parse_batch,
)

__all__ = [
    "ATTENTION_FORMS", "DEFAULT_ATTENTION", "DEFAULT_OPSET", "ExportConfig", "ExportResult", "Finding",
    "LintReport", "canonicalize_gelu", "compare_logits", "export_onnx", "fuse_attention", "lint_onnx", "load_onnx", "parse_batch",
    "tensorrt_op_support", "tensorrt_op_table",
]
