"""Q/DQ graphs are judged by the arithmetic they define, not by the host CPU's int8 kernels
(docs/design.md §4.1): the runner's ``qdq="exact"`` against ONNX's own numpy reference, the gate and
verify records, bench's two accuracies, and the same verdict on an emulated AVX2-only CPU."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.manifest import Manifest
from edgevit.precision import QuantizeConfig, quantize
from edgevit.runtime import get_runner
from edgevit.runtime.onnxruntime_runner import JUDGED_BY, QDQ_MODES
from edgevit.tolerances import get_tolerance
from tests._fixtures import GATE_MARGIN, decided_gate_data, quantization_robust_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def qdq_graphs(exported, tmp_path_factory):
    """int8 and fp8 graphs on an fp32 base (Q/DQ around fp32 MatMuls) of the robust digits model, gated."""
    out = tmp_path_factory.mktemp("qdq") / "out"
    shutil.copytree(exported, out)
    gate = decided_gate_data(quantization_robust_model(), out.parent / "gate.npz", GATE_MARGIN)
    result = quantize(out, QuantizeConfig(precisions=("int8", "fp8"), int8_base="fp32", data=str(gate),
                                          progress=False))
    return out, gate, result


def _images(n: int = 64) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, 8, 8)).astype(np.float32)


def _run(path, images, qdq: str) -> np.ndarray:
    with get_runner("onnxruntime", path, qdq=qdq) as r:
        return r.infer({"images": images})[r.output_names()[0]]


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_exact_qdq_is_the_graphs_own_arithmetic(qdq_graphs, precision):
    """ONNX's reference evaluator (numpy, the same on every host) is the definition of the graph's
    arithmetic. On an fp32 base the exact run differs from it only by fp32 accumulation order: the fp32
    tolerance row (ORT vs PyTorch fp32) bounds it."""
    from onnx.reference import ReferenceEvaluator

    out, _, _ = qdq_graphs
    path = out / f"model.{precision}.onnx"
    images = _images()
    exact = _run(path, images, "exact")
    proto = onnx.load(str(path))
    for op in proto.opset_import:  # the evaluator implements DequantizeLinear from opset 19 (same int8 semantics)
        if op.domain in ("", "ai.onnx"):
            op.version = max(op.version, 21)
    reference = ReferenceEvaluator(proto).run(None, {"images": images})[0]
    tol = get_tolerance("fp32")
    err = np.abs(exact - reference)
    limit = tol.atol + tol.rtol * np.abs(reference)
    assert (err <= limit).all(), (f"{precision}: exact Q/DQ run vs ONNX reference: max abs {err.max():.3g}, "
                                  f"worst excess {(err - limit).max():.3g} (fp32 row atol {tol.atol}, rtol {tol.rtol})")
    assert (exact.argmax(1) == reference.argmax(1)).all()


def test_runner_refuses_an_unknown_qdq_mode(qdq_graphs):
    out, _, _ = qdq_graphs
    with pytest.raises(ValueError, match="qdq must be one of"):
        get_runner("onnxruntime", out / "model.int8.onnx", qdq="fast")


def test_gate_and_verify_record_that_they_judged_the_exact_arithmetic(qdq_graphs, robust_digits):
    out, _, result = qdq_graphs
    assert JUDGED_BY == "exact"
    for precision in ("int8", "fp8"):
        gate = Manifest.load(out).artifact(precision=precision, format="onnx").extra["gate"]
        assert gate["arithmetic"] == QDQ_MODES["exact"], gate
        assert gate["verdict"] == "passed", gate
    res = CliRunner().invoke(main, ["verify", robust_digits, str(out), "--precision", "int8", "--data", "digits",
                                    "--samples", "32", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["arithmetic"] == QDQ_MODES["exact"], res.output
    table = CliRunner().invoke(main, ["verify", robust_digits, str(out), "--precision", "int8", "--data", "digits",
                                      "--samples", "32", "--qdq", "kernels"])
    # as this CPU's kernels run it: its verdict may differ by host (AVX2 saturates), its report may not
    assert table.exit_code in (0, 1) and "Traceback" not in table.output, table.output
    assert f"Q/DQ run as: {QDQ_MODES['kernels']}" in table.output, table.output
    bad = CliRunner().invoke(main, ["verify", robust_digits, str(out), "--qdq", "fast"])
    assert bad.exit_code == 2, bad.output


def test_bench_shows_both_accuracies_and_the_instruction_set(qdq_graphs, tmp_path):
    out, _, _ = qdq_graphs
    args = ["bench", str(out), "--iterations", "2", "--samples", "32", "--no-report"]
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    rows = {r["name"]: r for r in data["rows"]}
    for precision in ("int8", "fp8"):
        row = rows[f"ort cpu {precision} model.{precision}.onnx"]
        assert set(row["exact_qdq"]) == {"top1", "agreement", "max_abs", "cosine_min", "within_tolerance"}, row
        assert row["within_tolerance"] == row["exact_qdq"]["within_tolerance"], row
        assert row["kernel_drift"]["max_abs"] >= 0.0, row
    assert rows["ort cpu fp32 model.onnx"]["exact_qdq"] is None
    assert isinstance(data["machine"]["cpu_isa"], list) and data["machine"]["int8_kernels"], data["machine"]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "exact top-1" in table.output and "as the graph defines it" in table.output, table.output


def test_bench_row_verdict_is_the_graphs_and_kernel_drift_warns():
    """Synthetic outputs: kernels far from the exact arithmetic (as AVX2 saturation makes them) warn,
    and the tolerance verdict stays the graph's; kernels that match the graph do not warn."""
    from edgevit.bench.report import BenchRow
    from edgevit.bench.run import _accuracy

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((200, 10)).astype(np.float32) * 4
    exact = ref + 0.01 * rng.standard_normal(ref.shape).astype(np.float32)
    drifted = exact.copy()
    drifted[:, 0] += 5.0  # every sample's class 0 saturated far off: outside int8's atol 1.0 + rtol 0.1
    labels = ref.argmax(1)

    def row():
        return BenchRow(name="ort cpu int8 model.int8.onnx", backend="onnxruntime", device="cpu", format="onnx",
                        precision="int8")

    bad = row()
    warning = _accuracy(bad, drifted, ref, labels, exact=exact)
    assert bad.within_tolerance is True and bad.exact_qdq["within_tolerance"] is True, bad.to_dict()
    assert bad.kernel_drift["within_tolerance"] is False and bad.kernel_drift["max_abs"] >= 5.0 - 0.05, bad.kernel_drift
    assert warning and "drift from the graph's exact Q/DQ arithmetic" in warning, warning
    good = row()
    assert _accuracy(good, exact, ref, labels, exact=exact) is None
    assert good.kernel_drift["max_abs"] == 0.0 and good.within_tolerance is True, good.to_dict()


@pytest.mark.parametrize("flags, isa, saturates", [
    ({"sse2", "avx", "avx2", "fma"}, ["AVX2"], True),                              # AMD Zen 3
    ({"avx2", "avx512f", "avx512bw"}, ["AVX2", "AVX-512"], True),                 # Skylake-SP
    ({"avx2", "avx512f", "avx512_vnni"}, ["AVX2", "AVX-512", "VNNI"], False),     # Cascade Lake, Zen 4
    ({"avx2", "avx_vnni", "amx_int8"}, ["AVX2", "VNNI", "AMX"], False),           # Sapphire Rapids
    ({"fp", "asimd", "asimddp"}, ["NEON", "DOTPROD"], False),                     # Jetson Orin (Cortex-A78AE)
])
def test_cpu_isa_and_int8_kernel_note(flags, isa, saturates):
    from edgevit.bench.measure import cpu_isa, int8_kernel_note

    assert cpu_isa(flags) == isa
    assert ("can saturate" in int8_kernel_note(isa)) is saturates, int8_kernel_note(isa)


# ------------------------------------------------------------------------------ an AVX2-only CPU
QEMU = shutil.which("qemu-x86_64")
EMULATED_CPU = "EPYC-Milan"  # AMD Zen 3: AVX2, no AVX-512, no VNNI (QEMU's TCG emulates AVX2 since 7.2)

_RUN_SCRIPT = """
import sys, numpy as np
from edgevit.runtime import get_runner
path, images, qdq, out = sys.argv[1:]
with get_runner("onnxruntime", path, qdq=qdq, threads=1) as r:
    np.save(out, r.infer({"images": np.load(images)})[r.output_names()[0]])
"""


@pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64",
                    reason="needs qemu-x86_64 (Debian's qemu-user; scripts/setup.sh installs it) on an x86_64 host")
def test_the_exact_verdict_is_the_same_on_an_emulated_avx2_cpu(qdq_graphs, tmp_path):
    """The int8 graph's exact outputs on this CPU and on an emulated AVX2-only one (where ONNX Runtime's
    fused int8 kernels take the saturating u8s8 path) agree to fp32 accumulation order, so the gate's
    verdict cannot depend on the host; the kernels' own drift there is printed, not asserted (it is
    ONNX Runtime's business)."""
    out, gate_npz, _ = qdq_graphs
    images = tmp_path / "images.npy"
    from edgevit.data.preprocess import preprocess_array

    with np.load(gate_npz) as z:
        x = preprocess_array(z["images"][:128], Manifest.load(out).preprocessing)
    np.save(images, np.ascontiguousarray(x, dtype=np.float32))
    script = tmp_path / "run.py"
    script.write_text(_RUN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = {}
    for qdq in ("exact", "kernels"):
        native = tmp_path / f"native-{qdq}.npy"
        emulated = tmp_path / f"emulated-{qdq}.npy"
        subprocess.run([sys.executable, str(script), str(out / "model.int8.onnx"), str(images), qdq, str(native)],
                       check=True, env=env, timeout=300)
        run = subprocess.run([QEMU, "-cpu", EMULATED_CPU, sys.executable, str(script), str(out / "model.int8.onnx"),
                              str(images), qdq, str(emulated)], env=env, timeout=600, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        results[qdq] = (np.load(native), np.load(emulated))
    native, emulated = results["exact"]
    tol = get_tolerance("fp32")
    err = np.abs(native - emulated)
    k_native, k_emulated = results["kernels"]
    drift = f"(kernels: native vs exact {np.abs(k_native - native).max():.3g}, emulated AVX2 vs exact " \
            f"{np.abs(k_emulated - native).max():.3g})"
    assert (err <= tol.atol + tol.rtol * np.abs(native)).all(), f"exact: max abs {err.max():.3g} {drift}"
    assert (native.argmax(1) == emulated.argmax(1)).all(), drift
