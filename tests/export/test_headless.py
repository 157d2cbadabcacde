"""Headless models (num_classes=0) through the whole pipeline: the ``features`` export and the
``--output-kind tokens`` export, the manifest's record of which, the accuracy gate without labels
(cosine and k-NN agreement), verify and bench on feature graphs, ``Engine.embed`` and
``edgevit embed``, and ``predict`` refusing a model that has no classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.data.preprocess import preprocess_array
from edgevit.errors import OutputKindError
from edgevit.export.onnx import ExportConfig, export_onnx
from edgevit.precision.gate import GateData, gate_metrics, judge
from edgevit.manifest import Manifest
from edgevit.metrics import neighbour_agreement
from edgevit.models.checkpoint import save_model
from edgevit.runtime import Engine
from edgevit.tolerances import Verdict, get_tolerance
from tests._fixtures import digits_like_model, export_digits_like, rich_table

BATCH = (2, 4, 8)  # a min batch of 2: embedding 9 images pads the last chunk


def headless_model(seed: int = 0):
    """A digits-shaped (1x8x8) headless backbone, DINOv2-reg-like: mean pooling, 4 register tokens
    outside the position table, LayerScale; seeded trained-like weights (no training)."""
    model = digits_like_model(seed, num_classes=0, pool="mean", reg_tokens=4, no_embed_class=True, init_values=0.5)
    model.labels = None
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_model(headless_model(), tmp_path_factory.mktemp("headless") / "headless.safetensors")


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory, checkpoint):
    """The checkpoint exported (features) and quantized to int8 through the CLI, gated on the digits."""
    out = tmp_path_factory.mktemp("features")
    res = run("export", checkpoint, "-o", out, "--batch", ",".join(map(str, BATCH)), "--json")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def raw_digits():
    from edgevit.data.sources import _digits_raw

    return _digits_raw()[0][:9]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ------------------------------------------------------------------------------ the metric
def test_neighbour_agreement_counts_lost_neighbours_not_swapped_ranks():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((40, 16))
    assert neighbour_agreement(ref, ref) == (1.0, 5)
    assert neighbour_agreement(ref, 3.0 * ref)[0] == 1.0, "cosine: the scale of the features does not matter"
    # a candidate whose features are another sample's: the neighbourhoods are unrelated
    shuffled, k = neighbour_agreement(ref, ref[rng.permutation(40)])
    assert k == 5 and shuffled < 0.5, shuffled
    # two neighbours tied in the reference that swap ranks: nothing is lost
    tied = np.array([[1.0, 0.0], [0.9, 0.1], [0.9, -0.1], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    nudged = tied + np.array([[0, 0], [0, -1e-3], [0, 1e-3], [0, 0], [0, 0], [0, 0]])
    assert neighbour_agreement(tied, nudged, k=1) == (1.0, 1)
    assert neighbour_agreement(ref[:1], ref[:1]) == (1.0, 0), "one sample has no neighbours"


def test_feature_gate_fails_when_features_move():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 32)).astype(np.float32)
    data = GateData(np.zeros((64, 1, 8, 8), np.float32), None, "test", ref, "features")
    close = judge(gate_metrics(ref + 0.01 * rng.standard_normal(ref.shape).astype(np.float32), data), "int8", 1.0)
    assert close.verdict is Verdict.PASSED and close.agreement == 1.0, close
    moved = judge(gate_metrics(ref + rng.standard_normal(ref.shape).astype(np.float32), data), "int8", 1.0)
    tol = get_tolerance("int8", "features")
    assert moved.verdict is Verdict.FAILED, moved
    assert moved.comparison.cosine_min < tol.min_cosine and moved.agreement < tol.min_agreement, moved
    assert any("cosine_min" in r for r in moved.reasons) and any("knn5_agreement" in r for r in moved.reasons)
    assert moved.to_dict()["agreement_metric"] == "k-NN@5", moved.to_dict()


# ------------------------------------------------------------------------------ export
def test_features_export_records_output_and_matches_pytorch(features_dir):
    model = headless_model()
    manifest = Manifest.load(features_dir)
    assert manifest.output_kind == "features" and manifest.model.output == "features"
    assert manifest.outputs[0].name == "features"
    assert manifest.outputs[0].shape == ("batch", model.config.feature_dim), manifest.outputs
    ver = manifest.export["verification"]
    assert ver["passed"] and ver["output"] == "features" and ver["max_abs"] <= 1e-4, ver
    assert all(c["knn_agreement"] == 1.0 for c in ver["checks"] if c["knn_k"]), ver["checks"]
    assert manifest.export["node_names"]["renamed"] > 0, "the quantization recipes select nodes by these names"


def test_engine_embed_matches_pytorch_features(features_dir, raw_digits):
    model = headless_model()
    with torch.no_grad():
        want = model(torch.from_numpy(preprocess_array(raw_digits, model.preprocessing))).numpy()
    with Engine.load(features_dir / "model.onnx") as engine:
        assert engine.output_kind == "features"
        got = engine.embed(raw_digits)  # 9 raw images: chunks of 8 and 1 padded to the min batch 2
    assert got.shape == want.shape == (9, model.config.feature_dim) and got.dtype == np.float32
    err = float(np.abs(got - want).max())
    assert err <= 1e-4, f"Engine.embed vs PyTorch features: max abs {err:.3e} > 1e-4"


def test_tokens_export_matches_forward_tokens(tmp_path, checkpoint, raw_digits):
    model = headless_model()
    result = export_onnx(model, tmp_path / "lib", ExportConfig(batch=BATCH, output="tokens", lint=False))
    c = model.config
    assert result.manifest.output_kind == "tokens"
    assert result.manifest.outputs[0].name == "tokens"
    # the register tokens are dropped: patches only
    assert result.manifest.outputs[0].shape == ("batch", c.num_patches, c.embed_dim)
    assert c.num_tokens == c.num_patches + 1 + 4  # class token + registers in the sequence, not in the output
    x = preprocess_array(raw_digits, model.preprocessing)
    with torch.no_grad():
        want = model.forward_tokens(torch.from_numpy(x)).numpy()
    with Engine.load(result.onnx_path) as engine:
        got = engine.embed(x, preprocessed=True)
    err = float(np.abs(got - want).max())
    assert got.shape == want.shape and err <= 1e-4, f"tokens export vs forward_tokens: max abs {err:.3e} > 1e-4"

    res = run("export", checkpoint, "-o", tmp_path / "cli", "--output-kind", "tokens", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["output"] == "tokens" and data["outputs"][0]["shape"] == ["batch", c.num_patches, c.embed_dim], data
    assert data["verification"]["output"] == "tokens" and data["verification"]["max_abs"] <= 1e-4, data["verification"]
    assert Manifest.load(tmp_path / "cli").outputs[0].sample_shape == (c.num_patches, c.embed_dim)


def test_output_kind_option_refuses_what_the_model_does_not_output(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="headless"):
        export_onnx(headless_model(), tmp_path / "a", ExportConfig(output="logits", verify=False, lint=False))
    res = run("export", checkpoint, "-o", tmp_path / "b", "--output-kind", "logits")
    assert res.exit_code == 2 and "--output-kind features" in res.output, res.output
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------ quantize, verify, bench
def test_int8_gate_verify_and_bench_on_features(features_dir, checkpoint):
    res = run("quantize", features_dir, "--precision", "int8")
    assert res.exit_code == 0, res.output
    rows = {r[0]: r for r in rich_table(res.output, "precision")}
    assert rows["int8"][-1] == "passed", res.output
    assert "k-NN@5 agree" in res.output and "features have no labels" in res.output, res.output

    res = run("quantize", features_dir, "--precision", "int8", "--force", "--json")
    assert res.exit_code == 0, res.output
    gate = json.loads(res.stdout)["quantize"]["precisions"]["int8"]["gate"]
    tol = get_tolerance("int8", "features")
    assert gate["verdict"] == "passed" and gate["output"] == "features", gate
    assert gate["cosine_min"] >= tol.min_cosine and gate["agreement"] >= tol.min_agreement, gate
    assert "top1" not in gate and gate["agreement_metric"] == "k-NN@5", gate
    assert Manifest.load(features_dir).artifact(precision="int8").extra["gate"]["verdict"] == "passed"

    res = run("verify", checkpoint, features_dir, "--precision", "int8", "--data", "digits")
    assert res.exit_code == 0, res.output
    assert rich_table(res.output, "output")[0][0] == "features", res.output
    assert "k-NN@5 agree" in res.output and "no labels" in res.output, res.output
    res = run("verify", checkpoint, features_dir, "--precision", "int8", "--data", "digits", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    stats = report["outputs"]["features"]
    assert report["output"] == "features" and "top1_agreement" not in stats and stats["knn_k"] == 5, stats
    assert any(c["name"] == "features.knn5_agreement" and c["passed"] for c in report["checks"]), report["checks"]
    # the check can fail: demand more than int8 keeps
    res = run("verify", checkpoint, features_dir, "--precision", "int8", "--min-cosine", "0.999999")
    assert res.exit_code == 1 and "features.cosine_min" in res.output, res.output

    bench = ["bench", features_dir, "--iterations", "2", "--warmup-s", "0", "--samples", "32", "--no-report"]
    res = run(*bench)
    assert res.exit_code == 0, res.output
    table = {r[0]: r for r in rich_table(res.output, "row")}
    assert "k-NN@5 agree" in res.output and "top-1" not in res.output, res.output
    assert "features have no labels" in res.output, res.output
    res = run(*bench, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["data"]["output"] == "features" and not data["data"]["labelled"], data["data"]
    by_name = {r["name"]: r for r in data["rows"]}
    int8 = by_name["ort cpu int8 model.int8.onnx"]
    assert int8["status"] == "ok" and int8["top1"] is None and int8["within_tolerance"] is True, int8
    exact = int8["exact_qdq"]  # as the graph defines it: the plain columns are this CPU's int8 kernels
    assert exact["agreement"] >= tol.min_agreement and exact["cosine_min"] >= tol.min_cosine, int8
    assert by_name["torch cpu fp32"]["reference"] and by_name["torch cpu fp32"]["status"] == "ok"
    assert len(table) == len(data["rows"])


def test_gate_on_random_unlabelled_data(tmp_path):
    """A headless model of another shape, gated on random images: no labels are needed."""
    model = digits_like_model(0, num_classes=0, img_size=16, patch_size=4, in_chans=3, pool="mean")
    from edgevit.data.preprocess import Preprocessing

    model.preprocessing = Preprocessing(input_size=(3, 16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)
    model.labels = None
    export_onnx(model, tmp_path / "out", ExportConfig(batch=BATCH, lint=False))
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.standard_normal((128, 3, 16, 16), dtype=np.float32))
    np.save(tmp_path / "gate.npy", rng.standard_normal((300, 3, 16, 16), dtype=np.float32))
    res = run("quantize", tmp_path / "out", "--precision", "int8", "--calib-data", tmp_path / "calib.npy",
              "--calib-samples", "128", "--data", tmp_path / "gate.npy", "--preprocessed", "--json")
    assert res.exit_code == 0, res.output
    gate = json.loads(res.stdout)["quantize"]["precisions"]["int8"]["gate"]
    assert gate["verdict"] == "passed" and "no labels used" in gate["data"], gate


# ------------------------------------------------------------------------------ predict / embed
def test_predict_on_a_feature_model_points_to_embed(features_dir, raw_digits, tmp_path):
    with Engine.load(features_dir / "model.onnx") as engine:
        with pytest.raises(OutputKindError, match="Engine.embed"):
            engine.predict(raw_digits)
    np.save(tmp_path / "x.npy", raw_digits[:2])
    res = run("predict", features_dir / "model.onnx", tmp_path / "x.npy")
    assert res.exit_code == 1 and "edgevit embed" in res.output and "Traceback" not in res.output, res.output
    res = run("predict", features_dir / "model.onnx", tmp_path / "x.npy", "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["ok"] is False, res.output


def test_embed_command(features_dir, raw_digits, tmp_path):
    np.save(tmp_path / "x.npy", raw_digits[:3])
    onnx = features_dir / "model.onnx"
    res = run("embed", onnx, tmp_path / "x.npy", "-o", tmp_path / "emb.npy")
    assert res.exit_code == 0, res.output
    rows = rich_table(res.output, "input")
    assert [r[0] for r in rows] == [f"{tmp_path / 'x.npy'}[{i}]" for i in range(3)], rows
    saved = np.load(tmp_path / "emb.npy")
    with Engine.load(onnx) as engine:
        want = engine.embed(raw_digits[:3])
    assert saved.shape == (3, headless_model().config.feature_dim) and np.array_equal(saved, want)
    assert [float(r[2]) for r in rows] == pytest.approx(np.linalg.norm(want, axis=1), abs=1e-4)

    res = run("embed", onnx, tmp_path / "x.npy", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["output"] == "features" and data["shape"] == list(want.shape) and data["file"] is None, data
    res = run("embed", onnx, tmp_path / "x.npy", "-o", tmp_path / "emb.npy")
    assert res.exit_code == 1 and "--force" in res.output, res.output
    res = run("embed", onnx, tmp_path / "x.npy", "-o", tmp_path / "emb.txt")
    assert res.exit_code == 2 and ".npy" in res.output and not (tmp_path / "emb.txt").exists(), res.output


def test_embed_on_a_classifier_refuses(tmp_path, raw_digits):
    export_digits_like(tmp_path / "cls")
    np.save(tmp_path / "x.npy", raw_digits[:2])
    res = run("embed", tmp_path / "cls" / "model.onnx", tmp_path / "x.npy")
    assert res.exit_code == 1 and "class logits" in res.output and "edgevit predict" in res.output, res.output
