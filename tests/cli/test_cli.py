"""Every command as a user runs it, without --json: exit status 0 and a table that shows the values
the command's --json output (or the report the same run wrote) holds. Plus the CLI's error table:
nothing a user can type prints a traceback."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.export.onnx import ExportConfig, export_onnx
from edgevit.manifest import Manifest
from tests._fixtures import GATE_MARGIN, decided_gate_data, digits_like_model, quantization_robust_model, rich_table
from tests._fixtures import export_onnx as export_raw
from tests.conftest import HAS_CUDA, HAS_TENSORRT


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(res):
    assert res.exit_code == 0, f"exit {res.exit_code}\n{res.output[-3000:]}"
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def _json(*args):
    return json.loads(_ok(_run(*args, "--json")).stdout)


def _fields(output: str) -> dict[str, str]:
    """A two-column (field, value) table as a dict."""
    return {row[0]: row[1] for row in rich_table(output, "field") if row[0]}


@pytest.fixture(scope="module")
def outdir(robust_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "out"
    export_onnx(robust_digits, out, ExportConfig(batch=(1, 2, 8), lint=False))
    return out


@pytest.fixture(scope="module")
def gate_npz(tmp_path_factory):
    return decided_gate_data(quantization_robust_model(), tmp_path_factory.mktemp("gate") / "gate.npz", GATE_MARGIN)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two digit PNGs (raw 0..16 grey levels, digits' pixel_max) and a .npy of two raw images."""
    from PIL import Image

    from edgevit.data.sources import _digits_raw

    folder = tmp_path_factory.mktemp("inputs")
    images, _ = _digits_raw()
    files = []
    for i in range(2):
        files.append(folder / f"digit{i}.png")
        Image.fromarray(images[i, 0].astype(np.uint8), mode="L").save(files[-1])
    np.save(folder / "two.npy", images[2:4])
    return files + [folder / "two.npy"]


# ------------------------------------------------------------------------------ models, info
def test_models_table():
    data = _json("models")
    rows = {r[0]: r for r in rich_table(_ok(_run("models")).stdout, "name")}
    assert sorted(rows) == sorted(v["name"] for v in data), (sorted(rows), data)
    for v in data:
        want = [v[k] for k in ("name", "family", "img_size", "patch_size", "embed_dim", "depth", "num_heads",
                               "tokens", "num_classes", "output", "gmacs")]
        assert rows[v["name"]] == [str(x) for x in want], (rows[v["name"]], want)


def test_info_table(robust_digits):
    """Every --json field is a row: nested ones (the input spec, fused MHA) as parent.key, lists joined."""
    data = _json("info", robust_digits)
    rows = _fields(_ok(_run("info", robust_digits)).stdout)
    want = {}
    for k, v in data.items():
        for key, val in (v.items() if isinstance(v, dict) else [(None, v)]):
            want[f"{k}.{key}" if key else k] = ", ".join(map(str, val)) if isinstance(val, list) else str(val)
    assert rows == want, (rows, want)
    spec = data["input"]  # the input spec a deployment needs: tensor name, shape, dtype and preprocessing
    assert (rows["input.name"], rows["input.dtype"]) == ("images", "float32"), rows
    assert rows["input.shape"] == "batch, " + ", ".join(map(str, spec["shape"][1:])), (rows, spec)
    for k in ("mean", "std", "interpolation", "crop_pct", "pixel_max"):
        assert f"input.{k}" in rows and k in spec, (k, rows, spec)


# ------------------------------------------------------------------------------ train, eval
def test_train_table(robust_digits, tmp_path):
    """One epoch fine-tuning a tiny model; the line shows the run's result.json (what --json prints)."""
    res = _ok(_run("train", "--model", robust_digits, "--epochs", 1, "-o", tmp_path / "human"))
    saved = json.loads((tmp_path / "human" / "result.json").read_text())
    line = (f"test accuracy {saved['test_accuracy']:.4f} ({saved['num_test']} images), best val "
            f"{saved['val_accuracy']:.4f} at epoch {saved['best_epoch']}")
    assert line in res.stdout, (line, res.stdout)
    assert f"checkpoint: {saved['checkpoint']}" in res.stdout, res.stdout
    data = _json("train", "--model", robust_digits, "--epochs", 1, "-o", tmp_path / "json")
    saved = json.loads((tmp_path / "json" / "result.json").read_text())
    assert data["ok"] and {k: data[k] for k in ("test_accuracy", "val_accuracy", "best_epoch", "checkpoint")} == {
        k: saved[k] for k in ("test_accuracy", "val_accuracy", "best_epoch", "checkpoint")}, (data, saved)


def test_eval_table(robust_digits):
    data = _json("eval", robust_digits)
    res = _ok(_run("eval", robust_digits))
    assert (f"top-1 {data['top1']:.4f}, top-5 {data['top5']:.4f} ({data['samples']} images)") in res.stdout, res.stdout
    worst = sorted(data["per_class"].items(), key=lambda kv: kv[1])[:5]
    assert rich_table(res.stdout, "class") == [[k, f"{v:.4f}"] for k, v in worst], res.stdout
    assert rich_table(res.stdout, "true") == [[c["true"], c["predicted"], str(c["count"])] for c in data["confusions"]]


# ------------------------------------------------------------------------------ export, lint, quantize
def test_export_table(robust_digits, tmp_path):
    data = _json("export", robust_digits, "-o", tmp_path / "json")
    res = _ok(_run("export", robust_digits, "-o", tmp_path / "human"))
    rows = _fields(res.stdout)
    art = Manifest.load(tmp_path / "human").artifact(precision="fp32", format="onnx")
    b = data["batch"]
    assert rows["onnx"] == str(tmp_path / "human" / "model.onnx"), rows
    assert rows["opset / attention"] == f"{data['export']['opset']} / {data['export']['attention']}", rows
    assert rows["batch"] == f"dynamic {b['min']}..{b['max']} (opt {b['opt']})", (rows, b)
    assert rows["sha256"] == art.sha256[:16] + "...", (rows, art.sha256)
    checks = data["export"]["verification"]["checks"]
    assert [k for k in rows if k.startswith("vs PyTorch")] == [f"vs PyTorch: {c['input']}" for c in checks], rows


def test_lint_table(tmp_path, outdir):
    warned = _json("lint", outdir / "model.onnx")  # head size 8: a warning, exit 0
    res = _ok(_run("lint", outdir / "model.onnx"))
    assert warned["ok"] and warned["counts"]["warning"] >= 1, warned
    rows = [r[:2] for r in rich_table(res.stdout, "severity") if r[0]]
    assert rows == [[f["severity"], f["code"]] for f in warned["findings"]], (rows, warned["findings"])
    assert f"TensorRT {warned['tensorrt_version']}" in res.stdout, res.stdout
    fused = export_raw(digits_like_model(), tmp_path / "fused.onnx", attention="fused")  # opset 23 Attention
    res = _run("lint", fused)
    data = json.loads(_run("lint", fused, "--json").stdout)
    assert res.exit_code == 1 and data["ok"] is False, res.output
    rows = [r[:2] for r in rich_table(res.stdout, "severity") if r[0]]
    assert rows == [[f["severity"], f["code"]] for f in data["findings"]], (rows, data["findings"])
    assert f"{data['counts']['error']} error(s)" in res.stderr, res.stderr


def test_quantize_table(outdir, gate_npz, tmp_path):
    args = ["--precision", "fp16,int8", "--sensitivity", "--data", gate_npz, "--calib-samples", 64]
    for name in ("human", "json"):
        shutil.copytree(outdir, tmp_path / name)
    data = _json("quantize", tmp_path / "json", *args)["quantize"]
    res = _ok(_run("quantize", tmp_path / "human", *args))
    rows = {r[0]: r for r in rich_table(res.stdout, "precision")}
    manifest = Manifest.load(tmp_path / "human")
    assert sorted(rows) == sorted(data["precisions"]) == ["fp16", "int8"], (rows, data["precisions"])
    for p, entry in data["precisions"].items():
        gate = manifest.artifact(precision=p, format="onnx").extra["gate"]  # this run's numbers
        assert rows[p][1] == entry["path"] and rows[p][6] == entry["gate"]["verdict"] == gate["verdict"], (rows[p], gate)
        assert rows[p][2:5] == [f"{gate['top1']:.4f}", f"{gate['drop_points']:+.2f}", f"{gate['agreement']:.4f}"], (
            rows[p], gate)
    sens = rich_table(res.stdout, "layer")
    assert [r[0] for r in sens] == [r["layer"] for r in data["precisions"]["int8"]["sensitivity"][:8]], sens
    assert f"calibration: {data['calibration']['method']}" in res.stdout, res.stdout


# ------------------------------------------------------------------------------ verify, build, predict, bench
def test_verify_table(robust_digits, outdir, tmp_path):
    report = tmp_path / "verify.json"
    res = _ok(_run("verify", robust_digits, outdir, "--samples", 8, "--attention", "--report", report))
    data = json.loads(report.read_text())  # the --json document of this run
    row = rich_table(res.stdout, "output")[0]
    s = data["outputs"]["logits"]
    assert row[:5] == ["logits", f"{s['max_abs']:.2e}", f"{s['max_rel']:.2e}", f"{s['mean_abs']:.2e}",
                       f"{s['cosine_min']:.6f}"], (row, s)
    blocks = [r[0] for r in rich_table(res.stdout, "block")]
    assert blocks == [str(r["block"]) for r in data["attention"]["rows"]], (blocks, data["attention"]["rows"])
    assert f"PASSED: {len(data['checks'])}/{len(data['checks'])} checks" in res.stdout, res.stdout


@pytest.mark.skipif(HAS_TENSORRT and HAS_CUDA, reason="TensorRT is here: tests/export/test_tensorrt_build.py builds")
def test_build_without_tensorrt_is_a_clear_error(outdir, tmp_path):
    res = _run("build", outdir, "-o", tmp_path / "model.plan")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.stderr.startswith("edgevit: error:") and "pip install" in res.stderr, res.stderr
    data = json.loads(_run("build", outdir, "-o", tmp_path / "model.plan", "--json").stdout)
    assert data["ok"] is False and data["type"] == "MissingDependencyError", data
    assert not (tmp_path / "model.plan").exists()


def test_predict_table(outdir, inputs):
    args = ["predict", outdir / "model.onnx", *inputs, "--topk", 3, "--threads", 1]
    data = _json(*args)
    res = _ok(_run(*args))
    rows = rich_table(res.stdout, "input")
    assert [r[0] for r in rows] == [p["input"] for p in data["predictions"]], (rows, data["predictions"])
    for row, p in zip(rows, data["predictions"]):
        top = p["topk"]
        assert row[1:4] == [top[0]["label"], f"{top[0]['prob']:.4f}",
                            ", ".join(f"{t['label']}:{t['prob']:.3f}" for t in top)], (row, top)
    assert f"({data['backend']})" in res.stdout


def test_bench_table(outdir, tmp_path):
    res = _ok(_run("bench", outdir, "--iterations", 3, "--warmup-s", 0, "--samples", 32, "--device", "cpu",
                   "--report-dir", tmp_path))
    data = json.loads((tmp_path / "bench.json").read_text())  # the --json document of this run
    rows = {r[0]: r for r in rich_table(res.stdout, "row")}
    assert len(rows) == len(data["rows"]) >= 2, (rows, data["rows"])
    for r in data["rows"]:
        name = r["name"] + (" (ref)" if r.get("reference") else "")
        # row, status, MB, peak RSS MB, top-1, agree, ...
        assert rows[name][1:2] + rows[name][4:6] == [r["status"], f"{r['top1']:.4f}", f"{r['agreement']:.4f}"], (
            rows[name], r)
        assert rows[name][3].startswith(f"{r['host_peak_mb']:.0f} "), (rows[name], r["host_peak_mb"])
    assert "report: " + str(tmp_path / "bench.json") in res.stdout, res.stdout


# ------------------------------------------------------------------------------ the error table
def _pil_error(name: str) -> Exception:
    import PIL
    from PIL import Image

    return {"UnidentifiedImageError": PIL.UnidentifiedImageError("cannot identify image file 'x.png'"),
            "DecompressionBombError": Image.DecompressionBombError("Image size (400000000 pixels) exceeds limit")}[name]


@pytest.mark.parametrize("make, label", [
    (lambda: PermissionError(errno.EACCES, "Permission denied", "/data/out/model.onnx"), "permission denied"),
    (lambda: IsADirectoryError(errno.EISDIR, "Is a directory", "/data/out"), "is a directory"),
    (lambda: NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/file/out"), "not a directory"),
    (lambda: OSError(errno.ENOSPC, "No space left on device", "/data/out/model.onnx"), "system error"),
    (lambda: _pil_error("UnidentifiedImageError"), "not a readable image"),
    (lambda: _pil_error("DecompressionBombError"), "image too large"),
], ids=["permission", "is-a-directory", "not-a-directory", "disk-full", "unidentified-image", "decompression-bomb"])
def test_os_and_image_errors_are_one_line_exit_1(monkeypatch, make, label):
    def fail():
        raise make()

    monkeypatch.setattr("edgevit.models.list_variants", fail)
    res = _run("models")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert res.stderr.startswith(f"edgevit: {label}: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    data = json.loads(_run("models", "--json").stdout)
    assert data["ok"] is False and data["error"] == label and data["type"] == type(make()).__name__, data


def test_os_error_names_the_path_and_the_option(robust_digits, tmp_path, monkeypatch):
    target = tmp_path / "out" / "model.onnx"

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(target))

    from edgevit.export import pipeline

    monkeypatch.setattr(pipeline, "export_onnx", denied)  # the export step of `edgevit export`
    res = _run("export", robust_digits, "-o", tmp_path / "out")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert res.stderr.startswith(f"edgevit: permission denied: {target}: "), res.stderr
    assert "(from --output)" in res.stderr, res.stderr


def test_decompression_bomb_image_is_refused(outdir, tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    bomb = tmp_path / "bomb.png"  # a header claiming 20000 x 20000 pixels, above PIL's limit
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    res = _run("predict", outdir / "model.onnx", bomb)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert res.stderr.startswith("edgevit: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_importing_the_cli_does_not_import_pil():
    code = "import sys, edgevit.cli; assert 'PIL' not in sys.modules, 'PIL imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
