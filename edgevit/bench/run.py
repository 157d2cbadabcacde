"""``run_bench``: benchmark every artifact of one or more export OUTDIRs (or artifact files) next to
the PyTorch reference, and judge each row's outputs against the reference row.

A row's ``status`` is ``ok``, ``failed`` (the artifact could not be loaded or run, or its outputs
are outside its precision's tolerance against the reference row: ``reason`` says why; never an
exception) or ``skipped`` (the backend is not available here: ``reason``).
Each row gets batch-1 latency (with h2d/compute/d2h phases where the target splits them), the
throughput at one batch, the ``--batch-sweep`` sizes, and its accuracy columns (top-1,
agreement, max abs, cosine) against the reference row at the precision's tolerance row. The
thread count is set for PyTorch (``torch.set_num_threads``) and ONNX Runtime (intra-op threads)
and reported; ``machine.env`` records ``OMP_WAIT_POLICY``, which the ``edgevit`` CLI sets to PASSIVE
unless the environment sets it (spin-waiting OpenMP threads distort timings on a busy machine;
benchmarks/README.md has the measurement).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from ..data.defaults import DIGITS_INPUT
from ..errors import DataError, MissingDependencyError
from ..formats import ARTIFACT_FORMATS, BASE_PRECISION
from ..metrics import KNN_AGREEMENT, compare
from ..output_kinds import OutputKind
from ..runtime.batching import padded_chunks
from ..runtime.onnxruntime_runner import PROVIDERS
from ..tensorrt.jetson import summarize_tegrastats
from ..tolerances import TOLERANCES, Tolerance, Verdict, get_tolerance
from .measure import available_cpus, machine_info, measure
from .memory import HOST_METHOD, track
from .power import tegrastats_lines
from .plan import (
    Plan,
    batch_profile,
    check_batch,
    manifests_of,
    output_kind,
    plan_rows,
    resolve_sources,
    shape_from_onnx,
)
from .report import DEVICE_NOTE, BenchReport, BenchRow, Throughput

DEFAULT_BATCH = 32
DEVICES = ("auto", "cpu", "cuda")
"""What ``BenchConfig.device`` picks from."""


@dataclass
class BenchConfig:
    """Options of :func:`run_bench` (the CLI builds one from its flags).

    Args:
        data: Images for the accuracy columns: "digits" (labelled), "random", or a .npy/.npz file.
        preprocessed: A .npy/.npz ``data`` file is model input already, not raw pixels.
        samples: At most this many images for accuracy.
        seed: Seed for "random" data and sampling.
        warmup_s: Warm-up seconds per measurement (at least one call).
        iterations: Timed calls per measurement (default 50); exclusive with ``duration_s``.
        duration_s: Time each measurement for this many seconds instead.
        time_limit_s: Stop a measurement after this many seconds once ``min_iterations`` calls ran.
        min_iterations: Calls a measurement times before ``time_limit_s`` may stop it.
        noise_cv: A measurement whose coefficient of variation exceeds this is flagged noisy.
        threads: CPU threads for PyTorch and ONNX Runtime (default: all this process may use).
        batch: Throughput batch (default: the manifest profile's max, or 32).
        batch_sweep: Also measure latency at these batch sizes.
        device: "auto" (PyTorch CUDA rows when a GPU is visible), "cpu" (none) or "cuda" (required).
        providers: ONNX Runtime providers among "cpu", "cuda", "tensorrt" (default cpu, plus cuda
            when installed).
        cuda_graphs: Add the replayed CUDA-graph PyTorch rows.
        reference: Checkpoint of the PyTorch reference (default: the manifest's ``model.source``).
        arch: Variant a timm state dict belongs to.
        model_overrides: Config fields for ``load_model`` of ``reference``.
        attention: Add the per-block attention check (:func:`edgevit.verify.verify_attention_onnx`)
            to each ONNX Runtime row.
        attention_samples: Images for that check.
        include_reference: Run the PyTorch CPU reference row.
        verify_hash: A manifest-listed file whose sha256 differs becomes a failed row.

    Raises:
        ValueError: A value out of range (``iterations`` and ``duration_s`` together, a batch < 1,
            an unknown device or provider).
    """

    data: str = "digits"
    preprocessed: bool = False
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
    model_overrides: dict = field(default_factory=dict)
    attention: bool = False
    attention_samples: int = 32
    include_reference: bool = True
    verify_hash: bool = True

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
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.providers is not None:
            self.providers = tuple(self.providers)
            for p in self.providers:
                if p not in PROVIDERS:
                    raise ValueError(f"providers must be among {list(PROVIDERS)}, got {p!r}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["batch_sweep"] = list(self.batch_sweep)
        data["providers"] = list(self.providers) if self.providers is not None else None
        return data

    def timing(self) -> dict:
        """The keyword arguments of :func:`edgevit.bench.measure.measure` these options give."""
        return {"warmup_s": self.warmup_s, "iterations": self.iterations, "duration_s": self.duration_s,
                "time_limit_s": self.time_limit_s, "min_iterations": self.min_iterations, "noise_cv": self.noise_cv}


def _describe_exc(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _first_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """The first ``batch`` images, padded by repeating the last when there are fewer."""
    return next(padded_chunks(images[:batch], batch, batch))[0]


def _bench_one(plan: Plan, images: np.ndarray, cfg: BenchConfig, batch: int, sweep: tuple
               ) -> tuple[BenchRow, np.ndarray | None, str]:
    with track() as mem:  # the row's peak host memory: edgevit.bench.memory
        row, logits = _run_one(plan, images, cfg, batch, sweep)
    if row.status != "skipped":
        row.host_peak_mb, row.host_start_mb = mem.peak_mb, mem.start_mb
    return row, logits, mem.method


def _run_one(plan: Plan, images: np.ndarray, cfg: BenchConfig, batch: int, sweep: tuple
             ) -> tuple[BenchRow, np.ndarray | None]:
    row = plan.row
    started = time.perf_counter()
    logits = None
    target = None
    try:
        target = plan.make()
        target.open()
        measured = target.device_memory_mb()  # an engine's, as the deserialized engine reports it
        row.device_memory_mb = measured if measured is not None else row.device_memory_mb
        eff_batch = target.fixed_batch or batch
        logits = target.infer(images, eff_batch)
        one = _first_batch(images, target.fixed_batch or 1)
        stats = measure(target.timed_call(one), batch=len(one), **cfg.timing())
        row.phases_ms = stats.phases
        row.latency_ms = stats = replace(stats, phases=None)
        with tegrastats_lines() as board:  # a Jetson's RAM and VDD_IN while the throughput runs (bench/power.py)
            tstats = measure(target.timed_call(_first_batch(images, eff_batch)), batch=eff_batch, **cfg.timing())
        row.throughput = Throughput.of(replace(tstats, phases=None))
        row.tegrastats = summarize_tegrastats(board, row.throughput.img_per_s)
        for b in sweep:
            if target.fixed_batch and b != target.fixed_batch:
                continue
            if b == len(one):
                s = stats
            elif b == eff_batch:
                s = row.throughput.latency_ms
            else:
                s = replace(measure(target.timed_call(_first_batch(images, b)), batch=b, **cfg.timing()), phases=None)
            row.sweep.append(Throughput.of(s))
    except MissingDependencyError as exc:
        row.status, row.reason = "skipped", " ".join(str(exc).split())[:800]
    except Exception as exc:  # a failing artifact is a failed row, never a crash
        row.status, row.reason = "failed", _describe_exc(exc)
        logits = None
    finally:
        if target is not None:
            with contextlib.suppress(Exception):
                target.close()
    row.seconds = round(time.perf_counter() - started, 3)
    return row, logits


def _exact_outputs(plan: Plan, images: np.ndarray, batch: int) -> np.ndarray | None:
    """The row's graph run with Q/DQ executed exactly (``plan.exact``); None if that cannot run."""
    target = plan.exact()
    try:
        target.open()
        return target.infer(images, target.fixed_batch or batch)
    except Exception as exc:  # the timed row already ran this graph: a failure here is only noted
        plan.row.add_reason(f"exact Q/DQ run failed: {_describe_exc(exc)}")
        return None
    finally:
        with contextlib.suppress(Exception):
            target.close()


def _tolerance(precision: str, output: str) -> Tolerance | None:
    """The tolerance row a row's precision is judged by; None for a precision without one (an engine
    of another precision, or one no manifest lists): such a row is not judged."""
    return get_tolerance(precision, output) if precision in TOLERANCES else None


def _fail_outside_tolerance(row: BenchRow, misses: list[str]) -> None:
    """A row whose outputs are outside its precision's tolerance against the reference row is
    ``failed``, never ``ok`` (a wrong reference or a broken artifact), with the judge's failed checks
    (``misses``: :meth:`edgevit.tolerances.Check.describe` of each)."""
    if row.within_tolerance is not False or row.reference or row.status != "ok":
        return
    row.status = "failed"
    row.add_reason(f"outputs outside the {row.precision} tolerance against the reference "
                   f"row: {'; '.join(misses)}")


def _judged(logits: np.ndarray, ref_logits: np.ndarray, labels, tol: Tolerance | None, output: str) -> dict:
    """``logits`` against the reference row's (:func:`edgevit.metrics.compare`), judged at ``tol`` by
    :meth:`edgevit.tolerances.Tolerance.judge`: top1, agreement, max_abs, cosine_min/mean, within
    (None without a tolerance row), misses (the failed checks' text)."""
    stats = compare(ref_logits, logits, tol, output=output)
    checks = [] if tol is None else tol.judge(stats)
    within = None if tol is None else Verdict.of(checks) is Verdict.PASSED
    top1 = (float((logits.argmax(1) == labels).mean())
            if labels is not None and logits.ndim == 2 and OutputKind(output).classes else None)
    return {"top1": top1, "agreement": stats.agreement, "max_abs": stats.max_abs, "cosine_min": stats.cosine_min,
            "cosine_mean": stats.cosine_mean, "within_tolerance": within,
            "misses": [c.describe() for c in checks if not c.passed]}


def _accuracy(row: BenchRow, logits: np.ndarray, ref_logits: np.ndarray | None, labels,
              output: str = "logits", exact: np.ndarray | None = None, exact_failed: bool = False) -> str | None:
    """Accuracy columns of one row against the reference row's outputs. ``output`` "features" or
    "tokens": no top-1; ``agreement`` is the k-NN agreement (:func:`edgevit.metrics.neighbour_agreement`).
    ``exact``: a Q/DQ graph's outputs with Q/DQ run exactly (``row.exact_qdq``, which then decides
    ``within_tolerance``), compared with this CPU's kernels' (``row.kernel_drift``). Returns a warning
    when the kernels drift from the exact arithmetic by more than the row's tolerance. A row whose
    precision has no tolerance row, or whose exact run failed (``exact_failed``: not judged by this host's
    kernels), keeps ``within_tolerance`` None, with the reason; a row outside its tolerance is ``failed``."""
    if logits is None:
        return None
    tol = _tolerance(row.precision, output)  # the manifest's precision for the artifact
    if row.precision == "unknown":  # an engine no manifest lists: no tolerance row to judge it by
        row.reason = "no edgevit.json records this engine's precision, so its accuracy is not judged against " \
                     "a tolerance row; benchmark the directory `edgevit build` wrote it to"
    elif tol is None:
        row.add_reason(f"precision {row.precision!r} has no tolerance row, so its accuracy is not judged")
    if labels is not None and logits.ndim == 2 and OutputKind(output).classes:
        row.top1 = float((logits.argmax(1) == labels).mean())
    if ref_logits is None:
        return None
    if ref_logits.shape != logits.shape:
        row.add_reason(f"output shape {list(logits.shape)} differs from the reference {list(ref_logits.shape)}")
        return None
    judged = _judged(logits, ref_logits, labels, tol, output)
    row.agreement, row.max_abs = judged["agreement"], judged["max_abs"]
    row.cosine_min, row.cosine_mean = judged["cosine_min"], judged["cosine_mean"]
    warning = None
    if exact is not None and exact.shape == logits.shape and tol is not None:
        judged = _judged(exact, ref_logits, labels, tol, output)  # the graph's verdict
        row.exact_qdq = {k: judged[k] for k in ("top1", "agreement", "max_abs", "cosine_min", "within_tolerance")}
        warning = _kernel_drift(row, _judged(logits, exact, None, tol, output))
    row.within_tolerance = None if exact_failed else judged["within_tolerance"]
    _fail_outside_tolerance(row, judged["misses"])
    return warning


def _kernel_drift(row: BenchRow, drift: dict) -> str | None:
    """Record this CPU's kernels against the graph's exact Q/DQ arithmetic (``row.kernel_drift``); the
    warning when they drift beyond the row's tolerance."""
    row.kernel_drift = {k: drift[k] for k in ("max_abs", "cosine_min", "agreement", "within_tolerance")}
    if drift["within_tolerance"]:
        return None
    return (f"{row.name}: this CPU's ONNX Runtime kernels drift from the graph's exact Q/DQ arithmetic beyond the "
            f"{row.precision} tolerance (max abs {drift['max_abs']:.3g}, lowest cosine {drift['cosine_min']:.4f}); "
            "the row's verdict is the graph's (exact arithmetic, what TensorRT computes), and a CPU deployment "
            "of this graph on this instruction set computes something else (docs/design.md §4.1)")


def _attention(plan: Plan, model, images: np.ndarray, cfg: BenchConfig, threads: int) -> dict:
    from ..verify import verify_attention_onnx

    if plan.row.status != "ok":
        return {"status": "skipped", "reason": f"row {plan.row.status}"}
    if model is None:
        return {"status": "skipped", "reason": "no PyTorch reference (give --reference CHECKPOINT)"}
    if plan.row.precision not in TOLERANCES:
        return {"status": "skipped", "reason": f"precision {plan.row.precision!r} has no tolerance row"}
    try:
        att = verify_attention_onnx(plan.onnx_path, model, images[:cfg.attention_samples],
                                    precision=plan.row.precision,
                                    batch_size=min(32, cfg.attention_samples), providers=plan.row.provider,
                                    threads=threads, contract=plan.contract)
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


def _input_shape_and_preprocessing(manifests: list, model, resolved) -> tuple:
    shape = None
    pre = None
    for m in manifests:
        if m.inputs:
            shape = m.sample_shape
        if pre is None:
            pre = m.preprocessing
    if model is not None:
        c = model.config
        shape = shape or (c.in_chans, c.img_size, c.img_size)
        pre = pre or model.preprocessing
    if shape is None:
        shape = shape_from_onnx(resolved)
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise DataError("cannot tell the model's input shape: no manifest and no loadable ONNX input spec; "
                        "benchmark an export OUTDIR or give --reference CHECKPOINT")
    return shape, pre


def _choose_reference(report: BenchReport, ref_reason: str | None) -> tuple[BenchRow | None, str]:
    """The PyTorch CPU row, else the first ok fp32 ONNX row (marked ``reference``); and the note."""
    ref_row = next((r for r in report.rows if r.reference and r.status == "ok"), None)
    note = "PyTorch eager fp32 on CPU (SDPA attention) from the manifest's checkpoint"
    if ref_row is None:
        ref_row = next((r for r in report.rows if r.status == "ok" and r.format in ARTIFACT_FORMATS
                        and ARTIFACT_FORMATS[r.format].graph and r.precision == BASE_PRECISION), None)
        note = (f"the PyTorch reference is unavailable ({ref_reason}); agreement and speed-up are relative to "
                f"{ref_row.name}" if ref_row else f"no reference row ran ({ref_reason})")
        if ref_row is not None:
            ref_row.reference = True
        report.warnings.append(note)
    return ref_row, note


def run_bench(sources, config: BenchConfig | None = None, progress: Callable[[str], None] | None = None,
              **options) -> BenchReport:
    """Benchmark every artifact of ``sources`` and the PyTorch reference (rows:
    :mod:`edgevit.bench.plan`; timing: :mod:`edgevit.bench.measure`; schema: :mod:`edgevit.bench.report`)::

        report = run_bench(["out"], BenchConfig(iterations=50, batch_sweep=(1, 8, 32)))
        report.rows[0].latency_ms.p50
        report.write("out", force=True)          # bench.json, bench.csv, bench.md, bench.png

    Args:
        sources: An export OUTDIR (each artifact its manifest lists), an artifact file (.onnx or a
            TensorRT engine), or a list of them.
        config: The options; default ``BenchConfig()``.
        progress: Called with each row's name before it runs.
        **options: :class:`BenchConfig` fields that replace those of ``config``.

    Returns:
        The :class:`BenchReport`; ``report.ok`` is False when a row failed.

    Raises:
        ManifestError: A directory without an edgevit.json manifest, or one listing no artifacts.
        OnnxModelError: A source that does not exist.
        DataError: The input shape cannot be told, or bad ``data``.
        ValueError: A batch outside the export's profile, a file that is not an artifact, sources
            of different output kinds, a bad option.
        EdgeVitError: ``device="cuda"`` without a visible GPU.
        An artifact that cannot be loaded or run becomes a ``failed`` row instead.
    """
    from ..input_contract import contract_of
    from ..verify import load_inputs
    from ..verify.artifacts import source_model

    cfg = replace(config, **options) if config is not None else BenchConfig(**options)
    started = time.perf_counter()
    resolved = resolve_sources(sources)
    manifests = manifests_of(resolved)
    profile = batch_profile(manifests)
    batch = cfg.batch or (profile.max if profile is not None else DEFAULT_BATCH)
    check_batch(batch, profile, "batch")
    for b in cfg.batch_sweep:
        check_batch(b, profile, "--batch-sweep value")
    sweep = tuple(dict.fromkeys(cfg.batch_sweep))
    threads = cfg.threads or available_cpus()
    machine = machine_info()
    report = BenchReport(machine=machine, config={**cfg.to_dict(), "threads": threads, "throughput_batch": batch})
    if machine.get("jetson"):
        report.warnings.extend(machine["jetson"]["warnings"])
    report.memory = {"host_method": None, "host": None, "device": DEVICE_NOTE}
    report.certificates = [c for m in manifests for c in m.certificate_records()]

    model, ref_source, ref_reason = source_model(manifests, cfg.reference, cfg.arch, cfg.model_overrides,
                                                 cfg.verify_hash)
    if model is None:
        ref_reason = f"{ref_reason} (give --reference CHECKPOINT)"
    if model is not None and ref_reason:
        report.warnings.append(ref_reason)  # a reference checkpoint that could not be checked
    output = output_kind(manifests, model, resolved)
    shape, pre = _input_shape_and_preprocessing(manifests, model, resolved)
    data = cfg.data
    if data == "digits" and pre is None:
        report.warnings.append("no preprocessing is known (no manifest or checkpoint): using random inputs")
        data = "random"
    if data == "digits" and not tuple(pre.input_size) == tuple(shape) == DIGITS_INPUT:  # grey 8x8: 1x8x8 models only
        report.warnings.append(f"the model input {list(shape)} is not digits-shaped: using random inputs "
                               "(give --data with labelled data of the model's shape)")
        data = "random"
    labels = next((m.labels for m in manifests if m is not None and m.labels), None) or getattr(model, "labels", None)
    inputs = load_inputs(data, shape, cfg.samples, cfg.seed, pre, cfg.preprocessed, labels)
    images = np.ascontiguousarray(inputs.images, dtype=np.float32)
    raw = next((c for c in (contract_of(r.manifest) for r in resolved if r.entry is not None) if c), None)
    if raw is not None:  # a raw-pixel graph sees the pixels: every row gets the normalized batch they stand for
        images = raw.represented(images)
    report.data = {"source": data, "description": inputs.description, "samples": int(len(images)),
                   "labelled": inputs.labels is not None and OutputKind(output).classes, "output": output,
                   "agreement": "top-1 agreement with the reference" if OutputKind(output).classes else
                   f"{output} have no labels: judged against the reference row by per-sample cosine and "
                   f"{KNN_AGREEMENT}"}

    plans = plan_rows(resolved, model, ref_source, ref_reason, cfg, machine, threads, output)
    logits_by_row: dict[str, np.ndarray] = {}
    exact_by_row: dict[str, np.ndarray | None] = {}
    with _torch_threads(threads):
        for plan in plans:
            if plan.status:
                plan.row.status, plan.row.reason = plan.status, plan.error
                report.rows.append(plan.row)
                continue
            if progress:
                progress(plan.row.name)
            row, logits, method = _bench_one(plan, images, cfg, batch, sweep)
            if row.host_peak_mb is not None:
                report.memory.update(host_method=method, host=HOST_METHOD[method])
            if logits is not None:
                logits_by_row[row.name] = logits
                if plan.exact is not None:
                    exact_by_row[row.name] = _exact_outputs(plan, images, batch)
            report.rows.append(row)
            if cfg.attention and plan.onnx_path is not None:
                row.attention = _attention(plan, model, images, cfg, threads)

    ref_row, note = _choose_reference(report, ref_reason)
    ref_logits = logits_by_row.get(ref_row.name) if ref_row else None
    for row in report.rows:
        if row.name in logits_by_row:
            drift = _accuracy(row, logits_by_row[row.name], ref_logits, inputs.labels, output,
                              exact_by_row.get(row.name),
                              exact_failed=row.name in exact_by_row and exact_by_row[row.name] is None)
            if drift:
                report.warnings.append(drift)
        if ref_row and row.status == "ok" and row.latency_ms is not None and ref_row.latency_ms is not None:
            row.speedup = ref_row.latency_ms.p50 / row.latency_ms.p50
            if row.throughput is not None and ref_row.throughput is not None:
                row.throughput_speedup = row.throughput.img_per_s / ref_row.throughput.img_per_s
        if row.latency_ms is not None and row.latency_ms.noisy:
            report.warnings.append(f"{row.name}: noisy timing (cv {row.latency_ms.cv:.2f} > "
                                   f"{cfg.noise_cv}); rerun on an idle machine or with more iterations")
    report.reference = {"row": ref_row.name if ref_row else None, "source": ref_source, "note": note}
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["BenchConfig", "DEFAULT_BATCH", "DEVICES", "run_bench"]
