"""What edgevit calls things: the one table of precisions and the file names of the artifacts.

Every precision edgevit knows is a row of :data:`PRECISION_TABLE` (as Ultralytics'
``export_formats()`` is for its formats), holding every fact code reads about it: how its ONNX graph
is made (cast or Q/DQ, element type, per-channel weights), its PyTorch dtype, its TensorRT flag and
layer names, DLA, its tolerance rows. :func:`precision` is the one lookup; the name lists below are
read off the table, so a precision is added here (or with :func:`register_precision`) and nowhere
else, plus a graph builder only for a new kind of graph. Rows without a ``graph`` (``int4``,
``mixed``) exist only as TensorRT engine precisions recorded in the manifest.

Every artifact format is a row of :data:`ARTIFACT_FORMATS` (its file suffixes, the runner that
executes it, what writes it); :func:`format_of` names a file's format, and Engine.load, verify and
bench pick the runner off the row (:func:`edgevit.runtime.runner_for_format`).

An export directory holds::

    edgevit.json          MANIFEST_NAME: the manifest
    model.onnx            onnx_file("fp32"), with model.onnx.data (ONNX_DATA_FILE) for large weights
    model.fp16.onnx ...   onnx_file(precision) for the other ONNX precisions
    calibration.json      CALIBRATION_CACHE: int8/fp8 activation ranges, reused while valid
    model.plan            engine_file(): a TensorRT engine (any suffix of its ARTIFACT_FORMATS row is taken)

Imports nothing of edgevit (bottom layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


EXPORTED, CAST, QDQ = "exported", "cast", "qdq"
"""How a precision's ONNX graph is made (:attr:`Precision.graph`): the fp32 graph as exported, a plain
float cast of it (ONNX Runtime's float16 converter, retyped where the row's element is not float16), or
Q/DQ nodes of the row's quantized element type on the recipe's nodes (:mod:`edgevit.precision.graphs`)."""


@dataclass(frozen=True)
class Precision:
    """One precision and every fact edgevit's code reads about it.

    ``graph``: how its ONNX graph is made (:data:`EXPORTED`, :data:`CAST`, :data:`QDQ`), None for a
    TensorRT engine-only precision. ``element``: the ONNX ``TensorProto`` element type name of the graph's
    floats (a cast) or of its quantized values (Q/DQ); ``numpy_type``: the same type's numpy / ml_dtypes
    name. ``per_channel``: Q/DQ weights per output channel (else per tensor). ``torch_dtype``: the
    ``torch`` dtype the PyTorch runner casts a model to (plain float precisions). ``trt_flag``: the
    ``trt.BuilderFlag`` of a weakly typed TensorRT 10 build of the graph (plain float precisions; None:
    no flag); ``trt_names``: how TensorRT's engine inspector writes a layer's type of this precision
    (lower case, most specific first within the row); ``dla``: DLA runs graphs of it. ``nvinfer_mode``:
    DeepStream nvinfer's ``network-mode`` for it (NvDsInferNetworkMode: 0 FP32, 1 INT8, 2 FP16; read from
    NVIDIA's source, :file:`edgevit/deploy/nvinfer_keys.json`), None where nvinfer has none. ``tolerance``:
    the :class:`edgevit.tolerances.Tolerance` fields of its logits row (ONNX precisions), and
    ``feature_tolerance`` what differs from it for features/tokens outputs.
    """

    name: str
    graph: str | None
    description: str
    quantized: bool = False
    element: str | None = None
    numpy_type: str | None = None
    per_channel: bool = False
    torch_dtype: str | None = None
    trt_flag: str | None = None
    trt_names: tuple[str, ...] = ()
    dla: bool = False
    nvinfer_mode: int | None = None
    tolerance: dict | None = field(default=None, compare=False)
    feature_tolerance: dict = field(default_factory=dict, compare=False)

    @property
    def onnx(self) -> bool:
        """edgevit builds it as an ONNX graph (``edgevit quantize``; verify, bench and the tolerances know it)."""
        return self.graph is not None

    @property
    def float(self) -> bool:
        """Its graphs are plain float: a graph's input/output dtype (``--io-dtype``), a PyTorch runner dtype."""
        return self.graph in (EXPORTED, CAST)


# Each tolerance limit is a few times the worst error measured on the models of benchmarks/README.md
# ("Tolerances"), where the measurements are; int8/fp8 were measured on digits-tiny only: re-measure on a
# real-weights ViT before relying on them for ImageNet. ``feature_tolerance``: outputs without classes
# ("features", "tokens"), where ``min_agreement`` is the k-NN agreement (edgevit.metrics.neighbour_agreement);
# the logits rows fit, except fp8's k-NN agreement (0.95).
PRECISION_TABLE: list[Precision] = [
    Precision("fp32", EXPORTED, "float32: the exported graph", element="FLOAT", numpy_type="float32",
              torch_dtype="float32", trt_names=("fp32", "float"), nvinfer_mode=0,
              tolerance=dict(atol=5e-4, rtol=1e-4, min_cosine=0.99999, min_agreement=0.99,
                             attn_atol=2e-4, attn_rtol=1e-4, attn_min_cosine=0.99999,
                             note="measured: worst logits |d| 7.7e-5, attention 3.5e-5 (ORT and PyTorch vs fp32 math)"),
              feature_tolerance=dict(
                  note="logits row; features/tokens measured: |d| 1.4e-5, cosine 1 - 1e-12 (ORT vs PyTorch)")),
    Precision("fp16", CAST, "float16 weights and activations", element="FLOAT16", numpy_type="float16",
              torch_dtype="float16", trt_flag="FP16", trt_names=("fp16", "half"), dla=True, nvinfer_mode=2,
              tolerance=dict(atol=0.2, rtol=1e-2, min_cosine=0.999, min_agreement=0.95,
                             attn_atol=0.15, attn_rtol=1e-2, attn_min_cosine=0.9995,
                             note="measured: worst logits |d| 5.8e-2, cosine 0.99987; attention 5.0e-2 "
                                  "(PyTorch fp16, ORT fp16 graph)"),
              feature_tolerance=dict(
                  note="logits row; features/tokens measured: |d| 2.2e-2, cosine 0.99999, k-NN 1.0")),
    Precision("bf16", CAST, "bfloat16 weights and activations", element="BFLOAT16", numpy_type="bfloat16",
              torch_dtype="bfloat16", trt_flag="BF16", trt_names=("bf16", "bfloat16"),
              tolerance=dict(atol=1.5, rtol=5e-2, min_cosine=0.98, min_agreement=0.90,
                             attn_atol=1.0, attn_rtol=5e-2, attn_min_cosine=0.995,
                             note="measured: worst logits |d| 0.44, cosine 0.9925; attention 0.28 (PyTorch bf16)"),
              feature_tolerance=dict(
                  note="logits row; features/tokens measured: |d| 0.24, cosine 0.9988, k-NN 0.9994")),
    Precision("int8", QDQ, "int8 Q/DQ on the Linear inputs", quantized=True, element="INT8", numpy_type="int8",
              per_channel=True, trt_names=("int8",), dla=True, nvinfer_mode=1,
              tolerance=dict(atol=1.0, rtol=1e-1, min_cosine=0.98, min_agreement=0.97,
                             attn_atol=0.3, attn_rtol=1e-1, attn_min_cosine=0.998,
                             note="measured on digits-tiny: logits |d| 0.23, cosine 0.9964; attention 0.079 "
                                  "(ORT Q/DQ graph)"),
              feature_tolerance=dict(note="logits row; features/tokens measured: |d| 0.61, cosine 0.9949, k-NN 0.9967 "
                                          "(ORT Q/DQ graph)")),
    Precision("fp8", QDQ, "float8 e4m3 Q/DQ on the Linear inputs", quantized=True, element="FLOAT8E4M3FN",
              numpy_type="float8_e4m3fn", trt_names=("fp8", "e4m3", "e5m2"),
              tolerance=dict(atol=1.5, rtol=1e-1, min_cosine=0.97, min_agreement=0.97,
                             attn_atol=0.8, attn_rtol=1e-1, attn_min_cosine=0.995,
                             note="measured on digits-tiny: logits |d| 0.41, cosine 0.9914; attention 0.205 "
                                  "(ORT fp8 Q/DQ)"),
              feature_tolerance=dict(min_agreement=0.95,
                                     note="logits row but k-NN 0.95; features/tokens measured: |d| 1.42, cosine 0.980, "
                                          "k-NN 0.967 (ORT fp8 Q/DQ graph)")),
    Precision("int4", None, "TensorRT engines only", quantized=True, trt_names=("int4",)),
    Precision("mixed", None, "TensorRT engines only", dla=True),
]
"""THE table: one row per precision, in the order edgevit lists them. A precision is added here (or
with :func:`register_precision`) plus, for a new kind of graph, its builder in
:mod:`edgevit.precision.graphs`; everything else reads the row."""

BASE_PRECISION = FP32 = "fp32"
"""The precision of the exported graph every other precision is made from (its row's ``graph`` is
:data:`EXPORTED`)."""
FP16, BF16, INT8 = "fp16", "bf16", "int8"
"""Names code says on purpose: the default float base of a Q/DQ graph (FP16, what a TensorRT engine runs
anyway), the demo's engine precisions and the fused-MHA kernels (FP16, INT8), PyTorch training's
mixed-precision modes (BF16, FP16)."""
QDQ_BASES = (FP16, FP32)
"""The precisions a Q/DQ graph's unquantized rest may be in (``PrecisionRecipe.base``)."""


class _Names(Sequence):
    """The names of the table's rows that pass ``keep``, read off the table each time (rows added with
    :func:`register_precision` appear); compares equal to a tuple or list of the same names."""

    def __init__(self, keep) -> None:
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        return tuple(p.name for p in PRECISION_TABLE if self._keep(p))

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __eq__(self, other) -> bool:
        return self._names() == (tuple(other) if isinstance(other, (tuple, list, _Names)) else other)

    def __hash__(self) -> int:
        return hash(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


def precision_names(keep) -> Sequence[str]:
    """The names of the rows for which ``keep(row)`` is true, in table order, read off the table each
    time it is used (so rows added later appear)."""
    return _Names(keep)


PRECISIONS = _Names(lambda p: True)
"""Every precision an artifact may record (the manifest, TensorRT builds)."""
ONNX_PRECISIONS = _Names(lambda p: p.onnx)
"""The precisions edgevit builds as ONNX graphs (quantize, verify, bench, the tolerance table)."""
QUANTIZED = _Names(lambda p: p.graph == QDQ)
"""ONNX precisions with Q/DQ nodes, built from calibrated ranges."""
FLOAT_PRECISIONS = _Names(lambda p: p.float)
"""Plain float precisions: graph input/output dtypes (``--io-dtype``), PyTorch runner dtypes."""


def precision(name: str, onnx: bool = False) -> Precision:
    """The row of precision ``name`` (of an ONNX precision where ``onnx``); ValueError naming the known ones."""
    row = next((p for p in PRECISION_TABLE if p.name == name and (p.onnx or not onnx)), None)
    if row is None:
        raise ValueError(f"precision must be one of {list(ONNX_PRECISIONS if onnx else PRECISIONS)}, got {name!r}")
    return row


def register_precision(row: Precision) -> None:
    """Add a precision row at run time: the extension point for a precision outside this file. An
    ONNX precision needs ``tolerance`` (its verify/bench/gate limits) and a ``graph`` form the builders
    know (:data:`CAST` with a float ``element``, or :data:`QDQ` with a quantized one); ``edgevit``'s
    command-line choices are read when the CLI is imported, so register before that."""
    if any(p.name == row.name for p in PRECISION_TABLE):
        raise ValueError(f"precision {row.name!r} is already in the table")
    if row.graph not in (None, EXPORTED, CAST, QDQ):
        raise ValueError(f"precision {row.name!r}: graph must be {CAST!r} or {QDQ!r} (or None), got {row.graph!r}")
    if row.onnx and (row.tolerance is None or row.element is None or row.numpy_type is None):
        raise ValueError(f"ONNX precision {row.name!r} needs its element, numpy_type and tolerance")
    PRECISION_TABLE.append(row)

MANIFEST_NAME = "edgevit.json"
ONNX_DATA_FILE = "model.onnx.data"
CALIBRATION_CACHE = "calibration.json"
CALIBRATION_CACHE_FORMAT = "edgevit-calibration-cache"
"""The ``format`` field of a calibration cache: how an export tells its own cache from a user's file."""


@dataclass(frozen=True)
class ArtifactFormat:
    """One ``format`` an artifact may have: what its files are called, which runner executes it and what
    writes it.

    ``runner`` is a name of :func:`edgevit.runtime.get_runner`. ``graph``: an ONNX graph, which its runner
    takes with ONNX Runtime's options (``providers``, ``threads``, ``qdq``) and whose precision and outputs
    can be read off the file; else a compiled engine, whose runner takes ``manifest_entry`` (the engine's
    record, checked against this machine) and ``cuda_graph``. ``label``: the row name prefix in bench
    tables (deploy targets are no artifact formats: their table is :data:`edgevit.deploy.TARGETS`).
    ``rebuild``: the command that rewrites a file of it from the export's ONNX graph its record names,
    with ``{onnx}`` (that graph) and ``{out}`` (the file); None: the export or quantize command that
    wrote the graph rewrites it.
    """

    name: str
    suffixes: tuple[str, ...]
    runner: str
    graph: bool
    what: str
    label: str
    rebuild: str | None = None

    @property
    def noun(self) -> str:
        """What a message calls one file of it: "graph" or "engine"."""
        return "graph" if self.graph else "engine"


ARTIFACT_FORMATS: dict[str, ArtifactFormat] = {row.name: row for row in (
    ArtifactFormat("onnx", (".onnx",), runner="onnxruntime", graph=True, what="ONNX file", label="ort"),
    ArtifactFormat("tensorrt", (".plan", ".engine", ".trt"), runner="tensorrt", graph=False,
                   what="TensorRT engine file", label="tensorrt", rebuild="edgevit build {onnx} -o {out} --force"),
)}
"""The ``format`` of a manifest's artifacts, name -> row; a format is added here (or with
:func:`register_format`) and nowhere else."""


def artifact_format(name: str) -> ArtifactFormat:
    """The row of format ``name``; ValueError naming the known ones."""
    if name not in ARTIFACT_FORMATS:
        raise ValueError(f"artifact format must be one of {list(ARTIFACT_FORMATS)}, got {name!r}")
    return ARTIFACT_FORMATS[name]


def find_format(path) -> ArtifactFormat | None:
    """The row whose suffixes name ``path``'s (case-insensitive), or None."""
    name = str(path).lower()
    return next((r for r in ARTIFACT_FORMATS.values() if any(name.endswith(s) for s in r.suffixes)), None)


def format_of(path) -> ArtifactFormat:
    """The row of the file ``path`` by its suffix; ValueError naming the suffixes edgevit knows."""
    row = find_format(path)
    if row is None:
        known = "; ".join(f"{r.what} ({', '.join(r.suffixes)})" for r in ARTIFACT_FORMATS.values())
        raise ValueError(f"{path}: not an artifact file edgevit knows by its suffix: {known}")
    return row


def register_format(row: ArtifactFormat) -> None:
    """Add a format row (its ``runner`` registered with :func:`edgevit.runtime.register_runner`)."""
    taken = {s for r in ARTIFACT_FORMATS.values() for s in r.suffixes}
    if row.name in ARTIFACT_FORMATS or taken & {s.lower() for s in row.suffixes}:
        raise ValueError(f"format {row.name!r} or one of its suffixes {list(row.suffixes)} is already in the table")
    ARTIFACT_FORMATS[row.name] = row


def onnx_file(name: str) -> str:
    """The file name of the ``name`` ONNX graph in an export directory."""
    return "model.onnx" if precision(name, onnx=True).graph == EXPORTED else f"model.{name}.onnx"


def engine_file(name: str | None = None) -> str:
    """The default file name of a TensorRT engine: ``model.plan``, or ``model.<precision>.plan``
    where engines of several precisions share a directory."""
    return "model.plan" if name is None else f"model.{precision(name).name}.plan"


# The MLP activations a ViT config takes (ViTConfig.act). Here, not in models/vit.py, so that the CLI
# can offer them (``--act``) without importing torch.
ACTIVATIONS = ("gelu", "gelu_tanh", "quick_gelu", "relu")
ROPES = ("none", "dinov3", "eva")  # rotary position embeddings of Q and K (edgevit.models.rope)


__all__ = [
    "BASE_PRECISION", "BF16", "CAST", "EXPORTED", "FP16", "FP32", "INT8", "QDQ", "QDQ_BASES", "precision", "precision_names",
    "register_precision",
    "ACTIVATIONS", "ARTIFACT_FORMATS", "ArtifactFormat", "artifact_format", "find_format", "format_of",
    "register_format", "CALIBRATION_CACHE", "CALIBRATION_CACHE_FORMAT", "FLOAT_PRECISIONS", "MANIFEST_NAME", "ONNX_DATA_FILE",
    "ONNX_PRECISIONS", "PRECISIONS", "PRECISION_TABLE", "Precision", "QUANTIZED", "engine_file",
    "onnx_file",
]
