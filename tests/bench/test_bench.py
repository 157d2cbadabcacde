"""edgevit bench: statistics, rows, report files and schema, failing artifacts, bad input, CLI."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.bench import (
    CSV_COLUMNS,
    REPORT_FILES,
    BenchConfig,
    BenchRow,
    LatencyStats,
    latency_stats,
    measure,
    run_bench,
    time_calls,
)
from edgevit.bench.targets import RunnerTarget
from edgevit.cli import main
from edgevit.errors import ArtifactExistsError, ManifestError, OnnxModelError
from edgevit.manifest import Manifest
from edgevit.tolerances import get_tolerance

FAST = dict(iterations=3, warmup_s=0.0, samples=64)
ROW_KEYS = {"name", "backend", "device", "provider", "variant", "format", "precision", "artifact", "reference",
            "status", "reason", "size_mb", "host_peak_mb", "host_start_mb", "device_memory_mb", "top1", "agreement", "max_abs", "cosine_min", "cosine_mean", "within_tolerance",
            "tegrastats", "latency_ms", "throughput", "speedup", "throughput_speedup", "sweep", "phases_ms", "attention", "exact_qdq", "kernel_drift",
            "seconds"}
STATS_KEYS = {"batch", "iterations", "p50", "p90", "p99", "mean", "std", "min", "max", "cv", "noisy"}
TOP_KEYS = {"schema_version", "kind", "created", "ok", "seconds", "machine", "config", "data", "reference", "memory",
            "rows",
            "warnings", "files"}


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    """A tiny digits-shaped checkpoint exported (fast: no verification, no lint) with its manifest."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models import create_model
    from edgevit.models.checkpoint import save_model

    root = tmp_path_factory.mktemp("bench")
    model = create_model("digits-tiny", embed_dim=16, depth=1, num_heads=2)
    ckpt = save_model(model.eval(), root / "tiny.safetensors")
    out = root / "onnx"
    export_onnx(str(ckpt), out, ExportConfig(batch=(1, 1, 8), verify=False, lint=False))
    return out


@pytest.fixture(scope="module")
def mixed_dir(outdir, tmp_path_factory):
    """The export plus hand-made artifacts: its fp16 conversion, a corrupt int8 file, a fake engine."""
    d = tmp_path_factory.mktemp("mixed") / "onnx"
    shutil.copytree(outdir, d)
    m = Manifest.load(d)
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(d / "model.onnx")), keep_io_types=True),
              str(d / "model.fp16.onnx"))  # an fp16 graph, as the entry says (its label is checked)
    (d / "model.int8.onnx").write_bytes(b"this is not an onnx file" * 8)
    (d / "model.plan").write_bytes(b"not an engine")
    m.add_artifact("model.fp16.onnx", format="onnx", precision="fp16")
    m.add_artifact("model.int8.onnx", format="onnx", precision="int8")
    m.add_artifact("model.plan", format="tensorrt", precision="fp16")
    m.save(force=True)
    return d


@pytest.fixture(scope="module")
def mixed_report(mixed_dir):
    return run_bench([mixed_dir], BenchConfig(batch_sweep=(1, 2, 8), device="cpu", **FAST))


# ------------------------------------------------------------------------------ statistics
def test_latency_stats_known_samples():
    s = latency_stats(range(1, 101), noise_cv=0.1)
    expected = {"p50": 50.5, "p90": 90.1, "p99": 99.01, "mean": 50.5, "min": 1.0, "max": 100.0}
    for key, value in expected.items():
        assert getattr(s, key) == pytest.approx(value), f"{key}: got {getattr(s, key)}, expected {value}"
    std = float(np.std(np.arange(1, 101), ddof=1))
    assert s.std == pytest.approx(std), f"std {s.std} vs {std}"
    assert s.cv == pytest.approx(std / 50.5), f"cv {s.cv} vs {std / 50.5}"
    assert s.noisy is True and s.iterations == 100, s


def test_latency_stats_constant_and_single():
    s = latency_stats([2.0] * 10)
    assert s.cv == 0.0 and s.noisy is False and s.p99 == 2.0, s
    one = latency_stats([3.0])
    assert one.std == 0.0 and one.p50 == 3.0 and one.iterations == 1, one
    assert latency_stats([1.0, 1.1, 0.9], noise_cv=0.5).noisy is False
    with pytest.raises(ValueError):
        latency_stats([])


class _FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_measure_iterations_duration_and_limit():
    clock = _FakeClock()

    def call():
        clock.t += 0.002  # every call takes 2 ms

    s = measure(call, warmup_s=0.01, iterations=7, clock=clock)
    assert s.iterations == 7 and s.p50 == pytest.approx(2.0), s
    s = measure(call, warmup_s=0.0, iterations=None, duration_s=0.1, clock=clock)
    assert s.iterations == 50, f"0.1 s of 2 ms calls should be 50 calls, got {s.iterations}"
    s = measure(call, warmup_s=0.0, iterations=10_000, time_limit_s=0.02, min_iterations=5, clock=clock)
    assert s.iterations == 10, f"the 20 ms time limit should stop at 10 calls, got {s.iterations}"


def test_time_calls_warmup_calls_and_extras():
    clock = _FakeClock()
    calls = []

    def call():
        calls.append(clock.t)
        clock.t += 0.001
        return {"cpu": 0.5}

    times, extras = time_calls(call, warmup_s=0.0, warmup_calls=3, iterations=4, clock=clock)
    assert len(calls) == 7 and len(times) == 4, (len(calls), times)
    assert times == pytest.approx([1.0] * 4) and extras == {"cpu": [0.5] * 4}, (times, extras)
    times, _ = time_calls(call, warmup_s=0.0, warmup_calls=0, iterations=2, clock=clock)
    assert len(calls) == 9, f"warmup_calls=0 should time the first call, {len(calls) - 7} calls ran"


def test_typed_rows_and_their_json():
    """Rows are read by attribute; their JSON shape is :meth:`to_dict` alone (no dict access)."""
    s = latency_stats([1.0, 2.0, 3.0], batch=4)
    assert isinstance(s, LatencyStats) and s.p50 == 2.0 and s.batch == 4, s
    assert set(s.to_dict()) == STATS_KEYS, sorted(s.to_dict())
    row = BenchRow(name="r", backend="onnxruntime", device="cpu", format="onnx", precision="fp32", latency_ms=s)
    d = row.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(row)] and set(d) == ROW_KEYS, sorted(set(d) ^ ROW_KEYS)
    assert d["latency_ms"] == s.to_dict() and d["status"] == "ok" and d["sweep"] == [], d
    assert row.latency_ms.p90 == s.p90 and row.top1 is None
    for record in (s, row):
        with pytest.raises(TypeError):
            record["status"]


def test_measure_phases_from_runner_hook():
    class Hooked:
        name = "hooked"

        def input_spec(self):
            return {"images": (("batch", 1, 8, 8), np.dtype(np.float32))}

        def timed_infer(self, feeds):
            return {"logits": np.zeros((1, 10), np.float32)}, {"h2d": 0.1, "compute": 1.0, "d2h": 0.05}

    target = RunnerTarget(lambda: None)
    target.runner, target.input_name, target.dtype = Hooked(), "images", np.dtype(np.float32)
    s = measure(target.timed_call(np.zeros((1, 1, 8, 8), np.float32)), warmup_s=0.0, iterations=4)
    assert set(s.phases) == {"h2d", "compute", "d2h"}, s.phases
    assert s.phases["compute"].p50 == pytest.approx(1.0), s.phases["compute"]


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("kwargs", [dict(iterations=0), dict(iterations=5, duration_s=1.0), dict(warmup_s=-1),
                                    dict(batch_sweep=(0,)), dict(device="tpu"), dict(threads=0),
                                    dict(providers=("gpu",))])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        BenchConfig(**kwargs)


# ------------------------------------------------------------------------------ rows
def test_rows_and_failed_artifact(mixed_report):
    rows = {r.name: r for r in mixed_report.rows}
    names = list(rows)
    assert names[0] == "torch cpu fp32" and rows[names[0]].reference is True, names
    ok = [r for r in mixed_report.rows if r.status == "ok"]
    assert {r.name for r in ok} == {"torch cpu fp32", "ort cpu fp32 model.onnx", "ort cpu fp16 model.fp16.onnx"}, \
        [(r.name, r.status, r.reason) for r in mixed_report.rows]
    for r in ok:
        assert 0.0 <= r.top1 <= 1.0 and r.agreement == 1.0, (r.name, r.top1, r.agreement)
        tol = get_tolerance(r.precision)  # the fp16 row is a real fp16 graph: judged by its row
        assert r.max_abs < tol.atol and r.cosine_min >= tol.min_cosine, (r.name, r.max_abs, r.cosine_min)
        assert r.latency_ms.p50 > 0 and r.throughput.batch == 8, (r.latency_ms, r.throughput)
        assert r.throughput.img_per_s > 0 and r.speedup > 0, r.throughput
        assert [s.batch for s in r.sweep] == [1, 2, 8], r.sweep
        assert set(r.latency_ms.to_dict()) == STATS_KEYS, sorted(r.latency_ms.to_dict())
        assert r.size_mb > 0, r.size_mb
    bad = rows["ort cpu int8 model.int8.onnx"]
    assert bad.status == "failed" and "could not load" in bad.reason, bad.reason
    assert bad.latency_ms is None and bad.top1 is None
    engine = rows["tensorrt fp16 model.plan"]
    assert engine.status in ("skipped", "failed") and engine.reason, engine
    assert not mixed_report.ok and len(mixed_report.failures) >= 1, mixed_report.failures
    assert mixed_report.data["labelled"] and mixed_report.data["samples"] == 64, mixed_report.data


def test_json_schema(mixed_report):
    data = json.loads(mixed_report.to_json())
    assert set(data) == TOP_KEYS, sorted(data)
    assert data["schema_version"] == 1 and data["kind"] == "edgevit.bench" and data["ok"] is False
    for row in data["rows"]:
        assert set(row) == ROW_KEYS, sorted(set(row) ^ ROW_KEYS)
    m = data["machine"]
    for key in ("cpu", "cpu_cores", "gpu", "driver", "cuda", "tensorrt", "onnxruntime", "torch", "jetson"):
        assert key in m, sorted(m)
    assert data["config"]["threads"] >= 1 and data["config"]["throughput_batch"] == 8, data["config"]
    assert data["reference"]["row"] == "torch cpu fp32", data["reference"]


def test_csv_and_markdown(mixed_report):
    rows = list(csv.DictReader(io.StringIO(mixed_report.to_csv())))
    assert list(rows[0]) == CSV_COLUMNS, list(rows[0])
    assert [r["name"] for r in rows] == [r.name for r in mixed_report.rows]
    ref = rows[0]
    assert float(ref["latency_p50_ms"]) > 0 and ref["status"] == "ok" and ref["sweep_p50_ms"].startswith("1="), ref
    assert rows[3]["status"] == "failed" and rows[3]["latency_p50_ms"] == "", rows[3]
    md = mixed_report.to_markdown()
    cols, _ = mixed_report.table_rows()
    assert "| " + " | ".join(cols) + " |" in md, md[:500]
    for r in mixed_report.rows:
        assert r.name in md, r.name
    assert md.count("\n|") == len(mixed_report.rows) + 2, md


def test_write_files_png_and_force(mixed_report, tmp_path):
    files = mixed_report.write(tmp_path / "rep")
    for key, name in REPORT_FILES.items():
        assert (tmp_path / "rep" / name).is_file(), (key, sorted(p.name for p in (tmp_path / "rep").iterdir()))
    png = (tmp_path / "rep" / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
    assert (width, height) == (1200, 500), f"plot is {width}x{height} px, expected 12x5 in at 100 dpi"
    import matplotlib.image

    rgb = matplotlib.image.imread(tmp_path / "rep" / "bench.png")[..., :3]
    coloured = (rgb.max(-1) - rgb.min(-1)) > 0.2  # series colours; axes, text and background are grey
    for side, half in (("latency vs batch", coloured[:, :600]), ("accuracy vs latency", coloured[:, 600:])):
        assert half.sum() > 50, f"{side}: only {int(half.sum())} coloured pixels: no series drawn"
    assert json.loads((tmp_path / "rep" / "bench.json").read_text())["files"] == files
    with pytest.raises(ArtifactExistsError):
        mixed_report.write(tmp_path / "rep")
    mixed_report.write(tmp_path / "rep", force=True)
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_missing_reference_falls_back_to_onnx(outdir, tmp_path):
    d = tmp_path / "noref"
    shutil.copytree(outdir, d)
    m = Manifest.load(d)
    # where the checkpoint was at export (source_absolute): gone as well
    m.model = m.model.with_fields(source=str(tmp_path / "gone.safetensors"), source_absolute=None)
    m.save(force=True)
    report = run_bench(d, BenchConfig(device="cpu", **FAST))
    ref = report.rows[0]
    assert ref.status == "skipped" and "not found" in ref.reason, ref
    onnx = report.row("ort cpu fp32 model.onnx")
    assert onnx.reference is True and onnx.agreement == 1.0 and onnx.speedup == pytest.approx(1.0), onnx
    assert any("unavailable" in w for w in report.warnings), report.warnings


def test_artifact_file_source_and_attention(outdir):
    report = run_bench([outdir / "model.onnx"], BenchConfig(device="cpu", attention=True, attention_samples=8,
                                                            **FAST))
    row = report.row("ort cpu fp32 model.onnx")
    att = row.attention
    assert att["status"] == "pass" and att["blocks"] == 1, att
    assert att["max_abs"] < 1e-3 and att["cosine_min"] > 0.9999, (att["max_abs"], att["cosine_min"])
    assert "attention" in report.table_rows()[0]


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs(outdir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no edgevit.json"):
        run_bench([tmp_path / "empty"], BenchConfig(**FAST))
    with pytest.raises(OnnxModelError, match="no such artifact"):
        run_bench([tmp_path / "missing.onnx"], BenchConfig(**FAST))
    with pytest.raises(ValueError, match="outside the export's batch profile 1..8"):
        run_bench([outdir], BenchConfig(batch=64, **FAST))
    with pytest.raises(ValueError, match="--batch-sweep value 16"):
        run_bench([outdir], BenchConfig(batch_sweep=(1, 16), **FAST))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"not an artifact file \(ONNX file \(.onnx\), TensorRT engine file"):
        run_bench([tmp_path / "notes.txt"], BenchConfig(**FAST))
    with pytest.raises(ValueError):
        run_bench([], BenchConfig(**FAST))


# ------------------------------------------------------------------------------ CLI
def _bench(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)])


def test_cli_json(outdir, tmp_path):
    res = _bench(outdir, "--json", "--iterations", 3, "--warmup-s", 0, "--samples", 32, "--device", "cpu",
                 "--batch-sweep", "1,4", "--report-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == TOP_KEYS and data["ok"] is True, sorted(data)
    assert [r["status"] for r in data["rows"]] == ["ok", "ok"], [(r["name"], r["reason"]) for r in data["rows"]]
    assert [s["batch"] for s in data["rows"][1]["sweep"]] == [1, 4], data["rows"][1]["sweep"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(REPORT_FILES.values())
    again = _bench(outdir, "--iterations", 3, "--samples", 32, "--report-dir", tmp_path / "r")
    assert again.exit_code == 1 and "--force" in again.output, again.output


def test_cli_table_and_failed_row_exit(mixed_dir, tmp_path):
    res = _bench(mixed_dir, "--iterations", 2, "--warmup-s", 0, "--samples", 16, "--device", "cpu", "--no-report")
    assert res.exit_code == 1, res.output
    assert "edgevit bench" in res.stdout and "torch cpu fp32 (ref)" in res.stdout, res.stdout
    assert "failed: ort cpu int8 model.int8.onnx" in res.stdout, res.stdout
    assert "1 row(s) failed" in res.stderr, res.stderr


def test_cli_bad_input_exit_codes(outdir, tmp_path):
    (tmp_path / "empty").mkdir()
    res = _bench(tmp_path / "empty", "--no-report")
    assert res.exit_code == 1 and "no edgevit.json" in res.stderr, (res.exit_code, res.output)
    res = _bench(outdir, "--batch", 100, "--no-report", "--json")
    assert res.exit_code == 2 and "batch profile" in res.stderr, (res.exit_code, res.output)
    assert json.loads(res.stdout)["ok"] is False
    res = _bench(outdir, "--iterations", 3, "--duration-s", 1, "--no-report")
    assert res.exit_code == 2, (res.exit_code, res.output)
    res = _bench(outdir, "--batch-sweep", "1,x", "--no-report")
    assert res.exit_code == 2, (res.exit_code, res.output)
    res = _bench(tmp_path / "nope.onnx", "--no-report")
    assert res.exit_code == 1 and "no such artifact" in res.stderr, (res.exit_code, res.output)


# ------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_torch_cuda_rows(outdir):
    report = run_bench(outdir, BenchConfig(device="cuda", providers=("cpu",), **FAST))
    rows = {r["name"]: r for r in report.rows}
    for dtype in ("fp32", "fp16", "bf16"):
        for suffix in ("", " graph"):
            r = rows[f"torch cuda {dtype}{suffix}"]
            assert r["status"] == "ok", (r["name"], r["reason"])
            assert r["agreement"] is not None and r["agreement"] >= 0.9, (r["name"], r["agreement"], r["max_abs"])
            assert set(r["phases_ms"]) == {"h2d", "compute", "d2h"}, r["phases_ms"]
            assert r["phases_ms"]["compute"]["p50"] > 0, r["phases_ms"]
    assert report.machine["gpu"], report.machine
    assert "h2d/compute/d2h ms" in report.table_rows()[0]
