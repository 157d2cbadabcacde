"""The one comparison (edgevit.metrics.compare -> Comparison), the one judge (Tolerance.judge) and the
verdict a judge records (Verdict, VerdictRecord)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevit.manifest import Manifest
from edgevit.metrics import Comparison, compare
from edgevit.specs import BatchRange, TensorSpec
from edgevit.tolerances import Check, Tolerance, Verdict, VerdictRecord, get_tolerance

ROOT = Path(__file__).resolve().parents[1]


def test_compare_on_numpy_and_the_gate_load_no_torch():
    """The gate compares numpy outputs: ``import edgevit.precision`` and compare()/judge() on arrays
    must not import torch."""
    code = ("import sys\n"
            "import numpy as np\n"
            "import edgevit.precision\n"
            "from edgevit.metrics import compare\n"
            "from edgevit.precision.gate import judge\n"
            "ref = np.random.default_rng(0).standard_normal((16, 10))\n"
            "c = compare(ref, ref + 1e-3, labels=ref.argmax(1))\n"
            "judge(c, 'int8', 1.0)\n"
            "compare(ref, ref, output='features')\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_compare_gives_the_same_numbers_for_numpy_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((12, 7))
    cand = ref + 0.05 * rng.standard_normal(ref.shape)
    cand[3, 2] = np.inf
    tol = get_tolerance("fp16")
    a = compare(ref, cand, tol, labels=ref.argmax(1))
    b = compare(torch.from_numpy(ref), torch.from_numpy(cand), tol, labels=ref.argmax(1))
    assert a.to_dict().keys() == b.to_dict().keys()
    for key, value in a.to_dict().items():
        if isinstance(value, float):
            assert value == pytest.approx(b.to_dict()[key], rel=1e-12), key
        elif key == "worst":
            assert value["index"] == b.to_dict()[key]["index"] == [3, 2], value
        else:
            assert value == b.to_dict()[key], key
    assert a.nonfinite == 1 and a.agreement == a.top1_agreement and a.agreement_metric == "top-1"


def test_comparison_names_each_number_once():
    ref = np.array([[4.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    c = compare(ref, ref * 1.5, labels=np.array([0, 1]))
    assert c.reference_scale == 4.0 and c.max_abs == 2.0 and c.max_rel_to_scale == 0.5
    assert list(c.to_dict()) == ["max_abs", "max_rel", "mean_abs", "cosine_min", "cosine_mean", "violations",
                                 "elements", "nonfinite", "worst", "shape", "top1_agreement", "top5_agreement",
                                 "topk", "accuracy_reference", "accuracy_candidate"], c.to_dict()
    f = compare(ref, ref, output="features")
    assert f.knn_k == 1 and f.agreement == f.knn_agreement == 1.0 and f.agreement_metric == "k-NN@1"
    assert "top1_agreement" not in f.to_dict() and f.to_dict()["knn_k"] == 1


def test_judge_names_the_failing_checks_with_their_numbers():
    tol = Tolerance(atol=0.1, rtol=0.0, min_cosine=0.99, min_agreement=0.9, attn_atol=0, attn_rtol=0,
                    attn_min_cosine=0)
    made_up = Comparison(max_abs=0.5, cosine_min=0.95, violations=3, elements=40, nonfinite=0,
                         worst={"index": [1, 2], "reference": 2.0, "candidate": 2.5}, top1_agreement=0.75)
    checks = tol.judge(made_up, "logits")
    assert all(isinstance(c, Check) for c in checks)
    failed = {c.name: c.describe() for c in checks if not c.passed}
    assert failed == {
        "logits.max_abs_error_within_atol_rtol": "logits.max_abs_error_within_atol_rtol: 0.5 (must be <= 0.1) FAILED; "
                                                 "3 of 40 elements exceed atol 0.1 + rtol 0*|ref|; worst at [1, 2]: "
                                                 "ref 2 cand 2.5",
        "logits.cosine_min": "logits.cosine_min: 0.95 (must be >= 0.99) FAILED",
        "logits.top1_agreement": "logits.top1_agreement: 0.75 (must be >= 0.9) FAILED",
    }, failed
    assert [c.name for c in checks if c.passed] == ["logits.finite"]
    assert Verdict.of(checks) is Verdict.FAILED and Verdict.of(checks[:1]) is Verdict.PASSED
    knn = tol.judge(Comparison(output="features", knn_agreement=0.8, knn_k=5))
    assert [c.name for c in knn if not c.passed] == ["knn5_agreement"], knn


@pytest.mark.parametrize("record", [
    VerdictRecord(Verdict.PASSED, "gate"), VerdictRecord(Verdict.FAILED, "gate"), VerdictRecord(Verdict.NOT_RUN, "gate"),
    VerdictRecord(Verdict.PASSED, "export", 3e-6, 0, 2), VerdictRecord(Verdict.NOT_RUN, "export"),
])
def test_verdict_round_trips_through_a_manifest(tmp_path, record):
    (tmp_path / "model.onnx").write_bytes(b"graph bytes")
    m = Manifest(model={"source": "digits-tiny", "output": "logits"},
                 inputs=[TensorSpec("images", ("batch", 1, 8, 8), "float32", {"0": "batch"})],
                 outputs=[TensorSpec("logits", ("batch", 2), "float32", {"0": "batch"})],
                 batch=BatchRange(1, 1, 8, dynamic=True), root=tmp_path)
    m.add_artifact("model.onnx", format="onnx", precision="fp32", verdict=record.to_dict())
    m.save(tmp_path, force=True)
    stored = json.loads((tmp_path / "edgevit.json").read_text())["artifacts"][0]["verdict"]
    assert stored["verified"] == {Verdict.PASSED: True, Verdict.FAILED: False}.get(record.verdict), stored
    if record.by == "gate":
        assert stored == {"verified": record.verified, "gate": record.verdict.value}, stored
    back = VerdictRecord.from_dict(Manifest.load(tmp_path).artifact(precision="fp32").extra["verdict"])
    assert back == record and back.verdict is record.verdict


def test_bench_leaves_a_precision_without_a_tolerance_row_unjudged():
    """An engine of a precision no tolerance row covers ("mixed") is not judged by another row's limits."""
    from edgevit.bench.report import BenchRow
    from edgevit.bench.run import _accuracy

    ref = np.random.default_rng(0).standard_normal((32, 10)).astype(np.float32)
    known = BenchRow(name="int8 engine", backend="tensorrt", device="cuda", format="tensorrt", precision="int8")
    _accuracy(known, ref + 1e-3, ref, None)
    assert known.within_tolerance is True and known.agreement == 1.0, known
    mixed = BenchRow(name="mixed engine", backend="tensorrt", device="cuda", format="tensorrt", precision="mixed")
    _accuracy(mixed, ref + 1e-3, ref, None)
    assert mixed.within_tolerance is None and mixed.agreement == 1.0, mixed
    assert "'mixed' has no tolerance row" in mixed.reason, mixed.reason
