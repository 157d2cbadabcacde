"""How bench times one call and describes the machine it ran on.

Timing method. Per measurement: warm-up for ``warmup_s`` seconds (at least ``warmup_calls``
calls, default one), then ``iterations`` timed calls (or calls for ``duration_s`` seconds), each
measurement stopping early after ``time_limit_s`` seconds once ``min_iterations`` calls were timed
(``iterations`` in the stats says how many ran). Statistics over the per-call times: percentiles
by linear interpolation (numpy's default), mean, sample standard deviation (ddof 1), coefficient
of variation ``cv = std / mean``; ``noisy`` is true when ``cv > noise_cv`` (default 0.10). The
clock is ``time.perf_counter`` unless one is given.

A timed call may return a dict of extra per-call milliseconds (``h2d``/``compute``/``d2h`` from a
runner's ``timed_infer`` hook, or anything else, such as process CPU time in benchmarks/); each
key gets its own :class:`LatencyStats` in ``phases``. :func:`time_calls` is the loop alone, for
callers (benchmarks/_timing.py) that want the raw samples.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..tensorrt.jetson import command_output, jetson_info

PHASES = ("h2d", "compute", "d2h")


class Record:
    """A dataclass whose JSON shape is :meth:`to_dict` (nested records as dicts); read it by attribute."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value):
    """JSON-ready copy of a field value: records become dicts, lists and dicts are walked."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, eq=True)
class LatencyStats(Record):
    """Per-call milliseconds of one measurement (``STATS`` in bench.json).

    Attributes:
        batch: Images per call.
        iterations: Timed calls.
        p50, p90, p99: Percentiles (linear interpolation), ms.
        mean, std: Mean and sample standard deviation (ddof 1), ms.
        min, max: Fastest and slowest call, ms.
        cv: Coefficient of variation ``std / mean``.
        noisy: ``cv`` above the ``noise_cv`` threshold.
        phases: Statistics of each extra key the call returned (``h2d``, ``compute``, ``d2h``), or
            None; left out of :meth:`to_dict` when None, as it is in a row's ``latency_ms``.
    """

    batch: int
    iterations: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    cv: float
    noisy: bool
    phases: dict | None = None

    def to_dict(self) -> dict:
        data = super().to_dict()
        if self.phases is None:
            del data["phases"]
        return data


def latency_stats(samples_ms: Iterable[float], noise_cv: float = 0.10, batch: int = 1) -> LatencyStats:
    """Percentiles (linear interpolation), mean, sample std (ddof 1), CV and the noisy flag."""
    arr = np.asarray(list(samples_ms), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(arr, [50, 90, 99]))
    return LatencyStats(batch=int(batch), iterations=int(arr.size), p50=p50, p90=p90, p99=p99, mean=mean, std=std,
                        min=float(arr.min()), max=float(arr.max()), cv=cv, noisy=bool(cv > noise_cv))


def time_calls(call: Callable[[], dict | None], *, warmup_s: float = 0.2, warmup_calls: int = 1,
               iterations: int | None = 50, duration_s: float | None = None, time_limit_s: float = 10.0,
               min_iterations: int = 5, clock: Callable[[], float] = time.perf_counter
               ) -> tuple[list[float], dict[str, list[float]]]:
    """Warm ``call`` up, then time it; ``(per-call ms, {key: per-call ms})`` for the keys of the
    dicts ``call`` returned. See the module docstring for when the loop stops."""
    start = clock()
    for _ in range(warmup_calls):
        call()
    while clock() - start < warmup_s:
        call()
    times: list[float] = []
    extras: dict[str, list[float]] = {}
    begin = clock()
    while True:
        t0 = clock()
        extra = call()
        times.append((clock() - t0) * 1e3)
        if isinstance(extra, dict):
            for key, value in extra.items():
                if value is not None:
                    extras.setdefault(key, []).append(float(value))
        elapsed = clock() - begin
        n = len(times)
        if duration_s is not None:
            if elapsed >= duration_s and n >= 1:
                break
        elif n >= (iterations or 1):
            break
        if elapsed >= time_limit_s and n >= min_iterations:
            break
    return times, extras


def measure(call: Callable[[], dict | None], *, warmup_s: float = 0.2, iterations: int | None = 50,
            duration_s: float | None = None, time_limit_s: float = 10.0, min_iterations: int = 5,
            noise_cv: float = 0.10, batch: int = 1, clock: Callable[[], float] = time.perf_counter) -> LatencyStats:
    """Time ``call`` (one inference): :func:`latency_stats` of :func:`time_calls`, with ``phases``
    when ``call`` returns a dict of phase milliseconds (``h2d``/``compute``/``d2h``)."""
    times, extras = time_calls(call, warmup_s=warmup_s, iterations=iterations, duration_s=duration_s,
                               time_limit_s=time_limit_s, min_iterations=min_iterations, clock=clock)
    stats = latency_stats(times, noise_cv, batch)
    if extras:
        from dataclasses import replace

        stats = replace(stats, phases={k: latency_stats(v, noise_cv, batch) for k, v in extras.items()})
    return stats


# ------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# /proc/cpuinfo flags -> the instruction-set names that decide ONNX Runtime's int8 kernels (docs/design.md §4.1)
_ISA_FLAGS = (("AVX2", ("avx2",)), ("AVX-512", ("avx512f",)), ("VNNI", ("avx512_vnni", "avx_vnni")),
              ("AMX", ("amx_int8",)), ("NEON", ("asimd",)), ("DOTPROD", ("asimddp",)))


def cpu_isa(flags: set[str] | None = None) -> list[str]:
    """The instruction sets among AVX2 / AVX-512 / VNNI / AMX (x86) and NEON / DOTPROD (Arm) this CPU
    has, read from ``/proc/cpuinfo`` (``flags``: a given set, for tests); [] where unknown."""
    if flags is None:
        flags = set()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith(("flags", "features")):
                    flags.update(line.split(":", 1)[1].split())
                    break
    return [name for name, keys in _ISA_FLAGS if any(k in flags for k in keys)]


def int8_kernel_note(isa: list[str]) -> str:
    """What ONNX Runtime's CPU int8 kernels do on a CPU with ``isa`` (its quantization docs): x86 without
    VNNI or AMX multiplies u8 by s8 into 16-bit pair sums (pmaddubsw), which can saturate."""
    if any(x in isa for x in ("AVX2", "AVX-512")) and not any(x in isa for x in ("VNNI", "AMX")):
        return ("u8s8 through 16-bit pair sums (pmaddubsw, no VNNI): can saturate, so int8 outputs may drift "
                "from the graph's exact Q/DQ arithmetic")
    if isa:
        return "int8 products accumulated in 32 bits (no intermediate saturation)"
    return "unknown int8 kernel path"


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info() -> dict:
    """CPU, GPU, driver and library versions (None where absent); the Jetson block on a Jetson.

    Keys: cpu, cpu_isa (:func:`cpu_isa`), int8_kernels (:func:`int8_kernel_note`), cpu_cores, cpu_affinity, platform, python, gpu, gpu_count, driver, cuda, cudnn,
    tensorrt, onnxruntime, onnxruntime_providers, torch, numpy, edgevit, jetson (None off a Jetson;
    else model, nvpmodel, jetson_clocks, warnings: :func:`edgevit.tensorrt.jetson.jetson_info`) and
    env (OMP_WAIT_POLICY, OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES as this process sees them).
    """
    isa = cpu_isa()
    info: dict = {"cpu": _cpu_model(), "cpu_isa": isa, "int8_kernels": int8_kernel_note(isa),
                  "cpu_cores": os.cpu_count(), "cpu_affinity": available_cpus(),
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


__all__ = ["PHASES", "LatencyStats", "Record", "available_cpus", "cpu_isa", "int8_kernel_note", "latency_stats",
           "machine_info", "measure", "time_calls"]
