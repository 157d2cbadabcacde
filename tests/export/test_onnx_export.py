"""edgevit export: ONNX Runtime matches PyTorch, the graph has the promised form, failures touch nothing."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import edgevit
from edgevit.cli import main
from edgevit.errors import ArtifactExistsError, CheckpointError, ExportError
from edgevit.export.lint import lint_onnx
from edgevit.export.onnx import DATA_FILE, ExportConfig, _dynamo_export, export_onnx, fuse_attention
from edgevit.specs import BatchRange, TensorSpec
from edgevit.manifest import Manifest
from edgevit.models.vit import ViTConfig, VisionTransformer

from ..conftest import requires_transformers

TOL = 1e-4
BATCHES = (1, 5)  # batch 1 and a larger batch on one dynamic graph


def _ort(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _max_abs_vs(model_fn, path, shape, batches=BATCHES):
    session = _ort(path)
    errs = {}
    gen = torch.Generator().manual_seed(1)
    for b in batches:
        x = torch.randn(b, *shape, generator=gen)
        with torch.no_grad():
            ref = model_fn(x).numpy()
        got = session.run(["logits"], {"images": x.numpy()})[0]
        assert got.shape == ref.shape, f"batch {b}: ORT {got.shape} vs torch {ref.shape}"
        errs[b] = float(np.abs(got - ref).max())
    return errs


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def _deit_tiny_shaped() -> VisionTransformer:
    # DeiT-Tiny widths (dim 192, 3 heads of 64), shrunk in depth and image size to stay fast
    return VisionTransformer(ViTConfig(img_size=64, patch_size=16, embed_dim=192, depth=2, num_heads=3,
                                       num_classes=10)).eval()


MODELS = {
    "digits-tiny": lambda: edgevit.create_model("digits-tiny").eval(),
    "deit-tiny-shaped": _deit_tiny_shaped,
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One export per (model, attention form), shared by the tests of this module."""
    out = {}
    for name, build in MODELS.items():
        torch.manual_seed(0)
        model = build()
        for attention in ("decomposed", "fused"):
            d = tmp_path_factory.mktemp(f"{name}-{attention}")
            out[name, attention] = (model, export_onnx(model, d, ExportConfig(attention=attention, batch=(1, 4, 16))))
    return out


# ---------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("attention", ["decomposed", "fused"])
@pytest.mark.parametrize("name", list(MODELS))
def test_onnxruntime_matches_pytorch(exports, name, attention):
    model, result = exports[name, attention]
    c = model.config
    errs = _max_abs_vs(model, result.onnx_path, (c.in_chans, c.img_size, c.img_size))
    assert max(errs.values()) <= TOL, f"{name}/{attention}: max abs error per batch {errs} > {TOL}"
    v = result.verification
    assert v["passed"] and v["max_abs"] <= TOL, v
    assert {1, 8} <= {ch["batch"] for ch in v["checks"]}, f"export must verify batch 1 and a larger one: {v['checks']}"
    if name == "digits-tiny":
        assert v["digits"] == "used", f"digits-tiny must be verified on the bundled digits: {v['checks']}"


@requires_transformers
@pytest.mark.parametrize("attention", ["decomposed", "fused"])
def test_hugging_face_directory_exports_and_matches_transformers(tmp_path, attention):
    from transformers import ViTConfig as HFConfig
    from transformers import ViTForImageClassification

    torch.manual_seed(0)
    hf = ViTForImageClassification(HFConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=256, image_size=32, patch_size=8, num_labels=7)).eval()
    hf.save_pretrained(tmp_path / "hf")
    result = export_onnx(tmp_path / "hf", tmp_path / "out", ExportConfig(attention=attention, batch=(1, 2, 8)))
    errs = _max_abs_vs(lambda x: hf(x).logits, result.onnx_path, (3, 32, 32))
    assert max(errs.values()) <= TOL, f"HF/{attention}: max abs error vs transformers {errs} > {TOL}"
    manifest = Manifest.load(tmp_path / "out")
    assert manifest.labels == [hf.config.id2label[i] for i in range(7)]
    assert manifest.model.config["norm_eps"] == hf.config.layer_norm_eps


# ---------------------------------------------------------------------------- graph form
def test_decomposed_graph_form(exports):
    model, result = exports["deit-tiny-shaped", "decomposed"]
    depth = model.config.depth
    ops = _ops(result.onnx_path)
    assert ops["LayerNormalization"] == 2 * depth + 1, ops
    assert ops["Pow"] == 0 and ops["ReduceMean"] == 0 and ops["Attention"] == 0, ops
    assert ops["Softmax"] == depth, ops
    proto = onnx.load(str(result.onnx_path))
    assert proto.opset_import[0].version == 18
    producer = {o: n for n in proto.graph.node for o in n.output}
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for sm in (n for n in proto.graph.node if n.op_type == "Softmax"):
        qk = producer[sm.input[0]]
        assert qk.op_type == "MatMul", f"Softmax input comes from {qk.op_type}, not the Q·K^T MatMul"
        assert any(n.op_type == "MatMul" and n.input[0] == sm.output[0] for n in proto.graph.node)
        q_scale = producer[qk.input[0]]
        assert q_scale.op_type == "Mul", f"Q is not pre-scaled: the MatMul's Q input comes from {q_scale.op_type}"
        scale = [consts[i] for i in q_scale.input if i in consts]
        assert scale and np.isclose(float(scale[0]), model.config.head_dim ** -0.5), scale
    report = lint_onnx(result.onnx_path)
    assert report.ok and not report.warnings, [f.to_dict() for f in report.findings]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]


def test_gelu_is_in_the_order_onnxruntime_fuses(exports):
    model, result = exports["deit-tiny-shaped", "decomposed"]
    assert result.manifest.export["gelu_reordered"] == model.config.depth, result.manifest.export
    proto = onnx.load(str(result.onnx_path))
    consumers = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for erf in (n for n in proto.graph.node if n.op_type == "Erf"):
        (add,) = consumers[erf.output[0]]
        (mul_x,) = consumers[add.output[0]]
        (mul_half,) = consumers[mul_x.output[0]]
        assert (add.op_type, mul_x.op_type, mul_half.op_type) == ("Add", "Mul", "Mul")
        assert producer_input(proto, erf) in mul_x.input, "x * (1 + erf(x/sqrt2)) must come before * 0.5"


def producer_input(proto, erf):
    div = next(n for n in proto.graph.node if erf.input[0] in n.output)
    return div.input[0]


def test_fused_graph_form(exports):
    model, result = exports["deit-tiny-shaped", "fused"]
    ops = _ops(result.onnx_path)
    assert ops["Attention"] == model.config.depth and ops["Softmax"] == 0, ops
    assert ops["LayerNormalization"] == 2 * model.config.depth + 1 and ops["Pow"] == 0, ops
    assert onnx.load(str(result.onnx_path)).opset_import[0].version == 23
    report = result.lint
    assert "trt-unsupported-op" in report.codes(), "TensorRT 10.3 cannot parse Attention: lint must say so"
    assert lint_onnx(result.onnx_path, tensorrt_version="10.14").ok


def test_fuse_attention_rewrite_matches_pytorch(tmp_path):
    model = edgevit.create_model("digits-tiny").eval()
    proto = _dynamo_export(model, ExportConfig(attention="fused"), "math", 23)
    proto, fused = fuse_attention(proto)
    assert fused == model.config.depth
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["Attention"] == 4 and ops["Softmax"] == 0, ops
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp_path / "m.onnx"))
    errs = _max_abs_vs(model.set_attn_impl("math"), tmp_path / "m.onnx", (1, 8, 8))
    assert max(errs.values()) <= TOL, f"rewritten Attention graph: max abs {errs}"


def test_manifest_of_an_export(exports):
    model, result = exports["digits-tiny", "decomposed"]
    m = Manifest.load(result.outdir)
    assert m.inputs == [TensorSpec("images", ("batch", 1, 8, 8), "float32", {"0": "batch"}, "NCHW", True)]
    assert m.outputs[0].name == "logits" and m.outputs[0].shape == ("batch", 10)
    assert m.batch == BatchRange(1, 4, 16, dynamic=True)
    assert m.export["opset"] == 18 and m.export["attention"] == "decomposed"
    assert m.labels == [str(i) for i in range(10)] and m.preprocessing.input_size == (1, 8, 8)
    assert m.model.config["embed_dim"] == 64
    art = m.artifact(precision="fp32", format="onnx")
    assert art.path == "model.onnx" and art.external_data == []
    assert art.extra["verdict"]["verified"] is True
    assert m.verify_checksums() == []
    for lib in ("torch", "onnx", "onnxruntime", "edgevit"):
        assert m.versions[lib], m.versions
    assert not [p.name for p in result.outdir.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_static_batch(tmp_path):
    model = edgevit.create_model("digits-tiny").eval()
    result = export_onnx(model, tmp_path, ExportConfig(static_batch=3))
    dims = onnx.load(str(result.onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [3, 1, 8, 8]
    assert result.manifest.batch == BatchRange(3, 3, 3, dynamic=False)
    errs = _max_abs_vs(model, result.onnx_path, (1, 8, 8), batches=(3,))
    assert errs[3] <= TOL, errs
    assert result.lint.ok


def test_external_data_path(tmp_path):
    model = edgevit.create_model("digits-tiny").eval()
    result = export_onnx(model, tmp_path, ExportConfig(external_data_threshold=0, simplify=False))
    assert (tmp_path / DATA_FILE).exists(), sorted(p.name for p in tmp_path.iterdir())
    assert result.manifest.artifact(format="onnx").external_data == [DATA_FILE]
    assert result.manifest.export["external_data"] is True
    errs = _max_abs_vs(model, result.onnx_path, (1, 8, 8))
    assert max(errs.values()) <= TOL, errs
    (tmp_path / DATA_FILE).unlink()
    assert "external-data-missing" in lint_onnx(result.onnx_path).codes()


# ---------------------------------------------------------------------------- failures
def test_existing_output_without_force_is_left_untouched(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"precious")
    with pytest.raises(ArtifactExistsError, match="--force"):
        export_onnx("digits-tiny", tmp_path)
    assert (tmp_path / "model.onnx").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_failed_verification_leaves_existing_files_untouched(tmp_path, exports):
    model, done = exports["digits-tiny", "decomposed"]
    shutil.copytree(done.outdir, tmp_path, dirs_exist_ok=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ExportError, match=r"max abs \d\.\d+e-\d+") as info:
        export_onnx(model, tmp_path, ExportConfig(atol=1e-15), force=True)
    assert "random[1]" in str(info.value), str(info.value)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before, f"files changed by a failed export: {sorted(after)} vs {sorted(before)}"


def test_failed_export_into_new_directory_leaves_nothing(tmp_path, monkeypatch):
    import edgevit.export.onnx as onnx_export

    def broken(*args, **kwargs):
        raise ExportError("torch.onnx.export failed: simulated")

    monkeypatch.setattr(onnx_export, "_dynamo_export", broken)
    out = tmp_path / "new"
    with pytest.raises(ExportError, match="simulated"):
        export_onnx(edgevit.create_model("digits-tiny"), out)
    assert not out.exists()
    runner = CliRunner()
    res = runner.invoke(main, ["export", "digits-tiny", "-o", str(out)])
    assert res.exit_code == 1 and "simulated" in res.output, res.output
    assert not out.exists()


def test_missing_source(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        export_onnx(tmp_path / "nope.safetensors", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"attention": "flash"}, "attention must be one of"),
    ({"opset": 16}, "opset must be >= 17"),
    ({"attention": "fused", "opset": 18}, "needs opset >= 23"),
    ({"batch": (4, 2, 8)}, "MIN <= OPT <= MAX"),
    ({"static_batch": 0}, "positive integer"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportConfig(**kwargs)


# ---------------------------------------------------------------------------- CLI
def test_cli_export_force_and_exit_codes(tmp_path):
    src = edgevit.save_model(edgevit.create_model("digits-tiny"), tmp_path / "digits.safetensors")
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(src), "-o", str(out), "--batch", "1,2,8", "--no-simplify", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["ok"] and data["batch"] == {"dynamic": True, "min": 1, "opt": 2, "max": 8}
    assert data["simplify"]["enabled"] is False and data["verification"]["passed"]
    model = edgevit.load_model(src)
    errs = _max_abs_vs(model, out / "model.onnx", (1, 8, 8))
    assert max(errs.values()) <= TOL, errs

    before = (out / "model.onnx").read_bytes()
    res = runner.invoke(main, ["export", str(src), "-o", str(out)])
    assert res.exit_code == 1 and "--force" in res.output, res.output
    assert (out / "model.onnx").read_bytes() == before

    res = runner.invoke(main, ["export", str(src), "-o", str(out), "--static-batch", "2", "--force"])
    assert res.exit_code == 0, res.output
    assert Manifest.load(out).batch.dynamic is False

    assert runner.invoke(main, ["export", str(src), "-o", str(out), "--batch", "8,1,2"]).exit_code == 2
    res = runner.invoke(main, ["export", str(src), "-o", str(out), "--batch", "1,1,4", "--static-batch", "2"])
    assert res.exit_code == 2 and "not both" in res.output
    assert runner.invoke(main, ["export", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "o2")]).exit_code == 1
    (tmp_path / "junk.onnx").write_text("junk")
    assert runner.invoke(main, ["export", str(tmp_path / "junk.onnx"), "-o", str(tmp_path / "o3")]).exit_code == 1
