"""edgevit verify: final outputs, per-block attention, tolerances, bad inputs and the CLI."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edgevit import save_model
from edgevit.cli import main
from edgevit.errors import CheckpointError, DataError, OnnxModelError, VerificationError
from edgevit.runtime.onnx_debug import find_attention_sites, mark_outputs
from edgevit.verify import (
    TOLERANCES,
    Tolerance,
    VerifyConfig,
    compare_outputs,
    cosine_per_sample,
    detect_onnx_precision,
    get_tolerance,
    load_inputs,
    topk_agreement,
    verify,
)
from tests._fixtures import tiny_model

FAST = dict(samples=24, batch_size=16)


def _export(model, outdir, attention):
    from edgevit.export import ExportConfig, export_onnx

    export_onnx(model, outdir, ExportConfig(attention=attention, verify=False, lint=False))
    return outdir


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    return str(save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"))


@pytest.fixture(scope="module")
def outdirs(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    return {form: _export(model, base / form, form) for form in ("decomposed", "fused")}


def _qkv_weights(proto):
    """Initializers of the qkv MatMuls, in block order (found by shape: (C, 3C))."""
    inits = {t.name: t for t in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            for name in node.input:
                t = inits.get(name)
                if t is not None and len(t.dims) == 2 and t.dims[1] == 3 * t.dims[0] and name not in out:
                    out.append(name)
    return out


@pytest.fixture(scope="module")
def broken_onnx(outdirs, tmp_path_factory):
    """The decomposed export with block 1's qkv weight perturbed by 2 % of its scale."""
    proto = onnx.load(str(outdirs["decomposed"] / "model.onnx"))
    name = _qkv_weights(proto)[1]
    for i, t in enumerate(proto.graph.initializer):
        if t.name == name:
            w = numpy_helper.to_array(t).copy()
            w += 0.02 * w.std() * np.random.default_rng(0).standard_normal(w.shape).astype(w.dtype)
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, name))
    path = tmp_path_factory.mktemp("broken") / "broken.onnx"
    onnx.save(proto, str(path))
    return path


# ------------------------------------------------------------------ final outputs
@pytest.mark.parametrize("form", ["decomposed", "fused"])
def test_unperturbed_export_passes(ckpt, outdirs, form):
    report = verify(ckpt, outdirs[form], **FAST)
    s = report.outputs["logits"]
    assert report.ok, report.failures
    assert report.precision == "fp32" and report.candidate["kind"] == "onnx"
    assert s["max_abs"] < 1e-4 and s["cosine_min"] > 0.99999 and s["top1_agreement"] == 1.0, s
    assert {c.name for c in report.checks} >= {"logits.max_abs_error_within_atol_rtol", "logits.cosine_min",
                                               "logits.top1_agreement", "logits.finite"}


def test_broken_weight_is_caught(ckpt, broken_onnx):
    report = verify(ckpt, str(broken_onnx), **FAST)
    s = report.outputs["logits"]
    assert not report.ok, f"perturbed graph passed: max abs {s['max_abs']:.3e}, cosine {s['cosine_min']:.8f}"
    failing = [c.name for c in report.checks if not c.passed]
    assert "logits.max_abs_error_within_atol_rtol" in failing, failing
    text = "\n".join(report.failures)
    assert "must be <=" in text and "elements exceed atol" in text, text


def test_onnx_reference_against_onnx_candidate(outdirs):
    report = verify(str(outdirs["decomposed"] / "model.onnx"), str(outdirs["fused"] / "model.onnx"), **FAST)
    assert report.ok, report.failures
    assert report.reference["kind"] == "onnx"


def test_digits_data_reports_accuracy_of_both_sides(tmp_path):
    import edgevit

    m = edgevit.create_model("digits-tiny")
    path = save_model(m, tmp_path / "d.safetensors")
    report = verify(str(path), None, data="digits", samples=40, batch_size=16)
    s = report.outputs["logits"]
    assert report.data["labelled"] and report.data["samples"] == 40
    assert 0 <= s["accuracy_reference"] <= 1 and abs(s["accuracy_reference"] - s["accuracy_candidate"]) < 0.05, s


def test_torch_candidate_in_half_precision_uses_its_row(ckpt):
    report = verify(ckpt, None, precision="fp16", **FAST)
    assert report.precision == "fp16" and report.tolerance["atol"] == TOLERANCES["fp16"].atol
    assert report.ok, report.failures
    assert report.outputs["logits"]["max_abs"] > 0


# ------------------------------------------------------------------ attention
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


# ------------------------------------------------------------------ tolerances
def test_tolerance_table_rows_and_overrides():
    assert set(TOLERANCES) == {"fp32", "fp16", "bf16", "int8", "fp8"}
    for name, tol in TOLERANCES.items():
        assert isinstance(tol, Tolerance) and tol.atol > 0 and tol.rtol > 0 and tol.note, name
    assert TOLERANCES["fp32"].atol < TOLERANCES["fp16"].atol < TOLERANCES["bf16"].atol
    assert TOLERANCES["fp32"].min_cosine > TOLERANCES["fp16"].min_cosine > TOLERANCES["bf16"].min_cosine
    assert "measured" in TOLERANCES["int8"].note and "measured" in TOLERANCES["fp8"].note
    assert TOLERANCES["int8"].atol < TOLERANCES["fp8"].atol and TOLERANCES["int8"].attn_atol < TOLERANCES["fp8"].attn_atol
    assert get_tolerance("fp16") == TOLERANCES["fp16"]
    tol = get_tolerance("fp16", atol=0.5, rtol=None, min_agreement=0.5)
    assert (tol.atol, tol.rtol, tol.min_agreement) == (0.5, TOLERANCES["fp16"].rtol, 0.5)
    assert "overridden" in tol.note
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'fp16', 'bf16', 'int8', 'fp8'\]"):
        get_tolerance("fp64")
    with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
        get_tolerance("fp32", atol=-1)
    with pytest.raises(ValueError, match="min_cosine must be <= 1"):
        get_tolerance("fp32", min_cosine=2)
    with pytest.raises(ValueError, match="unknown tolerance field"):
        get_tolerance("fp32", tolerance=1)


def test_override_makes_broken_pass_and_is_reported(ckpt, broken_onnx):
    report = verify(ckpt, str(broken_onnx), atol=10.0, rtol=0.0, min_cosine=0.0, min_agreement=0.0, **FAST)
    assert report.ok, report.failures
    assert report.tolerance["atol"] == 10.0 and "overridden" in report.tolerance["note"]


def test_checks_use_explicit_rtol_not_numpys_default():
    ref = np.array([[1000.0, 2.0]])
    cand = ref + np.array([[5e-3, 0.0]])  # np.allclose would pass this with its hidden rtol=1e-5
    assert np.allclose(cand, ref, atol=1e-4)
    tol = Tolerance(atol=1e-4, rtol=0.0, min_cosine=0, min_agreement=0, attn_atol=0, attn_rtol=0, attn_min_cosine=0)
    stats = compare_outputs(ref, cand, tol)
    assert stats["violations"] == 1 and stats["worst"]["index"] == [0, 0], stats
    stats = compare_outputs(ref, cand, Tolerance(**{**tol.to_dict(), "rtol": 1e-5}))
    assert stats["violations"] == 0, stats


def test_metric_helpers():
    a = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert cosine_per_sample(a, a).tolist() == [1.0, 1.0]
    assert cosine_per_sample(a, -a)[0] == -1.0
    ref = np.array([[5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]], float)
    cand = np.array([[4, 5, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]], float)
    top1, top5, k = topk_agreement(ref, cand)
    assert (top1, top5, k) == (0.5, 1.0, 5)
    stats = compare_outputs(ref, np.where(ref == 5, np.nan, ref), get_tolerance("fp32"))
    assert stats["nonfinite"] == 2


def test_precision_detected_from_graph(tmp_path):
    from onnx import TensorProto, helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4])], [w])
    path = tmp_path / "half.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert detect_onnx_precision(path) == "fp16"


# ------------------------------------------------------------------ bad inputs
def test_missing_files(ckpt, tmp_path):
    with pytest.raises(OnnxModelError, match="no such ONNX file"):
        verify(ckpt, str(tmp_path / "missing.onnx"), samples=2)
    with pytest.raises(CheckpointError, match="no such file"):
        verify(str(tmp_path / "missing.safetensors"), None, samples=2)


def test_non_onnx_file(ckpt, tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(OnnxModelError, match="could not load this model"):
        verify(ckpt, str(junk), samples=2)


def test_wrong_input_shape(ckpt, tmp_path):
    other = tiny_model(seed=0, img_size=32)
    from tests._fixtures import export_onnx

    path = export_onnx(other, tmp_path / "other.onnx")
    with pytest.raises(VerificationError, match=r"takes \['batch', 3, 16, 16\] but the candidate takes"):
        verify(ckpt, str(path), samples=2)
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"shape \(3, 8, 8\) after preprocessing, the model takes \(3, 16, 16\)"):
        verify(ckpt, None, data=str(bad), samples=2, preprocessed=True)  # model input is not resized


def test_nan_inputs(ckpt, tmp_path):
    x = np.zeros((4, 3, 16, 16), np.float32)
    x[2, 1, 3, 3] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, x)
    with pytest.raises(DataError, match="NaN or Inf values in 1 image"):
        verify(ckpt, None, data=str(path), samples=4, preprocessed=True)


def test_config_validation():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        VerifyConfig(batch_size=0)
    with pytest.raises(ValueError, match="backends must be among"):
        VerifyConfig(backends=("xformers",))
    with pytest.raises(DataError, match="not 'random', 'digits'"):
        load_inputs("nope", (3, 16, 16), 2)


def test_outdir_without_the_asked_precision(ckpt, outdirs):
    with pytest.raises(OnnxModelError, match="lists no fp16"):
        verify(ckpt, outdirs["decomposed"], precision="fp16", samples=2)


# ------------------------------------------------------------------ CLI
def _cli(*args):
    return CliRunner().invoke(main, ["verify", *map(str, args)])


def test_cli_pass_and_report(ckpt, outdirs, tmp_path):
    report = tmp_path / "report.json"
    res = _cli(ckpt, outdirs["fused"], "--samples", 8, "--json", "--report", report, "--attention")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ok"] is True and json.loads(report.read_text())["ok"] is True
    assert len(data["attention"]["rows"]) == 2 and data["outputs"]["logits"]["max_abs"] < 1e-4
    again = _cli(ckpt, outdirs["fused"], "--samples", 2, "--report", report)
    assert again.exit_code == 1 and "already exists" in again.output, again.output
    table = _cli(ckpt, outdirs["fused"], "--samples", 8, "--attention")
    assert table.exit_code == 0 and "PASSED" in table.output and "decomposed" not in table.output, table.output


def test_cli_failure_lists_every_failing_check(ckpt, broken_onnx):
    res = _cli(ckpt, broken_onnx, "--samples", 16, "--attention")
    assert res.exit_code == 1, res.output
    assert "verification failed" in res.output and "logits.max_abs_error_within_atol_rtol" in res.output
    assert "attention.block1." in res.output, res.output
    res = _cli(ckpt, broken_onnx, "--samples", 16, "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["ok"] is False


def test_cli_errors_and_usage(ckpt, tmp_path):
    res = _cli(ckpt, tmp_path / "missing.onnx")
    assert res.exit_code == 1 and "no such ONNX file" in res.output, res.output
    res = _cli(ckpt, "--precision", "fp64")
    assert res.exit_code == 2, res.output
    res = _cli(ckpt, "--batch-size", 0)
    assert res.exit_code == 2 and "batch_size must be a positive integer" in res.output, res.output


def test_cli_override_flags(ckpt, broken_onnx):
    res = _cli(ckpt, broken_onnx, "--samples", 8, "--atol", 10, "--rtol", 0, "--min-cosine", 0,
               "--min-agreement", 0, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tolerance"]["atol"] == 10.0


def test_python_dash_m_entry_point(ckpt):
    proc = subprocess.run([sys.executable, "-m", "edgevit.verify", ckpt, "--samples", "4", "--attention",
                           "--dtypes", "fp32", "--backends", "math,naive", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["ok"] and {r["backend"] for r in data["attention"]["rows"]} == {"math", "naive"}


@pytest.mark.gpu
def test_sdpa_backends_on_cuda(model):
    from edgevit.verify import verify_attention_torch

    images = np.random.default_rng(0).standard_normal((8, 3, 16, 16), dtype=np.float32)
    att = verify_attention_torch(model, images, device="cuda")
    ran = {(r["dtype"], r["backend"]) for r in att["rows"] if r["status"] != "skipped"}
    assert ("fp16", "flash") in ran and ("fp16", "efficient") in ran and ("fp32", "math") in ran, att["summary"]
    failing = [r for r in att["rows"] if r["status"] == "FAIL"]
    assert not failing, failing


def test_engine_candidate_without_tensorrt(ckpt, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from edgevit.errors import MissingDependencyError

    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevit\[trt-cu12\]'"):
        verify(ckpt, str(engine), samples=2, precision="fp16")  # no manifest records its precision


def test_static_batch_onnx_is_padded(ckpt, model, tmp_path):
    from edgevit.export import ExportConfig, export_onnx

    out = tmp_path / "static"
    export_onnx(model, out, ExportConfig(static_batch=4, verify=False, lint=False))
    report = verify(ckpt, out, samples=10, batch_size=16, attention=True)  # 10 = 4 + 4 + 2 (padded)
    assert report.ok, report.failures
    assert report.outputs["logits"]["shape"] == [10, 10] and report.attention["rows"][0]["elements"] == 10 * 17 * 32


def test_variant_name_reference_needs_a_checkpoint(outdirs):
    with pytest.raises(ValueError, match="is a variant name: freshly initialized random weights"):
        verify("digits-tiny", outdirs["decomposed"], samples=2)


def test_image_folder_data(ckpt, outdirs, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    report = verify(ckpt, outdirs["fused"], data=str(tmp_path / "imgs"), samples=8)
    assert report.ok, report.failures
    assert report.data["labelled"] and report.data["samples"] == 2, report.data  # test split: 1 per class
