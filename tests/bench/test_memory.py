"""bench's memory columns: each row's peak host memory (attributed to that row where the system can reset
the process's high-water mark), and a TensorRT engine's device memory for its profile, read on stand-ins
shaped like NVIDIA's Python bindings (``ICudaEngine``), never a real TensorRT."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgevit.bench import BenchConfig, BenchRow, run_bench
from edgevit.bench.memory import HOST_METHOD, ROW_METHOD, _status_kb, reset_peak
from edgevit.bench.plan import Plan
from edgevit.bench.report import DEVICE_COLUMN, PEAK_COLUMN, BenchReport
from edgevit.bench.run import _bench_one
from edgevit.bench.targets import RunnerTarget, Target
from edgevit.tensorrt.memory import engine_device_memory
from edgevit.tensorrt.record import EngineRecord

FAST = dict(iterations=3, warmup_s=0.0, samples=32, device="cpu")
ALLOC_MB = 96


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny checkpoint exported with its manifest, so both the PyTorch and the ONNX Runtime rows run."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models import create_model
    from edgevit.models.checkpoint import save_model

    root = tmp_path_factory.mktemp("bench-memory")
    ckpt = save_model(create_model("digits-tiny", embed_dim=16, depth=1, num_heads=2).eval(), root / "tiny.safetensors")
    export_onnx(str(ckpt), root / "onnx", ExportConfig(batch=(1, 1, 8), verify=False, lint=False))
    return root / "onnx"


@pytest.fixture(scope="module")
def report(export):
    return run_bench([export], BenchConfig(**FAST))


def test_every_cpu_row_reports_its_peak_host_memory(report):
    cpu = [r for r in report.rows if r.device == "cpu" and r.status == "ok"]
    assert {r.backend for r in cpu} == {"torch", "onnxruntime"}, [(r.name, r.status, r.reason) for r in report.rows]
    for r in cpu:
        assert r.host_peak_mb is not None and r.host_start_mb is not None, (r.name, r.host_peak_mb, r.host_start_mb)
        # the process holds the artifact's weights (at least) while the row runs it
        assert r.host_peak_mb >= r.size_mb > 0, (r.name, r.host_peak_mb, r.size_mb)
        assert r.host_peak_mb >= r.host_start_mb, (r.name, r.host_peak_mb, r.host_start_mb)
        assert r.device_memory_mb is None, (r.name, r.device_memory_mb)
    data = json.loads(report.to_json())
    assert data["memory"]["host_method"] in HOST_METHOD and data["memory"]["host"], data["memory"]
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    for r, line in zip(report.rows, rows):
        if r in cpu:
            assert float(line["host_peak_mb"]) == r.host_peak_mb, (line["host_peak_mb"], r.host_peak_mb)
    cols, cells = report.table_rows()
    i = cols.index(PEAK_COLUMN)
    assert all(c[i] != "-" for c, r in zip(cells, report.rows) if r in cpu), [c[i] for c in cells]
    assert DEVICE_COLUMN not in cols, cols  # no engine row: no device column
    md = report.to_markdown()
    assert PEAK_COLUMN in md and report.memory_note() in md, md[-800:]


class _Allocating(Target):
    """A stand-in row that holds ``mb`` of touched host memory while open."""

    def __init__(self, mb: int):
        self.mb, self.held = mb, None

    def open(self):
        self.held = np.ones(self.mb * 10**6 // 8, np.float64)  # written: resident

    def close(self):
        self.held = None

    def infer(self, images, batch_size):
        return np.zeros((len(images), 2), np.float32)

    def timed_call(self, images):
        return lambda: None


def _plan(name: str, mb: int) -> Plan:
    return Plan(BenchRow(name=name, backend="onnxruntime", device="cpu", format="onnx", precision="fp32"),
                make=lambda: _Allocating(mb))


def test_row_peak_is_attributed_to_the_row_that_reached_it():
    if not reset_peak():
        pytest.skip("this system cannot reset the process's high-water mark (bench reports the lifetime peak)")
    cfg = BenchConfig(iterations=1, warmup_s=0.0)
    images = np.zeros((2, 1, 8, 8), np.float32)
    big, _, method = _bench_one(_plan("big", ALLOC_MB), images, cfg, 2, ())
    small, _, _ = _bench_one(_plan("small", 0), images, cfg, 2, ())
    assert method == ROW_METHOD, method
    grew = big.host_peak_mb - big.host_start_mb
    assert grew >= 0.9 * ALLOC_MB, (big.host_start_mb, big.host_peak_mb, ALLOC_MB)
    # the next row does not inherit the first one's peak
    assert small.host_peak_mb - small.host_start_mb < ALLOC_MB / 2, (small.host_start_mb, small.host_peak_mb)
    assert small.host_peak_mb < big.host_peak_mb, (small.host_peak_mb, big.host_peak_mb)


def test_track_without_a_reset_reports_the_lifetime_peak(monkeypatch):
    import edgevit.bench.memory as memory

    monkeypatch.setattr(memory, "reset_peak", lambda: False)
    with memory.track() as mem:
        pass
    assert mem.method == memory.LIFETIME_METHOD and mem.peak_mb is not None, mem
    assert mem.peak_mb >= (mem.start_mb or 0), mem


def test_status_parser_on_a_recorded_status_file():
    text = "Name:\tpython\nVmPeak:\t 2401236 kB\nVmHWM:\t  980244 kB\nVmRSS:\t  957012 kB\nThreads:\t9\n"
    assert _status_kb("VmHWM", text) == 980244 and _status_kb("VmRSS", text) == 957012
    assert _status_kb("VmSwap", text) is None


# ---------------------------------------------------------------- device memory, on ICudaEngine stand-ins
class Engine100:
    """TensorRT 10.0's ICudaEngine: only the first-generation names."""

    device_memory_size = 3_000_000

    def get_device_memory_size_for_profile(self, index):
        return {0: 2_000_000}[index]


class Engine103(Engine100):
    """TensorRT 10.1+ (10.3 on JetPack 6): the int64 ``_v2`` names as well."""

    device_memory_size_v2 = 7_000_000

    def get_device_memory_size_for_profile_v2(self, index):
        return {0: 5_000_000}[index]


def test_engine_device_memory_prefers_the_v2_per_profile_size():
    assert engine_device_memory(Engine103()) == 5_000_000
    assert engine_device_memory(Engine100()) == 2_000_000
    assert engine_device_memory(SimpleNamespace(device_memory_size_v2=9)) == 9
    assert engine_device_memory(SimpleNamespace()) is None


def test_engine_row_reports_device_memory(monkeypatch):
    runner = SimpleNamespace(session=SimpleNamespace(engine=Engine103()))
    target = RunnerTarget(lambda: runner)
    target.runner = runner
    assert target.device_memory_mb() == 5.0, target.device_memory_mb()
    rows = [BenchRow(name="tensorrt fp16 model.plan", backend="tensorrt", device="cuda", format="tensorrt",
                     precision="fp16", size_mb=1.0, host_peak_mb=900.0, host_start_mb=880.0, device_memory_mb=5.0)]
    rep = BenchReport(rows=rows, memory={"host_method": ROW_METHOD, "host": HOST_METHOD[ROW_METHOD],
                                         "device": "profile 0"})
    cols, cells = rep.table_rows()
    assert cells[0][cols.index(DEVICE_COLUMN)] == "5.0" and cells[0][cols.index(PEAK_COLUMN)] == "900 (+20.0)", cells
    assert next(csv.DictReader(io.StringIO(rep.to_csv())))["device_memory_mb"] == "5.0"


def test_engine_row_shows_the_recorded_device_memory_where_it_cannot_run(export, tmp_path):
    """No TensorRT here: the engine row is skipped or failed, and still reports what its build recorded."""
    import shutil

    from edgevit.manifest import Manifest

    d = Path(shutil.copytree(export, tmp_path / "onnx"))
    (d / "model.plan").write_bytes(b"not an engine")
    m = Manifest.load(d)
    m.add_artifact("model.plan", format="tensorrt", precision="fp16",
                   **EngineRecord(profile=(1, 1, 8), device_memory_bytes=5_000_000).to_fields())
    m.save(force=True)
    rep = run_bench([d], BenchConfig(**FAST, include_reference=False))
    row = next(r for r in rep.rows if r.backend == "tensorrt")
    assert row.status in ("skipped", "failed") and row.device_memory_mb == 5.0, (row.status, row.device_memory_mb)
    cols, cells = rep.table_rows()
    assert cells[rep.rows.index(row)][cols.index(DEVICE_COLUMN)] == "5.0", (cols, cells)
    assert json.loads(rep.to_json())["rows"][rep.rows.index(row)]["device_memory_mb"] == 5.0
