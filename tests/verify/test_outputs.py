"""verify on the final outputs: the checks, the metrics behind them, the tolerance rows and overrides."""

import numpy as np
import pytest

from edgevit import save_model
from edgevit.verify import (
    TOLERANCES,
    Tolerance,
    compare,
    cosine_per_sample,
    get_tolerance,
    topk_agreement,
    verify,
)

FAST = dict(samples=24, batch_size=16)


@pytest.mark.parametrize("form", ["decomposed", "fused"])
def test_unperturbed_export_passes(ckpt, outdirs, form):
    report = verify(ckpt, outdirs[form], **FAST)
    s = report.outputs["logits"]
    assert report.ok, report.failures
    assert report.precision == "fp32" and report.candidate["kind"] == "onnx"
    assert s.max_abs < 1e-4 and s.cosine_min > 0.99999 and s.top1_agreement == 1.0, s
    assert {c.name for c in report.checks} >= {"logits.max_abs_error_within_atol_rtol", "logits.cosine_min",
                                               "logits.top1_agreement", "logits.finite"}


def test_broken_weight_is_caught(ckpt, broken_onnx):
    report = verify(ckpt, str(broken_onnx), **FAST)
    s = report.outputs["logits"]
    assert not report.ok, f"perturbed graph passed: max abs {s.max_abs:.3e}, cosine {s.cosine_min:.8f}"
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
    assert 0 <= s.accuracy_reference <= 1 and abs(s.accuracy_reference - s.accuracy_candidate) < 0.05, s


def test_torch_candidate_in_half_precision_uses_its_row(ckpt):
    report = verify(ckpt, None, precision="fp16", **FAST)
    assert report.precision == "fp16" and report.tolerance["atol"] == TOLERANCES["fp16"].atol
    assert report.ok, report.failures
    assert report.outputs["logits"].max_abs > 0


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
    stats = compare(ref, cand, tol)
    assert stats.violations == 1 and stats.worst["index"] == [0, 0], stats
    stats = compare(ref, cand, Tolerance(**{**tol.to_dict(), "rtol": 1e-5}))
    assert stats.violations == 0, stats


def test_metric_helpers():
    a = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert cosine_per_sample(a, a).tolist() == [1.0, 1.0]
    assert cosine_per_sample(a, -a)[0] == -1.0
    ref = np.array([[5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]], float)
    cand = np.array([[4, 5, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]], float)
    top1, top5, k = topk_agreement(ref, cand)
    assert (top1, top5, k) == (0.5, 1.0, 5)
    stats = compare(ref, np.where(ref == 5, np.nan, ref), get_tolerance("fp32"))
    assert stats.nonfinite == 2


def test_static_batch_onnx_is_padded(ckpt, model, tmp_path):
    from edgevit.export import ExportConfig, export_onnx

    out = tmp_path / "static"
    export_onnx(model, out, ExportConfig(static_batch=4, verify=False, lint=False))
    report = verify(ckpt, out, samples=10, batch_size=16, attention=True)  # 10 = 4 + 4 + 2 (padded)
    assert report.ok, report.failures
    assert report.outputs["logits"].shape == (10, 10) and report.attention["rows"][0]["elements"] == 10 * 17 * 32
