"""``edgevit build``: an exported ONNX graph -> a TensorRT engine, its fusion report and manifest entry.

    from edgevit.tensorrt.build import EngineBuildConfig, build_engine
    result = build_engine("out", "out/model.plan", EngineBuildConfig())

:func:`build_engine` resolves the inputs from the manifest, refuses what TensorRT would reject or
silently get wrong (asymmetric Q/DQ, DLA for a graph DLA cannot run, a hardware-compatibility
level this TensorRT lacks) before TensorRT is called, builds with :func:`build_plan`, writes the
plan raw (no prepended bytes: trtexec and C++ loaders read it as is) under a temporary name and
renames it, and records the engine in the manifest beside it. The decisions are in
:mod:`edgevit.tensorrt.rules`; the TensorRT names used are checked per version by tests/tensorrt.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._io import (atomic_path, check_output_dir, check_writable, install_file, outdir_lock, remove_stale_temporaries,
                   temporary_name, write_text_atomic)
from ..errors import ManifestError, TensorRTError
from ..formats import BASE_PRECISION
from ..manifest import MANIFEST_NAME, Artifact, Manifest
from ..onnx_graph import LAYOUT_OPS, QDQ_OPS
from . import rules
from ._bindings import import_tensorrt, logger
from .fusion import FusionReport, fusion_report
from .memory import check_memory_budget, engine_device_memory
from .record import EngineRecord



# ------------------------------------------------------------------ TensorRT calls
@dataclass(frozen=True)
class EngineBuildConfig:
    """Options of :func:`build_engine` (``batch`` overrides the manifest's min/opt/max)."""

    precision: str | None = None  # which ONNX artifact of an OUTDIR; default: the only one, else fp32
    batch: tuple[int, int, int] | None = None
    workspace_mib: int | None = None
    optimization_level: int | None = None
    timing_cache: str | None = None
    dla_core: int | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    weakly_typed: bool = False  # TensorRT 10 only: FP16/BF16 builder flags instead of strong typing
    memory_budget_mb: float | None = None  # refuse an engine needing more device memory (memory.check_memory_budget)

    def __post_init__(self) -> None:
        if self.hardware_compatibility not in rules.HW_COMPAT_LEVELS:
            raise ValueError(f"hardware_compatibility must be one of {list(rules.HW_COMPAT_LEVELS)}, "
                             f"got {self.hardware_compatibility!r}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ValueError(f"builder optimization level must be 0..5, got {self.optimization_level}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ValueError(f"workspace must be >= 1 MiB, got {self.workspace_mib}")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ValueError(f"--memory-budget must be > 0 MB, got {self.memory_budget_mb}")


@dataclass
class BuildOptions:
    """What :func:`build_plan` builds: the graph's facts (its precision, whether it holds Q/DQ, its
    input and batch profile) and the user's :class:`EngineBuildConfig`."""

    precision: str = BASE_PRECISION
    has_qdq: bool = False
    profile: tuple[int, int, int] = (1, 1, 1)
    input_name: str = "images"
    input_shape: tuple = ()  # per-sample shape (C, H, W)
    config: EngineBuildConfig = field(default_factory=EngineBuildConfig)
    size_range: dict | None = None  # a graph of dynamic height and width: the manifest input's size_range


@dataclass
class BuildResult:
    plan: bytes
    facts: dict
    mode: dict
    report: FusionReport
    dla_fallback: list = field(default_factory=list)
    seconds: float = 0.0
    device_memory_bytes: int | None = None  # the engine's device memory for profile 0 (tensorrt/memory.py)


def _parser_errors(parser) -> str:
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        lines.append(f"node {err.node()} {err.node_name()!r} ({err.code()}): {err.desc()}")
    return "; ".join(lines) or "no parser error recorded"


def _load_timing_cache(config, path: str):
    """Give the builder the timing cache at ``path`` (an empty one when the file does not exist yet).

    ``set_timing_cache(..., ignore_mismatch=False)`` returns False for a cache made by another
    TensorRT or GPU; that is an error here, never a silent replacement of the user's file.
    """
    data = Path(path).read_bytes() if Path(path).exists() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        raise TensorRTError(f"--timing-cache {path} was made by another TensorRT version or GPU and cannot be used "
                            "here; give another --timing-cache path (or delete this file to start a new cache)")
    return cache


def build_plan(onnx_path: str | os.PathLike, opts: BuildOptions) -> BuildResult:
    """Parse ``onnx_path`` and build a serialized engine (plan bytes) with ``opts``."""
    from .session import deserialize, device_facts

    cfg = opts.config
    trt = import_tensorrt()
    start = time.perf_counter()
    facts = device_facts(trt)
    version = trt.__version__
    mode = rules.build_mode(version, opts.precision, opts.has_qdq, cfg.weakly_typed, dla=cfg.dla_core is not None)
    rules.check_dla(version, facts, cfg.dla_core, opts.precision)
    if cfg.dla_core is not None:
        rules.check_dla_profile(opts.profile)
    hw_level = rules.hardware_level_name(version, cfg.hardware_compatibility)
    rules.check_hardware_compat_builder(cfg.hardware_compatibility, facts)  # Ampere+/Turing+ builder (NvInfer.h)

    builder = trt.Builder(logger(trt))
    flags = 0
    if mode.strongly_typed and not rules.at_least(version, 11):  # 11: always strongly typed, the flag is ignored
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger(trt))
    if not parser.parse_from_file(str(onnx_path)):  # finds external data beside the file
        raise TensorRTError(f"TensorRT {version} could not parse {onnx_path}: {_parser_errors(parser)}")

    config = builder.create_builder_config()
    # "FP16" / "BF16" (--weakly-typed), or trtexec's DLA flags ("INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS":
    # rules.dla_build_mode): weak typing, which rules.build_mode allows on TensorRT 10 only
    for name in mode.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if cfg.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_mib) << 20)
    if cfg.optimization_level is not None:
        config.builder_optimization_level = int(cfg.optimization_level)
    if cfg.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hw_level is not None:  # looked up by name: SAME_COMPUTE_CAPABILITY exists from TensorRT 10.9 only
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, hw_level)

    profile = builder.create_optimization_profile()
    profile.set_shape(opts.input_name, *rules.input_shapes(opts.input_shape, opts.profile, opts.size_range))
    config.add_optimization_profile(profile)

    if cfg.timing_cache:
        _load_timing_cache(config, cfg.timing_cache)

    dla_fallback = []
    if cfg.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(cfg.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not config.can_run_on_DLA(layer):
                dla_fallback.append({"layer": layer.name, "type": str(layer.type).split(".")[-1]})

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TensorRTError(f"TensorRT {version} failed to build an engine from {onnx_path} "
                            "(see the TensorRT log above)")
    plan = bytes(plan)
    if cfg.timing_cache:
        with atomic_path(cfg.timing_cache, force=True) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))

    _, engine = deserialize(trt, plan, cfg.version_compatible, cfg.dla_core)
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    report = fusion_report(info, dla=cfg.dla_core is not None)
    rules.check_realized_precision(report, opts.precision)
    if cfg.dla_core is not None and not report.placement.get("dla"):
        raise TensorRTError(f"the engine was built for DLA core {cfg.dla_core}, but the inspector shows no layer "
                            f"running on DLA (all {len(report.placement.get('gpu', []))} on the GPU); "
                            "leave out --dla-core")
    return BuildResult(plan, facts, mode.to_dict(), report, dla_fallback, time.perf_counter() - start,
                       device_memory_bytes=engine_device_memory(engine))


# ------------------------------------------------------------------ edgevit build
@dataclass
class EngineBuildResult:
    """What ``build_engine`` wrote: the plan, its fusion report, the manifest and the engine's ``entry``
    (its build facts: :meth:`EngineRecord.from_artifact`)."""

    engine_path: Path
    report_path: Path
    manifest_path: Path
    entry: Artifact
    report: dict
    dla_fallback: list
    seconds: float

    def to_dict(self) -> dict:
        return {"ok": True, "engine": str(self.engine_path), "fusion_report": str(self.report_path),
                "manifest": str(self.manifest_path), "artifact": self.entry.to_dict(), "report": self.report,
                "dla_fallback": self.dla_fallback, "seconds": round(self.seconds, 2)}


_FP16_ELEM, _QUANT_INPUT_OPS = 10, ("MatMul", "Gemm", "Conv", "ConvTranspose")  # onnx.TensorProto.FLOAT16
_NOT_COMPUTE = LAYOUT_OPS | set(QDQ_OPS) | {"Constant", "ConstantOfShape", "Shape", "Size", "Range", "Concat"}


def low_precision_nodes(model) -> int:
    """How many compute nodes of ``model`` (an ONNX proto, no weights needed) DLA could run: those whose output
    is fp16 (after ONNX shape inference) or a MatMul/Gemm/Conv fed by a DequantizeLinear (an int8 layer).
    Layout ops, casts, Q/DQ and shape arithmetic are not counted. 0: every compute node is fp32."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 -- inference is best effort; what the graph declares is used then
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    dequantized = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    count = 0
    for node in g.node:
        if node.op_type in _NOT_COMPUTE:
            continue
        fp16 = any(types.get(o) == _FP16_ELEM for o in node.output)
        int8 = node.op_type in _QUANT_INPUT_OPS and any(i in dequantized for i in node.input)
        count += fp16 or int8
    return count


def check_graph_for_tensorrt(onnx_path: Path, dla: bool = False, precision: str | None = None,
                             base: str | None = None) -> bool:
    """Whether the graph holds Q/DQ nodes; refuses (TensorRTError) Q/DQ with non-zero zero points,
    which TensorRT's ONNX parser rejects -- the same check as ``edgevit lint`` (trt-qdq-zero-point).
    ``dla``: also refuse a graph DLA cannot run (:func:`rules.check_dla_graph`, with ``precision``, the
    recipe's ``base`` and :func:`low_precision_nodes`)."""
    from ..export.lint import load_onnx, qdq_zero_point_findings

    model = load_onnx(onnx_path)
    if dla:
        rules.check_dla_graph(precision, base, low_precision_nodes(model))
    has_qdq = any(n.op_type in QDQ_OPS for n in model.graph.node)
    if has_qdq:
        bad = qdq_zero_point_findings(model, base_dir=onnx_path.parent)
        if bad:
            raise TensorRTError(f"{onnx_path}: {bad[0].message}")
    return has_qdq


def _current_manifest(out_dir: Path, source: Manifest, art) -> Manifest:
    """The manifest the engine's entry goes into, as it is now (called under ``out_dir``'s lock): the
    source's own (which must still list the ONNX graph the engine was built from), the one already in
    ``out_dir``, or a new one made from the source's for an engine built elsewhere."""
    if (out_dir / MANIFEST_NAME).exists():
        target = Manifest.load(out_dir)
        if out_dir == Path(source.root).resolve():
            target.check_still_lists(art, "the engine was built", "edgevit build")
        return target
    target = Manifest.from_dict(source.to_dict())
    target.artifacts = []
    target.extra["source_manifest"] = str(Path(source.root).resolve() / MANIFEST_NAME)
    target.root = out_dir
    return target


def build_engine(source: str | os.PathLike, output: str | os.PathLike, config: EngineBuildConfig | None = None,
                 *, force: bool = False, verify_hash: bool = True) -> EngineBuildResult:
    """Build a TensorRT engine from ``source`` (export OUTDIR or its ONNX file) into ``output``.

    Writes ``output`` (the raw plan), ``output + ".fusion.json"`` and an artifact entry in the
    ``edgevit.json`` of ``output``'s directory (created from the source manifest when the engine
    goes elsewhere). The ONNX file is checked against its manifest sha256 unless
    ``verify_hash=False`` (``--no-verify-hash``). Raises MissingDependencyError (TensorRT absent,
    with install advice) before anything is written, ArtifactExistsError without ``force``, TensorRTError when the graph or
    options cannot give a correct engine, or on build failure.
    """
    cfg = config or EngineBuildConfig()
    output = Path(output)
    report_path = output.with_name(output.name + ".fusion.json")
    check_output_dir(output.parent, "-o/--output")
    check_writable(output, force)
    check_writable(report_path, force)
    found = Manifest.resolve(source, cfg.precision, "onnx", verify_hash=verify_hash)  # checked before use
    manifest, onnx_path, art = found.manifest, found.path, found.entry
    profile = rules.profile_from_manifest(manifest.batch, cfg.batch)
    if not manifest.inputs:
        raise ManifestError("the manifest records no inputs; re-export the model")
    inp = manifest.inputs[0]
    dla = cfg.dla_core is not None
    recipe = art.extra.get("recipe") if isinstance(art.extra.get("recipe"), dict) else {}
    if dla:  # refused here, before TensorRT builds for minutes and finds no layer on DLA
        rules.check_dla_graph(art.precision, recipe.get("base"))
        rules.check_dla_profile(profile)
        rules.check_dla_sizes(inp.extra.get("size_range"))
    has_qdq = check_graph_for_tensorrt(onnx_path, dla, art.precision, recipe.get("base"))
    import_tensorrt()  # fail early, before any file is touched

    opts = BuildOptions(precision=art.precision, has_qdq=has_qdq, profile=profile, input_name=inp.name,
                        input_shape=inp.sample_shape, config=cfg, size_range=inp.extra.get("size_range"))
    built = build_plan(onnx_path, opts)
    check_memory_budget(len(built.plan), built.device_memory_bytes, cfg.memory_budget_mb)  # before writing
    report = built.report.to_dict()

    facts = built.facts
    record = EngineRecord(
        tensorrt_version=facts["tensorrt_version"], tensorrt_cuda_major=facts.get("tensorrt_cuda_major"),
        cuda_driver_version=facts.get("cuda_driver_version"),
        gpu_name=facts["gpu_name"], compute_capability=facts["compute_capability"],
        jetson=facts.get("jetson"), platform=facts.get("platform") or rules.host_platform(),
        profile=tuple(profile), device_memory_bytes=built.device_memory_bytes, build_mode=built.mode,
        onnx={"path": art.path, "sha256": art.sha256},
        version_compatible=cfg.version_compatible, hardware_compatibility_level=cfg.hardware_compatibility,
        dla_core=cfg.dla_core, dla_fallback_layers=len(built.dla_fallback),
        fused_attention_blocks=built.report.fused_attention_blocks,
        unfused_attention_blocks=built.report.unfused_attention_blocks,
        unknown_attention_blocks=built.report.unknown_attention_blocks, fusion_report=report_path.name,
        build_options={k: v for k, v in asdict(cfg).items() if k not in ("precision", "batch")},
    )
    out_dir = output.parent.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    # The plan is written first, unlocked (it can be hundreds of MB). Another writer may have changed the
    # directory meanwhile: under its lock, re-read its manifest, check again, and install the plan, its
    # report and the entry together.
    tmp = temporary_name(output)
    try:
        tmp.write_bytes(built.plan)  # raw plan, nothing prepended
        with outdir_lock(out_dir):
            check_writable(output, force)
            check_writable(report_path, force)
            target = _current_manifest(out_dir, manifest, art)
            install_file(tmp, output)
            write_text_atomic(report_path, json.dumps(report, indent=2) + "\n", force=force)
            entry = target.add_artifact(output.name, format="tensorrt", precision=art.precision, **record.to_fields())
            target.add_certificate(load_plan_certificate(target, entry))
            manifest_path = target.save(out_dir, force=True)
    finally:
        tmp.unlink(missing_ok=True)
    return EngineBuildResult(output, report_path, manifest_path, entry, report, built.dla_fallback, built.seconds)


LOAD_PLAN_CONSUMER = "load_plan.cpp"


def load_plan_certificate(manifest, entry):
    """What ``examples/load_plan.cpp`` (TensorRT's C++ API in a device application) must feed the engine
    ``entry``: the manifest's input contract. The example sizes its buffers from the engine's own tensor
    types and feeds zeros; it needs TensorRT and a GPU, so nothing was run: verdict NOT_RUN."""
    from ..certificates import Certificate
    from ..input_contract import InputContract
    from ..tolerances import Verdict

    contract = InputContract.of(manifest)
    wanted = "the manifest's inputs[0]" if contract is None else contract.describe() + (
        "" if contract.raw else " by the manifest's preprocessing, (x / pixel_max - mean) / std per channel")
    return Certificate(LOAD_PLAN_CONSUMER, entry.path, f"not run (needs TensorRT and a GPU): the example takes its "
                       f"tensor types and shapes from the plan and feeds zeros; an application fills the input with "
                       f"{wanted}", Verdict.NOT_RUN, artifact_sha256=entry.sha256,
                       details={"input": contract.to_dict() if contract is not None else None})

