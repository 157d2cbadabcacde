"""A DeepStream Gst-nvinfer configuration for an export: ``edgevit deploy deepstream OUTDIR -o DIR``.

nvinfer hands the network ``y = net-scale-factor * (x - offsets[c])`` of 0..255 pixels ``x``, as float
planes, with ONE scalar scale (NVIDIA's Gst-nvinfer documentation, "Gst-nvinfer File Configuration
Specifications"; ``edgevit/deploy/nvinfer_keys.json`` names the source). edgevit's graphs expect
``(x / pixel_max - mean[c]) / std[c]``: a per-channel ``std`` cannot be written as one scale, and the
averaged std users write by hand feeds every channel but one the wrong numbers. So the DeepStream graph
is its own artifact, ``DIR/model.deepstream.onnx``: ``1/std[c]`` is folded into the patch-embedding
Conv's weights (``W[:, c] /= std[c]``; exact, as scaling an input channel commutes with a convolution
and with its zero padding), and the config is exact: ``offsets = mean * pixel_max`` per channel,
``net-scale-factor = 1 / pixel_max``. A classifier's graph gets a Softmax on its logits, because
nvinfer's classifier parser (``parseAttributesFromSoftmaxLayers``) reads probabilities: it keeps the
largest value above ``classifier-threshold`` *and above 0*, so raw logits that are all negative would
give no label.

The check (:func:`check_config`) reads the written config back as nvinfer's GKeyFile parser would,
applies nvinfer's formula with the numbers it finds to uint8 images, runs the written graph on ONNX
Runtime and compares with the reference; :func:`nvinfer_classify` follows nvinfer's classifier parser.
Nothing here runs DeepStream or TensorRT (docs/design.md §5.8).
"""

from __future__ import annotations

import configparser
import json
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import EdgeVitError
from ..formats import BASE_PRECISION
from ..formats import precision as precision_row
from ..onnx_graph import load_onnx, save_onnx
from ..output_kinds import OutputKind
from ..specs import Preprocessing

CONSUMER = "deepstream"
CONFIG_NAME = "config_infer_primary.txt"
"""The config file nvinfer's ``config-file-path`` names (DeepStream's samples call theirs ``config_infer_primary*.txt``)."""
GRAPH_NAME = "model.deepstream.onnx"
LABEL_NAME = "labels.txt"
PROBABILITIES = "probabilities"
"""The output a classifier's DeepStream graph adds: the softmax of its logits."""
GROUP = "property"
COLOR_FORMATS = {3: 0, 1: 2}
"""Channels -> nvinfer ``model-color-format`` (0 RGB, 1 BGR, 2 GRAY): edgevit reads images as RGB or
grayscale."""
GPU_ID, GIE_ID, CLASSIFIER_THRESHOLD = 0, 1, 0.0


class DeepStreamError(EdgeVitError):
    """A DeepStream config that cannot be written for this artifact (said before anything is written)."""


@lru_cache(maxsize=1)
def nvinfer_keys() -> dict:
    """The parsed ``nvinfer_keys.json``: nvinfer's accepted keys per group, the enums, and their source."""
    return json.loads(resources.files("edgevit.deploy").joinpath("nvinfer_keys.json").read_text())


def unknown_keys(config: dict[str, dict[str, str]]) -> list[str]:
    """``group.key`` of every key of ``config`` (group -> key -> value) nvinfer's parser does not handle
    (:func:`nvinfer_keys`); a ``class-attrs-*`` group is checked against the class-attrs keys."""
    groups = nvinfer_keys()["groups"]
    bad = []
    for group, values in config.items():
        allowed = groups["class-attrs"] if group.startswith("class-attrs-") else groups.get(group)
        if allowed is None:
            bad.append(f"[{group}]")
            continue
        bad += [f"{group}.{k}" for k in values if k not in allowed]
    return bad


def network_mode(precision: str) -> int:
    """nvinfer's ``network-mode`` of ``precision`` (its row's ``nvinfer_mode``); DeepStreamError naming the
    precisions nvinfer has a mode for."""
    from ..formats import PRECISION_TABLE

    mode = precision_row(precision).nvinfer_mode
    if mode is None:
        known = [f"{p.name} ({p.nvinfer_mode})" for p in PRECISION_TABLE if p.nvinfer_mode is not None]
        raise DeepStreamError(f"nvinfer has no network-mode for {precision} (its modes: {', '.join(known)}); "
                              "write the DeepStream config from one of those precisions (--precision)")
    return mode


# ---------------------------------------------------------------------------- the numbers
@dataclass(frozen=True)
class Normalization:
    """What nvinfer is told: ``y = scale * (x - offsets[c])``; ``folded_std``: the per-channel std folded
    into the graph (None: the graph takes ``y`` as it is, for a uniform std written into ``scale``)."""

    scale: float
    offsets: tuple[float, ...]
    folded_std: tuple[float, ...] | None

    @classmethod
    def folded(cls, spec: Preprocessing) -> "Normalization":
        """The exact config of a graph with ``1/std`` folded in: ``1/pixel_max`` and ``mean * pixel_max``."""
        return cls(1.0 / spec.pixel_max, tuple(m * spec.pixel_max for m in spec.mean), tuple(spec.std))

    @classmethod
    def scalar(cls, spec: Preprocessing) -> "Normalization":
        """The config of the graph as exported, exact only where every channel has the same std."""
        if len(set(spec.std)) != 1:
            raise DeepStreamError(
                f"std {list(spec.std)} differs per channel: nvinfer's single net-scale-factor cannot express it. "
                "A TensorRT engine's weights cannot be edited; write the config from an ONNX graph (--precision), "
                f"whose {GRAPH_NAME} gets 1/std folded into its patch embedding, and let nvinfer build the engine")
        return cls(1.0 / (spec.pixel_max * spec.std[0]), tuple(m * spec.pixel_max for m in spec.mean), None)


def averaged_std(spec: Preprocessing) -> Normalization:
    """The config users write by hand for a per-channel std: one averaged std in ``net-scale-factor``
    (the test shows the check refuses it where the std differs per channel)."""
    std = float(np.mean(spec.std))
    return Normalization(1.0 / (spec.pixel_max * std), tuple(m * spec.pixel_max for m in spec.mean), None)


# ---------------------------------------------------------------------------- the graph
def _refuse_qdq(what: str) -> DeepStreamError:
    from ..formats import PRECISION_TABLE

    floats = [p.name for p in PRECISION_TABLE if p.float and p.nvinfer_mode is not None]
    return DeepStreamError(
        f"the patch-embedding Conv's {what} is quantized (a graph made with --quantize-patch-embed): folding 1/std "
        "into it would change what its quantizer was calibrated on. Write the DeepStream config from a float "
        f"graph ({', '.join(floats)}) or from a Q/DQ graph quantized without --quantize-patch-embed")


def patch_conv(graph, input_name: str):
    """The patch-embedding Conv the graph input feeds (through Cast/Identity; Shape reads only its shape);
    DeepStreamError naming any op that computes on the pixels before it."""
    frontier, convs = [input_name], []
    while frontier:
        tensor = frontier.pop()
        for node in graph.users(tensor):
            if node.op_type in ("Cast", "Identity"):
                frontier.extend(node.output)
            elif node.op_type == "Conv" and node.input[0] == tensor:
                convs.append(node)
            elif node.op_type == "QuantizeLinear":
                raise _refuse_qdq("input")
            elif node.op_type != "Shape":
                raise DeepStreamError(
                    f"the graph's input reaches {graph.node_name(node)} ({node.op_type}) before a patch-embedding Conv: "
                    "edgevit folds 1/std into that Conv's weights and cannot fold it through other ops")
    if len(convs) != 1:
        raise DeepStreamError(f"the graph's input feeds {len(convs)} Conv nodes, not one patch-embedding Conv")
    return convs[0]


def fold_std(proto, std) -> dict:
    """Fold ``1/std[c]`` into the patch-embedding Conv's weights of ``proto`` (in place): the graph then
    takes ``x / pixel_max - mean`` where it took ``(x / pixel_max - mean) / std``. Computed in float64 and
    stored in the weight's own element type. Returns the fold's record (node, initializer, std)."""
    from onnx import TensorProto, helper, numpy_helper

    from ..onnx_graph import Graph

    graph = Graph(proto)
    conv = patch_conv(graph, proto.graph.input[0].name)
    name = conv.input[1]
    if name not in graph.initializers:
        producer = graph.producer.get(name)
        if producer is not None and producer.op_type == "DequantizeLinear":
            raise _refuse_qdq("weight")
        raise DeepStreamError(f"the patch-embedding Conv {graph.node_name(conv)}'s weight {name!r} is no initializer")
    if (Graph.attribute(conv, "group", 1) or 1) != 1:
        raise DeepStreamError(f"the patch-embedding Conv {graph.node_name(conv)} is grouped: its weight's axis 1 is "
                              "not the image channel")
    if len(graph.users(name)) != 1:
        raise DeepStreamError(f"the patch-embedding weight {name!r} is shared with other nodes; folding would change them")
    tensor = graph.initializers[name]
    weight = numpy_helper.to_array(tensor, base_dir=str(graph.base_dir or "")).astype(np.float64)
    std = np.asarray(std, dtype=np.float64)
    if weight.ndim != 4 or weight.shape[1] != std.size:
        raise DeepStreamError(f"the patch-embedding weight {name!r} has shape {list(weight.shape)}, not "
                              f"[dim, {std.size} channels, kh, kw]")
    folded = weight / std[None, :, None, None]
    new = helper.make_tensor(name, tensor.data_type, list(tensor.dims), folded.astype(np.float32).ravel())
    tensor.CopyFrom(new)
    return {"std": [float(s) for s in std], "node": Graph.node_name(conv), "initializer": name,
            "element": TensorProto.DataType.Name(tensor.data_type)}


def add_softmax(proto) -> str:
    """Make ``proto``'s single output the softmax of what it was (over its last axis), named
    :data:`PROBABILITIES`; returns the name of the logits it takes."""
    from onnx import helper

    out = proto.graph.output[0]
    logits = out.name
    proto.graph.node.append(helper.make_node("Softmax", [logits], [PROBABILITIES], axis=-1, name="deepstream/softmax"))
    probs = proto.graph.output.add()
    probs.CopyFrom(out)
    probs.name = PROBABILITIES
    del proto.graph.output[0]
    return logits


def deepstream_graph(proto, spec: Preprocessing, kind: OutputKind) -> tuple[object, dict]:
    """The DeepStream graph of ``proto`` (a copy): float input checked, ``1/std`` folded into the patch
    embedding, a Softmax after a classifier's logits. Returns (graph, the fold's record)."""
    import onnx

    if len(proto.graph.input) != 1:
        raise DeepStreamError(f"the graph has {len(proto.graph.input)} inputs; nvinfer feeds one image input")
    elem = proto.graph.input[0].type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        what = onnx.TensorProto.DataType.Name(elem).lower()
        if elem == onnx.TensorProto.UINT8:
            raise DeepStreamError(
                "this graph takes raw uint8 pixels (export --input uint8), but nvinfer hands a network float planes "
                "it has normalized itself: write the DeepStream config from the float-input export")
        raise DeepStreamError(f"the graph's input is {what}; nvinfer hands a network float32 planes: use a graph "
                              "quantized with --io-dtype fp32 (the default)")
    if proto.graph.output[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise DeepStreamError("the graph's output is not float32, which nvinfer's parsers read: use a graph "
                              "quantized with --io-dtype fp32 (the default)")
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    record = {"folded": "1/std per input channel into the patch-embedding Conv's weights", **fold_std(model, spec.std)}
    if kind.classes:
        record["softmax"] = f"appended after {add_softmax(model)!r} (nvinfer's classifier parser reads probabilities)"
    return model, record


# ---------------------------------------------------------------------------- the config file
def _num(v: float) -> str:
    return repr(float(v))


@dataclass
class ConfigSpec:
    """Everything a config file says (:func:`config_text`)."""

    kind: OutputKind
    infer_dims: tuple[int, int, int]
    norm: Normalization
    batch_size: int
    network_mode: int
    onnx_file: str
    engine_file: str | None = None
    label_file: str | None = None
    comments: list[str] = field(default_factory=list)

    def properties(self) -> dict[str, str]:
        """The [property] keys, in the order written."""
        c, h, w = self.infer_dims
        props = {"gpu-id": str(GPU_ID), "gie-unique-id": str(GIE_ID), "process-mode": "1",
                 "network-type": "1" if self.kind.classes else "100", "onnx-file": self.onnx_file}
        if self.engine_file:
            props["model-engine-file"] = self.engine_file
        if self.label_file:
            props["labelfile-path"] = self.label_file
        props.update({"batch-size": str(self.batch_size), "network-mode": str(self.network_mode),
                      "infer-dims": f"{c};{h};{w}", "model-color-format": str(COLOR_FORMATS[c]),
                      "net-scale-factor": _num(self.norm.scale),
                      "offsets": ";".join(_num(o) for o in self.norm.offsets), "maintain-aspect-ratio": "0"})
        if self.kind.classes:
            props.update({"output-blob-names": PROBABILITIES, "classifier-threshold": _num(CLASSIFIER_THRESHOLD)})
        else:
            props["output-tensor-meta"] = "1"
        return props


def config_text(spec: ConfigSpec) -> str:
    """The nvinfer config file (GKeyFile syntax: ``#`` comments, ``key=value``, lists joined by ``;``)."""
    lines = [f"# {c}" if c else "#" for c in spec.comments] + [f"[{GROUP}]"]
    lines += [f"{k}={v}" for k, v in spec.properties().items()]
    return "\n".join(lines) + "\n"


def read_config(path) -> dict[str, dict[str, str]]:
    """A config file as nvinfer's GKeyFile reads it: group -> key -> value (keys case-sensitive; a
    repeated key or group is an error, as GKeyFile reports)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",),
                                       inline_comment_prefixes=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str  # GKeyFile keys are case-sensitive (class-attrs' "minBoxes")
    try:
        parser.read_string(Path(path).read_text(), source=str(path))
    except configparser.Error as exc:
        raise DeepStreamError(f"{path}: not a config nvinfer can read ({exc})") from None
    return {g: dict(parser[g]) for g in parser.sections()}


def nvinfer_input(pixels: np.ndarray, config: dict[str, dict[str, str]]) -> np.ndarray:
    """nvinfer's preprocessing, with the numbers of a config read by :func:`read_config`: uint8 pixels
    (N, C, H, W, channels in ``model-color-format`` order) -> ``net-scale-factor * (x - offsets[c])`` in
    float32, as nvinfer's CUDA kernels compute it; checks the pixels' size against ``infer-dims``."""
    props = config[GROUP]
    scale = np.float32(float(props["net-scale-factor"]))
    offsets = np.array([float(v) for v in props.get("offsets", "").split(";") if v.strip()] or [0.0], np.float32)
    dims = tuple(int(v) for v in props["infer-dims"].split(";"))
    if pixels.dtype != np.uint8 or pixels.shape[1:] != dims:
        raise DeepStreamError(f"nvinfer feeds {dims} uint8 planes; got {pixels.dtype} {pixels.shape[1:]}")
    if offsets.size not in (1, dims[0]):
        raise DeepStreamError(f"offsets has {offsets.size} values for {dims[0]} channels")
    return (scale * (pixels.astype(np.float32) - offsets.reshape(1, -1, 1, 1))).astype(np.float32)


def nvinfer_classify(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The class nvinfer's default classifier parser (``parseAttributesFromSoftmaxLayers``, DeepStream 6.3)
    attaches per sample: the first largest value above ``threshold`` and above 0; -1 where none is."""
    probs = np.asarray(probabilities, dtype=np.float32)
    best = probs.argmax(axis=1)
    top = probs[np.arange(len(probs)), best]
    return np.where((top > threshold) & (top > 0), best, -1)


def label_line(labels: list[str]) -> str:
    """nvinfer's label file of a one-output classifier: one line, the labels joined by ``;``
    (``InferPostprocessor::parseLabelsFile``: a line per output layer)."""
    bad = [lbl for lbl in labels if ";" in lbl or "\n" in lbl or "\r" in lbl]
    if bad:
        raise DeepStreamError(f"labels {bad[:3]} hold ';' or a line break, which nvinfer's label file uses as "
                              "separators; rename them in the manifest's \"labels\"")
    return ";".join(labels) + "\n"


# ---------------------------------------------------------------------------- the check
def run_graph(graph, pixels: np.ndarray, config: dict, outputs: list[str], batch: int) -> dict[str, np.ndarray]:
    """``graph`` (a path or ModelProto) on ONNX Runtime, fed nvinfer's preprocessing of ``pixels`` with the
    numbers of ``config`` (:func:`nvinfer_input`); ``outputs`` also read where they are inner tensors."""

    from ..onnx_graph import mark_outputs
    from ..runtime import runner_for_format
    from ..runtime.batching import run_batched

    proto = load_onnx(graph) if isinstance(graph, (str, Path)) else graph
    inner = [o for o in outputs if o not in {out.name for out in proto.graph.output}]
    proto = mark_outputs(proto, inner) if inner else proto
    with runner_for_format("onnx", proto) as runner:
        return run_batched(runner, nvinfer_input(pixels, config), batch, outputs=outputs)


def check_config(config_path, graph, pixels: np.ndarray, reference: np.ndarray, kind: OutputKind, tolerance,
                 compared: str, batch: int = 8):
    """The check of a written config: read ``config_path`` back (:func:`read_config`), refuse keys nvinfer
    does not know, apply nvinfer's formula with its numbers to the uint8 ``pixels``, run ``graph`` and
    compare its ``compared`` tensor (a classifier's logits, else its output) with ``reference`` under
    ``tolerance``. Returns (Comparison, [Check], the classes nvinfer's classifier parser attaches (None for
    an embedding), the config read)."""
    from ..metrics import compare

    config = read_config(config_path)
    bad = unknown_keys(config)
    if bad:
        raise DeepStreamError(f"{config_path}: keys nvinfer's parser does not handle: {', '.join(bad)}")

    proto = load_onnx(graph) if isinstance(graph, (str, Path)) else graph
    final = proto.graph.output[0].name  # what nvinfer's parsers read, from the graph as written
    out = run_graph(proto, pixels, config, [final], batch)
    if compared != final:  # a classifier's logits, read from a marked copy (docs/design.md §5.6)
        out.update(run_graph(proto, pixels, config, [compared], batch))
    comparison = compare(reference, out[compared], tolerance, output=kind.value)
    checks = tolerance.judge(comparison, CONSUMER)
    classes = None
    if kind.classes:
        threshold = float(config[GROUP].get("classifier-threshold", CLASSIFIER_THRESHOLD))
        classes = nvinfer_classify(out[final], threshold)
    return comparison, checks, classes, config


# ---------------------------------------------------------------------------- the command
@dataclass
class DeepStreamResult:
    """What ``edgevit deploy deepstream`` wrote and its certificate."""

    directory: Path
    config: Path
    files: list[Path]
    certificate: object  # edgevit.certificates.Certificate
    properties: dict[str, str]

    def to_dict(self) -> dict:
        return {"directory": str(self.directory), "config": str(self.config), "files": [str(f) for f in self.files],
                "properties": self.properties, "certificate": self.certificate.to_dict()}


def _method(kind: OutputKind, folded: bool, precision: str) -> str:
    fold = "1/std folded into the patch embedding; " if folded else ""
    what = "logits and nvinfer's attached class" if kind.classes else kind.value
    return (f"{fold}nvinfer's y = net-scale-factor * (x - offsets) with the numbers read back from the config, "
            f"on uint8 pixels; the written graph on ONNX Runtime; its {what} vs the {precision} graph as exported "
            f"on edgevit's preprocessing{' (verified against PyTorch at export)' if precision == BASE_PRECISION else ''}")


def write_deepstream(outdir, output, precision: str | None = None, artifact=None, batch_size: int | None = None,
                     force: bool = False, data: str | None = None, samples: int | None = None,
                     verify_hash: bool = True, progress=None) -> DeepStreamResult:
    """Write ``output``/{config_infer_primary.txt, model.deepstream.onnx, labels.txt} for the ONNX graph of
    ``precision`` (or the ``artifact`` file: an ONNX graph or a TensorRT engine) of export ``outdir``, check
    it with nvinfer's rules (:func:`check_config`) and record the certificate in the export's manifest.
    Refused before anything is written: a raw-pixel graph, a precision nvinfer has no network-mode for, a
    batch size outside the profile, an engine of a model whose std differs per channel (or of a
    classifier), an existing ``output`` without ``force``. A config whose check fails is not installed
    (VerificationError with the numbers)."""
    from ..certificates import Certificate
    from ..tolerances import Check, Verdict, get_tolerance
    from . import common

    say = progress or (lambda msg: None)
    resolved = common.resolve_target(outdir, precision, artifact, verify_hash=verify_hash)
    manifest = resolved.manifest
    output = common.check_output(output, force, manifest.root)
    kind, spec = manifest.output_kind, common.float_input(manifest, "nvinfer")
    if spec.channels not in COLOR_FORMATS:
        raise DeepStreamError(f"nvinfer feeds RGB, BGR or GRAY planes; this model takes {spec.channels} channels")
    mode = network_mode(resolved.precision)
    batch = common.batch_size(manifest, batch_size)
    line = label_line(list(manifest.labels)) if kind.classes and manifest.labels else None
    engine = not resolved.artifact_format.graph
    if engine:  # nvinfer loads an engine as built: its input must be normalized by one scalar
        if kind.classes:
            raise DeepStreamError(
                "a classifier's engine outputs logits, but nvinfer's classifier parser reads probabilities (it keeps "
                "the largest value above 0): write the config from an ONNX graph (--precision), whose "
                f"{GRAPH_NAME} ends in a Softmax, and let nvinfer build its engine")
        norm = Normalization.scalar(spec)
        profile = resolved.record.profile
        if profile is not None and not profile[0] <= batch <= profile[2]:
            raise ValueError(f"--batch-size {batch} is outside {resolved.path.name}'s profile {profile[0]}..{profile[2]}")
        source = manifest.root / (resolved.record.onnx_path or "")
        if not resolved.record.onnx_path or not source.is_file():
            raise DeepStreamError(f"{resolved.path.name}'s record names no ONNX graph it was built from in "
                                  f"{manifest.root}; nvinfer needs it as onnx-file")
    else:
        norm, source = Normalization.folded(spec), resolved.path
    say(f"reading {source.name}")
    proto = load_onnx(source, load_external_data=True)
    if engine:
        graph, record = proto, {"folded": None, "why": "a TensorRT engine runs as built; every channel has the "
                                f"same std {spec.std[0]:g}, written into net-scale-factor"}
    else:
        graph, record = deepstream_graph(proto, spec, kind)
    compared = proto.graph.output[0].name  # the logits / features / tokens the reference also gives
    cspec = ConfigSpec(kind, spec.input_size, norm, batch, mode, GRAPH_NAME,
                       engine_file=resolved.path.name if engine else None, label_file=LABEL_NAME if line else None,
                       comments=_comments(manifest, resolved, record, spec))
    say("preparing the consumer images and the reference outputs")
    # the reference: the graph itself (the fp32 graph, verified against PyTorch at export; a precision graph, whose
    # accuracy against it the quantize gate and verify record), on edgevit's own preprocessing: what differs is
    # the consumer's preprocessing and the fold, nothing else
    consumer = common.consumer_data(manifest, data=data, samples=samples, verify_hash=verify_hash, graph=source)
    tolerance = get_tolerance(resolved.precision, kind.value)
    with common.staged_directory(output, force=force, source=manifest.root) as stage:
        save_onnx(graph, stage / GRAPH_NAME)
        if engine:
            shutil.copyfile(resolved.path, stage / resolved.path.name)
        if line:
            (stage / LABEL_NAME).write_text(line)
        (stage / CONFIG_NAME).write_text(config_text(cspec))
        say(f"checking {CONFIG_NAME} with nvinfer's formula on {consumer.samples} images")
        comparison, checks, classes, config = check_config(stage / CONFIG_NAME, stage / GRAPH_NAME, consumer.pixels,
                                                           consumer.reference, kind, tolerance, compared)
        agreement = comparison.agreement
        if classes is not None:
            agreement = float((classes == consumer.reference.argmax(1)).mean())
            checks.append(Check(f"{CONSUMER}.nvinfer_label_agreement", agreement, tolerance.min_agreement, ">=",
                                agreement >= tolerance.min_agreement, "the class nvinfer's classifier parser "
                                "attaches vs the reference's top-1"))
        verdict = Verdict.of(checks)
        cert = Certificate(
            CONSUMER, resolved.entry.path, _method(kind, not engine, resolved.precision), verdict,
            max_abs=float(comparison.max_abs),
            top1_agreement=agreement, samples=consumer.samples, atol=tolerance.atol, location=str(output.resolve()),
            artifact_sha256=resolved.entry.sha256, files=common.file_hashes(stage),
            details={"config": CONFIG_NAME, "graph": GRAPH_NAME, "network-type": int(config[GROUP]["network-type"]),
                     "network-mode": mode, "net-scale-factor": norm.scale, "offsets": list(norm.offsets),
                     "infer-dims": config[GROUP]["infer-dims"], "batch-size": batch, "fold": record,
                     "compared": compared, "data": consumer.description, "tolerance": tolerance.to_dict(),
                     "checks": [c.to_dict() for c in checks],
                     "not run here": "DeepStream and TensorRT (NVIDIA's SDK on a GPU)"})
        common.require_passed(checks, "DeepStream config", output)
    common.record_certificate(manifest, cert)
    return DeepStreamResult(output, output / CONFIG_NAME, [output / name for name in cert.files], cert,
                            cspec.properties())


def _comments(manifest, resolved, record, spec: Preprocessing) -> list[str]:
    from .. import __version__

    lines = [f"Gst-nvinfer config written by edgevit {__version__} for {resolved.path.name} "
             f"({resolved.precision}, {manifest.output_kind.value}).",
             "nvinfer feeds the network y = net-scale-factor * (x - offsets[c]) of 0..255 pixels x.",
             f"The model expects (x / {spec.pixel_max:g} - mean) / std with mean {list(spec.mean)}, std {list(spec.std)}."]
    if record.get("folded"):
        lines.append(f"1/std is folded into {record['initializer']} of {GRAPH_NAME}, so the config is exact: "
                     "net-scale-factor = 1/pixel_max, offsets = mean * pixel_max.")
    else:
        lines.append("std is the same for every channel: net-scale-factor = 1/(pixel_max * std), offsets = mean * pixel_max.")
    if precision_row(resolved.precision).nvinfer_mode == 1:
        lines += ["network-mode=1 (INT8): the graph's Q/DQ nodes carry the int8 scales; DeepStream 6.3 without an",
                  "int8-calib-file warns 'Trying FP16 mode' and builds with the FP16 flag (nvdsinfer_model_builder.cpp)."]
    lines += ["nvinfer scales each frame (or object) to infer-dims without a centre crop; edgevit's check starts from",
              "model-size pixels, so crop upstream where framing matters. Written and checked with nvinfer's formula",
              "on ONNX Runtime; not run in DeepStream here."]
    return lines


__all__ = ["CONFIG_NAME", "CONSUMER", "ConfigSpec", "DeepStreamError", "DeepStreamResult", "GRAPH_NAME", "LABEL_NAME", "Normalization",
           "averaged_std", "check_config", "config_text", "deepstream_graph", "fold_std", "network_mode", "nvinfer_classify",
           "nvinfer_input", "nvinfer_keys", "patch_conv", "read_config", "run_graph", "unknown_keys", "write_deepstream"]
