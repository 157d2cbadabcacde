"""``edgevit demo``: the whole pipeline on the embedded default, in one run directory.

    from edgevit.demo import DemoConfig, run_demo
    result = run_demo(DemoConfig(output="runs/demo"))

Steps, each reported as it finishes:

1. **train** digits-tiny on the bundled digits with the default recipe, or reuse the cached
   checkpoint (``$EDGEVIT_CACHE`` or ``~/.cache/edgevit``, keyed by edgevit's version and the
   training defaults) or ``checkpoint=``;
2. **export** ``model.onnx`` and the fp16, bf16, int8 and fp8 graphs with calibration and the
   accuracy gate (:func:`edgevit.precision.quantize`);
3. **engines**: TensorRT engines from the fp16 and int8 graphs when TensorRT and a GPU exist;
   otherwise the step is ``skipped`` with the reason;
4. **verify** every ONNX precision against the PyTorch checkpoint on the digits test split,
   per-block attention included;
5. **bench** every artifact (:func:`edgevit.bench.run_bench`): table, JSON, CSV, Markdown, PNG.

Layout of the run directory::

    RUN/checkpoint.safetensors   RUN/train/ (when trained here)
    RUN/export/{model.onnx, model.fp16.onnx, ..., calibration.json, edgevit.json, model.*.plan}
    RUN/reports/{verify.json, bench.json, bench.csv, bench.md, bench.png}   RUN/demo.json
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from ._io import check_output_dir, sha256_file, write_text_atomic
from .errors import ArtifactExistsError, EdgeVitError
from .formats import FP16, INT8, ONNX_PRECISIONS, engine_file, onnx_file

ENGINE_PRECISIONS = (FP16, INT8)
STEPS = ("train", "export", "engines", "verify", "deploy", "bench")
STEP_NEEDS = {"train": (), "export": ("train",), "engines": ("export",), "verify": ("train", "export"),
              "deploy": ("export",), "bench": ("export",)}
"""The steps in order, and the earlier steps each one needs: a step whose needed step failed (or was
not run) is recorded ``skipped`` with ``blocked_by`` naming the failed step."""


@dataclass(frozen=True)
class DemoConfig:
    output: str | None = None            # run directory; default runs/demo-<timestamp>
    checkpoint: str | None = None        # skip training: use this digits-tiny checkpoint
    retrain: bool = False                # ignore the cached checkpoint
    epochs: int | None = None            # training epochs (None: the tuned default)
    bench_iterations: int = 30
    verify_samples: int = 359            # the whole digits test split
    force: bool = False
    progress: bool = True


@dataclass
class DemoResult:
    run_dir: Path
    steps: list[dict] = field(default_factory=list)
    bench: object = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s["status"] in ("ok", "skipped") for s in self.steps)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "run_dir": str(self.run_dir), "seconds": round(self.seconds, 1), "steps": self.steps,
                "bench": self.bench.to_dict() if self.bench is not None else None}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEVIT_CACHE") or Path.home() / ".cache" / "edgevit")


def _cached_checkpoint_path(epochs: int | None) -> Path:
    from . import __version__
    from .train import TrainConfig

    key = json.dumps({"edgevit": __version__, "train": asdict(TrainConfig(epochs=epochs))}, sort_keys=True)
    return cache_dir() / f"digits-tiny-{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"


def run_demo(config: DemoConfig | None = None, echo=None) -> DemoResult:
    """Run every step; a failing step (any exception) is recorded and the later steps that need it
    are recorded ``skipped`` with the reason (:data:`STEP_NEEDS`)."""
    cfg = config or DemoConfig()
    echo = echo or (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    run = check_output_dir(cfg.output or f"runs/demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}", "-o/--output")
    if run.exists() and any(run.iterdir()) and not cfg.force:
        raise ArtifactExistsError(f"{run}: run directory exists and is not empty; pass --force or another -o")
    run.mkdir(parents=True, exist_ok=True)
    result = DemoResult(run)

    def step(name: str, fn):
        t = time.perf_counter()
        echo(f"[demo] {name} ...")
        try:
            info = fn() or {}
            status = info.pop("status", "ok")
        except Exception as exc:  # any failure is this step's: recorded, and demo.json still written
            reason = str(exc) if isinstance(exc, EdgeVitError) else f"{type(exc).__name__}: {exc}"
            info, status = {"reason": reason, "error": type(exc).__name__}, "failed"
        entry = {"step": name, "status": status, "seconds": round(time.perf_counter() - t, 1), **info}
        result.steps.append(entry)
        echo(f"[demo] {name}: {status} ({entry['seconds']} s)" + (f": {info['reason']}" if "reason" in info else ""))
        return status == "ok" or status == "skipped"

    def skip(name: str, cause: str) -> None:
        entry = {"step": name, "status": "skipped", "seconds": 0.0, "blocked_by": cause,
                 "reason": f"not run: the {cause} step failed"}
        result.steps.append(entry)
        echo(f"[demo] {name}: skipped: {entry['reason']}")

    ckpt = run / "checkpoint.safetensors"
    export_dir = run / "export"
    reports = run / "reports"
    work = {"train": lambda: _train(cfg, run, ckpt), "export": lambda: _export(cfg, ckpt, export_dir),
            "engines": lambda: _engines(export_dir, cfg.force),
            "verify": lambda: _verify(ckpt, export_dir, reports, cfg),
            "deploy": lambda: _deploy(export_dir, run / "deploy", cfg),
            "bench": lambda: _bench(export_dir, reports, cfg, result)}
    cause: dict[str, str] = {}  # step -> the failed step that kept it (or a step it needs) from running
    for name in STEPS:
        blocked = [n for n in STEP_NEEDS[name] if n in cause]
        if blocked:
            cause[name] = cause[blocked[0]]
            skip(name, cause[name])
        elif not step(name, work[name]):
            cause[name] = name
    result.seconds = time.perf_counter() - start
    write_text_atomic(run / "demo.json", json.dumps(result.to_dict(), indent=2, default=str), force=True)
    return result


def _train(cfg: DemoConfig, run: Path, ckpt: Path) -> dict:
    if cfg.checkpoint:
        shutil.copyfile(cfg.checkpoint, ckpt)
        return {"checkpoint": str(ckpt), "source": cfg.checkpoint, "summary": f"checkpoint {cfg.checkpoint}"}
    cached = _cached_checkpoint_path(cfg.epochs)
    if cached.exists() and not cfg.retrain:
        shutil.copyfile(cached, ckpt)
        meta = _cached_meta(cached, ckpt)
        if meta is not None:
            return {"checkpoint": str(ckpt), "source": f"cache {cached}", **meta}
    from .train import TrainConfig, train

    res = train(TrainConfig(epochs=cfg.epochs, output=str(run / "train"), progress=cfg.progress, force=True))
    shutil.copyfile(res.checkpoint, ckpt)
    meta = {"test_accuracy": res.test_accuracy, "train_wall_s": round(res.wall_time_s, 1),
            "summary": f"digits test top-1 {res.test_accuracy:.4f} ({res.epochs} epochs)",
            "sha256": sha256_file(res.checkpoint)}  # what the score belongs to (checked on reuse)
    try:  # the cache is a convenience: a read-only home must not fail the demo
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res.checkpoint, cached)
        write_text_atomic(cached.with_suffix(".json"), json.dumps(meta), force=True)
    except OSError:
        pass
    return {"checkpoint": str(ckpt), "source": "trained here", **meta}


def _cached_meta(cached: Path, ckpt: Path) -> dict | None:
    """What the demo reports of a cached checkpoint (its copy ``ckpt``): the score recorded beside it
    when its sha256 is the one recorded then; else re-scored on the digits test split (another file
    sits under the cached name, or the record is missing); None when it cannot be scored (retrain)."""
    from .evaluate import evaluate

    side = cached.with_suffix(".json")
    try:
        meta = json.loads(side.read_text()) if side.exists() else {}
    except (OSError, ValueError):
        meta = {}
    digest = sha256_file(ckpt)
    if isinstance(meta, dict) and meta.get("sha256") == digest:
        return {**meta, "summary": f"{meta.get('summary', '')} (cached checkpoint {cached})"}
    try:
        top1 = evaluate(str(ckpt), "digits").top1
    except (EdgeVitError, ValueError):
        return None
    why = "no sha256 recorded beside it" if not isinstance(meta, dict) or "sha256" not in meta else \
        f"its sha256 {digest[:12]}... is not the {str(meta['sha256'])[:12]}... recorded when it was trained"
    with contextlib.suppress(OSError):  # the score now belongs to this file: the next run need not re-score it
        write_text_atomic(side, json.dumps({"test_accuracy": top1, "sha256": digest,
                                            "summary": f"digits test top-1 {top1:.4f} (re-scored)"}), force=True)
    return {"test_accuracy": top1, "sha256": digest, "rescored": why,
            "summary": f"digits test top-1 {top1:.4f} (re-scored: cached checkpoint {cached}, {why})"}


def _export(cfg: DemoConfig, ckpt: Path, export_dir: Path) -> dict:
    from .export.onnx import ExportConfig, export_onnx
    from .precision import QuantizeConfig, quantize

    export_onnx(ckpt, export_dir, ExportConfig(), force=cfg.force)
    q = quantize(export_dir, QuantizeConfig(precisions=ONNX_PRECISIONS, progress=cfg.progress), force=cfg.force)
    gates = {p: {"verdict": e["gate"].verdict.value, "top1": e["gate"].top1, "drop_points": e["gate"].drop_points,
                 "agreement": e["gate"].agreement}
             for p, e in q.entries.items()}
    failed = [p for p, g in gates.items() if g["verdict"] == "failed"]
    info = {"outdir": str(export_dir), "gate": gates,
            "summary": "gate: " + ", ".join(f"{p} {g['verdict']} ({g['top1']:.4f})" for p, g in gates.items()
                                            if g.get("top1") is not None)}
    if failed:
        info.update(status="failed", reason=f"accuracy gate failed for {', '.join(failed)}")
    return info


def _engines(export_dir: Path, force: bool) -> dict:
    from .errors import MissingDependencyError

    try:
        from .tensorrt._bindings import import_tensorrt
        from .tensorrt.session import device_facts

        import_tensorrt()
        facts = device_facts()
    except MissingDependencyError:
        return {"status": "skipped", "reason": "TensorRT is not installed here; the ONNX graphs are what an engine "
                "is built from (install advice: edgevit build --help, or run edgevit build OUTDIR)"}
    except EdgeVitError as exc:
        return {"status": "skipped", "reason": f"no usable CUDA GPU for TensorRT ({exc})"}
    from .tensorrt.build import EngineBuildConfig, build_engine

    built = {}
    for p in ENGINE_PRECISIONS:
        res = build_engine(export_dir, export_dir / engine_file(p), EngineBuildConfig(precision=p), force=force)
        built[p] = {"engine": str(res.engine_path), "fused_attention_layers": res.report.get("fused_attention_layers")}
    return {"engines": built, "gpu": facts.get("gpu_name"), "tensorrt": facts.get("tensorrt_version")}


def _verify(ckpt: Path, export_dir: Path, reports: Path, cfg: DemoConfig) -> dict:
    from .verify import VerifyConfig, verify

    out, failed = {}, []
    for p in ONNX_PRECISIONS:
        rep = verify(str(ckpt), str(export_dir / onnx_file(p)),
                     VerifyConfig(data="digits", samples=cfg.verify_samples, precision=p, attention=True))
        d = rep.to_dict()
        out[p] = {"ok": rep.ok, "failures": rep.failures}
        for key in ("outputs", "attention"):
            if key in d:
                out[p][key] = d[key]
        if not rep.ok:
            failed.append(p)
    reports.mkdir(parents=True, exist_ok=True)
    write_text_atomic(reports / "verify.json", json.dumps(out, indent=2, default=str), force=True)
    info = {"verified": {p: v["ok"] for p, v in out.items()}, "report": str(reports / "verify.json"),
            "summary": f"{sum(v['ok'] for v in out.values())}/{len(out)} precisions pass, attention included"}
    if failed:
        info.update(status="failed", reason=f"verify failed for {', '.join(failed)}: "
                    + "; ".join(f for p in failed for f in out[p]["failures"][:2]))
    return info


def _deploy(export_dir: Path, deploy_dir: Path, cfg: DemoConfig) -> dict:
    """Every deploy target (a Triton model repository, a DeepStream config) for the fp32 graph, each
    checked with its consumer's preprocessing and certified in the export's manifest."""
    from .deploy import TARGETS

    written, failed = {}, []
    for name, target in TARGETS.items():
        res = target.load()(export_dir, deploy_dir / name, force=cfg.force)
        cert = res.certificate
        written[name] = {"files": [str(f) for f in res.files], "certificate": cert.to_dict()}
        if not cert.passed:
            failed.append(f"{name}: {cert.verdict.value}, max |diff| {_diff(cert.max_abs)}")
    info = {"targets": written, "summary": ", ".join(f"{n} {w['certificate']['verdict']} "
                                                     f"(max |diff| {_diff(w['certificate']['max_abs'])})"
                                                     for n, w in written.items())}
    if failed:
        info.update(status="failed", reason="; ".join(failed))
    return info


def _diff(value) -> str:
    """A certificate's max |diff| for the summary ("-" where the check did not get that far)."""
    return f"{value:.1e}" if value is not None else "-"


def _bench(export_dir: Path, reports: Path, cfg: DemoConfig, result: DemoResult) -> dict:
    from .bench import BenchConfig, run_bench

    report = run_bench([str(export_dir)], BenchConfig(iterations=cfg.bench_iterations, time_limit_s=5.0))
    result.bench = report
    files = report.write(reports, force=True)
    info = {"files": {k: str(v) for k, v in files.items()}, "summary": f"report and plot in {reports}"}
    if not report.ok:
        info.update(status="failed", reason="; ".join(report.failures))
    return info


__all__ = ["DemoConfig", "DemoResult", "cache_dir", "run_demo"]
