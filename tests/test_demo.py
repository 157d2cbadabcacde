"""`edgevit demo` smoke runs on a reduced budget (a checkpoint whose precision graphs pass by
construction, tests/_fixtures.quantization_robust_model; few iterations)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from edgevit import demo
from edgevit.cli import main
from edgevit.demo import DemoConfig, _cached_checkpoint_path, run_demo
from edgevit.errors import ArtifactExistsError
from edgevit.manifest import Manifest
from tests._fixtures import rich_table

PRECISIONS = ["fp32", "fp16", "bf16", "int8", "fp8"]
STEPS = ["train", "export", "engines", "verify", "deploy", "bench"]


def _cpu_rows(bench: dict) -> list[tuple[str, str]]:
    """(backend, precision) of the bench rows on the CPU; a GPU host adds CUDA/TensorRT rows besides."""
    return sorted((r["backend"], r["precision"]) for r in bench["rows"] if r["device"] == "cpu")


def test_demo_runs_every_step_into_one_run_directory(robust_digits, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVIT_CACHE", str(tmp_path / "cache"))
    cached = _cached_checkpoint_path(None)
    cached.parent.mkdir(parents=True)
    shutil.copyfile(robust_digits, cached)  # the cached checkpoint a previous demo left
    run = tmp_path / "run"
    result = run_demo(DemoConfig(output=str(run), bench_iterations=3, verify_samples=48, progress=False),
                      echo=lambda m: None)
    status = {s["step"]: s["status"] for s in result.steps}
    assert result.ok, result.steps
    assert status == {"train": "ok", "export": "ok", "engines": "skipped", "verify": "ok", "deploy": "ok",
                      "bench": "ok"} or (
        status["engines"] == "ok"), status
    assert result.steps[0]["source"].startswith("cache"), result.steps[0]
    m = Manifest.load(run / "export")
    assert sorted(a.precision for a in m.find_artifacts(format="onnx")) == ["bf16", "fp16", "fp32", "fp8", "int8"]
    rows = {r.precision: r for r in result.bench.rows if r.backend == "onnxruntime" and r.device == "cpu"}
    assert set(rows) == set(PRECISIONS), list(rows)
    for p, r in rows.items():  # Q/DQ rows as the graph defines them: their plain columns are this CPU's kernels
        agreement = (r.exact_qdq or {}).get("agreement", r.agreement)
        assert r.status == "ok" and r.top1 is not None and agreement >= 0.95, (p, r.status, agreement)
        assert r.latency_ms.p50 > 0 and r.throughput.img_per_s > 0, (p, r.latency_ms, r.throughput)
    png = (run / "reports" / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, len(png)
    verify = json.loads((run / "reports" / "verify.json").read_text())
    assert all(v["ok"] for v in verify.values()) and all("attention" in v for v in verify.values()), verify.keys()
    assert json.loads((run / "demo.json").read_text())["ok"] is True
    # the deploy step wrote a Triton repository and a DeepStream config, each certified in the manifest
    assert (run / "deploy" / "triton").is_dir() and any((run / "deploy" / "deepstream").glob("*.txt"))
    certs = {c.consumer: c for c in Manifest.load(run / "export").certificates}
    assert {"triton", "deepstream"} <= set(certs), list(certs)
    for consumer in ("triton", "deepstream"):  # fp32 graphs on the same pixels: fp32 tolerance, same top-1
        c = certs[consumer]
        assert c.passed and c.max_abs is not None and c.max_abs <= c.atol and c.top1_agreement == 1.0, c
    with pytest.raises(ArtifactExistsError, match="--force"):
        run_demo(DemoConfig(output=str(run), progress=False), echo=lambda m: None)


def _table(output: str, first: str) -> dict[str, list[str]]:
    return {row[0]: row for row in rich_table(output, first)}


def test_demo_cli_table_with_a_checkpoint(robust_digits, tmp_path):
    """The human output (bench table, step table) shows what RUN/demo.json (the --json document) holds."""
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["demo", "-o", str(run), "--checkpoint", robust_digits, "--iterations", "2"])
    assert res.exit_code == 0, res.output[-3000:]
    data = json.loads((run / "demo.json").read_text())
    assert data["ok"] and [s["step"] for s in data["steps"]] == STEPS, data["steps"]
    assert data["bench"]["kind"] == "edgevit.bench"
    assert _cpu_rows(data["bench"]) == sorted([("torch", "fp32")] + [("onnxruntime", p) for p in PRECISIONS]), (
        _cpu_rows(data["bench"]))
    steps = _table(res.stdout, "step")
    assert {k: v[1] for k, v in steps.items()} == {s["step"]: s["status"] for s in data["steps"]}, steps
    for s in data["steps"]:
        assert steps[s["step"]][2] == f"{s['seconds']:.1f}", (steps[s["step"]], s)
    bench = _table(res.stdout, "row")
    for r in data["bench"]["rows"]:
        name = r["name"] + (" (ref)" if r.get("reference") else "")
        assert bench[name][1] == r["status"] and bench[name][4] == f"{r['top1']:.4f}", (bench.get(name), r)  # row, status, MB, peak RSS, top-1
    assert str(run) in res.stdout
    certs = {c.consumer: c for c in Manifest.load(run / "export").certificates}
    shown = _table(res.stdout, "consumer")
    for consumer, c in certs.items():  # the certificate table shows what the manifest records
        assert shown[consumer][-1] == c.verdict.value and shown[consumer][4] == f"{c.max_abs:.2e}", (shown, c)


def test_demo_records_any_exception_as_a_failed_step(tmp_path, monkeypatch):
    """A step raising something other than edgevit's errors is a failed step: recorded with its type
    and message, demo.json written, exit status 1 (no traceback), in the table and in --json."""
    def broken_export(cfg, ckpt, export_dir):
        raise RuntimeError("simulated failure in the export step")

    monkeypatch.setattr(demo, "_train", lambda cfg, run, ckpt: {"summary": "skipped training in this test"})
    monkeypatch.setattr(demo, "_export", broken_export)
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "run")])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "export: RuntimeError: simulated failure in the export step" in res.stderr, res.stderr
    data = json.loads((tmp_path / "run" / "demo.json").read_text())
    assert data["ok"] is False and [s["step"] for s in data["steps"]] == STEPS, data["steps"]
    export = data["steps"][1]
    assert export["status"] == "failed" and export["error"] == "RuntimeError", export
    steps = _table(res.stdout, "step")
    assert steps["export"][1] == "failed", res.stdout
    for s in data["steps"][2:]:  # what needs the export is recorded and shown as skipped, with the reason
        assert s["status"] == "skipped" and s["blocked_by"] == "export", s
        assert steps[s["step"]][1] == "skipped" and "export step failed" in steps[s["step"]][3], steps[s["step"]]
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "run-json"), "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is False and out["steps"][1]["error"] == "RuntimeError", out["steps"]
    assert out == json.loads((tmp_path / "run-json" / "demo.json").read_text())


def test_demo_records_the_steps_a_failed_step_kept_from_running(tmp_path, monkeypatch):
    """A failed train skips every later step, each recorded in demo.json and the table with the step
    that kept it from running; nothing after it is called."""
    def broken_train(cfg, run, ckpt):
        raise RuntimeError("simulated failure in the train step")

    monkeypatch.setattr(demo, "_train", broken_train)
    for name in ("_export", "_engines", "_verify", "_bench"):
        monkeypatch.setattr(demo, name, lambda *a, _n=name: pytest.fail(f"{_n} ran after train failed"))
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "run")])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    data = json.loads((tmp_path / "run" / "demo.json").read_text())
    assert [(s["step"], s["status"], s.get("blocked_by")) for s in data["steps"]] == (
        [("train", "failed", None)] + [(s, "skipped", "train") for s in STEPS[1:]]), data["steps"]
    steps = _table(res.stdout, "step")
    assert [steps[s][1] for s in STEPS] == ["failed"] + ["skipped"] * (len(STEPS) - 1), steps
    assert all("train step failed" in steps[s][3] for s in STEPS[1:]), steps
