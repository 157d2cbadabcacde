"""Timing helpers shared by the benchmark scripts (not part of the edgevit package): an ONNX Runtime
session configured like edgevit's, and the block-cycled timing on top of edgevit bench's per-call
harness (:func:`edgevit.bench.time_calls`), so the scripts and ``edgevit bench`` time calls alike."""

from __future__ import annotations

import math
import statistics
import time

from edgevit.bench import time_calls


def ort_session(path, threads: int, level: str = "all", spinning: bool = False):
    """An ONNX Runtime CPU session: ``threads`` intra-op threads, sequential, spinning off by default
    (spinning worker threads win on an idle machine and lose badly on a busy one)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def blocks(paths: dict, runs: int, warmup: int, cycles: int = 3) -> dict[str, tuple[float, float]]:
    """(median wall ms, median process-CPU ms) per path.

    Runs are taken in blocks (warm-up, then runs/cycles timed calls per path), and the block
    order cycles ``cycles`` times, so slow drifts in machine load hit every path alike while no
    path's timed calls overlap another runtime's worker threads. CPU time (summed over the
    process's threads) is much less sensitive to other processes than wall time, as long as
    threads wait passively (OMP_WAIT_POLICY=PASSIVE, ORT spinning off).
    """
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    per_block = max(1, -(-runs // cycles))
    for _ in range(cycles):
        for name, fn in paths.items():
            time.sleep(0.2)  # let the previous runtime's threads go idle
            times, extra = time_calls(_with_cpu_time(fn), warmup_s=0.0, warmup_calls=warmup, iterations=per_block,
                                      time_limit_s=math.inf)
            wall[name].extend(times)
            cpu[name].extend(extra["cpu"])
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in paths}


def _with_cpu_time(fn):
    """``fn`` returning its process CPU time in ms, which time_calls collects beside the wall time."""
    def call():
        c = time.process_time()
        fn()
        return {"cpu": (time.process_time() - c) * 1e3}

    return call
