"""Every step that opens a file an edgevit.json lists checks its recorded sha256 first
(verify, bench, build, quantize, predict / Engine.load), with --no-verify-hash to skip; and
verify / bench judge a TensorRT engine by the precision its manifest entry records.

The tampering is the issue's case: another valid graph copied over a recorded artifact.
Engines are stood in for by ONNX graphs run through ONNX Runtime under the "tensorrt" runner
name (no TensorRT here); what is tested is which precision row judges them, not TensorRT."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.errors import ArtifactIntegrityError
from edgevit.manifest import Manifest
from edgevit.runtime import Engine
from edgevit.runtime.onnxruntime_runner import OnnxRuntimeRunner
from edgevit.verify import TOLERANCES
from tests._fixtures import export_digits_like

FAST_BENCH = ["--iterations", "2", "--warmup-s", "0", "--samples", "16", "--device", "cpu", "--provider", "cpu",
              "--no-report", "--data", "random"]
WORDS = ("sha256", "differs from", "recorded in", "--force", "--no-verify-hash")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_integrity_message(text: str, file: str) -> None:
    assert file in text, text
    for word in WORDS:
        assert word in text, f"{word!r} missing from the message:\n{text}"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(clean export with a recorded fp16-labelled copy, another model's graph of the same shape)."""
    root = tmp_path_factory.mktemp("integrity")
    export_digits_like(root / "clean", batch=(1, 2, 8), seed=0)
    export_digits_like(root / "other", batch=(1, 2, 8), seed=1)
    fp16_graph(root / "clean" / "model.onnx", root / "clean" / "model.fp16.onnx")
    fp16_graph(root / "other" / "model.onnx", root / "other" / "model.fp16.onnx")
    m = Manifest.load(root / "clean")
    m.add_artifact("model.fp16.onnx", format="onnx", precision="fp16")
    m.save(force=True)
    return root / "clean", root / "other" / "model.onnx"


def fp16_graph(src, dst):
    """``src`` as an fp16 graph (fp32 inputs and outputs): what a manifest's fp16 entry holds."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


@pytest.fixture
def tampered(exports, tmp_path):
    """A copy of the export whose model.fp16.onnx was overwritten by another model's (fp16) graph."""
    clean, other = exports
    d = tmp_path / "out"
    shutil.copytree(clean, d)
    shutil.copy(other.parent / "model.fp16.onnx", d / "model.fp16.onnx")
    return d


# ------------------------------------------------------------------------------ sha256 checks
def test_bench_refuses_a_replaced_artifact(tampered):
    res = _run("bench", tampered, *FAST_BENCH)
    assert res.exit_code == 1, res.output
    _assert_integrity_message(res.stderr, "model.fp16.onnx")
    assert "ort cpu fp16 model.fp16.onnx: ArtifactIntegrityError" in res.stderr, res.stderr
    data = json.loads(_run("bench", tampered, *FAST_BENCH, "--json").stdout)
    rows = {r["name"]: r for r in data["rows"]}
    bad = rows["ort cpu fp16 model.fp16.onnx"]
    assert bad["status"] == "failed" and bad["latency_ms"] is None, bad
    assert rows["ort cpu fp32 model.onnx"]["status"] == "ok", rows["ort cpu fp32 model.onnx"]
    # skipped on request: the row runs, and the other model's outputs fail it by the tolerance (issue 16 item 4)
    skipped = _run("bench", tampered, *FAST_BENCH, "--no-verify-hash")
    assert skipped.exit_code == 1 and "outside the fp16 tolerance" in skipped.stderr, skipped.output
    assert "sha256" not in skipped.stderr, skipped.stderr


def test_verify_refuses_a_replaced_artifact(tampered):
    res = _run("verify", tampered / "model.onnx", tampered / "model.fp16.onnx", "--samples", 4)
    assert res.exit_code == 1, res.output
    _assert_integrity_message(res.stderr, "model.fp16.onnx")
    assert "edgevit quantize" in res.stderr and "--precision fp16" in res.stderr, res.stderr
    res = _run("verify", tampered / "model.onnx", tampered, "--precision", "fp16", "--samples", 4, "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["type"] == "ArtifactIntegrityError", res.output
    # skipped on request: the comparison runs (and catches the other model's weights)
    res = _run("verify", tampered / "model.onnx", tampered / "model.fp16.onnx", "--samples", 4, "--no-verify-hash")
    assert res.exit_code == 1 and "verification failed" in res.stderr and "sha256" not in res.output, res.output


def test_predict_and_engine_load_refuse_a_replaced_artifact(tampered):
    with pytest.raises(ArtifactIntegrityError, match=r"model\.fp16\.onnx: sha256 [0-9a-f]{12}\.\.\. differs"):
        Engine.load(tampered / "model.fp16.onnx", threads=1)
    with Engine.load(tampered / "model.fp16.onnx", threads=1, verify_hash=False) as engine:
        assert engine.artifact.precision == "fp16"
    with Engine.load(tampered / "model.onnx", threads=1) as engine:  # untouched files load as before
        assert engine.backend == "onnxruntime"
    npy = tampered / "x.npy"
    np.save(npy, np.zeros((2, 1, 8, 8), np.float32))
    res = _run("predict", tampered / "model.fp16.onnx", npy, "--preprocessed")
    assert res.exit_code == 1, res.output
    _assert_integrity_message(res.stderr, "model.fp16.onnx")
    res = _run("predict", tampered / "model.fp16.onnx", npy, "--preprocessed", "--no-verify-hash", "--json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)["predictions"]) == 2, res.output


def test_quantize_and_build_refuse_a_replaced_fp32_graph(exports, tmp_path):
    clean, other = exports
    d = tmp_path / "out"
    shutil.copytree(clean, d)
    shutil.copy(other, d / "model.onnx")
    res = _run("quantize", d, "--precision", "fp16", "--no-gate", "--json")
    assert res.exit_code == 1, res.output
    _assert_integrity_message(json.loads(res.stdout.splitlines()[0])["message"], "model.onnx")
    assert "edgevit export" in res.stderr, res.stderr
    assert (d / "model.fp16.onnx").read_bytes() == (clean / "model.fp16.onnx").read_bytes(), "quantize wrote anyway"
    res = _run("build", d, "-o", d / "model.plan")  # refused before TensorRT is even imported
    assert res.exit_code == 1, res.output
    _assert_integrity_message(res.stderr, "model.onnx")
    assert not (d / "model.plan").exists()
    res = _run("quantize", d, "--precision", "fp16", "--no-gate", "--force", "--no-verify-hash", "--json")
    assert res.exit_code == 0, res.output
    assert Manifest.load(d).artifact(precision="fp16").sha256 != Manifest.load(clean).artifact(precision="fp16").sha256


# ------------------------------------------------------------------------------ engine precision
class OnnxAsEngineRunner(OnnxRuntimeRunner):
    """Stands in for the TensorRT runner: the "engine" file is an ONNX graph."""

    def __init__(self, source, manifest_entry=None, cuda_graph=False):
        super().__init__(source, threads=1)


@pytest.fixture
def fake_engine(exports, tmp_path, monkeypatch):
    """An export whose manifest records model.plan as an int8 TensorRT engine."""
    import edgevit.runtime as runtime

    monkeypatch.setitem(runtime._RUNNERS, "tensorrt", f"{__name__}:OnnxAsEngineRunner")
    clean, _ = exports
    d = tmp_path / "out"
    shutil.copytree(clean, d)
    shutil.copy(d / "model.onnx", d / "model.plan")
    m = Manifest.load(d)
    m.add_artifact("model.plan", format="tensorrt", precision="int8", onnx={"path": "model.onnx"})
    m.save(force=True)
    return d


def test_verify_judges_an_engine_by_its_recorded_precision(fake_engine):
    res = _run("verify", fake_engine / "model.onnx", fake_engine / "model.plan", "--samples", 4, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["precision"] == "int8" and report["tolerance"]["atol"] == TOLERANCES["int8"].atol, \
        (report["precision"], report["tolerance"])
    res = _run("verify", fake_engine / "model.onnx", fake_engine, "--format", "tensorrt", "--samples", 4, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["precision"] == "int8", res.output
    res = _run("verify", fake_engine / "model.onnx", fake_engine / "model.plan", "--precision", "fp16", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["precision"] == "fp16", res.output  # explicit wins
    unlisted = fake_engine / "copy.plan"
    shutil.copy(fake_engine / "model.plan", unlisted)
    res = _run("verify", fake_engine / "model.onnx", unlisted, "--samples", 4)
    assert res.exit_code == 1 and "precision" in res.stderr and "--precision" in res.stderr, res.output


def test_bench_judges_an_engine_by_its_recorded_precision(fake_engine):
    res = _run("bench", fake_engine, *FAST_BENCH, "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["rows"]}
    engine = rows["tensorrt int8 model.plan"]
    assert engine["status"] == "ok" and engine["precision"] == "int8" and engine["within_tolerance"] is True, engine
    unlisted = fake_engine / "copy.plan"
    shutil.copy(fake_engine / "model.plan", unlisted)
    res = _run("bench", unlisted, *FAST_BENCH, "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["rows"][-1]
    assert row["name"] == "tensorrt unknown copy.plan" and row["within_tolerance"] is None, row
    assert "records this engine's precision" in row["reason"], row["reason"]
    (fake_engine / "model.plan").write_bytes(b"replaced")
    res = _run("bench", fake_engine, *FAST_BENCH)
    assert res.exit_code == 1 and "edgevit build" in res.stderr, res.output
    _assert_integrity_message(res.stderr, "model.plan")
