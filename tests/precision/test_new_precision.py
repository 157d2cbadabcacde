"""A precision added through the documented extension point alone (one row with its tolerance,
:func:`edgevit.formats.register_precision`) runs through quantize -> verify -> bench on the digits model.

The made-up row is float8 E5M2 Q/DQ: the fp8 Q/DQ builder with another quantized element type (ONNX
Runtime's CPU kernels execute float8e5m2 QuantizeLinear/DequantizeLinear, opset 19)."""

from __future__ import annotations

import shutil

import onnx
import pytest
from onnx import TensorProto

from edgevit import formats
from edgevit.bench import BenchConfig, run_bench
from edgevit.formats import QDQ, Precision, onnx_file, register_precision
from edgevit.manifest import Manifest
from edgevit.onnx_graph import graph_precision
from edgevit.precision import QuantizeConfig, qdq_summary, quantize
from edgevit.tolerances import get_tolerance
from edgevit.verify import verify
from tests._fixtures import GATE_MARGIN, decided_gate_data, quantization_robust_model

NAME = "fp8e5m2"
ROW = Precision(
    NAME, QDQ, "float8 e5m2 Q/DQ on the Linear inputs (made up for this test)", quantized=True,
    element="FLOAT8E5M2", numpy_type="float8_e5m2",
    tolerance=dict(atol=3.0, rtol=2e-1, min_cosine=0.94, min_agreement=0.9, attn_atol=1.6, attn_rtol=2e-1,
                   attn_min_cosine=0.99, note="made up: twice the fp8 row's limits (two mantissa bits, not three)"),
)


@pytest.fixture
def e5m2():
    """The row registered for one test; the table is restored afterwards."""
    saved = list(formats.PRECISION_TABLE)
    register_precision(ROW)
    try:
        yield ROW
    finally:
        formats.PRECISION_TABLE[:] = saved


@pytest.fixture(scope="module")
def gate_data(tmp_path_factory):
    return decided_gate_data(quantization_robust_model(), tmp_path_factory.mktemp("gate") / "gate.npz", GATE_MARGIN)


def test_the_fixture_restores_the_table():
    assert NAME not in formats.PRECISIONS and NAME not in formats.ONNX_PRECISIONS


def test_register_refuses_a_taken_name_and_an_incomplete_onnx_row(e5m2):
    with pytest.raises(ValueError, match="already"):
        register_precision(ROW)
    with pytest.raises(ValueError, match="tolerance"):
        register_precision(Precision("fp8x", QDQ, "no tolerance", quantized=True, element="FLOAT8E5M2",
                                     numpy_type="float8_e5m2"))


def test_a_registered_precision_runs_through_quantize_verify_and_bench(e5m2, exported, robust_digits, gate_data,
                                                                       tmp_path):
    assert NAME in formats.ONNX_PRECISIONS and NAME in formats.QUANTIZED
    assert get_tolerance(NAME).atol == ROW.tolerance["atol"]
    out = tmp_path / "out"
    shutil.copytree(exported, out)

    result = quantize(out, QuantizeConfig(precisions=(NAME,), data=str(gate_data), progress=False))
    assert result.ok, result.entries[NAME]["gate"].to_dict()
    assert result.entries[NAME]["recipe"]["format"] == "float8e5m2", result.entries[NAME]["recipe"]
    proto = onnx.load(str(out / onnx_file(NAME)))
    zero_points = {t.data_type for t in proto.graph.initializer if t.name.endswith("zero_point")}
    assert zero_points == {TensorProto.FLOAT8E5M2}, zero_points
    summary = qdq_summary(proto)
    assert summary["dq_feeds"] == ["MatMul"] and set(summary["weight_axes"].values()) == {None}, summary
    assert graph_precision(proto)[0] == NAME, graph_precision(proto)
    assert Manifest.load(out).artifact(precision=NAME, format="onnx").path == onnx_file(NAME)

    report = verify(robust_digits, str(out / onnx_file(NAME)), samples=64, batch_size=32)
    assert report.precision == NAME and report.ok, report.failures
    assert report.tolerance["atol"] == ROW.tolerance["atol"], report.tolerance

    bench = run_bench([out], BenchConfig(device="cpu", iterations=3, warmup_s=0.0, samples=64))
    rows = {r.precision: r for r in bench.rows if r.backend == "onnxruntime"}
    assert rows[NAME].status == "ok" and rows[NAME].within_tolerance is True, rows[NAME]
