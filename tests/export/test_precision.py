"""Precision graphs, calibration and the accuracy gate on a digits-shaped model whose verdicts are
decided by construction (tests/_fixtures.quantization_robust_model), not by a training run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from edgevit.calibration import CalibrationConfig, calibrate, load_calibration_data
from edgevit.calibration.calibrate import _mse_amax
from edgevit.cli import main
from edgevit.data import Preprocessing
from edgevit.errors import DataError
from edgevit.export.onnx import ExportConfig, export_onnx
from edgevit.export.precision import PrecisionRecipe, build_precision_graph, qdq_summary, quantizable_nodes
from edgevit.export.quantize import QuantizeConfig, judge, quantize
from edgevit.manifest import Manifest
from edgevit.runtime import get_runner
from tests._fixtures import GATE_MARGIN, decided_gate_data, quantization_robust_model


@pytest.fixture(scope="module")
def exported(robust_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "out"
    export_onnx(robust_digits, out, ExportConfig(batch=(1, 8, 64), lint=False))
    return out


@pytest.fixture(scope="module")
def gate_data(tmp_path_factory):
    """The gate's labelled data for robust_digits: every precision keeps every label by construction."""
    return decided_gate_data(quantization_robust_model(), tmp_path_factory.mktemp("gate") / "gate.npz", GATE_MARGIN)


@pytest.fixture(scope="module")
def all_precisions(exported, gate_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("all") / "out"
    shutil.copytree(exported, out)
    result = quantize(out, QuantizeConfig(precisions=("fp16", "bf16", "int8", "fp8"), data=str(gate_data),
                                          progress=False))
    return out, result


def _load(out, precision):
    name = "model.onnx" if precision == "fp32" else f"model.{precision}.onnx"
    return onnx.load(str(out / name))


# ------------------------------------------------------------------------------ structure
@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_qdq_structure_follows_the_vit_recipe(all_precisions, precision):
    out, _ = all_precisions
    proto = _load(out, precision)
    s = qdq_summary(proto)
    assert s["nonzero_zero_points"] == [], f"non-zero zero points in {s['nonzero_zero_points']}"
    assert s["dq_feeds"] == ["MatMul"], f"DequantizeLinear feeds {s['dq_feeds']}; only the Linear MatMuls may take Q/DQ"
    linears = sorted(k for k in s["weight_axes"])
    assert len(linears) == 4 * 4, f"{len(linears)} quantized Linears, expected 16 (4 blocks x qkv/proj/fc1/fc2)"
    assert "head" not in s["weight_axes"], "the classifier head must stay in higher precision by default"
    want = 1 if precision == "int8" else None  # int8 per output channel (MatMul weight (in, out)), fp8 per tensor
    axes = {k: v for k, v in s["weight_axes"].items() if v != want}
    assert not axes, f"{precision} weight scale axes {axes}, expected {want}"
    zp_types = {t.data_type for t in proto.graph.initializer if t.name.endswith("zero_point")}
    expect = onnx.TensorProto.INT8 if precision == "int8" else onnx.TensorProto.FLOAT8E4M3FN
    assert zp_types == {expect}, f"zero point types {zp_types}, expected {{{expect}}}"


def test_quantize_attention_patch_embed_and_exclude_change_placement(exported):
    fp32 = exported / "model.onnx"
    proto = onnx.load(str(fp32))
    base = quantizable_nodes(proto, PrecisionRecipe("int8"))
    more = quantizable_nodes(proto, PrecisionRecipe("int8", quantize_attention=True, quantize_patch_embed=True))
    fewer = quantizable_nodes(proto, PrecisionRecipe("int8", exclude=("blocks.3.*", "*.fc2")))
    assert set(more) - set(base) == {f"blocks.{b}.attn.matmul_{k}" for b in range(4) for k in ("qk", "av")} | {
        "patch_embed.proj"}, f"extra nodes {sorted(set(more) - set(base))}"
    assert not [n for n in fewer if n.startswith("blocks.3.") or n.endswith(".fc2")], fewer
    assert len(fewer) == 16 - 4 - 3, f"{len(fewer)} nodes after excluding block 3 and every fc2"
    amax = calibrate(fp32, load_calibration_data("digits", _pre(exported), (1, 8, 8), num_samples=256),
                     progress=False).amax
    g = build_precision_graph(fp32, PrecisionRecipe("int8", base="fp32", quantize_attention=True,
                                                   quantize_patch_embed=True), amax)
    consumers = {}
    for n in g.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    dq_users = {u.name for n in g.graph.node if n.op_type == "DequantizeLinear" for u in consumers.get(n.output[0], [])}
    for b in range(4):
        for k in ("qk", "av"):  # both activation inputs of both attention MatMuls come from a DQ
            node = next(n for n in g.graph.node if n.name == f"blocks.{b}.attn.matmul_{k}")
            producers = {p.output[0]: p.op_type for p in g.graph.node}
            kinds = [producers.get(i) for i in node.input]
            assert kinds == ["DequantizeLinear", "DequantizeLinear"], f"{node.name} inputs come from {kinds}"
    assert "patch_embed.proj" in dq_users
    assert not {u for u in dq_users if "norm" in u or "softmax" in u}, dq_users


def test_fp16_graph_keeps_layernorm_and_softmax_in_fp32(all_precisions):
    out, _ = all_precisions
    proto = onnx.shape_inference.infer_shapes(_load(out, "fp16"))
    types = {v.name: v.type.tensor_type.elem_type for v in list(proto.graph.value_info) + list(proto.graph.input)}
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            got = types.get(node.input[0], inits.get(node.input[0]))
            assert got == onnx.TensorProto.FLOAT, f"{node.name} runs on type {got}, expected fp32 (1)"
    mm = [n for n in proto.graph.node if n.name == "blocks.0.attn.qkv"][0]
    assert types.get(mm.input[0]) == onnx.TensorProto.FLOAT16, "the Linear MatMuls must run in fp16"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT, "I/O stays fp32 by default"


def test_bf16_graph_is_typed_bf16_and_runs_emulated_on_cpu(all_precisions):
    out, result = all_precisions
    proto = _load(out, "bf16")
    assert any(t.data_type == onnx.TensorProto.BFLOAT16 for t in proto.graph.initializer), "no bf16 weights"
    with get_runner("onnxruntime", out / "model.bf16.onnx") as r:
        assert r.emulated, "the CPU runner should emulate the bf16 graph"
    gate = result.entries["bf16"]["gate"]
    assert gate["max_abs"] < 0.5 and gate["agreement"] >= 0.99, gate


# ------------------------------------------------------------------------------ gate
def test_gate_passes_every_precision_and_manifest_records_it(all_precisions):
    out, result = all_precisions
    assert result.ok, {p: e["gate"] for p, e in result.entries.items()}
    m = Manifest.load(out)
    for p in ("fp16", "bf16", "int8", "fp8"):
        art = m.artifact(precision=p, format="onnx")
        assert art["gate"]["verdict"] == "passed", (p, art["gate"])
        assert art["verdict"]["verified"] is True, art["verdict"]
        assert art["recipe"]["precision"] == p
        assert art["gate"]["drop_points"] <= 1.0, (p, art["gate"])
    assert m.artifact(precision="int8")["calibration"]["method"] == "percentile"
    assert m.verify_checksums() == [], m.verify_checksums()


def test_gate_fails_on_an_impossible_budget():
    metrics = {"top1": 0.95, "fp32_top1": 0.96, "drop_points": 1.0, "agreement": 0.99, "max_abs": 0.1,
               "min_cosine": 0.999}
    assert judge(metrics, "int8", max_drop=1.0)["verdict"] == "passed"
    failed = judge(metrics, "int8", max_drop=0.5)
    assert failed["verdict"] == "failed" and "budget 0.5" in failed["reasons"][0], failed
    low = judge({**metrics, "drop_points": 0.0, "agreement": 0.5}, "fp16", max_drop=1.0)
    assert low["verdict"] == "failed" and "agreement" in low["reasons"][0], low


def _crafted_sensitive_model(factor: float = 1000.0):
    """A model whose only int8-sensitive layer is ``blocks.1.mlp.fc1``, by construction: every other
    residual branch is a quantization-robust 2% one (quantization_robust_model), block 1's MLP keeps
    its full weight on the output, and fc1's input is made impossible to quantize per tensor by a
    function-preserving outlier: norm2's channel 3 scaled up ``factor``x, fc1's matching weight
    column scaled down. Quantized, fc1 sees all other channels round to zero and the MLP's output
    turns to noise; kept in fp32, only the small rounding of the others remains."""
    model = quantization_robust_model(depth=2, full=("blocks.1.mlp",))
    with torch.no_grad():
        blk = model.blocks[1]
        blk.norm2.weight[3] *= factor
        blk.norm2.bias[3] *= factor
        blk.mlp.fc1.weight[:, 3] /= factor
    return model


def test_auto_exclude_recovers_a_crafted_sensitive_layer(tmp_path):
    from edgevit.models.checkpoint import save_model

    model = _crafted_sensitive_model()
    gate_npz = decided_gate_data(model, tmp_path / "gate.npz", GATE_MARGIN)
    out = tmp_path / "out"
    export_onnx(save_model(model, tmp_path / "sensitive.safetensors"), out, ExportConfig(batch=(1, 8, 64), lint=False))
    cfg = QuantizeConfig(precisions=("int8",), int8_base="fp32", max_drop=0.5, data=str(gate_npz), progress=False)
    plain = quantize(out, cfg)
    gate = plain.entries["int8"]["gate"]
    # decided: the crafted layer moves the logits by far more than the data's margin ...
    assert gate["verdict"] == "failed" and gate["agreement"] < 0.5, f"the crafted layer should break int8: {gate}"
    assert Manifest.load(out).artifact(precision="int8")["verdict"]["gate"] == "failed"
    fixed = quantize(out, replace(cfg, auto_exclude=True), force=True)
    entry = fixed.entries["int8"]
    assert entry["sensitivity"][0]["layer"] == "blocks.1.mlp.fc1", entry["sensitivity"][:3]
    assert [r["drop_points"] for r in entry["sensitivity"][1:]] == [0.0] * 7, entry["sensitivity"]
    # ... and without it the rest moves them by far less than half of it, whatever the CPU rounds
    assert entry["gate"]["max_abs"] < GATE_MARGIN / 4, (entry["gate"]["max_abs"], GATE_MARGIN)
    assert entry["gate"]["verdict"] == "passed" and entry["gate"]["agreement"] == 1.0, entry["gate"]
    assert entry["auto_excluded"] == ["blocks.1.mlp.fc1"], entry["auto_excluded"]
    assert "blocks.1.mlp.fc1" in entry["recipe"]["exclude"]


# ------------------------------------------------------------------------------ calibration
def _pre(out) -> Preprocessing:
    return Preprocessing(**Manifest.load(out).preprocessing)


def test_calibration_cache_reused_and_invalidated(exported, tmp_path):
    fp32 = exported / "model.onnx"
    cache = tmp_path / "calib.json"
    data = load_calibration_data("digits", _pre(exported), (1, 8, 8), num_samples=128)
    first = calibrate(fp32, data, CalibrationConfig("minmax"), cache=cache, progress=False)
    assert not first.cache_hit and cache.exists()
    again = calibrate(fp32, None, CalibrationConfig("minmax"), cache=cache, progress=False)
    assert again.cache_hit and again.amax == first.amax
    other = calibrate(fp32, data, CalibrationConfig("percentile", 99.9), cache=cache, progress=False)
    assert not other.cache_hit, "a method change must invalidate the cache"
    assert json.loads(cache.read_text())["method"] == "percentile"
    assert all(other.amax[k] <= first.amax[k] + 1e-6 for k in first.amax), "percentile ranges exceed minmax ones"
    changed = tmp_path / "changed.onnx"
    proto = onnx.load(str(fp32))
    proto.doc_string = "another graph"
    onnx.save(proto, str(changed))
    with pytest.raises(DataError, match="no valid calibration cache"):
        calibrate(changed, None, CalibrationConfig("percentile", 99.9), cache=cache, progress=False)
    mse = calibrate(fp32, data, CalibrationConfig("mse"), progress=False)
    ent = calibrate(fp32, data, CalibrationConfig("entropy"), progress=False)
    for name, calib in (("mse", mse), ("entropy", ent)):
        bad = {k: (v, first.amax[k]) for k, v in calib.amax.items() if not 0 < v <= first.amax[k] * 1.01}
        assert not bad, f"{name} amax outside (0, minmax amax]: {list(bad.items())[:3]}"


def test_mse_threshold_clips_rare_outliers():
    edges = np.linspace(0, 100, 1001)
    hist = np.zeros(1000)
    hist[:10] = 1e6             # bulk of values in [0, 1]
    hist[-1] = 1.0              # one outlier near 100: clipping it costs ~1e4, spreading 127 levels to 100
    amax = _mse_amax(hist, edges)  # would cost 1e7 * (100/127)^2 / 12 ~ 5e5 in rounding noise
    centers = (edges[:-1] + edges[1:]) / 2
    brute = min(np.linspace(0.1, 100, 2000), key=lambda t: float(
        (hist * np.where(centers > t, (centers - t) ** 2, (t / 127) ** 2 / 12)).sum()))
    assert 0.5 < amax < 50 and abs(amax - brute) <= 0.2, f"mse amax {amax}, brute-force optimum {brute:.2f}"
    flat = _mse_amax(np.ones(1000), edges)
    assert flat > 90, f"a uniform histogram should keep (almost) the whole range, got {flat}"


@pytest.mark.parametrize("case", ["empty_dir", "wrong_shape", "nan", "too_few"])
def test_bad_calibration_data_is_refused_without_a_cache(exported, tmp_path, case):
    if case == "empty_dir":
        spec = tmp_path / "empty"
        spec.mkdir()
    else:
        arr = {"wrong_shape": np.zeros((64, 3, 8, 8), np.float32), "nan": np.full((64, 1, 8, 8), np.nan, np.float32),
               "too_few": np.zeros((5, 1, 8, 8), np.float32)}[case]
        spec = tmp_path / "calib.npy"
        np.save(spec, arr)
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    with pytest.raises(DataError) as err:
        quantize(out, QuantizeConfig(precisions=("int8",), calib_data=str(spec), gate=False, progress=False))
    assert str(spec) in str(err.value) or spec.name in str(err.value), str(err.value)
    assert not (out / "calibration.json").exists(), "a failed calibration must not leave a cache"
    assert not (out / "model.int8.onnx").exists()


# ------------------------------------------------------------------------------ CLI
def test_cli_quantize_json_and_exit_codes(exported, gate_data, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    runner = CliRunner()
    res = runner.invoke(main, ["quantize", str(out), "--precision", "int8", "--sensitivity", "--data", str(gate_data),
                               "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["ok"] and data["quantize"]["precisions"]["int8"]["gate"]["verdict"] == "passed", res.output
    assert len(data["quantize"]["precisions"]["int8"]["sensitivity"]) == 16
    again = runner.invoke(main, ["quantize", str(out), "--precision", "int8"])
    assert again.exit_code == 1 and "--force" in again.output, again.output
    bad = runner.invoke(main, ["quantize", str(out), "--precision", "int4"])
    assert bad.exit_code == 2, bad.output
