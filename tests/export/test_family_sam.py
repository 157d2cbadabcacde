"""edgevit export of SAM's image encoder: ONNX Runtime gives timm's image embedding, each block's attention
stays MatMul -> Add(decomposed relative position bias) -> Softmax -> MatMul (windowed or global), the graph's
nodes carry the model's names, lint finds nothing, and the precision graphs pass their gates and verify per
block through the CLI as a user runs it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.export.lint import lint_onnx
from edgevit.export.onnx import ExportConfig, export_onnx

from ..conftest import requires_timm
from ..models.test_family_sam import _timm, _tokens

TOL = 1e-4  # ONNX Runtime against timm, fp32
IMG, WINDOW, GLOBAL = 128, 3, (1,)  # an 8x8 grid in 3x3 windows (padded to 9x9), block 1 global


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@requires_timm
@pytest.mark.parametrize("output", ["tokens", "features"])
def test_timm_sam_exports_and_matches_timm(tmp_path, output):
    ref = _timm(IMG, WINDOW, GLOBAL, num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "sam.pth")
    result = export_onnx(tmp_path / "sam.pth", tmp_path / "out", ExportConfig(output=output, batch=(1, 2, 4)))
    assert result.verification["passed"], result.verification
    session = _session(result.onnx_path)
    x = torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(3))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = (_tokens(ref.forward_features(x)) if output == "tokens" else ref(x)).numpy()
    assert got.shape == want.shape, (got.shape, want.shape)
    err = float(np.abs(got - want).max())
    assert err <= TOL, f"SAM {output}: ONNX Runtime vs timm max abs error {err:.3g} > {TOL}"

    proto = onnx.load(str(result.onnx_path))
    producer = {o: n for n in proto.graph.node for o in n.output}
    softmaxes = [n for n in proto.graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == 3, f"{len(softmaxes)} attention sites, want one per block (3)"
    for sm in softmaxes:
        add = producer[sm.input[0]]
        assert add.op_type == "Add", f"{sm.name} reads {add.op_type}: the relative position bias is not added"
        assert "MatMul" in {producer[i].op_type for i in add.input if i in producer}, \
            f"{add.name} adds no Q·K^T MatMul"
        assert any(n.op_type == "MatMul" and n.input[0] == sm.output[0] for n in proto.graph.node)
    names = {n.name for n in proto.graph.node}
    want_names = {f"blocks.{b}.attn.rel_pos_{k}" for b in range(3) for k in (0, 1)} | {"neck.0", "neck.2",
                                                                                      "blocks.2.attn.qkv"}
    assert want_names <= names, f"not named after the model: {sorted(want_names - names)}"
    report = lint_onnx(result.onnx_path)
    assert report.ok and not report.findings, [f.to_dict() for f in report.findings]


def _cli_export(tmp_path, samples: int, *options: str):
    """A tiny SAM checkpoint exported through the CLI (tokens) with ``options``, calibrated on ``samples`` random
    images; (the CLI's result, OUTDIR)."""
    torch.save(_timm(IMG, WINDOW, GLOBAL, num_classes=0).state_dict(), tmp_path / "sam.pth")
    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (samples, IMG, IMG, 3), dtype=np.uint8))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "sam.pth"), "-o", str(out), "--output-kind", "tokens",
                                    "--calib-data", str(data), "--calib-samples", str(samples),
                                    *[str(data) if o == "DATA" else o for o in options]])
    assert res.exit_code == 0, res.output
    return res, out


@requires_timm
def test_sam_through_the_cli_gates_and_verifies_each_precision(tmp_path):
    res, out = _cli_export(tmp_path, 48, "--precision", "fp32,fp16,int8", "--data", "DATA")
    assert "tokens [batch, 64, 32]" in res.output, res.output  # the neck's width, one token per patch
    for precision in ("fp32", "fp16", "int8"):
        row = next((line for line in res.output.splitlines() if f"│ {precision} " in line), "")
        assert "passed" in row, f"{precision} gate: {row!r}\n{res.output}"
    manifest = json.loads((out / "edgevit.json").read_text())
    assert manifest["model"]["config"]["window_size"] == WINDOW and manifest["model"]["config"]["global_blocks"] == [1]
    for precision in ("fp32", "int8"):
        res = CliRunner().invoke(main, ["verify", str(tmp_path / "sam.pth"), str(out), "--attention",
                                        "--precision", precision, "--samples", "8"])
        assert res.exit_code == 0 and "PASSED" in res.output, res.output
        blocks = [line for line in res.output.splitlines() if line.startswith("│ ") and "decomposed" in line]
        assert len(blocks) == 3 and all("pass" in b for b in blocks), f"{precision}: {blocks}"


@requires_timm
def test_verify_finds_the_attention_of_a_graph_quantized_with_quantize_attention(tmp_path):
    """Before: "found 0 attention site(s)": the Q/DQ pair between the Softmax and the AV MatMul hid the pattern."""
    _, out = _cli_export(tmp_path, 32, "--precision", "int8", "--quantize-attention", "--no-gate")
    proto = onnx.load(str(out / "model.int8.onnx"))
    producer = {o: n for n in proto.graph.node for o in n.output}
    av = [n for n in proto.graph.node if n.op_type == "MatMul" and producer.get(n.input[0]) is not None
          and producer[n.input[0]].op_type == "DequantizeLinear"]
    assert len(av) >= 3, "the attention MatMuls are not quantized: the test would not test anything"
    res = CliRunner().invoke(main, ["verify", str(tmp_path / "sam.pth"), str(out), "--attention", "--precision", "int8",
                                    "--samples", "8", "--json"])
    report = json.loads(res.output)
    rows = report["attention"]["rows"]
    assert res.exit_code == 0 and len(rows) == 3 and all(r["passed"] for r in rows), res.output[-2000:]


@requires_timm
def test_verify_feeds_an_fp16_io_graph_float16(tmp_path):
    """Before: "input 'images' has dtype float32, expected float16" for a graph quantized with --io-dtype fp16."""
    torch.save(_timm(IMG, WINDOW, GLOBAL, num_classes=0).state_dict(), tmp_path / "sam.pth")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "sam.pth"), "-o", str(out), "--output-kind", "tokens",
                                    "--precision", "fp16", "--io-dtype", "fp16", "--no-gate"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["verify", str(tmp_path / "sam.pth"), str(out), "--precision", "fp16",
                                    "--attention", "--samples", "8"])
    assert res.exit_code == 0 and "PASSED" in res.output, res.output[-2000:]


@requires_timm
def test_sam_of_any_size_exports_one_graph_that_matches_timm_at_each(tmp_path):
    """--img-size MIN:MAX: the windows padded per input, the position grid resampled (bilinear, no antialias) and
    the global blocks' tables fitted to each grid (timm's get_rel_pos) inside the graph; timm's samvit at each
    size with its grid resampled the same way is the reference (it takes any size at run time)."""
    import functools

    import timm.models.vision_transformer_sam as timm_sam

    ref = _timm(IMG, WINDOW, GLOBAL, num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "sam.pth")
    result = export_onnx(tmp_path / "sam.pth", tmp_path / "out",
                         ExportConfig(output="tokens", batch=(1, 2, 4), size_range=(64, 256)))
    assert result.verification["passed"], result.verification
    session = _session(result.onnx_path)
    original = timm_sam.resample_abs_pos_embed_nhwc
    timm_sam.resample_abs_pos_embed_nhwc = functools.partial(original, interpolation="bilinear", antialias=False)
    try:
        for h, w in [(IMG, IMG), (96, 160), (256, 256), (208, 64)]:
            x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h + w))
            (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            with torch.no_grad():
                want = _tokens(ref.forward_features(x)).numpy()
            err = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            assert err <= TOL, f"{h}x{w}: ONNX Runtime vs timm max abs {err:.3g} (shapes {got.shape}, {want.shape})"
    finally:
        timm_sam.resample_abs_pos_embed_nhwc = original
    report = lint_onnx(result.onnx_path)
    assert report.ok and "baked-size" not in report.codes(), [f.to_dict() for f in report.findings]
