"""A Triton Inference Server model repository for an export: ``edgevit deploy triton OUTDIR -o REPO``.

Writes ``REPO/NAME/config.pbtxt``, ``REPO/NAME/1/model.onnx`` (with its external data; the ONNX Runtime
backend, the TensorRT execution accelerator offered for GPU instances) or ``REPO/NAME/1/model.plan``
(``platform: "tensorrt_plan"``), and ``REPO/NAME/labels.txt`` for a classifier (``label_filename`` on the
logits output). The config follows the artifact, never a guess: inputs and outputs (names, data types,
dims) are read off the graph (an engine's: the ONNX graph its record names, whose I/O TensorRT keeps),
``max_batch_size`` is the batch profile's max (0, with full dims, for a static-batch graph), the
``dynamic_batching`` preferred sizes lie inside the profile. Field names and enums follow Triton's
``model_config.proto`` (triton-inference-server/common, ``protobuf/model_config.proto``) and the server's
``docs/user_guide/model_configuration.md``; the tests parse the file into
``tritonclient.grpc.model_config_pb2.ModelConfig``.

The check: the repository's ONNX model runs on ONNX Runtime fed what a Triton client sends (the consumer's
uint8 pixels for a raw-pixel graph, else edgevit's preprocessing of them), with the config's shapes and
data types, and is compared with the reference (:mod:`edgevit.deploy.common`). An engine cannot run here
(no TensorRT, no Triton server): its certificate says NOT_RUN and records the check of the ONNX graph it
was built from. Nothing here runs Triton.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EdgeVitError, EngineMismatchError
from ..formats import BASE_PRECISION
from ..formats import precision as precision_row
from ..output_kinds import OutputKind

CONSUMER = "triton"
CONFIG_NAME = "config.pbtxt"
LABEL_NAME = "labels.txt"
VERSION_DIR = "1"
ONNX_MODEL, PLAN_MODEL = "model.onnx", "model.plan"
"""Triton's default model file names (``default_model_filename``) of the two backends."""
ONNX_BACKEND, PLAN_PLATFORM = "onnxruntime", "tensorrt_plan"
INSTANCE_KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
DEFAULT_QUEUE_DELAY_US = 100
TRITON_TYPES = {**{np.dtype(t).name: f"TYPE_{name}" for t, name in (
    (np.bool_, "BOOL"), (np.uint8, "UINT8"), (np.uint16, "UINT16"), (np.uint32, "UINT32"), (np.uint64, "UINT64"),
    (np.int8, "INT8"), (np.int16, "INT16"), (np.int32, "INT32"), (np.int64, "INT64"), (np.float16, "FP16"),
    (np.float32, "FP32"), (np.float64, "FP64"))}, "bfloat16": "TYPE_BF16"}
"""numpy dtype name -> Triton ``DataType`` (model_config.proto)."""
ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64",
             **{f"tensor({n})": n for n in TRITON_TYPES if n not in ("float32", "float64")}}
"""ONNX Runtime's type strings -> numpy dtype names."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class TritonError(EdgeVitError):
    """A Triton repository that cannot be written for this request (said before anything is written)."""


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: ``dtype`` a numpy name, ``shape`` with None for a symbolic dim."""

    name: str
    dtype: str
    shape: tuple

    @property
    def triton_type(self) -> str:
        if self.dtype not in TRITON_TYPES:
            raise TritonError(f"tensor {self.name!r} has data type {self.dtype}, which Triton has no TYPE_ for")
        return TRITON_TYPES[self.dtype]


def graph_io(path) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs and outputs of the ONNX graph ``path`` (OnnxModelError for a file that is none)."""
    from onnx import TensorProto, helper

    from ..onnx_graph import load_onnx

    graph = load_onnx(path).graph
    initializers = {i.name for i in graph.initializer}

    def tensors(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            name = ("bfloat16" if t.elem_type == TensorProto.BFLOAT16
                    else np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name)
            out.append(Tensor(v.name, name, tuple(d.dim_value if d.HasField("dim_value") else None
                                                  for d in t.shape.dim)))
        return out

    return tensors([i for i in graph.input if i.name not in initializers]), tensors(graph.output)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a dtype name (bfloat16 through ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def ort_precision_mode(precision: str) -> str:
    """The ``precision_mode`` the ONNX Runtime backend's TensorRT accelerator takes for a graph of
    ``precision`` (its parameters: FP32, FP16, INT8): FP16 for a graph TensorRT builds with the FP16 flag,
    INT8 for an int8 Q/DQ graph, FP32 otherwise (TensorRT then keeps the graph's own types)."""
    row = precision_row(precision)
    if row.trt_flag == "FP16":
        return "FP16"
    return "INT8" if row.quantized and row.element == "INT8" else "FP32"


# ---------------------------------------------------------------------------- the config
@dataclass
class TritonConfig:
    """Everything ``config.pbtxt`` says, decided from the artifact (:func:`plan_config`)."""

    name: str
    engine: bool
    inputs: list[Tensor]
    outputs: list[Tensor]
    max_batch_size: int
    preferred: list[int] = field(default_factory=list)
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    kind: str = "gpu"
    instances: int = 1
    gpus: list[int] = field(default_factory=list)
    label_output: str | None = None
    precision_mode: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    def dims(self, tensor: Tensor) -> list[int]:
        """``dims`` of ``tensor`` as the config gives them: without the batch dim where Triton batches, -1
        for any other symbolic dim."""
        shape = tensor.shape[1:] if self.batched else tensor.shape
        return [-1 if d is None else int(d) for d in shape]

    def to_dict(self) -> dict:
        """The config as a ModelConfig-shaped dict (field names of model_config.proto)."""
        config: dict = {"name": self.name}
        if self.engine:
            config["platform"] = PLAN_PLATFORM
        else:
            config["backend"] = ONNX_BACKEND
        config["max_batch_size"] = self.max_batch_size
        config["input"] = [{"name": t.name, "data_type": _Enum(t.triton_type), "dims": self.dims(t)}
                           for t in self.inputs]
        config["output"] = [{"name": t.name, "data_type": _Enum(t.triton_type), "dims": self.dims(t),
                             **({"label_filename": LABEL_NAME} if t.name == self.label_output else {})}
                            for t in self.outputs]
        if self.batched:
            config["dynamic_batching"] = {"preferred_batch_size": list(self.preferred),
                                          "max_queue_delay_microseconds": self.queue_delay_us}
        group = {"count": self.instances, "kind": _Enum(INSTANCE_KINDS[self.kind])}
        if self.gpus:
            group["gpus"] = list(self.gpus)
        config["instance_group"] = [group]
        if self.precision_mode is not None:
            accel = {"name": "tensorrt", "parameters": [{"key": "precision_mode", "value": self.precision_mode}]}
            config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accel]}}
        return config

    def text(self) -> str:
        """``config.pbtxt``: protobuf text format of :meth:`to_dict`, under its ``#`` comment header."""
        head = "".join(f"# {line}\n" for line in self.comments)
        return head + pbtxt(self.to_dict())


class _Enum(str):
    """An enum value: written bare in protobuf text format."""


def pbtxt(message: dict, indent: int = 0) -> str:
    """Protobuf text format of a dict shaped like a message: a list is a repeated field (messages written
    as one block each, scalars as one ``[...]`` list), a dict a message (a map field is a list of
    ``{"key", "value"}`` dicts), :class:`_Enum` bare, a str quoted, a bool ``true``/``false``."""
    pad = "  " * indent

    def scalar(value) -> str:
        if isinstance(value, _Enum):
            return str(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(value)

    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{pbtxt(value, indent + 1)}{pad}}}\n")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines += [f"{pad}{key} {{\n{pbtxt(item, indent + 1)}{pad}}}\n" for item in value]
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(scalar(v) for v in value)}]\n")
        else:
            lines.append(f"{pad}{key}: {scalar(value)}\n")
    return "".join(lines)


def default_name(manifest, precision: str, engine: bool) -> str:
    """``<export directory>_<precision>`` (``_plan`` for an engine), with characters Triton's model
    names (directory names) should not hold replaced by ``_``."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", manifest.root.resolve().name) or "model"
    return f"{base.lstrip('.') or 'model'}_{precision}{'_plan' if engine else ''}"


def plan_config(resolved, name: str | None = None, kind: str = "gpu", instances: int = 1,
                max_batch_size: int | None = None, preferred: list[int] | None = None,
                queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, gpus: list[int] | None = None,
                compute_capability: str | None = None, tensorrt_version: str | None = None) -> TritonConfig:
    """The config of the ``resolved`` artifact; TritonError (or ValueError for a bad option) for a request
    that cannot work: an unknown instance kind or a count < 1, a CPU instance for a TensorRT engine, a
    ``max_batch_size`` or preferred size outside the batch profile, a profile whose min is above 1 (Triton
    sends every batch size up to max_batch_size), an engine whose record rules out the GPU
    (``compute_capability``) or TensorRT (``tensorrt_version``) it is to run on, labels that do not
    match the logits."""
    manifest, engine = resolved.manifest, not resolved.artifact_format.graph
    if kind not in INSTANCE_KINDS:
        raise ValueError(f"--kind must be one of {list(INSTANCE_KINDS)}, got {kind!r}")
    if instances < 1:
        raise ValueError(f"--instances must be at least 1, got {instances}")
    name = name or default_name(manifest, resolved.precision, engine)
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"--name {name!r}: a Triton model name is a directory name of letters, digits, '_', '.' "
                         "and '-' (not starting with '.')")
    comments = [f"Triton model configuration written by edgevit for {resolved.path.name} ({resolved.precision}, "
                f"{manifest.output_kind.value}); fields: Triton's model_config.proto."]
    if engine:
        if kind == "cpu":
            raise TritonError(f"{resolved.path.name} is a TensorRT engine: it runs on a GPU only (KIND_GPU); for CPU "
                              "instances deploy an ONNX graph (--precision)")
        record = resolved.record
        source = manifest.root / (record.onnx_path or "")
        if not record.onnx_path or not source.is_file():
            raise TritonError(f"{resolved.path.name}'s record names no ONNX graph of {manifest.root} it was built "
                              "from; its inputs and outputs cannot be read. Rebuild it with edgevit build OUTDIR")
        current = {k: v for k, v in (("compute_capability", compute_capability),
                                     ("tensorrt_version", tensorrt_version)) if v is not None}
        if current:
            current["platform"] = None  # the server's OS and CPU are not known here: not this machine's
            from ..tensorrt.rules import check_engine_compat

            try:
                check_engine_compat(record, current, resolved.path.name)
            except EngineMismatchError as exc:
                message = str(exc).replace("this GPU (None) has", "the server's GPU has").replace("this machine", "the server")
                raise TritonError(f"refused for the Triton server asked for: {message}") from None
        profile = tuple(record.profile) if record.profile else manifest.batch.bounds
        comments.append(f"Engine built with TensorRT {record.tensorrt_version} for {record.gpu_name} (compute "
                        f"capability {record.compute_capability}): serve it from a Triton container with that "
                        "TensorRT, on that GPU.")
    else:
        if compute_capability is not None or tensorrt_version is not None:
            raise TritonError("--compute-capability / --tensorrt-version check a TensorRT engine's record against the "
                              f"server; {resolved.path.name} is an ONNX graph, which ONNX Runtime runs anywhere: drop "
                              "them, or deploy the engine (--artifact model.plan)")
        source = resolved.path
        profile = manifest.batch.bounds
    if gpus and (kind == "cpu" or any(g < 0 for g in gpus)):
        raise TritonError(f"--gpus {','.join(map(str, gpus))}: " + ("CPU instances (--kind cpu) take no GPUs"
                          if kind == "cpu" else "GPU ids are 0 or more"))
    inputs, outputs = graph_io(source)
    static = any(t.shape[:1] != (None,) for t in inputs)
    lo, _opt, hi = profile
    if static:
        if max_batch_size not in (None, 0) or preferred:
            raise TritonError(f"{source.name} has a static batch dim ({inputs[0].shape[0]}): Triton cannot batch it "
                              "(max_batch_size 0); drop --max-batch-size / --preferred-batch-sizes or re-export with a "
                              "dynamic batch")
        size = 0
        comments.append(f"Static batch {inputs[0].shape[0]}: max_batch_size 0, dims with the batch dim.")
    else:
        if lo > 1:
            raise TritonError(f"the batch profile {lo}..{hi} starts above 1, but Triton sends batches of 1 up to "
                              "max_batch_size; re-export (or rebuild) with --batch 1,OPT,MAX")
        size = hi if max_batch_size is None else int(max_batch_size)
        if not 1 <= size <= hi:
            raise TritonError(f"--max-batch-size {size} is outside the batch profile {lo}..{hi} of "
                              f"{resolved.path.name}; choose 1..{hi}")
        preferred = sorted({p for p in (profile[1], size) if p <= size}) if preferred is None else sorted(set(preferred))
        bad = [p for p in preferred if not lo <= p <= size]
        if bad:
            raise TritonError(f"preferred batch sizes {bad} are outside 1..{size} (the profile {lo}..{hi}, "
                              "capped by max_batch_size)")
        comments.append(f"Batch profile {lo}/{_opt}/{hi} (min/opt/max): max_batch_size {size}; preferred sizes inside it.")
    kind_ = manifest.output_kind
    names = [t.name for t in outputs]
    label_output = None
    if kind_.classes and manifest.labels:
        label_output = names[0]
        classes = outputs[0].shape[-1]
        if classes is not None and classes != len(manifest.labels):
            raise TritonError(f"{source.name}'s output {label_output} has {classes} classes but the manifest lists "
                              f"{len(manifest.labels)} labels; fix the manifest's \"labels\"")
    if kind_.value not in names and not kind_.classes:
        raise TritonError(f"{source.name} outputs {names}, not the {kind_.value} output its manifest records")
    return TritonConfig(name, engine, inputs, outputs, size, list(preferred or []) if size else [], int(queue_delay_us),
                        kind, int(instances), list(gpus or []), label_output,
                        None if engine or kind == "cpu" else ort_precision_mode(resolved.precision), comments)


# ---------------------------------------------------------------------------- the check
def client_feed(config: TritonConfig, manifest, pixels: np.ndarray) -> np.ndarray:
    """What a Triton client sends for the uint8 ``pixels`` (N, C, H, W): the pixels in the input's layout
    for a raw-pixel graph, else edgevit's preprocessing of them; cast to the config's input data type."""
    from .common import graph_feed

    return graph_feed(manifest, pixels).astype(numpy_dtype(config.inputs[0].dtype))


def run_config(model, config: TritonConfig, feed: np.ndarray) -> dict[str, np.ndarray]:
    """``model`` (an ONNX file) on ONNX Runtime in requests shaped as the config allows (batches of at most
    ``max_batch_size``; a static-batch graph its fixed batch, the last one padded); ValueError where the
    feed or an output disagrees with the config's data types and dims."""
    from ..runtime import runner_for_format

    spec = config.inputs[0]
    want = numpy_dtype(spec.dtype)
    dims = config.dims(spec)[-feed.ndim + 1:]
    if feed.dtype != want or len(dims) != feed.ndim - 1 or any(d not in (-1, g) for d, g in zip(dims, feed.shape[1:])):
        raise ValueError(f"the client feed {feed.dtype} {list(feed.shape)} does not match the config's input "
                         f"{spec.triton_type} {config.dims(spec)}")
    step = config.max_batch_size if config.batched else spec.shape[0]
    out: dict[str, list] = {t.name: [] for t in config.outputs}
    with runner_for_format("onnx", model) as session:  # edgevit's ONNX Runtime runner (bf16 graphs included)
        for start in range(0, len(feed), step):
            chunk = feed[start:start + step]
            n = len(chunk)
            if not config.batched and n < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            results = session.infer({spec.name: chunk})
            for tensor in config.outputs:
                value = results[tensor.name]
                dims = config.dims(tensor)
                got = list(value.shape[1:] if config.batched else value.shape)
                if value.dtype != numpy_dtype(tensor.dtype) or any(d != -1 and d != g for d, g in zip(dims, got)):
                    raise ValueError(f"output {tensor.name}: {value.dtype} {got}, the config says {tensor.triton_type} {dims}")
                out[tensor.name].append(value[:n])
    return {k: np.concatenate(v) for k, v in out.items()}


# ---------------------------------------------------------------------------- the command
@dataclass
class TritonResult:
    """What ``edgevit deploy triton`` wrote, its config and certificate."""

    repository: Path
    model_dir: Path
    config: TritonConfig
    files: list[Path]
    certificate: object  # edgevit.certificates.Certificate

    def to_dict(self) -> dict:
        return {"repository": str(self.repository), "model": self.config.name, "model_dir": str(self.model_dir),
                "files": [str(f) for f in self.files], "config": self.config.to_dict(),
                "certificate": self.certificate.to_dict()}


def _method(config: TritonConfig, raw: bool, precision: str) -> str:
    feed = "uint8 pixels as a client sends them" if raw else "edgevit's preprocessing of uint8 pixels (the client's job)"
    model = ("the ONNX graph the engine was built from (TensorRT and Triton not run here)" if config.engine
             else f"{ONNX_MODEL} of the repository")
    reference = (f"the {BASE_PRECISION} raw-pixel graph on the same pixels (its in-graph preprocessing checked "
                 "against edgevit's at export)" if raw else
                 f"the {BASE_PRECISION} graph on edgevit's preprocessing (verified against PyTorch at export)")
    return (f"{feed}, in the config's data types and batch sizes, through {model} on ONNX Runtime; vs "
            f"{reference}"
            + ("" if precision == BASE_PRECISION else f"; held to the {precision} tolerance"))


def write_triton(outdir, repository, name: str | None = None, precision: str | None = None, artifact=None,
                 instances: int = 1, kind: str = "gpu", max_batch_size: int | None = None,
                 preferred: list[int] | None = None, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                 gpus: list[int] | None = None, compute_capability: str | None = None,
                 tensorrt_version: str | None = None, force: bool = False, data: str | None = None,
                 samples: int | None = None, verify_hash: bool = True, progress=None) -> TritonResult:
    """Write the model ``REPOSITORY/NAME`` for the ``precision`` artifact (or ``artifact`` file) of export
    ``outdir``, check it (:func:`run_config`) and record the certificate in the export's manifest. Every
    refusal of :func:`plan_config`, and an existing ``REPOSITORY/NAME`` without ``force``, comes before
    anything is written; a check that fails installs nothing (VerificationError with the numbers)."""
    from ..certificates import Certificate
    from ..metrics import compare
    from ..tolerances import Verdict, get_tolerance
    from . import common

    say = progress or (lambda msg: None)
    resolved = common.resolve_target(outdir, precision, artifact, verify_hash=verify_hash)
    manifest = resolved.manifest
    config = plan_config(resolved, name, kind, instances, max_batch_size, preferred, queue_delay_us, gpus,
                         compute_capability, tensorrt_version)
    repository = Path(repository)
    model_dir = common.check_output(repository / config.name, force, manifest.root)
    out_kind: OutputKind = manifest.output_kind
    say("preparing the consumer images and the reference outputs")
    consumer = common.consumer_data(manifest, data=data, samples=samples, verify_hash=verify_hash)
    tolerance = get_tolerance(resolved.precision, out_kind.value)
    raw = common.raw_input(manifest)
    with common.staged_directory(model_dir, force=force, source=manifest.root) as stage:
        version = stage / VERSION_DIR
        version.mkdir()
        for file in resolved.files:  # the graph or engine, then a graph's external data under its own names
            target = version / ((PLAN_MODEL if config.engine else ONNX_MODEL) if file == resolved.path else file.name)
            shutil.copyfile(file, target)
        if config.label_output:
            common.write_labels(stage, manifest.labels, LABEL_NAME)
        (stage / CONFIG_NAME).write_text(config.text())
        checked = (manifest.root / resolved.record.onnx_path) if config.engine else version / ONNX_MODEL
        say(f"running {checked.name} with the config's shapes and types on {consumer.samples} images")
        out = run_config(checked, config, client_feed(config, manifest, consumer.pixels))
        compared = config.outputs[0].name
        comparison = compare(consumer.reference, np.asarray(out[compared], dtype=np.float32), tolerance,
                             output=out_kind.value)
        checks = tolerance.judge(comparison, CONSUMER)
        verdict = Verdict.NOT_RUN if config.engine else Verdict.of(checks)
        measured = {"max_abs": float(comparison.max_abs), "agreement": comparison.agreement,
                    "checks": [c.to_dict() for c in checks]}
        files = common.file_hashes(stage)
        cert = Certificate(
            CONSUMER, resolved.entry.path, _method(config, raw, resolved.precision), verdict,
            max_abs=None if config.engine else measured["max_abs"],
            top1_agreement=None if config.engine else comparison.agreement, samples=consumer.samples,
            atol=tolerance.atol, location=str(model_dir.resolve()), artifact_sha256=resolved.entry.sha256,
            files=files,
            details={"model": config.name, "max_batch_size": config.max_batch_size, "preferred_batch_size":
                     config.preferred, "instance_kind": INSTANCE_KINDS[config.kind], "instances": config.instances,
                     "input": {"name": config.inputs[0].name, "data_type": config.inputs[0].triton_type,
                               "dims": config.dims(config.inputs[0])},
                     "compared": compared, "data": consumer.description, "tolerance": tolerance.to_dict(),
                     ("source_graph_check" if config.engine else "checks"): measured if config.engine else
                     measured["checks"],
                     "not run here": "Triton Inference Server" + (" and TensorRT" if config.engine else "")})
        common.require_passed(checks, "Triton model", model_dir)
    common.record_certificate(manifest, cert)
    written = sorted(p for p in model_dir.rglob("*") if p.is_file())
    return TritonResult(repository, model_dir, config, written, cert)



__all__ = ["CONFIG_NAME", "CONSUMER", "TritonConfig", "TritonError", "TritonResult", "graph_io", "pbtxt",
           "plan_config", "run_config", "write_triton"]
