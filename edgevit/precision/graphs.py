"""Precision graphs: fp16, bf16, int8 and fp8 versions of the fp32 ``model.onnx``.

TensorRT 11 takes precision only from the graph (strongly typed), and TensorRT 10 builds the
same graph with matching builder flags, so every decision is written here, as casts and Q/DQ
nodes, and ONNX Runtime proves on CPU what it does to accuracy (:mod:`edgevit.precision.gate`).
What goes where is the :class:`~edgevit.precision.recipe.PrecisionRecipe`.

fp16 / bf16
    ONNX Runtime's own converter (``onnxruntime.transformers.float16``) turns weights and
    activations to fp16, leaving the ops of ``keep_fp32`` in fp32 behind casts:
    LayerNormalization always (docs/design.md §5.1), Softmax too by default (see ``KEEP_FP32``). The
    graph is simplified before conversion (onnxconverter-common's converter, of which ORT's is a
    copy, breaks on ``Identity`` nodes forwarding initializers; the exported graph has none after
    onnxslim, and :func:`edgevit.onnx_graph.bypass_nodes` removes any left). bf16 is the same graph with every
    fp16 type turned bf16 and every weight re-rounded from its fp32 value (the converter has no
    bf16 mode). Inputs/outputs stay fp32 unless ``io_dtype`` says otherwise.
int8 / fp8
    ONNX Runtime's Q/DQ quantizer (``quantize_static``, QDQ format) with ranges from
    :mod:`edgevit.precision.calibration` (passed through its calibration cache, so the quantizer
    never calibrates by itself). Symmetric, zero point 0. int8 weights per output channel (axis 1
    of a MatMul's (in, out) weight, axis 0 of Conv); fp8 (E4M3) weights per tensor, as NVIDIA
    Model Optimizer's FP8 default does. Activations per tensor. Q/DQ on the attention MatMuls
    (``quantize_attention``) go on Q, Kᵀ, the softmax output and V: what TensorRT's INT8 fused
    MHA takes. The rest of the graph is then ``base`` precision: fp16 (default: what a TensorRT
    engine runs anyway) or fp32.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ExportError
from ..input_contract import prefix_nodes
from ..formats import BASE_PRECISION, CAST, EXPORTED, Precision, precision
from ..onnx_graph import Graph, bypass_nodes, topologically_sorted
from .recipe import QUANTIZED_OP_TYPES, PrecisionRecipe, activation_inputs, quantizable_nodes

# Q/DQ take float8 types and fp16 scales from opset 19 (TensorRT 10 parses opsets up to 20+)
QDQ_TYPED_OPSET = 19
_INT8, _FLOAT16 = "INT8", "FLOAT16"  # ONNX element types: ORT's quantizer's and float16 converter's output


def numpy_type(row: Precision):
    """The numpy (or ml_dtypes) dtype of ``row``'s element type."""
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, row.numpy_type, None) or row.numpy_type)


def build_precision_graph(fp32_path: str | Path, recipe: PrecisionRecipe, amax: dict[str, float] | None = None,
                          nodes: list[str] | None = None):
    """The ``recipe.precision`` graph of the fp32 ONNX at ``fp32_path`` (an onnx.ModelProto).

    int8/fp8 need ``amax`` (tensor -> range, from :func:`edgevit.precision.calibration.calibrate`);
    ``nodes`` overrides which nodes are quantized (sensitivity analysis quantizes one at a time).
    """
    import onnx

    fp32_path = Path(fp32_path)
    row = precision(recipe.precision, onnx=True)
    if row.graph == EXPORTED:
        return onnx.load(str(fp32_path))
    if row.graph == CAST:
        return _reduced_float(onnx.load(str(fp32_path)), row, recipe.keep_fp32, recipe.io_dtype)
    if not amax:
        raise ExportError(f"the {recipe.precision} graph needs calibration ranges (amax); none were given")
    proto = onnx.load(str(fp32_path))
    nodes = quantizable_nodes(proto, recipe) if nodes is None else list(nodes)
    if not nodes:
        raise ExportError(f"the {recipe.precision} recipe selects no node to quantize in {fp32_path} "
                          f"(patterns {list(recipe.quantize_patterns())}, exclude {list(recipe.exclude)}); "
                          "was the graph exported by edgevit (it names nodes after the model's modules)?")
    qdq = _quantize_qdq(fp32_path, proto, recipe, row, amax, nodes)
    base = precision(recipe.base)
    if row.element != _INT8 or base.graph != EXPORTED:
        _require_opset(qdq, QDQ_TYPED_OPSET)
    if base.graph == CAST:
        qdq = _reduced_float(qdq, base, recipe.keep_fp32, recipe.io_dtype)
    return qdq


# ------------------------------------------------------------------------------ plain float casts
def _reduced_float(proto, row: Precision, keep_fp32, io_dtype: str):
    """The ``row`` (a :data:`~edgevit.formats.CAST` precision) version of a float32 graph."""
    from onnx import TensorProto, numpy_helper
    from onnxruntime.transformers.float16 import convert_float_to_float16

    bypass_nodes(proto, "Identity")  # the fp16 converter mishandles Identities forwarding initializers
    originals = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer
                 if t.data_type == TensorProto.FLOAT}
    # a raw-pixel input (edgevit export --input uint8): its Cast/Div/Sub/Transpose stay float32, so the
    # normalization is computed as the fp32 graph computes it and the reduced precision starts at the model
    raw = proto.graph.input[0].type.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16,
                                                                  TensorProto.BFLOAT16)
    prefix = prefix_nodes(proto) if raw else []
    converted = convert_float_to_float16(proto, keep_io_types=(io_dtype == BASE_PRECISION),
                                         op_block_list=list(keep_fp32), node_block_list=prefix or None)
    _drop_cast_round_trips(converted, set(prefix))
    if row.element != _FLOAT16:
        _retype_fp16(converted, originals, row)
    return topologically_sorted(converted)


def _drop_cast_round_trips(proto, float32_nodes: set) -> None:
    """Remove the float32 -> float16 -> float32 Cast pairs the fp16 converter puts between two nodes it was told
    to keep in float32 (``float32_nodes``: a raw-pixel graph's preprocessing): a round trip through fp16 would
    round the normalization it is meant to keep exact."""
    from onnx import TensorProto

    def to(node):
        return next((a.i for a in node.attribute if a.name == "to"), None)

    producers = {o: n for n in proto.graph.node for o in n.output}
    rename = {}
    for node in proto.graph.node:
        first = producers.get(node.input[0]) if node.op_type == "Cast" and to(node) == TensorProto.FLOAT else None
        source = producers.get(first.input[0]) if first is not None and first.op_type == "Cast" else None
        if source is not None and to(first) == TensorProto.FLOAT16 and source.name in float32_nodes:
            rename[node.output[0]] = first.input[0]
    if not rename:
        return
    kept = [n for n in proto.graph.node if not (n.op_type == "Cast" and n.output[0] in rename)]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    used = {i for n in kept for i in n.input} | {o.name for o in proto.graph.output}
    kept = [n for n in kept if not (n.op_type == "Cast" and all(o not in used for o in n.output))]
    del proto.graph.node[:]
    proto.graph.node.extend(kept)


def _retype_fp16(proto, originals: dict, row: Precision) -> None:
    """Retype a float16 graph to ``row``'s element type in place; weights are rounded from their fp32
    originals (ONNX Runtime's converter has float16 only)."""
    from onnx import TensorProto, numpy_helper

    f16, b16 = TensorProto.FLOAT16, getattr(TensorProto, row.element)
    dtype = numpy_type(row)

    def retype(value_info) -> None:
        t = value_info.type.tensor_type
        if t.elem_type == f16:
            t.elem_type = b16

    def retyped_tensor(t, source=None) -> None:
        values = originals.get(t.name) if source is None else source
        if values is None:
            values = numpy_helper.to_array(t).astype(np.float32)
        new = numpy_helper.from_array(np.asarray(values, dtype=np.float32).astype(dtype), t.name)
        t.CopyFrom(new)

    for t in proto.graph.initializer:
        if t.data_type == f16:
            retyped_tensor(t)
    for vi in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        retype(vi)
    for node in proto.graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == f16:
                attr.i = b16
            elif attr.type == attr.TENSOR and attr.t.data_type == f16:
                retyped_tensor(attr.t, numpy_helper.to_array(attr.t).astype(np.float32))


# ------------------------------------------------------------------------------ Q/DQ
def _quantize_qdq(fp32_path: Path, proto, recipe: PrecisionRecipe, row: Precision, amax: dict[str, float],
                  nodes: list[str]):
    """The int8 Q/DQ graph (ORT's quantizer); a float8 one is derived from a per-tensor int8 one."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    if row.element != _INT8 and row.per_channel:
        raise ExportError(f"{row.name}: float8 Q/DQ weights are per tensor (per_channel=False on its row)")
    # Only the activation inputs of the selected nodes get Q/DQ: a Q/DQ on a MatMul's output
    # (before the bias Add) is not part of the recipe (OpTypesToExcludeOutputQuantization).
    wanted = activation_inputs(proto, nodes)
    missing = sorted(wanted - set(amax))
    if missing:
        raise ExportError(f"calibration ranges are missing for {missing[:5]}: the calibration cache belongs to "
                          "another graph; recalibrate")
    ranges = TensorsData(CalibrationMethod.MinMax, {k: (np.array(-amax[k], dtype=np.float32),
                                                        np.array(amax[k], dtype=np.float32)) for k in sorted(wanted)})
    with tempfile.TemporaryDirectory(prefix="edgevit-qdq-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        out = Path(tmp) / "model.qdq.onnx"
        try:
            with _quiet_root_logger():  # ORT logs "consider pre-processing" warnings on the root logger
                quantize_static(
                    str(fp32_path), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OP_TYPES), nodes_to_quantize=nodes,
                    per_channel=row.per_channel, reduce_range=False, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1, "Gemm": 0},
                                   "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OP_TYPES)},
                )
        except Exception as exc:  # noqa: BLE001 -- ORT raises plain exceptions
            raise ExportError(f"ONNX Runtime's Q/DQ quantizer failed on {fp32_path} for {recipe.precision}: "
                              f"{str(exc)[:400]}") from exc
        qdq = onnx.load(str(out))
    if row.element != _INT8:
        _int8_to_float8(qdq, {t.name: t for t in proto.graph.initializer}, row)
    return qdq


def _int8_to_float8(proto, fp32_inits: dict, row: Precision) -> None:
    """Turn a per-tensor symmetric int8 Q/DQ graph into Q/DQ of ``row``'s float8 element type, in place.

    Our own code because ONNX Runtime's quantizer derives FP8 scales only from a distribution's
    standard deviation (``CalibrationMethod.Distribution``), not from amax / max as TensorRT and
    Model Optimizer do. Activation scales become amax / max (from amax / 127), max the type's largest
    finite value (448 for e4m3fn); weights are re-quantized from their fp32 originals with scale
    max|w| / max; zero points become float8 0.
    """
    import ml_dtypes
    from onnx import TensorProto, numpy_helper

    dtype = numpy_type(row)
    top = float(ml_dtypes.finfo(dtype).max)

    inits = {t.name: t for t in proto.graph.initializer}

    def put(name: str, array) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    done = set()
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        source, scale, zero = node.input[0], node.input[1], node.input[2]
        if zero not in done:
            put(zero, np.zeros(numpy_helper.to_array(inits[zero]).shape, dtype=dtype))
            done.add(zero)
        if scale in done:
            continue
        done.add(scale)
        old = numpy_helper.to_array(inits[scale]).astype(np.float32)
        original = fp32_inits.get(source[:-len("_quantized")]) if source.endswith("_quantized") else None
        if node.op_type == "DequantizeLinear" and source in inits and original is not None:
            w = numpy_helper.to_array(original).astype(np.float32)
            new = np.float32(max(float(np.abs(w).max()), 1e-12) / top)
            put(source, (w / new).astype(dtype))
            put(scale, new.reshape(old.shape))
        else:
            put(scale, (old * np.float32(127.0 / top)).astype(np.float32))
    assert all(t.data_type != TensorProto.INT8 for t in proto.graph.initializer if t.name in done), "int8 left"


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _require_opset(proto, version: int) -> None:
    """Raise the default-domain opset to ``version`` (no op the ViT graph uses changed in 19)."""
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < version:
            entry.version = version
    proto.ir_version = max(proto.ir_version, 9)


# ------------------------------------------------------------------------------ inspection
def qdq_summary(proto) -> dict:
    """What a Q/DQ graph holds: counts, zero points, weight scale axes, what each DQ feeds."""
    from onnx import numpy_helper

    g = Graph(proto, subgraphs=False)
    inits = g.initializers
    nonzero_zp, weight_axes, feeds = [], {}, set()
    dq = g.nodes_of("DequantizeLinear")
    for node in dq:
        if len(node.input) > 2 and node.input[2] in inits:
            zp = numpy_helper.to_array(inits[node.input[2]])
            if np.any(zp.astype(np.float32) != 0):
                nonzero_zp.append(node.name)
        for user in g.users(node.output[0]):
            feeds.add(user.op_type)
            if node.input[0] in inits:
                axis = g.attribute(node, "axis", 1)
                scale = inits.get(node.input[1])
                per_channel = scale is not None and len(scale.dims) == 1 and scale.dims[0] > 1
                weight_axes[user.name] = axis if per_channel else None
    return {"quantize": len(g.nodes_of("QuantizeLinear")), "dequantize": len(dq),
            "nonzero_zero_points": nonzero_zp, "weight_axes": weight_axes, "dq_feeds": sorted(feeds)}


__all__ = ["QDQ_TYPED_OPSET", "build_precision_graph", "qdq_summary"]
