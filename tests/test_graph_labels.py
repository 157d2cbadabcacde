"""Issue 16 items 5 and 8: a graph opened through its manifest is checked against the entry: a
swapped precision label is refused (naming the file, the label and what the graph holds), and the
output kind comes from the graph's output rank where the manifest says otherwise."""

from __future__ import annotations

import json
import shutil

import pytest

from edgevit.manifest import Manifest
from tests._fixtures import assert_exit, digits_like_model, run_cli

FAST_BENCH = ["--iterations", "2", "--warmup-s", "0", "--samples", "32", "--device", "cpu", "--provider", "cpu",
              "--no-report"]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A digits-shaped export with its fp16 and int8 graphs (no gate: fast) and its checkpoint."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models.checkpoint import save_model
    from edgevit.precision import QuantizeConfig, quantize

    root = tmp_path_factory.mktemp("labels")
    ckpt = save_model(digits_like_model(0), root / "ckpt.safetensors")
    export_onnx(str(ckpt), root / "out", ExportConfig(batch=(1, 2, 8), verify=False, lint=False))
    quantize(root / "out", QuantizeConfig(precisions=("fp16", "int8"), calib_data="digits", gate=False,
                                          progress=False))
    return root / "out", ckpt


@pytest.fixture
def swapped(quantized, tmp_path):
    """A copy of the export whose manifest labels the fp16 graph int8 and the int8 graph fp16."""
    out = shutil.copytree(quantized[0], tmp_path / "out")
    path = out / "edgevit.json"
    data = json.loads(path.read_text())
    for art in data["artifacts"]:
        art["precision"] = {"fp16": "int8", "int8": "fp16"}.get(art["precision"], art["precision"])
    path.write_text(json.dumps(data))
    return out


def test_correct_labels_are_accepted(quantized):
    out, _ = quantized
    for precision, name in (("fp32", "model.onnx"), ("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx")):
        found = Manifest.resolve(out, precision, "onnx")
        assert found.entry.path == name and found.path.name == name, (precision, found.entry.path)


@pytest.mark.parametrize("precision, file, holds", [("int8", "model.fp16.onnx", "fp16"),
                                                    ("fp16", "model.int8.onnx", "int8")])
def test_verify_refuses_a_swapped_precision_label(swapped, quantized, precision, file, holds):
    res = run_cli("verify", quantized[1], swapped, "--precision", precision, "--data", "digits", "--samples", "16")
    assert_exit(res, 1)
    for words in (file, f"labels it {precision}", f"{holds} graph", "edgevit.json", "--precision"):
        assert words in res.stderr, (words, res.stderr)


def test_bench_fails_the_rows_of_swapped_labels(swapped):
    res = run_cli("bench", swapped, *FAST_BENCH, "--json")
    assert_exit(res, 1)
    rows = {r["artifact"].split("/")[-1]: r for r in json.loads(res.stdout)["rows"] if r["artifact"]}
    for file, label, holds in (("model.fp16.onnx", "int8", "fp16"), ("model.int8.onnx", "fp16", "int8")):
        row = rows[file]
        assert row["status"] == "failed" and f"labels it {label}" in row["reason"] \
            and f"{holds} graph" in row["reason"], (file, row["status"], row["reason"])
    assert rows["model.onnx"]["status"] == "ok", rows["model.onnx"]["reason"]


# ------------------------------------------------------------------------------ item 8: output kind
@pytest.fixture(scope="module")
def tokens_under_features(tmp_path_factory):
    """A headless model's features export whose model.onnx was replaced by its tokens graph."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models.checkpoint import save_model

    root = tmp_path_factory.mktemp("kinds")
    ckpt = save_model(digits_like_model(0, num_classes=0), root / "headless.safetensors")
    cfg = dict(batch=(1, 2, 8), verify=False, lint=False)
    export_onnx(str(ckpt), root / "features", ExportConfig(**cfg))
    export_onnx(str(ckpt), root / "tokens", ExportConfig(**cfg, output="tokens"))
    assert Manifest.load(root / "features").model.output == "features"
    shutil.copy(root / "tokens" / "model.onnx", root / "features" / "model.onnx")
    return root / "features", ckpt


def test_bench_takes_the_output_kind_from_the_graph(tokens_under_features):
    out, _ = tokens_under_features
    res = run_cli("bench", out, *FAST_BENCH, "--no-verify-hash", "--json")
    assert_exit(res, 0)
    data = json.loads(res.stdout)
    assert data["data"]["output"] == "tokens", data["data"]
    assert "says the model outputs features" in res.stderr and "taken as tokens" in res.stderr, res.stderr
    ort = next(r for r in data["rows"] if r["backend"] == "onnxruntime")
    assert ort["status"] == "ok" and ort["cosine_min"] >= 0.99999, (ort["cosine_min"], ort["reason"])


def test_verify_takes_the_output_kind_from_the_graph(tokens_under_features):
    out, ckpt = tokens_under_features
    res = run_cli("verify", ckpt, out, "--no-verify-hash", "--samples", "8", "--json")
    assert_exit(res, 0)
    data = json.loads(res.stdout)
    assert data["output"] == "tokens" and data["ok"] is True, (data["output"], data["failures"])
    assert "taken as tokens" in res.stderr, res.stderr
