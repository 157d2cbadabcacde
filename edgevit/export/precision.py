"""Precision graphs: fp16, bf16, int8 and fp8 versions of the fp32 ``model.onnx``.

TensorRT 11 takes precision only from the graph (strongly typed), and TensorRT 10 builds the
same graph with matching builder flags, so every decision is written here, as casts and Q/DQ
nodes, and ONNX Runtime proves on CPU what it does to accuracy (:mod:`edgevit.export.quantize`).

fp16 / bf16
    ONNX Runtime's own converter (``onnxruntime.transformers.float16``) turns weights and
    activations to fp16, leaving the ops of ``keep_fp32`` in fp32 behind casts:
    LayerNormalization always (design.md §3), Softmax too by default (see ``KEEP_FP32``). The
    graph is simplified before conversion (onnxconverter-common's converter, of which ORT's is a
    copy, breaks on ``Identity`` nodes forwarding initializers; the exported graph has none after
    onnxslim, and :func:`_drop_identities` removes any left). bf16 is the same graph with every
    fp16 type turned bf16 and every weight re-rounded from its fp32 value (the converter has no
    bf16 mode). Inputs/outputs stay fp32 unless ``io_dtype`` says otherwise.
int8 / fp8
    ONNX Runtime's Q/DQ quantizer (``quantize_static``, QDQ format) with ranges from
    :mod:`edgevit.calibration` (passed through its calibration cache, so the quantizer never
    calibrates by itself). Symmetric, zero point 0. int8 weights per output channel (axis 1 of a
    MatMul's (in, out) weight, axis 0 of Conv); fp8 (E4M3) weights per tensor, as NVIDIA Model
    Optimizer's FP8 default does. Activations per tensor. Placement, the ViT recipe
    (design.md §3): Q/DQ on the inputs of the Linear layers (qkv, proj, fc1, fc2) only;
    LayerNorm, Softmax, GELU, the residual Adds and the head stay in higher precision;
    ``quantize_patch_embed`` adds the patch-embedding Conv, ``quantize_attention`` the two
    attention MatMuls (Q/DQ on Q, Kᵀ, the softmax output and V: what TensorRT's INT8 fused MHA
    takes), ``exclude`` (fnmatch patterns on node names such as ``blocks.11.mlp.*``) keeps
    layers out. The rest of the graph is then ``base`` precision: fp16 (default: what a TensorRT
    engine runs anyway) or fp32.

Node names are the module paths :func:`edgevit.export.names.name_vit_nodes` gave at export.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ExportError

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
QUANTIZED = ("int8", "fp8")
FILES = {p: ("model.onnx" if p == "fp32" else f"model.{p}.onnx") for p in PRECISIONS}
# Softmax in fp32 is the conservative choice, not a measured need: on the trained digits-tiny
# (85 epochs, digits test split, ORT CPU) the fp16 graph's logits differ from fp32 by max abs
# 4.628e-3 with Softmax in fp32 and 4.628e-3 with Softmax in fp16, top-1 agreement 1.0 both ways.
# It is kept because 4-token digits attention says little about 197-token ViT-B rows, and it
# costs two casts per block; drop it with PrecisionRecipe(keep_fp32=("LayerNormalization",)).
KEEP_FP32 = ("LayerNormalization", "Softmax")
LINEAR_PATTERNS = ("blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2")
ATTENTION_PATTERNS = ("blocks.*.attn.matmul_qk", "blocks.*.attn.matmul_av")
PATCH_EMBED = "patch_embed.proj"
# Q/DQ take float8 types and fp16 scales from opset 19 (TensorRT 10 parses opsets up to 20+)
QDQ_TYPED_OPSET = 19


@dataclass(frozen=True)
class PrecisionRecipe:
    """Everything that decides one precision graph; recorded whole in the manifest."""

    precision: str
    io_dtype: str = "fp32"
    keep_fp32: tuple[str, ...] = KEEP_FP32
    base: str = "fp16"                     # int8/fp8: precision of everything not quantized
    quantize_attention: bool = False
    quantize_patch_embed: bool = False
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.io_dtype not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"io_dtype must be fp32, fp16 or bf16, got {self.io_dtype!r}")
        if self.io_dtype != "fp32" and self.io_dtype != self._float_dtype:
            raise ValueError(f"io_dtype {self.io_dtype} does not match the {self.precision} graph's float type "
                             f"({self._float_dtype}); use fp32 or {self._float_dtype}")
        if self.base not in ("fp16", "fp32"):
            raise ValueError(f"int8/fp8 base precision must be fp16 or fp32, got {self.base!r}")
        object.__setattr__(self, "keep_fp32", tuple(self.keep_fp32))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def _float_dtype(self) -> str:
        if self.precision in ("fp16", "bf16"):
            return self.precision
        return self.base if self.precision in QUANTIZED else "fp32"

    @property
    def quantized(self) -> bool:
        return self.precision in QUANTIZED

    def quantize_patterns(self) -> tuple[str, ...]:
        return (LINEAR_PATTERNS + (ATTENTION_PATTERNS if self.quantize_attention else ())
                + ((PATCH_EMBED,) if self.quantize_patch_embed else ()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["keep_fp32"], d["exclude"] = list(self.keep_fp32), list(self.exclude)
        if not self.quantized:
            for key in ("base", "quantize_attention", "quantize_patch_embed", "exclude"):
                d.pop(key)
        else:
            d["placement"] = "inputs of " + ", ".join(self.quantize_patterns())
            d["weights"] = "per-channel (MatMul axis 1, Conv axis 0)" if self.precision == "int8" else "per-tensor"
            d["activations"] = "per-tensor, symmetric, zero point 0"
            d["format"] = "int8" if self.precision == "int8" else "float8e4m3fn"
        if self.precision == "fp32":
            return {"precision": "fp32"}
        return d


def quantizable_nodes(proto, recipe: PrecisionRecipe) -> list[str]:
    """Names of the nodes the recipe quantizes, in graph order (``exclude`` applied)."""
    patterns = recipe.quantize_patterns()
    found = []
    for node in proto.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or not node.name:
            continue
        if any(fnmatch.fnmatchcase(node.name, p) for p in patterns) and not any(
                fnmatch.fnmatchcase(node.name, p) for p in recipe.exclude):
            found.append(node.name)
    return found


def check_exclude(proto, recipe: PrecisionRecipe, where) -> None:
    """Refuse ``exclude`` patterns that match none of the nodes the recipe quantizes: a typo would
    otherwise quantize every layer and record an exclusion that did nothing."""
    candidates = quantizable_nodes(proto, replace(recipe, exclude=()))
    unmatched = [p for p in recipe.exclude if not any(fnmatch.fnmatchcase(n, p) for n in candidates)]
    if unmatched:
        shown = ", ".join(candidates[:4]) + (f", ... {candidates[-1]}" if len(candidates) > 4 else "")
        raise ValueError(
            f"--exclude {' '.join(unmatched)} matches none of the {len(candidates)} nodes the {recipe.precision} "
            f"recipe quantizes in {where}: {shown or 'none'} (patterns {', '.join(recipe.quantize_patterns())}; "
            "--quantize-attention and --quantize-patch-embed add the attention MatMuls and patch_embed.proj)")


def build_precision_graph(fp32_path: str | Path, recipe: PrecisionRecipe, amax: dict[str, float] | None = None,
                          nodes: list[str] | None = None):
    """The ``recipe.precision`` graph of the fp32 ONNX at ``fp32_path`` (an onnx.ModelProto).

    int8/fp8 need ``amax`` (tensor -> range, from :func:`edgevit.calibration.calibrate`);
    ``nodes`` overrides which nodes are quantized (sensitivity analysis quantizes one at a time).
    """
    import onnx

    fp32_path = Path(fp32_path)
    if recipe.precision == "fp32":
        return onnx.load(str(fp32_path))
    if recipe.precision in ("fp16", "bf16"):
        return _reduced_float(onnx.load(str(fp32_path)), recipe.precision, recipe.keep_fp32, recipe.io_dtype)
    if not amax:
        raise ExportError(f"the {recipe.precision} graph needs calibration ranges (amax); none were given")
    proto = onnx.load(str(fp32_path))
    nodes = quantizable_nodes(proto, recipe) if nodes is None else list(nodes)
    if not nodes:
        raise ExportError(f"the {recipe.precision} recipe selects no node to quantize in {fp32_path} "
                          f"(patterns {list(recipe.quantize_patterns())}, exclude {list(recipe.exclude)}); "
                          "was the graph exported by edgevit (it names nodes after the model's modules)?")
    qdq = _quantize_qdq(fp32_path, proto, recipe, amax, nodes)
    if recipe.precision == "fp8" or recipe.base == "fp16":
        _require_opset(qdq, QDQ_TYPED_OPSET)
    if recipe.base == "fp16":
        qdq = _reduced_float(qdq, "fp16", recipe.keep_fp32, recipe.io_dtype)
    return qdq


# ------------------------------------------------------------------------------ fp16 / bf16
def _drop_identities(proto) -> None:
    """Bypass Identity nodes (the fp16 converter mishandles ones that forward initializers)."""
    outputs = {o.name for o in proto.graph.output}
    rename = {}
    keep = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            keep.append(node)
    for node in keep:
        node.input[:] = [rename.get(i, i) for i in node.input]
    del proto.graph.node[:]
    proto.graph.node.extend(keep)


def _reduced_float(proto, dtype: str, keep_fp32, io_dtype: str):
    from onnx import TensorProto, numpy_helper
    from onnxruntime.transformers.float16 import convert_float_to_float16

    _drop_identities(proto)
    originals = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer
                 if t.data_type == TensorProto.FLOAT}
    converted = convert_float_to_float16(proto, keep_io_types=(io_dtype == "fp32"), op_block_list=list(keep_fp32))
    if dtype == "bf16":
        _fp16_to_bf16(converted, originals)
    return converted


def _fp16_to_bf16(proto, originals: dict) -> None:
    """Retype an fp16 graph to bf16 in place; weights are rounded from their fp32 originals."""
    import ml_dtypes
    from onnx import TensorProto, numpy_helper

    f16, b16 = TensorProto.FLOAT16, TensorProto.BFLOAT16

    def retype(value_info) -> None:
        t = value_info.type.tensor_type
        if t.elem_type == f16:
            t.elem_type = b16

    def bf16_tensor(t, source=None) -> None:
        values = originals.get(t.name) if source is None else source
        if values is None:
            values = numpy_helper.to_array(t).astype(np.float32)
        new = numpy_helper.from_array(np.asarray(values, dtype=np.float32).astype(ml_dtypes.bfloat16), t.name)
        t.CopyFrom(new)

    for t in proto.graph.initializer:
        if t.data_type == f16:
            bf16_tensor(t)
    for vi in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        retype(vi)
    for node in proto.graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == f16:
                attr.i = b16
            elif attr.type == attr.TENSOR and attr.t.data_type == f16:
                bf16_tensor(attr.t, numpy_helper.to_array(attr.t).astype(np.float32))


# ------------------------------------------------------------------------------ int8 / fp8
def _quantize_qdq(fp32_path: Path, proto, recipe: PrecisionRecipe, amax: dict[str, float], nodes: list[str]):
    """The int8 Q/DQ graph (ORT's quantizer); fp8 is derived from a per-tensor int8 one."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    per_channel = recipe.precision == "int8"  # fp8 weights per tensor (Model Optimizer's FP8 default)
    # Only the activation inputs of the selected nodes get Q/DQ: a Q/DQ on a MatMul's output
    # (before the bias Add) is not part of the recipe (OpTypesToExcludeOutputQuantization).
    inits = {t.name for t in proto.graph.initializer}
    wanted = {i for n in proto.graph.node if n.name in set(nodes) for i in n.input[:2] if i not in inits}
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
                    op_types_to_quantize=["MatMul", "Gemm", "Conv"], nodes_to_quantize=nodes,
                    per_channel=per_channel, reduce_range=False, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1, "Gemm": 0},
                                   "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv"]},
                )
        except Exception as exc:  # noqa: BLE001 -- ORT raises plain exceptions
            raise ExportError(f"ONNX Runtime's Q/DQ quantizer failed on {fp32_path} for {recipe.precision}: "
                              f"{str(exc)[:400]}") from exc
        qdq = onnx.load(str(out))
    if recipe.precision == "fp8":
        _int8_to_fp8(qdq, {t.name: t for t in proto.graph.initializer})
    return qdq


FP8_MAX = 448.0  # largest finite float8 e4m3fn


def _int8_to_fp8(proto, fp32_inits: dict) -> None:
    """Turn a per-tensor symmetric int8 Q/DQ graph into float8 e4m3fn Q/DQ, in place.

    Our own code because ONNX Runtime's quantizer derives FP8 scales only from a distribution's
    standard deviation (``CalibrationMethod.Distribution``), not from amax / 448 as TensorRT and
    Model Optimizer do. Activation scales become amax / 448 (from amax / 127); weights are
    re-quantized from their fp32 originals with scale max|w| / 448; zero points become fp8 0.
    """
    import ml_dtypes
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}

    def put(name: str, array) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    done = set()
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        source, scale, zero = node.input[0], node.input[1], node.input[2]
        if zero not in done:
            put(zero, np.zeros(numpy_helper.to_array(inits[zero]).shape, dtype=ml_dtypes.float8_e4m3fn))
            done.add(zero)
        if scale in done:
            continue
        done.add(scale)
        old = numpy_helper.to_array(inits[scale]).astype(np.float32)
        original = fp32_inits.get(source[:-len("_quantized")]) if source.endswith("_quantized") else None
        if node.op_type == "DequantizeLinear" and source in inits and original is not None:
            w = numpy_helper.to_array(original).astype(np.float32)
            new = np.float32(max(float(np.abs(w).max()), 1e-12) / FP8_MAX)
            put(source, (w / new).astype(ml_dtypes.float8_e4m3fn))
            put(scale, new.reshape(old.shape))
        else:
            put(scale, (old * np.float32(127.0 / FP8_MAX)).astype(np.float32))
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
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    nonzero_zp, weight_axes, feeds = [], {}, set()
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    for node in dq:
        if len(node.input) > 2 and node.input[2] in inits:
            zp = numpy_helper.to_array(inits[node.input[2]])
            if np.any(zp.astype(np.float32) != 0):
                nonzero_zp.append(node.name)
        for user in consumers.get(node.output[0], []):
            feeds.add(user.op_type)
            if node.input[0] in inits:
                axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
                scale = inits.get(node.input[1])
                per_channel = scale is not None and len(scale.dims) == 1 and scale.dims[0] > 1
                weight_axes[user.name] = axis if per_channel else None
    return {"quantize": sum(n.op_type == "QuantizeLinear" for n in proto.graph.node), "dequantize": len(dq),
            "nonzero_zero_points": nonzero_zp, "weight_axes": weight_axes, "dq_feeds": sorted(feeds)}


def recipe_from_dict(data: dict) -> PrecisionRecipe:
    allowed = set(PrecisionRecipe.__dataclass_fields__)
    return PrecisionRecipe(**{k: v for k, v in data.items() if k in allowed})


__all__ = ["FILES", "KEEP_FP32", "PRECISIONS", "PrecisionRecipe", "QUANTIZED", "build_precision_graph", "check_exclude",
           "qdq_summary", "quantizable_nodes", "recipe_from_dict"]
