"""The export's manifest and files: build the manifest of a verified graph, move the graph into
OUTDIR, and after ``--force`` remove what the previous export listed and the new one does not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import install_file, remove_inside
from ..errors import ManifestError
from ..formats import BASE_PRECISION, CALIBRATION_CACHE, CALIBRATION_CACHE_FORMAT, MANIFEST_NAME, ONNX_DATA_FILE, onnx_file
from ..manifest import Manifest, library_versions
from ..models.vit import count_params
from ..output_kinds import OutputKind
from ..specs import BatchRange, TensorSpec
from ..tolerances import Verdict, VerdictRecord
from .checks import GraphInfo, input_contract

if TYPE_CHECKING:
    from .lint import LintReport
    from .onnx import ExportConfig

MODEL_FILE = onnx_file(BASE_PRECISION)
DATA_FILE = ONNX_DATA_FILE


def verdict(verification: dict, report: "LintReport | None") -> VerdictRecord:
    """The fp32 graph's verdict: its check against PyTorch (not run when skipped) and the lint counts."""
    ran = not verification.get("skipped")
    return VerdictRecord(Verdict.from_verified(bool(verification.get("passed")) if ran else None), "export",
                         verification.get("max_abs"), len(report.errors) if report else None,
                         len(report.warnings) if report else None)


def tensor_spec(name: str, dims: list, dynamic: bool, **extra) -> TensorSpec:
    return TensorSpec(name, tuple(dims), "float32", {"0": "batch"} if dynamic else {}, **extra)


def _sized(spec: TensorSpec, cfg: "ExportConfig", graph: GraphInfo | None = None) -> TensorSpec:
    """A spec of a graph whose height and width are dynamic (``cfg.size_range``): the input's dims 2 and 3
    named, with the range (``size_range``, [MIN, MAX] pixels each); a tokens output's token dim named, its
    count (H / patch) x (W / patch) said. The shape keeps the model's own size: where gate, verify and
    bench run."""
    if not cfg.size_range:
        return spec
    if graph is None:
        axes = {**(spec.dynamic_axes or {}), "2": "height", "3": "width"}
        extra = {"size_range": {"height": list(cfg.size_range), "width": list(cfg.size_range)}}
    elif OutputKind(graph.output).own:
        return spec
    else:
        axes = {**(spec.dynamic_axes or {}), "1": "tokens"}
        extra = {"tokens": "(height / patch) x (width / patch) patch tokens, row-major"}
    return dataclasses.replace(spec, dynamic_axes=axes, extra={**spec.extra, **extra})


def build_manifest(model, source_desc, arch, cfg: "ExportConfig", slim_info, verification, report, external,
                    graph: GraphInfo):
    c = model.config
    lo, opt, hi = cfg.batch_bounds
    batch_dim = "batch" if cfg.dynamic else lo
    exported_cfg = c.replace(attn_impl="math" if cfg.attention == "decomposed" else "sdpa")
    pre = model.preprocessing
    return Manifest(
        model={"source": source_desc, "arch": arch, "config": exported_cfg.to_dict(), "params": count_params(model),
               "guessed": dict(model.guessed), "output": graph.output},
        labels=list(model.labels) if model.labels is not None else None,
        preprocessing=pre,
        inputs=[_sized(input_contract(model, cfg).tensor_spec(batch_dim, cfg.dynamic,
                                                               (c.in_chans, c.img_size, c.img_size)), cfg)],
        outputs=[_sized(tensor_spec(graph.output, [batch_dim, *graph.dims], cfg.dynamic), cfg, graph)],
        batch=BatchRange(lo, opt, hi, cfg.dynamic),
        export={
            "exporter": "torch.onnx.export(dynamo=True)",
            "opset": cfg.resolved_opset,
            "attention": cfg.attention,
            "layernorm": "LayerNormalization",
            "options": cfg.to_dict(),
            "simplify": slim_info,
            "external_data": external,
            "verification": verification,
            "lint": ({"tensorrt_version": report.tensorrt_version, "ok": report.ok,
                      "counts": report.to_dict()["counts"], "codes": sorted(report.codes())} if report else None),
        },
        versions=library_versions(),
    )


def install(work: Path, outdir: Path, external: bool) -> None:
    """Move the verified files from the work directory into ``outdir`` (data first, graph last); a
    data file of the export this one replaces goes with :func:`remove_superseded`."""
    if external:
        install_file(work / DATA_FILE, outdir / DATA_FILE)
    install_file(work / MODEL_FILE, outdir / MODEL_FILE)


def previous_manifest(outdir: Path) -> tuple[Manifest | None, str | None]:
    """The manifest ``--force`` replaces, or (None, why) when it cannot be read: then nothing is
    known to be ours, and nothing is removed."""
    if not Manifest.path_in(outdir).exists():
        return None, None
    try:
        return Manifest.load(outdir), None
    except ManifestError as exc:
        return None, (f"--force: the previous manifest could not be read ({exc}); none of the files it "
                      f"lists were removed from {outdir}")


def remove_superseded(old: Manifest, new: Manifest, outdir: Path) -> list[str]:
    """After ``force`` replaced an export: remove what the old manifest recorded (precision graphs,
    engines, their fusion reports) and the new one does not, and an edgevit calibration cache
    made for another graph, so that OUTDIR holds what the new manifest lists. Other files stay, and
    so does anything outside OUTDIR or reached through a symlink (:func:`edgevit._io.remove_inside`)."""
    keep = {MANIFEST_NAME} | {name for a in new.artifacts for name in (a.path, *a.external_data)}
    old_files = set()
    for art in old.artifacts:
        old_files.update((art.path, *art.external_data))
        report = art.extra.get("fusion_report")
        if isinstance(report, str) and Path(report).name == report:
            old_files.add((Path(art.path).parent / report).as_posix())
    stale = sorted(old_files - keep)
    cache = outdir / CALIBRATION_CACHE
    try:
        data = json.loads(cache.read_text())
        new_sha = new.artifact(precision=BASE_PRECISION, format="onnx").sha256
        if isinstance(data, dict) and data.get("format") == CALIBRATION_CACHE_FORMAT and data.get("graph_sha256") != new_sha:
            stale.append(CALIBRATION_CACHE)
    except (OSError, ValueError, ManifestError):
        pass
    return [name for name in stale if remove_inside(outdir, name)]


__all__ = ["build_manifest", "install", "previous_manifest", "remove_superseded", "verdict"]
