"""verify --attention: the per-block attention check on ONNX graphs and on PyTorch SDPA backends."""

import numpy as np
import onnx
import pytest

from edgevit.errors import VerificationError
from edgevit.runtime.onnx_debug import find_attention_sites, mark_outputs
from edgevit.verify import TOLERANCES, verify

FAST = dict(samples=24, batch_size=16)


@pytest.mark.parametrize("form", ["decomposed", "fused"])
def test_attention_table_on_both_onnx_forms(ckpt, outdirs, model, form):
    report = verify(ckpt, outdirs[form], attention=True, **FAST)
    att = report.attention
    assert report.ok, report.failures
    assert att["block_input_source"] == "candidate", att["sites"]
    assert [r["block"] for r in att["rows"]] == list(range(model.config.depth))
    assert att["form"] == [form]
    for r in att["rows"]:
        assert r["passed"] and r["max_abs"] < 1e-4 and r["cosine_min"] > 0.99999, r


def test_attention_localizes_the_broken_block(ckpt, broken_onnx):
    report = verify(ckpt, str(broken_onnx), attention=True, **FAST)
    rows = {r["block"]: r for r in report.attention["rows"]}
    assert rows[0]["passed"], rows[0]
    assert not rows[1]["passed"], f"block 1 (perturbed qkv) passed: max abs {rows[1]['max_abs']:.3e}"
    assert any(f.startswith("attention.block1.") for f in report.failures), report.failures
    assert not any(f.startswith("attention.block0.") for f in report.failures), report.failures


def test_attention_sites_found_structurally_and_marked_on_a_copy(outdirs, model):
    proto = onnx.load(str(outdirs["decomposed"] / "model.onnx"))
    n_outputs = len(proto.graph.output)
    sites = find_attention_sites(proto)
    assert len(sites) == model.config.depth and all(s.block_input and s.layout == "BNC" for s in sites), sites
    debug = mark_outputs(proto, [s.attn_output for s in sites])
    assert len(proto.graph.output) == n_outputs, "the original graph must not be modified"
    assert len(debug.graph.output) == n_outputs + len(sites)
    # renamed graph (as after slimming): structure, not names, finds the same sites
    for node in proto.graph.node:
        node.name = ""
    assert len(find_attention_sites(proto)) == len(sites)


def test_torch_sdpa_backends_on_cpu(ckpt, model):
    report = verify(ckpt, None, attention=True, dtypes=("fp32", "bf16"), **FAST)
    att = report.attention
    assert report.ok, report.failures
    ran = {(r["dtype"], r["backend"]) for r in att["rows"] if r["status"] != "skipped"}
    skipped = {(r["dtype"], r["backend"]): r["reason"] for r in att["rows"] if r["status"] == "skipped"}
    assert {("fp32", "math"), ("fp32", "flash"), ("fp32", "naive"), ("bf16", "math")} <= ran, ran
    assert "CUDA only" in skipped[("fp32", "efficient")] and "CUDA only" in skipped[("fp32", "cudnn")], skipped
    rows = [r for r in att["rows"] if r["status"] != "skipped"]
    assert len(rows) == len(ran) * model.config.depth
    worst = {d: max(r["max_abs"] for r in rows if r["dtype"] == d) for d in ("fp32", "bf16")}
    assert worst["fp32"] < 1e-4 < worst["bf16"] < TOLERANCES["bf16"].attn_atol, worst


def test_attention_needs_torch_weights(outdirs, tmp_path):
    import shutil

    onnx_copy = tmp_path / "model.onnx"
    shutil.copy(outdirs["decomposed"] / "model.onnx", onnx_copy)  # no manifest beside it
    with pytest.raises(VerificationError, match="float64 reference with the PyTorch weights"):
        verify(str(onnx_copy), str(onnx_copy), attention=True, samples=4)


def test_onnx_reference_finds_checkpoint_through_manifest(outdirs):
    # the manifest's model.source is the in-memory model here, so there is no checkpoint to find
    with pytest.raises(VerificationError, match="PyTorch weights"):
        verify(outdirs["decomposed"], outdirs["fused"], attention=True, samples=4)


@pytest.mark.gpu
def test_sdpa_backends_on_cuda(model):
    from edgevit.verify import verify_attention_torch

    images = np.random.default_rng(0).standard_normal((8, 3, 16, 16), dtype=np.float32)
    att = verify_attention_torch(model, images, device="cuda")
    ran = {(r["dtype"], r["backend"]) for r in att["rows"] if r["status"] != "skipped"}
    assert ("fp16", "flash") in ran and ("fp16", "efficient") in ran and ("fp32", "math") in ran, att["summary"]
    failing = [r for r in att["rows"] if r["status"] == "FAIL"]
    assert not failing, failing
