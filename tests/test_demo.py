"""`edgevit demo` smoke runs on a reduced budget (a briefly trained checkpoint, few iterations)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.demo import DemoConfig, _cached_checkpoint_path, run_demo
from edgevit.errors import ArtifactExistsError
from edgevit.manifest import Manifest


def test_demo_runs_every_step_into_one_run_directory(trained_digits, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVIT_CACHE", str(tmp_path / "cache"))
    cached = _cached_checkpoint_path(None)
    cached.parent.mkdir(parents=True)
    shutil.copyfile(trained_digits, cached)  # the cached checkpoint a previous demo left
    run = tmp_path / "run"
    result = run_demo(DemoConfig(output=str(run), bench_iterations=3, verify_samples=48, progress=False),
                      echo=lambda m: None)
    status = {s["step"]: s["status"] for s in result.steps}
    assert result.ok, result.steps
    assert status == {"train": "ok", "export": "ok", "engines": "skipped", "verify": "ok", "bench": "ok"} or (
        status["engines"] == "ok"), status
    assert result.steps[0]["source"].startswith("cache"), result.steps[0]
    m = Manifest.load(run / "export")
    assert sorted(a.precision for a in m.find_artifacts(format="onnx")) == ["bf16", "fp16", "fp32", "fp8", "int8"]
    rows = {r["precision"]: r for r in result.bench.rows if r["backend"] == "onnxruntime"}
    assert set(rows) == {"fp32", "fp16", "bf16", "int8", "fp8"}, list(rows)
    for p, r in rows.items():
        assert r["status"] == "ok" and r["top1"] is not None and r["agreement"] >= 0.95, (p, r["status"], r["agreement"])
        assert r["latency_ms"]["p50"] > 0 and r["throughput"]["img_per_s"] > 0, (p, r["latency_ms"], r["throughput"])
    png = (run / "reports" / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, len(png)
    verify = json.loads((run / "reports" / "verify.json").read_text())
    assert all(v["ok"] for v in verify.values()) and all("attention" in v for v in verify.values()), verify.keys()
    assert json.loads((run / "demo.json").read_text())["ok"] is True
    with pytest.raises(ArtifactExistsError, match="--force"):
        run_demo(DemoConfig(output=str(run), progress=False), echo=lambda m: None)


def test_demo_cli_json_with_a_checkpoint(trained_digits, tmp_path):
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "run"), "--checkpoint", trained_digits,
                                    "--iterations", "2", "--json"])
    assert res.exit_code == 0, res.output[-2000:]
    data = json.loads(res.output[res.output.index("{"):])
    assert data["ok"] and [s["step"] for s in data["steps"]] == ["train", "export", "engines", "verify", "bench"]
    assert data["bench"]["kind"] == "edgevit.bench" and len(data["bench"]["rows"]) == 6, len(data["bench"]["rows"])
