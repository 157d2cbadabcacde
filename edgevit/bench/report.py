"""What bench reports: the typed rows, the report, and its JSON, CSV, Markdown and table forms.

``bench.json`` (``BenchReport.to_dict()``, ``edgevit bench --json``)::

    {"schema_version": 1, "kind": "edgevit.bench", "created": ISO-8601, "ok": bool (no failed row),
     "seconds": float, "machine": machine_info(), "config": {BenchConfig fields, "threads", "throughput_batch"},
     "data": {"source", "description", "samples", "labelled", "output": "logits"|"features"|"tokens",
              "agreement": what the agreement column measures},
     "reference": {"row": name|null, "source": str|null, "note": str},
     "memory": {"host_method": "row"|"process-lifetime", "host": what host_peak_mb measures,
                "device": what device_memory_mb measures},
     "rows": [BenchRow.to_dict(), ...], "warnings": [str],
     "files": {"json", "csv", "markdown", "plot": path|null},          # after write()
     "certificates": [Manifest.certificate_records()...]}  # only when an export records any

Non-finite floats (an artifact producing NaN/Inf) become null. ``bench.csv``: one line per row,
the columns of :data:`CSV_COLUMNS` (empty where null): latency columns are batch-1 milliseconds,
``sweep_p50_ms`` is ``batch=ms`` pairs joined by ``;``. ``bench.md``: the machine block, then the
same table as the terminal. ``bench.png``: :mod:`edgevit.bench.plot`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .._io import to_jsonable
from ..output_kinds import OutputKind
from ..errors import MissingDependencyError
from .measure import PHASES, LatencyStats, Record

SCHEMA_VERSION = 1
PEAK_COLUMN = "peak RSS MB"
DEVICE_COLUMN = "device MB"
BOARD_COLUMNS = ("board RAM MB", "VDD_IN mW", "mJ/img")  # a Jetson's tegrastats (BenchRow.tegrastats)
DEVICE_NOTE = ("the engine's device memory for its optimization profile (activations and scratch; its weights are "
               "MB), as TensorRT reports it: device_memory_size_v2 / get_device_memory_size_for_profile_v2 "
               "(TensorRT 10), else device_memory_size")
REPORT_FILES = {"json": "bench.json", "csv": "bench.csv", "markdown": "bench.md", "plot": "bench.png"}

CSV_COLUMNS = [
    "name", "backend", "device", "provider", "variant", "format", "precision", "artifact", "reference",
    "status", "reason", "size_mb", "host_peak_mb", "host_start_mb", "device_memory_mb",
    "board_ram_peak_mb", "vdd_in_mw", "mj_per_image", "top1", "agreement", "max_abs", "cosine_min", "cosine_mean", "within_tolerance",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_cv", "noisy", "iterations",
    "throughput_batch", "throughput_img_s", "speedup", "throughput_speedup",
    "h2d_p50_ms", "compute_p50_ms", "d2h_p50_ms", "sweep_p50_ms",
    "attention_status", "attention_max_abs", "attention_cosine_min",
    "exact_top1", "exact_agreement", "exact_within_tolerance", "kernel_drift_max_abs", "kernels_within_tolerance",
]


@dataclass(frozen=True)
class Throughput(Record):
    """One batch size's measurement: ``batch`` images per call, ``img_per_s`` from the p50."""

    batch: int
    img_per_s: float
    latency_ms: LatencyStats

    @classmethod
    def of(cls, stats: LatencyStats) -> "Throughput":
        return cls(batch=stats.batch, img_per_s=stats.batch / (stats.p50 / 1e3), latency_ms=stats)


@dataclass(kw_only=True, eq=False)
class BenchRow(Record):
    """One row of the bench table (``ROW`` in bench.json, keys in this order).

    Attributes:
        name: "torch cpu fp32", "ort cpu int8 model.int8.onnx", "tensorrt fp16 model.plan", ...
        backend: "torch", "onnxruntime" or "tensorrt".
        device: "cpu" or "cuda".
        provider: The ONNX Runtime provider ("cpu", "cuda", "tensorrt"); None for other backends.
        variant: "eager" or "cuda-graph" for PyTorch rows; None otherwise.
        format: "checkpoint", "onnx" or "tensorrt".
        precision: "fp32", "fp16", "bf16", "int8", "fp8" (the manifest's), or "unknown" for an
            engine no manifest lists.
        artifact: The file benchmarked (None without one).
        reference: This row's outputs and p50 are what the others are compared with.
        status: "ok", "failed" (could not load or run, or outputs outside the precision's
            tolerance against the reference: ``reason`` says why) or "skipped" (the backend is not
            available here: ``reason``).
        reason: Why the row failed or was skipped, or a note on an ok row.
        size_mb: File size in 10^6 bytes, external data included (the weights, for a checkpoint).
        host_peak_mb: The bench process's peak resident set while this row ran (load, warm-up, timed
            calls), in 10^6 bytes; how it is measured is the report's ``memory.host``
            (:mod:`edgevit.bench.memory`). None for a row that did not run.
        host_start_mb: The process's resident set when the row started (included in ``host_peak_mb``).
        device_memory_mb: A TensorRT engine's device memory for its optimization profile (activations
            and scratch, beyond its weights: :func:`edgevit.tensorrt.engine_device_memory`), in 10^6
            bytes; None for other rows or where the engine does not say.
        tegrastats: On a Jetson, sampled while the throughput ran (:mod:`edgevit.bench.power`):
            {"samples", "ram_peak_mb" (the board's RAM in use), "ram_total_mb", "vdd_in_mw" (mean module
            input power), "mj_per_image" (vdd_in_mw / img/s, idle draw included)}; None elsewhere.
        top1: Top-1 accuracy (labelled data, logits only).
        agreement: Top-1 agreement with the reference; for features/tokens, which have no labels,
            the k-NN agreement (:func:`edgevit.metrics.neighbour_agreement`).
        max_abs, cosine_min, cosine_mean: Max abs difference and per-sample cosine of the outputs
            against the reference.
        within_tolerance: The outputs pass the tolerance row of the precision
            (:func:`edgevit.tolerances.get_tolerance`); None when not judged. For a Q/DQ graph on the CPU
            this is the graph's verdict, judged by its exact Q/DQ arithmetic (``exact_qdq``), the same on
            every host; how this CPU's kernels ran it is ``kernel_drift``.
        exact_qdq: Q/DQ graphs (int8, fp8) on ONNX Runtime CPU: the accuracy as the graph defines it
            (``qdq="exact"``, :data:`edgevit.runtime.onnxruntime_runner.QDQ_MODES`): {"top1", "agreement",
            "max_abs", "cosine_min", "within_tolerance"}; the plain columns are as this CPU's int8 kernels
            (the ones timed) ran it. None for other rows.
        kernel_drift: How far this CPU's kernels' outputs are from the exact arithmetic's, at the row's
            tolerance: {"max_abs", "cosine_min", "agreement", "within_tolerance"}; None for other rows.
        latency_ms: Batch-1 statistics.
        throughput: At the throughput batch (the profile's max unless ``--batch``).
        speedup: Reference p50 / this p50, batch 1.
        throughput_speedup: This img/s / the reference's img/s.
        sweep: One entry per ``--batch-sweep`` size.
        phases_ms: h2d / compute / d2h statistics at batch 1 (CUDA paths), else None.
        attention: ``--attention``: {"status": "pass"|"FAIL"|"skipped"|"failed", "reason", "blocks",
            "max_abs", "cosine_min", "form", "block_input_source", "rows": [verify's attention rows]}.
        seconds: Wall time this row took.
    """

    name: str
    backend: str
    device: str
    provider: str | None = None
    variant: str | None = None
    format: str
    precision: str
    artifact: str | None = None
    reference: bool = False
    status: str = "ok"
    reason: str | None = None
    size_mb: float | None = None
    host_peak_mb: float | None = None
    host_start_mb: float | None = None
    device_memory_mb: float | None = None
    tegrastats: dict | None = None
    top1: float | None = None
    agreement: float | None = None
    max_abs: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    within_tolerance: bool | None = None
    latency_ms: LatencyStats | None = None
    throughput: Throughput | None = None
    speedup: float | None = None
    throughput_speedup: float | None = None
    sweep: list = field(default_factory=list)
    phases_ms: dict | None = None
    attention: dict | None = None
    exact_qdq: dict | None = None
    kernel_drift: dict | None = None
    seconds: float = 0.0

    def add_reason(self, text: str) -> None:
        self.reason = f"{self.reason}; {text}" if self.reason else text

    def csv_record(self) -> dict:
        """The values of :data:`CSV_COLUMNS` (None where empty)."""
        lat, thr, ph = self.latency_ms, self.throughput, self.phases_ms or {}
        att = self.attention or {}
        exact, drift = self.exact_qdq or {}, self.kernel_drift or {}
        board = self.tegrastats or {}
        sweep = ";".join(f"{s.batch}={s.latency_ms.p50:.4g}" for s in self.sweep)
        return {
            "name": self.name, "backend": self.backend, "device": self.device, "provider": self.provider,
            "variant": self.variant, "format": self.format, "precision": self.precision, "artifact": self.artifact,
            "reference": self.reference, "status": self.status, "reason": self.reason,
            "size_mb": self.size_mb, "host_peak_mb": self.host_peak_mb, "host_start_mb": self.host_start_mb,
            "device_memory_mb": self.device_memory_mb, "board_ram_peak_mb": board.get("ram_peak_mb"),
            "vdd_in_mw": board.get("vdd_in_mw"), "mj_per_image": board.get("mj_per_image"), "top1": self.top1, "agreement": self.agreement,
            "max_abs": self.max_abs, "cosine_min": self.cosine_min, "cosine_mean": self.cosine_mean,
            "within_tolerance": self.within_tolerance,
            "latency_p50_ms": _field(lat, "p50"), "latency_p90_ms": _field(lat, "p90"),
            "latency_p99_ms": _field(lat, "p99"), "latency_cv": _field(lat, "cv"), "noisy": _field(lat, "noisy"),
            "iterations": _field(lat, "iterations"),
            "throughput_batch": _field(thr, "batch"), "throughput_img_s": _field(thr, "img_per_s"),
            "speedup": self.speedup, "throughput_speedup": self.throughput_speedup,
            "h2d_p50_ms": _field(ph.get("h2d"), "p50"), "compute_p50_ms": _field(ph.get("compute"), "p50"),
            "d2h_p50_ms": _field(ph.get("d2h"), "p50"), "sweep_p50_ms": sweep or None,
            "attention_status": att.get("status"), "attention_max_abs": att.get("max_abs"),
            "attention_cosine_min": att.get("cosine_min"),
            "exact_top1": exact.get("top1"), "exact_agreement": exact.get("agreement"),
            "exact_within_tolerance": exact.get("within_tolerance"), "kernel_drift_max_abs": drift.get("max_abs"),
            "kernels_within_tolerance": drift.get("within_tolerance"),
        }


def _field(record, name: str):
    """``record.name``, or None without a record."""
    return None if record is None else getattr(record, name)


@dataclass
class BenchReport:
    """Everything :func:`edgevit.bench.run_bench` measured (the schema is the module docstring's)."""

    rows: list[BenchRow] = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    certificates: list = field(default_factory=list)  # Manifest.certificate_records of the benched exports
    memory: dict = field(default_factory=dict)  # how the memory columns are measured (module docstring)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(r.status == "failed" for r in self.rows)

    @property
    def failures(self) -> list[str]:
        return [f"{r.name}: {r.reason}" for r in self.rows if r.status == "failed"]

    @property
    def features(self) -> bool:
        """The artifacts output features or tokens: no labels, agreement is k-NN agreement."""
        return not OutputKind(self.data.get("output", OutputKind.LOGITS)).classes

    def row(self, name: str) -> BenchRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row named {name!r}; rows: {[r.name for r in self.rows]}")

    def to_dict(self) -> dict:
        """The documented JSON schema; non-finite floats (an artifact producing NaN/Inf) become null."""
        return _finite({"schema_version": SCHEMA_VERSION, "kind": "edgevit.bench", "created": self.created,
                        "ok": self.ok, "seconds": round(self.seconds, 3), "machine": self.machine,
                        "config": self.config, "data": self.data, "reference": self.reference,
                        "memory": self.memory, "rows": [r.to_dict() for r in self.rows], "warnings": self.warnings, "files": self.files,
                        **({"certificates": self.certificates} if self.certificates else {})})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=to_jsonable) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.csv_record().items()})
        return buf.getvalue()

    def table_columns(self) -> list[str]:
        accuracy = ["k-NN@5 agree", "max abs", "cos min", "cos mean"] if self.features else \
            ["top-1", "agree", "max abs", "cos min"]
        cols = ["row", "status", "MB", PEAK_COLUMN, *accuracy, "p50 ms", "p90 ms", "p99 ms", "cv", "img/s (batch)", "speed-up"]
        if any(r.device_memory_mb is not None for r in self.rows):
            cols.append(DEVICE_COLUMN)
        if any(r.tegrastats for r in self.rows):
            cols.extend(BOARD_COLUMNS)
        if any(r.phases_ms for r in self.rows):
            cols.append("h2d/compute/d2h ms")
        if any(r.attention for r in self.rows):
            cols.append("attention")
        if any(r.exact_qdq for r in self.rows):
            cols.append(self.exact_column)
        return cols

    @property
    def exact_column(self) -> str:
        """The column of a Q/DQ graph's accuracy as the graph defines it (``BenchRow.exact_qdq``)."""
        return "exact agree" if self.features else "exact top-1"

    def format_row(self, r: BenchRow, cols: list[str] | None = None) -> list[str]:
        """The table cells of ``r``; the reason is printed under the table and kept in the JSON/CSV."""
        def f(v, spec):
            return "-" if v is None else format(v, spec)

        lat, thr = r.latency_ms, r.throughput
        noisy = " noisy" if lat is not None and lat.noisy else ""
        accuracy = ([f(r.agreement, ".4f"), f(r.max_abs, ".2e"), f(r.cosine_min, ".6f"), f(r.cosine_mean, ".6f")]
                    if self.features else
                    [f(r.top1, ".4f"), f(r.agreement, ".4f"), f(r.max_abs, ".2e"), f(r.cosine_min, ".6f")])
        peak = "-" if r.host_peak_mb is None else (
            f"{r.host_peak_mb:.0f}" if r.host_start_mb is None else
            f"{r.host_peak_mb:.0f} (+{r.host_peak_mb - r.host_start_mb:.1f})")
        cells = [r.name + (" (ref)" if r.reference else ""), r.status, f(r.size_mb, ".2f"), peak, *accuracy,
                 *((f(lat.p50, ".3f"), f(lat.p90, ".3f"), f(lat.p99, ".3f"), f(lat.cv, ".2f") + noisy)
                   if lat is not None else ("-",) * 4),
                 f"{thr.img_per_s:.1f} ({thr.batch})" if thr is not None else "-",
                 f"{r.speedup:.2f}x" if r.speedup is not None else "-"]
        cols = cols if cols is not None else self.table_columns()
        if DEVICE_COLUMN in cols:
            cells.append(f(r.device_memory_mb, ".1f"))
        if BOARD_COLUMNS[0] in cols:
            board = r.tegrastats or {}
            cells += [f(board.get("ram_peak_mb"), "d"), f(board.get("vdd_in_mw"), ".0f"),
                      f(board.get("mj_per_image"), ".2f")]
        if "h2d/compute/d2h ms" in cols:
            ph = r.phases_ms or {}
            cells.append("/".join(f(ph[k].p50 if k in ph else None, ".3f") for k in PHASES) if ph else "-")
        if "attention" in cols:
            att = r.attention
            cells.append("-" if not att else (att["status"] if att.get("max_abs") is None
                                              else f"{att['status']} {att['max_abs']:.1e}"))
        if self.exact_column in cols:
            ex = r.exact_qdq or {}
            cells.append(f(ex.get("agreement" if self.features else "top1"), ".4f"))
        return cells

    def exact_note(self) -> str | None:
        """The line under the table that says what the exact column and the plain ones measure."""
        if not any(r.exact_qdq for r in self.rows):
            return None
        m = self.machine
        isa = "/".join(m.get("cpu_isa") or []) or "unknown instruction set"
        return (f"int8/fp8 rows: the accuracy columns are as this CPU's ONNX Runtime kernels ran the graph ({isa}: "
                f"{m.get('int8_kernels')}); '{self.exact_column}' is as the graph defines it (exact Q/DQ "
                "arithmetic, what TensorRT computes), which decides the row's tolerance verdict")

    def memory_note(self) -> str | None:
        """The line under the table that says what the memory columns measure."""
        if not self.memory.get("host"):
            return None
        note = (f"{PEAK_COLUMN}: {self.memory['host']}; (+N): what the row added to it; "
                "MB: the artifact's file size")
        if any(r.device_memory_mb is not None for r in self.rows):
            note += f"; {DEVICE_COLUMN}: {self.memory.get('device')}"
        return note

    def table_rows(self) -> tuple[list[str], list[list[str]]]:
        """Columns and formatted cells of the summary table (terminal and Markdown)."""
        cols = self.table_columns()
        return cols, [self.format_row(r, cols) for r in self.rows]

    def to_markdown(self) -> str:
        cols, cells = self.table_rows()
        m = self.machine
        lines = ["# edgevit bench", "",
                 f"- CPU: {m.get('cpu')} ({m.get('cpu_cores')} cores, {self.config.get('threads')} threads used; "
                 f"{'/'.join(m.get('cpu_isa') or []) or 'instruction set unknown'}: {m.get('int8_kernels')})",
                 f"- GPU: {m.get('gpu') or 'none'}; driver {m.get('driver')}; CUDA {m.get('cuda')}; "
                 f"TensorRT {m.get('tensorrt')}",
                 f"- torch {m.get('torch')}; onnxruntime {m.get('onnxruntime')}; numpy {m.get('numpy')}; "
                 f"python {m.get('python')}",
                 f"- data: {self.data.get('description')}",
                 *([f"- accuracy: {self.data['agreement']}"] if self.features else []),
                 f"- timing: warm-up {self.config.get('warmup_s')} s, "
                 + (f"{self.config.get('iterations')} iterations" if self.config.get('duration_s') is None
                    else f"{self.config.get('duration_s')} s") + f" per measurement; reference: "
                 f"{self.reference.get('row')}", ""]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for row in cells:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        notes = [f"{r.name}: {r.status}: {r.reason}" for r in self.rows if r.reason]
        notes += [n for n in (self.exact_note(), self.memory_note()) if n]
        if notes or self.warnings:
            lines.append("")
            lines.extend(f"- {n}" for n in notes + list(self.warnings))
        return "\n".join(lines) + "\n"

    def write(self, report_dir: str | os.PathLike, force: bool = False, plot: bool = True) -> dict:
        """Write bench.json/.csv/.md (and bench.png when matplotlib is installed) atomically."""
        from .._io import check_writable, write_text_atomic
        from .plot import write_plot

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


__all__ = ["CSV_COLUMNS", "REPORT_FILES", "SCHEMA_VERSION", "BenchReport", "BenchRow", "Throughput"]
