"""Issue 16 item 4: the manifest's checkpoint (``model.source``) is recorded relative to the manifest's
directory with its sha256, a checkpoint whose hash differs is refused, and a bench row far outside its
tolerance is never ``ok``."""

from __future__ import annotations

import json

import pytest

from edgevit.manifest import Manifest
from tests._fixtures import assert_exit, digits_like_model, run_cli

FAST_BENCH = ["--iterations", "2", "--warmup-s", "0", "--samples", "32", "--device", "cpu", "--provider", "cpu",
              "--no-report"]
FP32_COSINE = 0.99999  # edgevit.tolerances: fp32 min_cosine


@pytest.fixture
def two_dirs(tmp_path, monkeypatch):
    """a/ckpt.safetensors exported from inside a/ (``edgevit export ckpt.safetensors -o out``) and a
    different checkpoint at the same relative path b/ckpt.safetensors; the test runs from b/."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models.checkpoint import save_model

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    save_model(digits_like_model(0), a / "ckpt.safetensors")
    save_model(digits_like_model(1), b / "ckpt.safetensors")
    monkeypatch.chdir(a)
    export_onnx("ckpt.safetensors", "out", ExportConfig(batch=(1, 2, 8), verify=False, lint=False))
    monkeypatch.chdir(b)
    return a, b


def _bench(*args):
    res = run_cli("bench", *args, *FAST_BENCH, "--json")
    return res, (json.loads(res.stdout) if res.stdout.strip().startswith("{") else None)


def test_source_is_recorded_relative_to_the_manifest_with_its_sha256(two_dirs):
    from edgevit._io import sha256_file

    a, _ = two_dirs
    model = Manifest.load(a / "out").model
    assert (a / "out" / model.source).resolve() == (a / "ckpt.safetensors").resolve(), model.source
    assert model.source_sha256 == sha256_file(a / "ckpt.safetensors"), model


def test_bench_from_another_directory_uses_the_exported_checkpoint(two_dirs):
    a, b = two_dirs
    res, data = _bench(a / "out")
    assert_exit(res, 0)
    ref, ort = data["rows"][0], data["rows"][1]
    assert (b / ref["artifact"]).resolve() == (a / "ckpt.safetensors").resolve(), ref["artifact"]
    assert ort["status"] == "ok" and ort["cosine_min"] >= FP32_COSINE, (ort["cosine_min"], ort["reason"])


def test_bench_refuses_a_checkpoint_whose_sha256_differs(two_dirs):
    import shutil

    a, b = two_dirs
    shutil.copy(b / "ckpt.safetensors", a / "ckpt.safetensors")  # another checkpoint under the recorded name
    res = run_cli("bench", a / "out", *FAST_BENCH)
    assert_exit(res, 1)
    recorded = Manifest.load(a / "out").model.source_sha256
    for words in ("edgevit.json", "ckpt.safetensors", recorded[:12], "differs from", "--reference", "edgevit export"):
        assert words in res.stderr, (words, res.stderr)


def test_a_row_far_outside_its_tolerance_is_not_ok(two_dirs):
    a, b = two_dirs
    res, data = _bench(a / "out", "--reference", b / "ckpt.safetensors")  # another model as the reference
    assert_exit(res, 1)
    ort = data["rows"][1]
    assert ort["cosine_min"] < FP32_COSINE and ort["within_tolerance"] is False, ort
    assert ort["status"] == "failed" and "outside the fp32 tolerance" in ort["reason"], (ort["status"], ort["reason"])
    assert data["ok"] is False
    table = run_cli("bench", a / "out", "--reference", b / "ckpt.safetensors", *FAST_BENCH)
    assert_exit(table, 1)
    assert "outside the fp32 tolerance" in table.output, table.output


def test_a_manifest_without_the_hash_is_read_beside_the_manifest_first_and_warned_about(two_dirs):
    a, _ = two_dirs
    path = a / "out" / "edgevit.json"
    data = json.loads(path.read_text())
    data["model"].pop("source_sha256", None)
    data["model"]["source"] = "../ckpt.safetensors"  # an old manifest: no hash
    path.write_text(json.dumps(data))
    res, report = _bench(a / "out")
    assert_exit(res, 0)
    assert any("records no sha256" in w for w in report["warnings"]), report["warnings"]
    assert report["rows"][1]["cosine_min"] >= FP32_COSINE, report["rows"][1]
