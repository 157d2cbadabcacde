"""Precision graphs and the accuracy gate on a digits-shaped model whose verdicts are
decided by construction (tests/_fixtures.quantization_robust_model), not by a training run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import onnx
import pytest
import torch
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.export.onnx import ExportConfig, export_onnx
from edgevit.formats import onnx_file
from edgevit.manifest import Manifest
from edgevit.precision import (PrecisionRecipe, QuantizeConfig, build_precision_graph, qdq_summary, quantizable_nodes,
                               quantize)
from edgevit.precision.calibration import calibrate, load_calibration_data
from edgevit.metrics import Comparison
from edgevit.precision.gate import judge
from edgevit.tolerances import Verdict
from edgevit.runtime import get_runner
from tests._fixtures import GATE_MARGIN, decided_gate_data, quantization_robust_model


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
    return onnx.load(str(out / onnx_file(precision)))


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


def test_quantize_attention_patch_embed_and_exclude_change_placement(exported, preprocessing):
    fp32 = exported / "model.onnx"
    proto = onnx.load(str(fp32))
    base = quantizable_nodes(proto, PrecisionRecipe("int8"))
    more = quantizable_nodes(proto, PrecisionRecipe("int8", quantize_attention=True, quantize_patch_embed=True))
    fewer = quantizable_nodes(proto, PrecisionRecipe("int8", exclude=("blocks.3.*", "*.fc2")))
    assert set(more) - set(base) == {f"blocks.{b}.attn.matmul_{k}" for b in range(4) for k in ("qk", "av")} | {
        "patch_embed.proj"}, f"extra nodes {sorted(set(more) - set(base))}"
    assert not [n for n in fewer if n.startswith("blocks.3.") or n.endswith(".fc2")], fewer
    assert len(fewer) == 16 - 4 - 3, f"{len(fewer)} nodes after excluding block 3 and every fc2"
    amax = calibrate(fp32, load_calibration_data("digits", preprocessing, (1, 8, 8), num_samples=256),
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
    gate = result.entries["bf16"]["gate"]
    assert gate.comparison.max_abs < 0.5 and gate.agreement >= 0.99, gate
    with get_runner("onnxruntime", out / "model.bf16.onnx") as r:
        if not r.emulated:  # depends on the installed ONNX Runtime's CPU kernels, not on edgevit
            pytest.skip("this ONNX Runtime runs the bf16 graph natively on CPU: nothing to emulate")
        assert "bf16" in r.emulated, r.emulated


# ------------------------------------------------------------------------------ gate
def test_gate_passes_every_precision_and_manifest_records_it(all_precisions):
    out, result = all_precisions
    assert result.ok, {p: e["gate"].to_dict() for p, e in result.entries.items()}
    m = Manifest.load(out)
    for p in ("fp16", "bf16", "int8", "fp8"):
        art = m.artifact(precision=p, format="onnx")
        assert art.extra["gate"]["verdict"] == "passed", (p, art.extra["gate"])
        assert art.extra["verdict"]["verified"] is True, art.extra["verdict"]
        assert art.extra["recipe"]["precision"] == p
        assert art.extra["gate"]["drop_points"] <= 1.0, (p, art.extra["gate"])
    assert m.artifact(precision="int8").extra["calibration"]["method"] == "percentile"
    assert m.verify_checksums() == [], m.verify_checksums()


def test_gate_fails_on_an_impossible_budget():
    metrics = Comparison(accuracy_candidate=0.95, accuracy_reference=0.96, top1_agreement=0.99, max_abs=0.1,
                         cosine_min=0.999)
    assert judge(metrics, "int8", max_drop=1.0).verdict is Verdict.PASSED
    failed = judge(metrics, "int8", max_drop=0.5)
    assert failed.verdict is Verdict.FAILED and failed.drop_points == 1.0, failed
    assert failed.reasons == ("top1_drop_points: 1 (must be <= 0.5) FAILED; the max_drop budget",), failed.reasons
    low = judge(replace(metrics, accuracy_candidate=0.96, top1_agreement=0.5), "fp16", max_drop=1.0)
    assert low.verdict is Verdict.FAILED and low.reasons[0].startswith("top1_agreement: 0.5 (must be >= 0.95)"), low
    assert low.to_dict()["verdict"] == "failed" and low.to_dict()["reasons"] == list(low.reasons)


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
    assert gate.verdict is Verdict.FAILED and gate.agreement < 0.5, f"the crafted layer should break int8: {gate}"
    assert Manifest.load(out).artifact(precision="int8").extra["verdict"]["gate"] == "failed"
    fixed = quantize(out, replace(cfg, auto_exclude=True), force=True)
    entry = fixed.entries["int8"]
    assert entry["sensitivity"][0]["layer"] == "blocks.1.mlp.fc1", entry["sensitivity"][:3]
    assert [r["drop_points"] for r in entry["sensitivity"][1:]] == [0.0] * 7, entry["sensitivity"]
    # ... and without it the rest moves them by less than half of it (a top-1 flip on decided data needs more
    # than half the margin). The gate runs the graph's exact Q/DQ arithmetic, so no CPU's int8 kernels enter.
    assert entry["gate"].comparison.max_abs < GATE_MARGIN / 2, (entry["gate"].comparison.max_abs, GATE_MARGIN)
    assert "disable_quant_qdq" in entry["gate"].arithmetic, entry["gate"]
    assert entry["gate"].verdict is Verdict.PASSED and entry["gate"].agreement == 1.0, entry["gate"]
    assert entry["auto_excluded"] == ["blocks.1.mlp.fc1"], entry["auto_excluded"]
    assert "blocks.1.mlp.fc1" in entry["recipe"]["exclude"]


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
