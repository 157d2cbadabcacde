"""``edgevit bench``: one table that says which artifact to ship and what it costs in accuracy.

``run_bench(sources, config) -> BenchReport`` benchmarks every artifact of one or more export
OUTDIRs (each artifact its manifest lists) or of individual artifact files, next to the
PyTorch reference the manifest's checkpoint gives::

    from edgevit.bench import BenchConfig, run_bench
    report = run_bench(["out"], BenchConfig(iterations=50, batch_sweep=(1, 8, 32)))
    report.rows[0]["latency_ms"]["p50"]
    report.write("out", force=True)          # bench.json, bench.csv, bench.md, bench.png

Rows (in this order):

- ``torch`` eager on CPU, fp32, SDPA attention: the reference (from ``model.source`` of the
  manifest when that checkpoint loads; otherwise the row is skipped with the reason and the
  first ok fp32 ONNX row becomes the reference for agreement and speed-up);
- with ``torch.cuda.is_available()``: PyTorch CUDA at fp32, fp16 and bf16 with SDPA, each eager
  and as a replayed CUDA graph (``variant`` "eager" / "cuda-graph");
- one row per ONNX artifact and ONNX Runtime provider (CPU; CUDA too when installed);
- one row per TensorRT engine (``skipped`` with the install command when TensorRT is absent).

A row's ``status`` is ``ok``, ``failed`` (the artifact could not be loaded or run: ``reason``
says why; never an exception) or ``skipped`` (the backend is not available here: ``reason``).

Timing method. Per measurement: warm-up for ``warmup_s`` seconds (at least one call), then
``iterations`` timed calls (or calls for ``duration_s`` seconds), each measurement stopping early
after ``time_limit_s`` seconds once ``min_iterations`` calls were timed (``iterations`` in the
stats says how many ran). Statistics over the per-call times: percentiles by linear
interpolation (numpy's default), mean, sample standard deviation (ddof 1), coefficient of
variation ``cv = std / mean``; ``noisy`` is true when ``cv > noise_cv`` (default 0.10). CPU
paths use ``time.perf_counter``; CUDA paths are timed host to host with ``perf_counter`` and split
into ``h2d`` / ``compute`` / ``d2h`` with CUDA events (trtexec's split). The thread count is set
for PyTorch (``torch.set_num_threads``) and ONNX Runtime (intra-op threads) and reported.
The ``edgevit`` CLI sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (before torch
loads): with OpenMP's default spin-waiting, PyTorch eager on a busy 2-core machine measured
104 ms instead of 2.8 ms per digits-tiny image. ``machine.env`` records the value used.

Runner hook for phase timing: a runner may define ``timed_infer(feeds) -> (outputs, phases)``,
``phases`` a dict of milliseconds with any of the keys ``h2d``, ``compute``, ``d2h``. When it
exists, bench times calls through it and reports per-phase statistics (``phases_ms``); the
TensorRT runner is expected to implement it with CUDA events.

JSON schema (``BenchReport.to_dict()``, ``bench.json``, ``edgevit bench --json``)::

    {
      "schema_version": 1, "kind": "edgevit.bench", "created": ISO-8601, "ok": bool (no failed row),
      "seconds": float,
      "machine": {"cpu": str, "cpu_cores": int, "cpu_affinity": int, "platform": str, "python": str,
                  "gpu": str|null, "gpu_count": int, "driver": str|null, "cuda": str|null,
                  "cudnn": str|null, "tensorrt": str|null, "onnxruntime": str|null,
                  "onnxruntime_providers": [str], "torch": str|null, "numpy": str, "edgevit": str|null,
                  "env": {"OMP_WAIT_POLICY": str|null, "OMP_NUM_THREADS": str|null, "CUDA_VISIBLE_DEVICES": str|null},
                  "jetson": null | {"model": str, "nvpmodel": {"mode_id": int|null, "mode_name": str|null}|null,
                                    "jetson_clocks": {"at_max": bool|null, "clocks": [...]}|null,
                                    "warnings": [str]}},
      "config": {BenchConfig fields, "threads": the thread count used},
      "data": {"source": str, "description": str, "samples": int, "labelled": bool,
               "output": "logits"|"features"|"tokens", "agreement": str (what the agreement column measures)},
      "reference": {"row": name|null, "source": str|null, "note": str},
      "rows": [ROW, ...],
      "warnings": [str],
      "files": {"json": path, "csv": path, "markdown": path, "plot": path|null}   # after write()
    }

    ROW = {
      "name": str, "backend": "torch"|"onnxruntime"|"tensorrt", "device": "cpu"|"cuda",
      "provider": str|null, "variant": "eager"|"cuda-graph"|null, "format": "checkpoint"|"onnx"|"tensorrt",
      "precision": "fp32"|"fp16"|"bf16"|"int8"|"fp8"|..., "artifact": path|null, "reference": bool,
      "status": "ok"|"failed"|"skipped", "reason": str|null,
      "size_mb": float|null (10^6 bytes, external data included),
      "top1": float|null (labelled data, logits only),
      "agreement": float|null (top-1 agreement with the reference; for features/tokens, which have no labels,
                               the k-NN agreement: edgevit.metrics.neighbour_agreement),
      "max_abs": float|null, "cosine_min": float|null, "cosine_mean": float|null (per-sample cosine of the outputs),
      "within_tolerance": bool|null (verify's TOLERANCES row for the precision),
      "latency_ms": STATS|null (batch 1), "throughput": {"batch": int, "img_per_s": float, "latency_ms": STATS}|null,
      "speedup": float|null (reference p50 / this p50, batch 1),
      "throughput_speedup": float|null (this img/s / reference img/s),
      "sweep": [{"batch": int, "img_per_s": float, "latency_ms": STATS}],
      "phases_ms": {"h2d": STATS, "compute": STATS, "d2h": STATS}|null (batch 1),
      "attention": null | {"status": "pass"|"FAIL"|"skipped"|"failed", "reason": str|null,
                           "blocks": int, "max_abs": float, "cosine_min": float, "rows": [...verify rows]},
      "seconds": float
    }
    STATS = {"batch": int, "iterations": int, "p50": ms, "p90": ms, "p99": ms, "mean": ms, "std": ms,
             "min": ms, "max": ms, "cv": float, "noisy": bool}

CSV (``bench.csv``): one line per row, the columns of :data:`CSV_COLUMNS` (empty where null):
latency columns are batch-1 milliseconds, ``sweep_p50_ms`` is ``batch=ms`` pairs joined by ``;``.
Markdown (``bench.md``): the machine block, then the same table as the terminal.
Plot (``bench.png``, matplotlib, the ``plot`` extra): p50 latency against batch per row, and
top-1 (or agreement without labels) against batch-1 p50 latency.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import DataError, EdgeVitError, ManifestError, MissingDependencyError, OnnxModelError
from .metrics import KNN_AGREEMENT
from .tensorrt.jetson import command_output, jetson_info, jetson_warnings, parse_jetson_clocks, parse_nvpmodel  # noqa: F401

SCHEMA_VERSION = 1
MANIFEST_NAME = "edgevit.json"
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
REPORT_FILES = {"json": "bench.json", "csv": "bench.csv", "markdown": "bench.md", "plot": "bench.png"}
TORCH_CUDA_DTYPES = ("fp32", "fp16", "bf16")
DEFAULT_BATCH = 32
PHASES = ("h2d", "compute", "d2h")

CSV_COLUMNS = [
    "name", "backend", "device", "provider", "variant", "format", "precision", "artifact", "reference",
    "status", "reason", "size_mb", "top1", "agreement", "max_abs", "cosine_min", "cosine_mean", "within_tolerance",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_cv", "noisy", "iterations",
    "throughput_batch", "throughput_img_s", "speedup", "throughput_speedup",
    "h2d_p50_ms", "compute_p50_ms", "d2h_p50_ms", "sweep_p50_ms",
    "attention_status", "attention_max_abs", "attention_cosine_min",
]


# ------------------------------------------------------------------------------ statistics
def latency_stats(samples_ms: Iterable[float], noise_cv: float = 0.10, batch: int = 1) -> dict:
    """Percentiles (linear interpolation), mean, sample std (ddof 1), CV and the noisy flag."""
    arr = np.asarray(list(samples_ms), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(arr, [50, 90, 99]))
    return {"batch": int(batch), "iterations": int(arr.size), "p50": p50, "p90": p90, "p99": p99, "mean": mean,
            "std": std, "min": float(arr.min()), "max": float(arr.max()), "cv": cv, "noisy": bool(cv > noise_cv)}


def measure(call: Callable[[], dict | None], *, warmup_s: float = 0.2, iterations: int | None = 50,
            duration_s: float | None = None, time_limit_s: float = 10.0, min_iterations: int = 5,
            noise_cv: float = 0.10, batch: int = 1, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time ``call`` (one inference); returns :func:`latency_stats` plus ``phases`` when ``call``
    returns a dict of phase milliseconds (``h2d``/``compute``/``d2h``)."""
    start = clock()
    call()
    while clock() - start < warmup_s:
        call()
    times: list[float] = []
    phases: dict[str, list[float]] = {}
    begin = clock()
    while True:
        t0 = clock()
        extra = call()
        times.append((clock() - t0) * 1e3)
        if isinstance(extra, dict):
            for key, value in extra.items():
                if value is not None:
                    phases.setdefault(key, []).append(float(value))
        elapsed = clock() - begin
        n = len(times)
        if duration_s is not None:
            if elapsed >= duration_s and n >= 1:
                break
        elif n >= (iterations or 1):
            break
        if elapsed >= time_limit_s and n >= min_iterations:
            break
    stats = latency_stats(times, noise_cv, batch)
    if phases:
        stats["phases"] = {k: latency_stats(v, noise_cv, batch) for k, v in phases.items()}
    return stats


# ------------------------------------------------------------------------------ machine
# The Jetson parsers live in edgevit.tensorrt.jetson (imported at the top of this module).


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, GPU, driver and library versions (None where absent); the Jetson block on a Jetson."""
    info: dict = {"cpu": _cpu_model(), "cpu_cores": os.cpu_count(),
                  "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                  "platform": platform.platform(), "python": platform.python_version(),
                  "gpu": None, "gpu_count": 0, "driver": None, "cuda": None, "cudnn": None,
                  "tensorrt": None, "onnxruntime": _dist_version("onnxruntime") or _dist_version("onnxruntime-gpu"),
                  "onnxruntime_providers": [], "torch": None, "numpy": np.__version__,
                  "edgevit": _dist_version("edgevit"), "jetson": None,
                  "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")}}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpu_count"] = torch.cuda.device_count()
            info["gpu"] = torch.cuda.get_device_name(0)
            with contextlib.suppress(Exception):
                info["cudnn"] = str(torch.backends.cudnn.version())
    except ImportError:
        pass
    smi = command_output(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if smi and smi.strip():
        name, _, driver = smi.strip().splitlines()[0].partition(",")
        info["gpu"] = info["gpu"] or name.strip()
        info["driver"] = driver.strip() or None
    elif Path("/proc/driver/nvidia/version").exists():
        with contextlib.suppress(OSError):
            m = re.search(r"Kernel Module\s+([\d.]+)", Path("/proc/driver/nvidia/version").read_text())
            info["driver"] = m.group(1) if m else None
    info["tensorrt"] = next((v for v in (_dist_version(d) for d in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13",
                                                                       "tensorrt-libs")) if v), None)
    if info["tensorrt"] is None:
        with contextlib.suppress(Exception):
            import importlib.util

            if importlib.util.find_spec("tensorrt") is not None:
                import tensorrt

                info["tensorrt"] = tensorrt.__version__
    with contextlib.suppress(Exception):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    info["jetson"] = jetson_info()
    return info


# ------------------------------------------------------------------------------ config / report
@dataclass
class BenchConfig:
    """Options of :func:`run_bench` (the CLI builds one from its flags); see the module docstring."""

    data: str = "digits"
    preprocessed: bool = False              # a .npy/.npz data file is model input already, not raw pixels
    samples: int = 512
    seed: int = 0
    warmup_s: float = 0.2
    iterations: int | None = None
    duration_s: float | None = None
    time_limit_s: float = 10.0
    min_iterations: int = 5
    noise_cv: float = 0.10
    threads: int | None = None
    batch: int | None = None
    batch_sweep: tuple = ()
    device: str = "auto"
    providers: tuple | None = None
    cuda_graphs: bool = True
    reference: str | None = None
    arch: str | None = None
    model_overrides: dict = field(default_factory=dict)  # config fields for load_model of --reference
    attention: bool = False
    attention_samples: int = 32
    include_reference: bool = True
    verify_hash: bool = True  # a manifest-listed file whose sha256 differs becomes a failed row

    def __post_init__(self) -> None:
        if self.iterations is not None and self.duration_s is not None:
            raise ValueError("give either iterations or duration_s, not both")
        if self.iterations is None and self.duration_s is None:
            self.iterations = 50
        for name in ("iterations", "samples", "min_iterations", "attention_samples"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("warmup_s", "time_limit_s", "noise_cv"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.duration_s is not None and not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"duration_s must be > 0, got {self.duration_s!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise ValueError(f"batch must be a positive integer, got {self.batch!r}")
        self.batch_sweep = tuple(int(b) for b in (self.batch_sweep or ()))
        if any(b < 1 for b in self.batch_sweep):
            raise ValueError(f"batch_sweep values must be positive integers, got {list(self.batch_sweep)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be one of ['auto', 'cpu', 'cuda'], got {self.device!r}")
        if self.providers is not None:
            self.providers = tuple(self.providers)
            for p in self.providers:
                if p not in ("cpu", "cuda", "tensorrt"):
                    raise ValueError(f"providers must be among ['cpu', 'cuda', 'tensorrt'], got {p!r}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["batch_sweep"] = list(self.batch_sweep)
        data["providers"] = list(self.providers) if self.providers is not None else None
        return data


@dataclass
class BenchReport:
    """Everything :func:`run_bench` measured; ``rows`` are dicts of the documented ROW schema."""

    rows: list = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(r["status"] == "failed" for r in self.rows)

    @property
    def failures(self) -> list[str]:
        return [f"{r['name']}: {r['reason']}" for r in self.rows if r["status"] == "failed"]

    def row(self, name: str) -> dict:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(f"no row named {name!r}; rows: {[r['name'] for r in self.rows]}")

    def to_dict(self) -> dict:
        """The documented JSON schema; non-finite floats (an artifact producing NaN/Inf) become null."""
        return _finite({"schema_version": SCHEMA_VERSION, "kind": "edgevit.bench", "created": self.created,
                        "ok": self.ok, "seconds": round(self.seconds, 3), "machine": self.machine,
                        "config": self.config, "data": self.data, "reference": self.reference, "rows": self.rows,
                        "warnings": self.warnings, "files": self.files})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in csv_record(r).items()})
        return buf.getvalue()

    def table_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and formatted cells of the summary table (terminal and Markdown)."""
        return table_columns(self), [format_row(r, self) for r in self.rows]

    def to_markdown(self) -> str:
        cols, cells = self.table_rows()
        m = self.machine
        lines = ["# edgevit bench", "",
                 f"- CPU: {m.get('cpu')} ({m.get('cpu_cores')} cores, {self.config.get('threads')} threads used)",
                 f"- GPU: {m.get('gpu') or 'none'}; driver {m.get('driver')}; CUDA {m.get('cuda')}; "
                 f"TensorRT {m.get('tensorrt')}",
                 f"- torch {m.get('torch')}; onnxruntime {m.get('onnxruntime')}; numpy {m.get('numpy')}; "
                 f"python {m.get('python')}",
                 f"- data: {self.data.get('description')}",
                 *([f"- accuracy: {self.data['agreement']}"] if _features(self) else []),
                 f"- timing: warm-up {self.config.get('warmup_s')} s, "
                 + (f"{self.config.get('iterations')} iterations" if self.config.get('duration_s') is None
                    else f"{self.config.get('duration_s')} s") + f" per measurement; reference: "
                 f"{self.reference.get('row')}", ""]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for row in cells:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        notes = [f"{r['name']}: {r['status']}: {r['reason']}" for r in self.rows if r.get("reason")]
        if notes or self.warnings:
            lines.append("")
            lines.extend(f"- {n}" for n in notes + list(self.warnings))
        return "\n".join(lines) + "\n"

    def write(self, report_dir: str | os.PathLike, force: bool = False, plot: bool = True) -> dict:
        """Write bench.json/.csv/.md (and bench.png when matplotlib is installed) atomically."""
        from ._io import check_writable, write_text_atomic

        report_dir = Path(report_dir)
        paths = {k: report_dir / v for k, v in REPORT_FILES.items()}
        for p in paths.values():
            check_writable(p, force)
        report_dir.mkdir(parents=True, exist_ok=True)
        files = {"json": str(paths["json"]), "csv": str(paths["csv"]), "markdown": str(paths["markdown"]),
                 "plot": None}
        if plot:
            try:
                write_plot(self, paths["plot"], force=force)
                files["plot"] = str(paths["plot"])
            except MissingDependencyError as exc:
                self.warnings.append(f"plot not written: {exc}")
        self.files = files
        write_text_atomic(paths["csv"], self.to_csv(), force=force)
        write_text_atomic(paths["markdown"], self.to_markdown(), force=force)
        write_text_atomic(paths["json"], self.to_json(), force=force)
        return files


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def csv_record(r: dict) -> dict:
    lat = r.get("latency_ms") or {}
    thr = r.get("throughput") or {}
    ph = r.get("phases_ms") or {}
    att = r.get("attention") or {}
    sweep = ";".join(f"{s['batch']}={s['latency_ms']['p50']:.4g}" for s in r.get("sweep") or [])
    return {
        "name": r["name"], "backend": r["backend"], "device": r["device"], "provider": r.get("provider"),
        "variant": r.get("variant"), "format": r["format"], "precision": r["precision"], "artifact": r.get("artifact"),
        "reference": r.get("reference"), "status": r["status"], "reason": r.get("reason"),
        "size_mb": r.get("size_mb"), "top1": r.get("top1"), "agreement": r.get("agreement"),
        "max_abs": r.get("max_abs"), "cosine_min": r.get("cosine_min"), "cosine_mean": r.get("cosine_mean"),
        "within_tolerance": r.get("within_tolerance"),
        "latency_p50_ms": lat.get("p50"), "latency_p90_ms": lat.get("p90"), "latency_p99_ms": lat.get("p99"),
        "latency_cv": lat.get("cv"), "noisy": lat.get("noisy"), "iterations": lat.get("iterations"),
        "throughput_batch": thr.get("batch"), "throughput_img_s": thr.get("img_per_s"),
        "speedup": r.get("speedup"), "throughput_speedup": r.get("throughput_speedup"),
        "h2d_p50_ms": (ph.get("h2d") or {}).get("p50"), "compute_p50_ms": (ph.get("compute") or {}).get("p50"),
        "d2h_p50_ms": (ph.get("d2h") or {}).get("p50"), "sweep_p50_ms": sweep or None,
        "attention_status": att.get("status"), "attention_max_abs": att.get("max_abs"),
        "attention_cosine_min": att.get("cosine_min"),
    }


def _features(report: BenchReport) -> bool:
    """The artifacts output features or tokens: no labels, agreement is k-NN agreement."""
    return report.data.get("output", "logits") != "logits"


def table_columns(report: BenchReport) -> list[str]:
    accuracy = ["k-NN@5 agree", "max abs", "cos min", "cos mean"] if _features(report) else \
        ["top-1", "agree", "max abs", "cos min"]
    cols = ["row", "status", "MB", *accuracy, "p50 ms", "p90 ms", "p99 ms", "cv", "img/s (batch)", "speed-up"]
    if any(r.get("phases_ms") for r in report.rows):
        cols.append("h2d/compute/d2h ms")
    if any(r.get("attention") for r in report.rows):
        cols.append("attention")
    return cols


def format_row(r: dict, report: BenchReport) -> list[str]:
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    lat = r.get("latency_ms") or {}
    thr = r.get("throughput") or {}
    status = r["status"]  # the reason is printed under the table and kept in the JSON/CSV
    noisy = " noisy" if lat.get("noisy") else ""
    accuracy = ([f(r.get("agreement"), ".4f"), f(r.get("max_abs"), ".2e"), f(r.get("cosine_min"), ".6f"),
                 f(r.get("cosine_mean"), ".6f")] if _features(report) else
                [f(r.get("top1"), ".4f"), f(r.get("agreement"), ".4f"), f(r.get("max_abs"), ".2e"),
                 f(r.get("cosine_min"), ".6f")])
    cells = [r["name"] + (" (ref)" if r.get("reference") else ""), status, f(r.get("size_mb"), ".2f"), *accuracy,
             f(lat.get("p50"), ".3f"), f(lat.get("p90"), ".3f"), f(lat.get("p99"), ".3f"),
             (f(lat.get("cv"), ".2f") + noisy) if lat else "-",
             f"{thr['img_per_s']:.1f} ({thr['batch']})" if thr else "-",
             f"{r['speedup']:.2f}x" if r.get("speedup") is not None else "-"]
    cols = table_columns(report)
    if "h2d/compute/d2h ms" in cols:
        ph = r.get("phases_ms") or {}
        cells.append("/".join(f((ph.get(k) or {}).get("p50"), ".3f") for k in PHASES) if ph else "-")
    if "attention" in cols:
        att = r.get("attention")
        cells.append("-" if not att else (att["status"] if att.get("max_abs") is None
                                          else f"{att['status']} {att['max_abs']:.1e}"))
    return cells


def write_plot(report: BenchReport, path: str | os.PathLike, force: bool = False) -> Path:
    """The PNG: p50 latency against batch per ok row; top-1 (or agreement) against batch-1 p50."""
    from ._deps import require
    from ._io import atomic_path

    matplotlib = require("matplotlib", purpose="drawing the bench plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (ScalarFormatter)

    ok = [r for r in report.rows if r["status"] == "ok" and r.get("latency_ms")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    colors = {r["name"]: f"C{i % 10}" for i, r in enumerate(ok)}
    for r in ok:
        pts = {1: r["latency_ms"]["p50"]}
        if r.get("throughput"):
            pts[r["throughput"]["batch"]] = r["throughput"]["latency_ms"]["p50"]
        for s in r.get("sweep") or []:
            pts[s["batch"]] = s["latency_ms"]["p50"]
        xs = sorted(pts)
        ax1.plot(xs, [pts[x] for x in xs], marker="o", label=r["name"], color=colors[r["name"]])
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax1.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax1.set_xlabel("batch")
    ax1.set_ylabel("p50 latency per batch (ms)")
    ax1.set_title("latency vs batch")
    if ok:
        ax1.legend(fontsize=7)
    labelled = any(r.get("top1") is not None for r in ok)
    key = "top1" if labelled else "agreement"
    for r in ok:
        y = r.get(key)
        if y is None:
            continue
        ax2.scatter(r["latency_ms"]["p50"], y, color=colors[r["name"]], label=r["name"])  # colors match the left
    ax2.set_xscale("log")
    ax2.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_xlabel("p50 latency at batch 1 (ms)")
    ax2.set_ylabel("top-1 accuracy" if labelled else
                   "k-NN@5 agreement with the reference" if _features(report) else "top-1 agreement with the reference")
    ax2.set_title("accuracy vs latency")
    ax2.grid(True, alpha=0.3)
    fig.suptitle(f"edgevit bench: {report.machine.get('gpu') or report.machine.get('cpu')}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------ targets
class _Target:
    """One row's executable: ``infer(images) -> logits`` and ``timed_call(batch) -> call``."""

    fixed_batch: int | None = None

    def open(self) -> None: ...

    def close(self) -> None: ...

    def infer(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def timed_call(self, images: np.ndarray) -> Callable[[], dict | None]:
        raise NotImplementedError


class _RunnerTarget(_Target):
    """A :class:`edgevit.runtime.Runner`; phases through its optional ``timed_infer`` hook."""

    def __init__(self, make_runner: Callable):
        self.make_runner = make_runner
        self.runner = None

    def open(self) -> None:
        from .runtime.batching import single_input

        self.runner = self.make_runner()
        self.runner.activate()
        self.input_name, shape = single_input(self.runner.input_spec(), self.runner.name)
        self.dtype = self.runner.input_spec()[self.input_name][1]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.name = self.runner.name

    def close(self) -> None:
        if self.runner is not None:
            self.runner.deactivate()

    def infer(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        from .runtime.batching import run_batched

        out = run_batched(self.runner, images.astype(self.dtype, copy=False), batch_size)
        names = self.runner.output_names()
        return np.asarray(out[names[0]] if names and names[0] in out else next(iter(out.values())), np.float32)

    def timed_call(self, images: np.ndarray):
        feeds = {self.input_name: np.ascontiguousarray(images.astype(self.dtype, copy=False))}
        hook = getattr(self.runner, "timed_infer", None)
        if callable(hook):
            return lambda: hook(feeds)[1]
        runner = self.runner
        return lambda: (runner.infer(feeds, check=False), None)[1]


class _TorchCudaTarget(_Target):
    """PyTorch on CUDA: inputs copied from pinned host memory, CUDA events split the phases;
    ``graph=True`` captures the forward pass once per batch size and replays it."""

    def __init__(self, model, dtype: str, graph: bool, device: str = "cuda", tokens: bool = False):
        self.source_model = model
        self.dtype_name = dtype
        self.graph = graph
        self.tokens = tokens  # run model.forward_tokens (the patch tokens) instead of model.forward
        self.device = device
        self._graphs: dict = {}

    def open(self) -> None:
        import copy

        import torch

        from .runtime.torch_runner import torch_dtype

        self.torch = torch
        self.dtype = torch_dtype(self.dtype_name)
        model = copy.deepcopy(self.source_model)
        model.set_attn_impl("sdpa")
        self.model = model.to(self.device, self.dtype).eval()
        self._call = self.model.forward_tokens if self.tokens else self.model
        self.stream = torch.cuda.current_stream()

    def close(self) -> None:
        self._graphs.clear()
        self.model = None
        with contextlib.suppress(Exception):
            self.torch.cuda.empty_cache()

    def _forward(self, batch: int):
        """A function running the model on a static device input of ``batch`` images."""
        torch = self.torch
        if not self.graph:
            return lambda x: self._call(x)
        if batch not in self._graphs:
            shape = (batch, *self._shape)
            static_x = torch.zeros(shape, device=self.device, dtype=self.dtype)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):
                    self._call(static_x)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(g):
                static_y = self._call(static_x)
            self._graphs[batch] = (g, static_x, static_y)
        g, static_x, static_y = self._graphs[batch]

        def run(x):
            static_x.copy_(x)
            g.replay()
            return static_y

        return run

    def infer(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        torch = self.torch
        self._shape = tuple(images.shape[1:])
        outs = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                chunk = images[start:start + batch_size]
                n = len(chunk)
                if self.graph and n < batch_size:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
                fwd = self._forward(len(chunk))
                x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device, self.dtype)
                outs.append(fwd(x)[:n].float().cpu().numpy())
        return np.concatenate(outs)

    def timed_call(self, images: np.ndarray):
        torch = self.torch
        self._shape = tuple(images.shape[1:])
        batch = len(images)
        host = torch.from_numpy(np.ascontiguousarray(images)).to(self.dtype).pin_memory()
        fwd = self._forward(batch)
        dev_x = torch.empty(host.shape, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            y = fwd(dev_x.copy_(host))
        out_host = torch.empty(y.shape, dtype=y.dtype).pin_memory()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

        def call():
            with torch.inference_mode():
                events[0].record()
                dev_x.copy_(host, non_blocking=True)
                events[1].record()
                out = fwd(dev_x)
                events[2].record()
                out_host.copy_(out, non_blocking=True)
                events[3].record()
                events[3].synchronize()
            return {"h2d": events[0].elapsed_time(events[1]), "compute": events[1].elapsed_time(events[2]),
                    "d2h": events[2].elapsed_time(events[3])}

        return call


# ------------------------------------------------------------------------------ planning
@dataclass
class _Plan:
    """One row to run: its description and how to build its target (or why it is skipped/failed)."""

    row: dict
    make: Callable[[], _Target] | None = None
    kind: str = "runner"  # "runner" | "torch-cuda"
    onnx_path: Path | None = None
    error: str | None = None
    status: str | None = None


def _new_row(name, backend, device, fmt, precision, artifact=None, provider=None, variant=None,
             reference=False, size_mb=None) -> dict:
    return {"name": name, "backend": backend, "device": device, "provider": provider, "variant": variant,
            "format": fmt, "precision": precision, "artifact": artifact, "reference": reference,
            "status": "ok", "reason": None, "size_mb": size_mb, "top1": None, "agreement": None, "max_abs": None,
            "cosine_min": None, "cosine_mean": None, "within_tolerance": None, "latency_ms": None, "throughput": None,
            "speedup": None,
            "throughput_speedup": None, "sweep": [], "phases_ms": None, "attention": None, "seconds": 0.0}


def _size_mb(root: Path, art) -> float | None:
    total = 0
    found = False
    for rel in [art.path, *art.external_data]:
        p = root / rel
        if p.exists():
            total += p.stat().st_size
            found = True
    return round(total / 1e6, 4) if found else None


def _describe_exc(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


@dataclass
class _Unlisted:
    """A file no manifest lists: its precision detected from the graph, "unknown" for an engine."""

    path: str
    format: str
    precision: str
    external_data: list = field(default_factory=list)


def _resolve_sources(sources) -> list[tuple]:
    """[(manifest | None, root, [manifest Artifact | _Unlisted])] per source."""
    from .manifest import Manifest
    from .verify import detect_onnx_precision

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("give at least one export OUTDIR or artifact file to benchmark")
    out = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            if not Manifest.path_in(path).is_file():
                listing = sorted(p.name for p in path.iterdir())[:10]
                raise ManifestError(
                    f"{path}: no {MANIFEST_NAME} manifest here (found: {listing or 'nothing'}); "
                    f"run `edgevit export CHECKPOINT -o {path}` first, or name artifact files")
            manifest = Manifest.load(path)
            if not manifest.artifacts:
                raise ManifestError(f"{path / MANIFEST_NAME}: lists no artifacts; run edgevit export first")
            out.append((manifest, manifest.root, list(manifest.artifacts)))
            continue
        if not path.exists():
            raise OnnxModelError(f"{path}: no such artifact file or export directory")
        if path.suffix not in (".onnx", *ENGINE_SUFFIXES):
            raise ValueError(f"{path}: not an ONNX file (.onnx), a TensorRT engine ({', '.join(ENGINE_SUFFIXES)}) "
                             "or an export directory with an edgevit.json manifest")
        manifest = None
        with contextlib.suppress(ManifestError):
            if Manifest.path_in(path.parent).is_file():
                manifest = Manifest.load(path.parent)
        entry = manifest.entry_for(path) if manifest is not None else None
        if entry is None:
            fmt = "onnx" if path.suffix == ".onnx" else "tensorrt"
            entry = _Unlisted(path.name, fmt, detect_onnx_precision(path) if fmt == "onnx" else "unknown")
        out.append((manifest, path.parent, [entry]))
    return out


def _profile(manifests: list) -> dict | None:
    for m in manifests:
        if m is not None and m.batch:
            return m.batch
    return None


def _check_batch(b: int, profile: dict | None, what: str) -> None:
    if profile is None or not profile:
        return
    lo, hi = int(profile.get("min", 1)), int(profile.get("max", b))
    if not profile.get("dynamic", True) and b != lo:
        raise ValueError(f"{what} {b}: the artifacts have a static batch of {lo}; only batch {lo} can run")
    if not lo <= b <= hi:
        raise ValueError(f"{what} {b} is outside the export's batch profile {lo}..{hi} "
                         f"(manifest batch min {lo}, max {hi}); choose a batch in that range or re-export "
                         "with --batch MIN,OPT,MAX")


def _reference_model(manifests: list, cfg: BenchConfig):
    """(model, source, reason): the PyTorch reference, or None and why not."""
    from .models import list_variants, load_model
    from .models.hub import is_hub_name

    if cfg.reference:
        return load_model(cfg.reference, arch=cfg.arch, **cfg.model_overrides), cfg.reference, None
    tried = []
    for m in manifests:
        if m is None:
            continue
        src = (m.model or {}).get("source")
        if not isinstance(src, str) or src.startswith("<"):
            tried.append(f"manifest source {src!r} is not a file")
            continue
        if src in list_variants():
            tried.append(f"manifest source {src!r} is a variant name (random weights, not the exported ones)")
            continue
        for cand in (Path(src), m.root / src):
            if cand.exists() or is_hub_name(src):
                try:
                    return load_model(cand, arch=(m.model or {}).get("arch") or cfg.arch,
                                      **((m.model or {}).get("overrides") or cfg.model_overrides)), str(cand), None
                except EdgeVitError as exc:
                    tried.append(f"{cand}: {exc}")
                    break
        else:
            tried.append(f"checkpoint {src} not found")
    reason = "; ".join(dict.fromkeys(tried)) or "no manifest names the checkpoint (give --reference CHECKPOINT)"
    return None, None, reason


def _ort_providers(cfg: BenchConfig, machine: dict) -> list[str]:
    if cfg.providers is not None:
        return list(cfg.providers)
    out = ["cpu"]
    if "CUDAExecutionProvider" in machine.get("onnxruntime_providers", []) and cfg.device != "cpu":
        out.append("cuda")
    return out


def _output_kind(manifests: list, model, resolved=()) -> str:
    """What the benchmarked artifacts output: the manifests' ``model.output`` (logits before it was
    recorded), else the reference model's ``output_kind``, else an ONNX graph's output name."""
    from .metrics import FEATURE_OUTPUTS

    recorded = {m.output_kind for m in manifests if m is not None}
    if len(recorded) > 1:
        raise ValueError(f"the sources output {' and '.join(sorted(recorded))}: their rows cannot be compared; "
                         "benchmark the exports of each output kind separately")
    if recorded:
        return recorded.pop()
    if model is not None:
        return model.output_kind
    with contextlib.suppress(Exception):
        import onnx

        for _, root, arts in resolved:
            for art in arts:
                if art.format == "onnx":
                    names = [o.name for o in onnx.load(str(Path(root) / art.path), load_external_data=False).graph.output]
                    return names[0] if names and names[0] in FEATURE_OUTPUTS else "logits"
    return "logits"


def _plan(resolved, model, ref_source, ref_reason, cfg: BenchConfig, machine: dict, threads: int,
          output: str = "logits") -> list[_Plan]:
    from .runtime import get_runner

    tokens = output == "tokens"  # the PyTorch rows run model.forward_tokens, as the tokens graph does
    plans: list[_Plan] = []
    if cfg.include_reference:
        size = None
        if ref_source and Path(ref_source).is_file():
            size = round(Path(ref_source).stat().st_size / 1e6, 4)
        row = _new_row("torch cpu fp32", "torch", "cpu", "checkpoint", "fp32", artifact=ref_source,
                       variant="eager", reference=True, size_mb=size)
        if model is None:
            plans.append(_Plan(row, status="skipped", error=f"no PyTorch reference: {ref_reason}"))
        else:
            plans.append(_Plan(row, make=lambda: _RunnerTarget(
                lambda: get_runner("torch", model, attention="sdpa", device="cpu", dtype="fp32",
                                   output="tokens" if tokens else None))))
    cuda = False
    if cfg.device != "cpu":
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
        if cfg.device == "cuda" and not cuda:
            raise EdgeVitError("--device cuda was asked for but torch.cuda.is_available() is False")
    if cuda and model is not None:
        for dtype in TORCH_CUDA_DTYPES:
            for graph in ((False, True) if cfg.cuda_graphs else (False,)):
                variant = "cuda-graph" if graph else "eager"
                name = f"torch cuda {dtype}" + (" graph" if graph else "")
                row = _new_row(name, "torch", "cuda", "checkpoint", dtype, artifact=ref_source, variant=variant,
                               size_mb=plans[0].row["size_mb"] if plans else None)
                plans.append(_Plan(row, kind="torch-cuda",
                                   make=lambda d=dtype, g=graph: _TorchCudaTarget(model, d, g, tokens=tokens)))
    providers = _ort_providers(cfg, machine)
    seen = set()
    for manifest, root, arts in resolved:
        for art in arts:
            file = (Path(root) / art.path).resolve()
            if file in seen:
                continue
            seen.add(file)
            size = _size_mb(Path(root), art)
            rel = str(Path(root) / art.path)
            problem = _integrity_problem(manifest, art, cfg.verify_hash)  # hashed once per file
            if art.format == "onnx":
                for prov in providers:
                    name = f"ort {prov} {art.precision} {Path(art.path).name}"
                    row = _new_row(name, "onnxruntime", "cpu" if prov == "cpu" else "cuda", "onnx", art.precision,
                                   artifact=rel, provider=prov, size_mb=size)
                    plans.append(_Plan(row, status="failed", error=problem) if problem else
                                 _Plan(row, onnx_path=file, make=lambda f=file, p=prov: _RunnerTarget(
                                     lambda: get_runner("onnxruntime", f, providers=p, threads=threads))))
            else:
                name = f"tensorrt {art.precision} {Path(art.path).name}"
                row = _new_row(name, "tensorrt", "cuda", "tensorrt", art.precision, artifact=rel, size_mb=size)
                record = None if isinstance(art, _Unlisted) else art.to_dict()  # checked against this machine
                plans.append(_Plan(row, status="failed", error=problem) if problem else
                             _Plan(row, make=lambda f=file, e=record: _RunnerTarget(
                                 lambda: get_runner("tensorrt", f, manifest_entry=e))))
    return plans


def _integrity_problem(manifest, art, verify_hash: bool) -> str | None:
    """Why a manifest-listed file must not be benchmarked (missing, or its sha256 differs from
    the recorded one: :meth:`edgevit.manifest.Manifest.check_artifact`), else None."""
    if manifest is None or isinstance(art, _Unlisted):
        return None
    try:
        manifest.check_artifact(art, verify_hash)
    except ManifestError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# ------------------------------------------------------------------------------ running
def _timing_kwargs(cfg: BenchConfig) -> dict:
    return {"warmup_s": cfg.warmup_s, "iterations": cfg.iterations, "duration_s": cfg.duration_s,
            "time_limit_s": cfg.time_limit_s, "min_iterations": cfg.min_iterations, "noise_cv": cfg.noise_cv}


def _bench_one(plan: _Plan, images: np.ndarray, cfg: BenchConfig, batch: int, sweep: tuple) -> tuple[dict, np.ndarray | None]:
    row = plan.row
    started = time.perf_counter()
    logits = None
    target = None
    try:
        target = plan.make()
        target.open()
        eff_batch = target.fixed_batch or batch
        logits = target.infer(images, eff_batch)
        one = images[:target.fixed_batch or 1]
        if len(one) < (target.fixed_batch or 1):
            one = np.concatenate([one, np.repeat(one[-1:], (target.fixed_batch or 1) - len(one), axis=0)])
        stats = measure(target.timed_call(one), batch=len(one), **_timing_kwargs(cfg))
        phases = stats.pop("phases", None)
        row["latency_ms"] = stats
        row["phases_ms"] = phases
        tb = images[:eff_batch]
        if len(tb) < eff_batch:
            tb = np.concatenate([tb, np.repeat(tb[-1:], eff_batch - len(tb), axis=0)])
        tstats = measure(target.timed_call(tb), batch=eff_batch, **_timing_kwargs(cfg))
        tstats.pop("phases", None)
        row["throughput"] = {"batch": eff_batch, "img_per_s": eff_batch / (tstats["p50"] / 1e3),
                             "latency_ms": tstats}
        for b in sweep:
            if target.fixed_batch and b != target.fixed_batch:
                continue
            xb = images[:b] if len(images) >= b else np.concatenate(
                [images, np.repeat(images[-1:], b - len(images), axis=0)])
            if b == len(one):
                s = dict(stats)
            elif b == eff_batch:
                s = dict(tstats)
            else:
                s = measure(target.timed_call(xb), batch=b, **_timing_kwargs(cfg))
                s.pop("phases", None)
            row["sweep"].append({"batch": b, "img_per_s": b / (s["p50"] / 1e3), "latency_ms": s})
    except MissingDependencyError as exc:
        row["status"], row["reason"] = "skipped", " ".join(str(exc).split())[:800]
    except Exception as exc:  # a failing artifact is a failed row, never a crash
        row["status"], row["reason"] = "failed", _describe_exc(exc)
        logits = None
    finally:
        if target is not None:
            with contextlib.suppress(Exception):
                target.close()
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row, logits


def _accuracy(row: dict, logits: np.ndarray, ref_logits: np.ndarray | None, labels, output: str = "logits") -> None:
    """Accuracy columns of one row against the reference row's outputs. ``output`` "features" or
    "tokens": no top-1; ``agreement`` is the k-NN agreement (:func:`edgevit.metrics.neighbour_agreement`)."""
    from .verify import compare_outputs, get_tolerance

    if logits is None:
        return
    if row["precision"] == "unknown":  # an engine no manifest lists: no tolerance row to judge it by
        row["reason"] = "no edgevit.json records this engine's precision, so its accuracy is not judged against " \
                        "a tolerance row; benchmark the directory `edgevit build` wrote it to"
    if labels is not None and logits.ndim == 2 and output == "logits":
        row["top1"] = float((logits.argmax(1) == labels).mean())
    if ref_logits is not None and ref_logits.shape == logits.shape:
        prec = row["precision"] if row["precision"] in ("fp32", "fp16", "bf16", "int8", "fp8") else "int8"
        tol = get_tolerance(prec, output)  # the row of the precision the manifest records for the artifact
        stats = compare_outputs(ref_logits, logits, tol, output=output)
        row["agreement"] = stats.get("knn_agreement", stats.get("top1_agreement"))
        row["max_abs"] = stats["max_abs"]
        row["cosine_min"] = stats["cosine_min"]
        row["cosine_mean"] = stats["cosine_mean"]
        within = stats["violations"] == 0 and stats["nonfinite"] == 0 and stats["cosine_min"] >= tol.min_cosine
        if row["agreement"] is not None:
            within = within and row["agreement"] >= tol.min_agreement
        row["within_tolerance"] = None if row["precision"] == "unknown" else bool(within)
    elif ref_logits is not None:
        row["reason"] = (row["reason"] + "; " if row["reason"] else "") + \
            f"output shape {list(logits.shape)} differs from the reference {list(ref_logits.shape)}"


def _attention(plan: _Plan, model, images: np.ndarray, cfg: BenchConfig, threads: int) -> dict:
    from .verify import verify_attention_onnx

    if plan.row["status"] != "ok":
        return {"status": "skipped", "reason": f"row {plan.row['status']}"}
    if model is None:
        return {"status": "skipped", "reason": "no PyTorch reference (give --reference CHECKPOINT)"}
    prec = plan.row["precision"] if plan.row["precision"] in ("fp32", "fp16", "bf16", "int8", "fp8") else "int8"
    try:
        att = verify_attention_onnx(plan.onnx_path, model, images[:cfg.attention_samples], precision=prec,
                                    batch_size=min(32, cfg.attention_samples), providers=plan.row["provider"],
                                    threads=threads)
    except Exception as exc:
        return {"status": "failed", "reason": _describe_exc(exc)}
    rows = att["rows"]
    return {"status": "pass" if all(r["passed"] for r in rows) else "FAIL", "reason": None, "blocks": len(rows),
            "max_abs": max(r["max_abs"] for r in rows), "cosine_min": min(r["cosine_min"] for r in rows),
            "form": att.get("form"), "block_input_source": att.get("block_input_source"), "rows": rows}


@contextlib.contextmanager
def _torch_threads(n: int):
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_bench(sources, config: BenchConfig | None = None, progress: Callable[[str], None] | None = None,
              **options) -> BenchReport:
    """Benchmark every artifact of ``sources`` (export OUTDIRs and/or artifact files) and the
    PyTorch reference; see the module docstring for the rows, timing method and schema.

    Raises on bad input (no manifest, unknown file, batch outside the profile, bad data);
    an artifact that cannot be loaded or run becomes a ``failed`` row instead.
    """
    from dataclasses import replace

    cfg = replace(config, **options) if config is not None else BenchConfig(**options)
    started = time.perf_counter()
    resolved = _resolve_sources(sources)
    manifests = [m for m, _, _ in resolved]
    profile = _profile(manifests)
    batch = cfg.batch or (int(profile["max"]) if profile and profile.get("max") else DEFAULT_BATCH)
    _check_batch(batch, profile, "batch")
    for b in cfg.batch_sweep:
        _check_batch(b, profile, "--batch-sweep value")
    sweep = tuple(dict.fromkeys(cfg.batch_sweep))
    threads = cfg.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    machine = machine_info()
    report = BenchReport(machine=machine, config={**cfg.to_dict(), "threads": threads, "throughput_batch": batch})
    if machine.get("jetson"):
        report.warnings.extend(machine["jetson"]["warnings"])

    model, ref_source, ref_reason = _reference_model(manifests, cfg)
    output = _output_kind(manifests, model, resolved)
    shape = None
    pre = None
    for m in manifests:
        if m is not None and m.inputs:
            shape = tuple(m.inputs[0]["shape"][1:])
        if m is not None and isinstance(m.preprocessing, dict) and pre is None:
            from .data.preprocess import Preprocessing

            with contextlib.suppress(TypeError, ValueError):
                pre = Preprocessing.from_dict(m.preprocessing)
    if model is not None:
        c = model.config
        shape = shape or (c.in_chans, c.img_size, c.img_size)
        pre = pre or model.preprocessing
    if shape is None:
        shape = _shape_from_onnx(resolved)
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise DataError("cannot tell the model's input shape: no manifest and no loadable ONNX input spec; "
                        "benchmark an export OUTDIR or give --reference CHECKPOINT")
    from .verify import load_inputs

    data = cfg.data
    if data == "digits" and pre is None:
        report.warnings.append("no preprocessing is known (no manifest or checkpoint): using random inputs")
        data = "random"
    if data == "digits" and tuple(pre.input_size) != tuple(shape):
        report.warnings.append(f"the model input {list(shape)} is not digits-shaped: using random inputs "
                               "(give --data with labelled data of the model's shape)")
        data = "random"
    labels = next((m.labels for m in manifests if m is not None and m.labels), None) or getattr(model, "labels", None)
    inputs = load_inputs(data, shape, cfg.samples, cfg.seed, pre, cfg.preprocessed, labels)
    images = np.ascontiguousarray(inputs.images, dtype=np.float32)
    report.data = {"source": data, "description": inputs.description, "samples": int(len(images)),
                   "labelled": inputs.labels is not None and output == "logits", "output": output,
                   "agreement": "top-1 agreement with the reference" if output == "logits" else
                   f"{output} have no labels: judged against the reference row by per-sample cosine and "
                   f"{KNN_AGREEMENT}"}

    plans = _plan(resolved, model, ref_source, ref_reason, cfg, machine, threads, output)
    logits_by_row: dict[str, np.ndarray] = {}
    with _torch_threads(threads):
        for plan in plans:
            if plan.status:
                plan.row["status"], plan.row["reason"] = plan.status, plan.error
                report.rows.append(plan.row)
                continue
            if progress:
                progress(plan.row["name"])
            row, logits = _bench_one(plan, images, cfg, batch, sweep)
            if logits is not None:
                logits_by_row[row["name"]] = logits
            report.rows.append(row)
            if cfg.attention and row["backend"] == "onnxruntime":
                row["attention"] = _attention(plan, model, images, cfg, threads)

    # the reference: the PyTorch CPU row, else the first ok fp32 ONNX row
    ref_row = next((r for r in report.rows if r["reference"] and r["status"] == "ok"), None)
    note = "PyTorch eager fp32 on CPU (SDPA attention) from the manifest's checkpoint"
    if ref_row is None:
        ref_row = next((r for r in report.rows if r["status"] == "ok" and r["format"] == "onnx"
                        and r["precision"] == "fp32"), None)
        note = (f"the PyTorch reference is unavailable ({ref_reason}); agreement and speed-up are relative to "
                f"{ref_row['name']}" if ref_row else f"no reference row ran ({ref_reason})")
        if ref_row is not None:
            ref_row["reference"] = True
        report.warnings.append(note)
    ref_logits = logits_by_row.get(ref_row["name"]) if ref_row else None
    for row in report.rows:
        if row["name"] in logits_by_row:
            _accuracy(row, logits_by_row[row["name"]], ref_logits, inputs.labels, output)
        if ref_row and row["status"] == "ok" and row["latency_ms"] and ref_row["latency_ms"]:
            row["speedup"] = ref_row["latency_ms"]["p50"] / row["latency_ms"]["p50"]
            if row["throughput"] and ref_row["throughput"]:
                row["throughput_speedup"] = row["throughput"]["img_per_s"] / ref_row["throughput"]["img_per_s"]
        if row["latency_ms"] and row["latency_ms"]["noisy"]:
            report.warnings.append(f"{row['name']}: noisy timing (cv {row['latency_ms']['cv']:.2f} > "
                                   f"{cfg.noise_cv}); rerun on an idle machine or with more iterations")
    report.reference = {"row": ref_row["name"] if ref_row else None, "source": ref_source, "note": note}
    report.seconds = time.perf_counter() - started
    return report


def _shape_from_onnx(resolved) -> tuple | None:
    with contextlib.suppress(Exception):
        import onnx

        for _, root, arts in resolved:
            for art in arts:
                if art.format != "onnx":
                    continue
                with contextlib.suppress(Exception):
                    m = onnx.load(str(Path(root) / art.path), load_external_data=False)
                    dims = m.graph.input[0].type.tensor_type.shape.dim
                    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)[1:]
                    if shape and all(isinstance(d, int) and d > 0 for d in shape):
                        return shape
    return None


__all__ = ["BenchConfig", "BenchReport", "CSV_COLUMNS", "REPORT_FILES", "SCHEMA_VERSION", "jetson_warnings",
           "latency_stats", "machine_info", "measure", "parse_jetson_clocks", "parse_nvpmodel", "run_bench",
           "write_plot"]
