"""What edgevit calls things: the one table of precisions and the file names of the artifacts.

Every precision edgevit knows is a row of :data:`PRECISION_TABLE` (as Ultralytics'
``export_formats()`` is for its formats); the tuples below are read off it, so a precision is
added or changed here and nowhere else. ``onnx`` marks the precisions ``edgevit quantize``
builds as ONNX graphs (and that verify, bench and the tolerance table know); the others
(``int4``, ``mixed``) exist only as TensorRT engine precisions recorded in the manifest.

An export directory holds::

    edgevit.json          MANIFEST_NAME: the manifest
    model.onnx            onnx_file("fp32"), with model.onnx.data (ONNX_DATA_FILE) for large weights
    model.fp16.onnx ...   onnx_file(precision) for the other ONNX precisions
    calibration.json      CALIBRATION_CACHE: int8/fp8 activation ranges, reused while valid
    model.plan            engine_file(): a TensorRT engine (any ENGINE_SUFFIXES name is taken)

Imports nothing of edgevit (bottom layer).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    """One precision: its name, whether edgevit builds it as an ONNX graph, whether it is
    quantized (Q/DQ nodes, calibrated), and whether its graphs are plain float (the dtypes a
    graph's inputs/outputs and the PyTorch reference runner can take)."""

    name: str
    onnx: bool
    quantized: bool
    float: bool
    description: str


PRECISION_TABLE: tuple[Precision, ...] = (
    Precision("fp32", onnx=True, quantized=False, float=True, description="float32: the exported graph"),
    Precision("fp16", onnx=True, quantized=False, float=True, description="float16 weights and activations"),
    Precision("bf16", onnx=True, quantized=False, float=True, description="bfloat16 weights and activations"),
    Precision("int8", onnx=True, quantized=True, float=False, description="int8 Q/DQ on the Linear inputs"),
    Precision("fp8", onnx=True, quantized=True, float=False, description="float8 e4m3 Q/DQ on the Linear inputs"),
    Precision("int4", onnx=False, quantized=True, float=False, description="TensorRT engines only"),
    Precision("mixed", onnx=False, quantized=False, float=False, description="TensorRT engines only"),
)

PRECISIONS = tuple(p.name for p in PRECISION_TABLE)
"""Every precision an artifact may record (the manifest, TensorRT builds)."""
ONNX_PRECISIONS = tuple(p.name for p in PRECISION_TABLE if p.onnx)
"""The precisions edgevit builds as ONNX graphs (quantize, verify, bench, the tolerance table)."""
QUANTIZED = tuple(p.name for p in PRECISION_TABLE if p.onnx and p.quantized)
"""ONNX precisions with Q/DQ nodes, built from calibrated ranges."""
FLOAT_PRECISIONS = tuple(p.name for p in PRECISION_TABLE if p.float)
"""Plain float precisions: graph input/output dtypes (``--io-dtype``), PyTorch runner dtypes."""

ARTIFACT_FORMATS = ("onnx", "tensorrt")
"""The ``format`` of a manifest's artifacts: an ONNX graph or a TensorRT engine."""
MANIFEST_NAME = "edgevit.json"
ONNX_DATA_FILE = "model.onnx.data"
CALIBRATION_CACHE = "calibration.json"
CALIBRATION_CACHE_FORMAT = "edgevit-calibration-cache"
"""The ``format`` field of a calibration cache: how an export tells its own cache from a user's file."""
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")


def onnx_file(precision: str) -> str:
    """The file name of the ``precision`` ONNX graph in an export directory."""
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"precision must be one of {list(ONNX_PRECISIONS)}, got {precision!r}")
    return "model.onnx" if precision == "fp32" else f"model.{precision}.onnx"


ONNX_FILES = {p: onnx_file(p) for p in ONNX_PRECISIONS}
"""precision -> ONNX file name (model.onnx, model.fp16.onnx, ...)."""


def engine_file(precision: str | None = None) -> str:
    """The default file name of a TensorRT engine: ``model.plan``, or ``model.<precision>.plan``
    where engines of several precisions share a directory."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return "model.plan" if precision is None else f"model.{precision}.plan"


# The MLP activations a ViT config takes (ViTConfig.act). Here, not in models/vit.py, so that the CLI
# can offer them (``--act``) without importing torch.
ACTIVATIONS = ("gelu", "gelu_tanh", "quick_gelu", "relu")


__all__ = [
    "ACTIVATIONS",    "ARTIFACT_FORMATS", "CALIBRATION_CACHE", "CALIBRATION_CACHE_FORMAT", "ENGINE_SUFFIXES", "FLOAT_PRECISIONS", "MANIFEST_NAME", "ONNX_DATA_FILE",
    "ONNX_FILES", "ONNX_PRECISIONS", "PRECISIONS", "PRECISION_TABLE", "Precision", "QUANTIZED", "engine_file",
    "onnx_file",
]
