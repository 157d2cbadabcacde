"""``edgevit build``: an exported ONNX graph -> a TensorRT engine, its fusion report and manifest entry.

    from edgevit.export.tensorrt import EngineBuildConfig, build_engine
    result = build_engine("out", "out/model.plan", EngineBuildConfig(precision="fp16"))

The TensorRT calls are in :mod:`edgevit.tensorrt_api`; the rules (versions, flags, DLA,
profile, fusion report) in :mod:`edgevit.tensorrt_rules`. This module resolves the inputs from
the manifest, writes the plan raw (no prepended bytes: trtexec and C++ loaders read it as is)
under a temporary name and renames it, and records the engine in the manifest beside it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .._io import atomic_path, check_writable, sha256_file, write_text_atomic
from ..errors import ManifestError, OnnxModelError
from ..manifest import MANIFEST_NAME, Manifest
from ..tensorrt_rules import HW_COMPAT_LEVELS, profile_from_manifest

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


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
    calibration_cache: str | None = None

    def __post_init__(self) -> None:
        if self.hardware_compatibility not in HW_COMPAT_LEVELS:
            raise ValueError(f"hardware_compatibility must be one of {list(HW_COMPAT_LEVELS)}, "
                             f"got {self.hardware_compatibility!r}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ValueError(f"builder optimization level must be 0..5, got {self.optimization_level}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ValueError(f"workspace must be >= 1 MiB, got {self.workspace_mib}")
        if self.calibration_cache is not None and not Path(self.calibration_cache).is_file():
            raise ValueError(f"calibration cache {self.calibration_cache} does not exist")


@dataclass
class EngineBuildResult:
    engine_path: Path
    report_path: Path
    manifest_path: Path
    artifact: dict
    report: dict
    dla_fallback: list
    seconds: float

    def to_dict(self) -> dict:
        return {"ok": True, "engine": str(self.engine_path), "fusion_report": str(self.report_path),
                "manifest": str(self.manifest_path), "artifact": self.artifact, "report": self.report,
                "dla_fallback": self.dla_fallback, "seconds": round(self.seconds, 2)}


def resolve_onnx(source: str | os.PathLike, precision: str | None = None) -> tuple[Manifest, Path, object]:
    """(manifest, onnx path, artifact) of an export OUTDIR or an ONNX file inside one."""
    src = Path(source)
    if not src.exists():
        raise OnnxModelError(f"{src}: no such ONNX file or export directory")
    root = src if src.is_dir() else src.parent
    if not (root / MANIFEST_NAME).exists():
        raise ManifestError(f"{root / MANIFEST_NAME}: no manifest beside the model; build from an `edgevit export` "
                            "output directory (it records the batch range, input shape and precision)")
    manifest = Manifest.load(root)
    if src.is_dir():
        candidates = manifest.find_artifacts(precision=precision, format="onnx")
        if len(candidates) > 1:
            candidates = [a for a in candidates if a.precision == (precision or "fp32")] or candidates
        if len(candidates) != 1:
            manifest.artifact(precision=precision or "fp32", format="onnx")  # raises with the list
        art = candidates[0]
    else:
        found = manifest.find_artifacts(format="onnx", path=src.name)
        if not found:
            raise ManifestError(f"{src.name} is not recorded in {root / MANIFEST_NAME}; build from the export directory")
        art = found[0]
        if precision is not None and art.precision != precision:
            raise ValueError(f"{src.name} is a {art.precision} graph, but --precision {precision} was given")
    return manifest, root / art.path, art


def has_qdq(onnx_path: Path) -> bool:
    """Whether the graph holds QuantizeLinear/DequantizeLinear nodes (weights are not loaded)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def build_engine(source: str | os.PathLike, output: str | os.PathLike, config: EngineBuildConfig | None = None,
                 *, force: bool = False) -> EngineBuildResult:
    """Build a TensorRT engine from ``source`` (export OUTDIR or its ONNX file) into ``output``.

    Writes ``output`` (the raw plan), ``output + ".fusion.json"`` and an artifact entry in the
    ``edgevit.json`` of ``output``'s directory (created from the source manifest when the engine
    goes elsewhere). Raises MissingDependencyError (TensorRT absent, with install advice) before
    anything is written, ArtifactExistsError without ``force``, TensorRTError on build failure.
    """
    from .. import tensorrt_api

    cfg = config or EngineBuildConfig()
    output = Path(output)
    report_path = output.with_name(output.name + ".fusion.json")
    check_writable(output, force)
    check_writable(report_path, force)
    manifest, onnx_path, art = resolve_onnx(source, cfg.precision)
    profile = profile_from_manifest(manifest.batch, cfg.batch)
    if not manifest.inputs:
        raise ManifestError("the manifest records no inputs; re-export the model")
    inp = manifest.inputs[0]
    input_shape = tuple(int(d) for d in inp["shape"][1:])
    tensorrt_api.import_tensorrt()  # fail early, before any file is touched

    opts = tensorrt_api.BuildOptions(
        precision=art.precision, has_qdq=has_qdq(onnx_path), profile=profile, input_name=inp["name"],
        input_shape=input_shape, workspace_mib=cfg.workspace_mib, optimization_level=cfg.optimization_level,
        timing_cache=cfg.timing_cache, dla_core=cfg.dla_core, version_compatible=cfg.version_compatible,
        hardware_compatibility=cfg.hardware_compatibility)
    built = tensorrt_api.build_plan(onnx_path, opts)
    report = built.report.to_dict()

    with atomic_path(output, force=force) as tmp:
        tmp.write_bytes(built.plan)  # raw plan, nothing prepended
    write_text_atomic(report_path, json.dumps(report, indent=2) + "\n", force=force)

    facts = built.facts
    fields = {
        "tensorrt_version": facts["tensorrt_version"], "cuda_version": facts["cuda_version"],
        "gpu_name": facts["gpu_name"], "compute_capability": facts["compute_capability"],
        "jetson": facts.get("jetson"), "profile": {"min": profile[0], "opt": profile[1], "max": profile[2]},
        "build_mode": built.mode, "onnx": {"path": art.path, "sha256": art.sha256},
        "calibration_cache_sha256": sha256_file(cfg.calibration_cache) if cfg.calibration_cache else None,
        "version_compatible": cfg.version_compatible, "hardware_compatibility_level": cfg.hardware_compatibility,
        "dla_core": cfg.dla_core, "dla_fallback_layers": len(built.dla_fallback),
        "fused_attention_blocks": built.report.fused_attention_blocks, "fusion_report": report_path.name,
        "build_options": {k: v for k, v in asdict(cfg).items() if k not in ("precision", "batch")},
    }
    out_dir = output.parent.resolve()
    if out_dir == Path(manifest.root).resolve():
        target = manifest
    elif (out_dir / MANIFEST_NAME).exists():
        target = Manifest.load(out_dir)
    else:
        target = Manifest.from_dict(manifest.to_dict())
        target.artifacts = []
        target.extra["source_manifest"] = str(Path(manifest.root).resolve() / MANIFEST_NAME)
    target.root = out_dir
    entry = target.add_artifact(output.name, format="tensorrt", precision=art.precision, **fields)
    manifest_path = target.save(out_dir, force=True)
    return EngineBuildResult(output, report_path, manifest_path, entry.to_dict(), report, built.dla_fallback,
                             built.seconds)
