"""``edgevit bench``: one table that says which artifact to ship and what it costs in accuracy.

:func:`run_bench` (``run``) benchmarks every artifact of export OUTDIRs or artifact files next
to the PyTorch reference; :mod:`~edgevit.bench.plan` decides the rows,
:mod:`~edgevit.bench.targets` runs them, :mod:`~edgevit.bench.measure` times them,
:mod:`~edgevit.bench.report` holds the typed rows (:class:`BenchRow`, :class:`LatencyStats`) and
writes bench.json/.csv/.md, :mod:`~edgevit.bench.plot` draws bench.png::

    from edgevit.bench import BenchConfig, run_bench
    report = run_bench(["out"], BenchConfig(iterations=50, batch_sweep=(1, 8, 32)))
    report.write("out", force=True)
"""

from ..tensorrt.jetson import jetson_info, jetson_warnings, parse_jetson_clocks, parse_nvpmodel
from .measure import LatencyStats, latency_stats, machine_info, measure, time_calls
from .plot import write_plot
from .report import CSV_COLUMNS, REPORT_FILES, SCHEMA_VERSION, BenchReport, BenchRow, Throughput
from .run import BenchConfig, run_bench

__all__ = ["BenchConfig", "BenchReport", "BenchRow", "CSV_COLUMNS", "LatencyStats", "REPORT_FILES", "SCHEMA_VERSION",
           "Throughput", "jetson_info", "jetson_warnings", "latency_stats", "machine_info", "measure",
           "parse_jetson_clocks", "parse_nvpmodel", "run_bench", "time_calls", "write_plot"]
