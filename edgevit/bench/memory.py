"""The process's host memory over one bench row: its peak resident set size while the row ran.

Method (``HOST_METHOD``). Rows run one after another in one process, so the process's lifetime peak
(``getrusage`` ``ru_maxrss``) cannot say which row reached it. On Linux (4.0 and later) writing ``5`` to
``/proc/self/clear_refs`` resets the process's high-water mark (``VmHWM`` in ``/proc/self/status``) to
its current resident set (proc(5), "clear_refs"); bench resets it right before a row loads its
artifact and reads ``VmHWM`` right after the row closed it, so ``host_peak_mb`` is the most the process
held at any moment of that row: loading the artifact (an ONNX Runtime session, a PyTorch model's
forward, a TensorRT engine's host side), its warm-up and timed calls, its throughput batch. It includes
what the process already held when the row started (``host_start_mb``: the interpreter, torch and
onnxruntime, the data, the reference model, allocator caches left by earlier rows), which a deployment
running that artifact alone would hold less of. Where the reset is unavailable (not Linux, or a kernel
that refuses it) the peak is the process's high-water mark since it started (``ru_maxrss``): an upper
bound for the row, said by ``TrackedMemory.method`` ("process-lifetime") and in the report's note.

MB are 10^6 bytes, as ``size_mb`` is.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")

ROW_METHOD = "row"
LIFETIME_METHOD = "process-lifetime"
HOST_METHOD = {
    ROW_METHOD: ("peak resident set of the bench process while the row ran (load, warm-up, timed calls): "
                 "its high-water mark reset before the row (/proc/self/clear_refs) and read after it "
                 "(VmHWM); it includes what the process held when the row started (host_start_mb)"),
    LIFETIME_METHOD: ("peak resident set of the bench process since it started (ru_maxrss: this system cannot "
                      "reset the high-water mark per row), an upper bound for each row"),
}


def _status_kb(key: str, text: str | None = None) -> int | None:
    """The ``key:`` line of /proc/self/status (``text``: a given copy, for tests), in kB; None where absent."""
    if text is None:
        try:
            text = STATUS.read_text()
        except OSError:
            return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def rss_mb() -> float | None:
    """The process's current resident set in MB (``VmRSS``); None where /proc is absent."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024 / 1e6


def lifetime_peak_mb() -> float | None:
    """The process's peak resident set since it started (``ru_maxrss``), in MB; None without ``resource``."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, kB on Linux


def reset_peak() -> bool:
    """Reset the process's high-water mark to its current resident set; False where this system cannot."""
    with contextlib.suppress(OSError):
        fd = os.open(CLEAR_REFS, os.O_WRONLY)
        try:
            os.write(fd, b"5")
        finally:
            os.close(fd)
        return _status_kb("VmHWM") is not None
    return False


def peak_mb() -> float | None:
    """The high-water mark since the last :func:`reset_peak` (``VmHWM``), else since the process started."""
    kb = _status_kb("VmHWM")
    return kb * 1024 / 1e6 if kb is not None else lifetime_peak_mb()


@dataclass
class TrackedMemory:
    """What :func:`track` measured: ``start_mb`` (resident set when the row began), ``peak_mb`` (the most
    the process held during it) and ``method`` (a key of :data:`HOST_METHOD`)."""

    method: str
    start_mb: float | None = None
    peak_mb: float | None = None


@contextlib.contextmanager
def track():
    """Measure the host memory of the ``with`` body (module docstring)::

        with track() as mem:
            run_the_row()
        mem.peak_mb, mem.start_mb
    """
    start = rss_mb()
    mem = TrackedMemory(method=ROW_METHOD if reset_peak() else LIFETIME_METHOD, start_mb=_round(start))
    try:
        yield mem
    finally:
        peak = peak_mb() if mem.method == ROW_METHOD else lifetime_peak_mb()
        if peak is not None and start is not None:
            peak = max(peak, start)
        mem.peak_mb = _round(peak)


def _round(mb: float | None) -> float | None:
    return None if mb is None else round(mb, 1)


__all__ = ["HOST_METHOD", "LIFETIME_METHOD", "ROW_METHOD", "TrackedMemory", "lifetime_peak_mb", "peak_mb",
           "reset_peak", "rss_mb", "track"]
