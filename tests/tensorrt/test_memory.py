"""The engine's device memory for its profile, recorded at build (issue 19 item 11), on the recording
stand-ins of test_calls.py: ``ICudaEngine`` as NVIDIA's Python bindings shape it (pyCore.cpp: the
``_v2`` names from TensorRT 10.1, the first-generation ones before), never a real TensorRT."""

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import edgevit.tensorrt.build as build_mod
from edgevit.cli import main
from edgevit.manifest import Manifest
from edgevit.tensorrt.record import EngineRecord
import edgevit.tensorrt._bindings as bindings
import edgevit.tensorrt.session as session_mod
from tests.tensorrt.test_build import FACTS
from tests.tensorrt import test_calls
from tests.tensorrt.test_calls import VIT, _opts, fake_trt


# the stand-in ``tensorrt`` installer of test_calls.py, used as this module's fixture
use = test_calls.use


class InspectableEngine:
    def create_engine_inspector(self):
        return SimpleNamespace(get_engine_information=lambda fmt: VIT)


class Engine103(InspectableEngine):
    device_memory_size = 3_000_000
    device_memory_size_v2 = 7_000_000

    def get_device_memory_size_for_profile(self, index):
        return 2_000_000

    def get_device_memory_size_for_profile_v2(self, index):
        return {0: 5_000_000}[index]


class Engine100(InspectableEngine):
    device_memory_size = 3_000_000

    def get_device_memory_size_for_profile(self, index):
        return {0: 2_000_000}[index]


def test_build_records_the_engines_device_memory_for_its_profile(use):
    for engine, want in ((Engine103(), 5_000_000), (Engine100(), 2_000_000), (InspectableEngine(), None)):
        trt, rec = fake_trt()
        rec.engine = engine
        use(trt)
        built = build_mod.build_plan("m.onnx", _opts())
        assert built.device_memory_bytes == want, (type(engine).__name__, built.device_memory_bytes, want)


def test_engine_record_keeps_device_memory():
    record = EngineRecord(profile=(1, 2, 8), device_memory_bytes=5_000_000)
    fields = record.to_fields()
    assert fields["device_memory_bytes"] == 5_000_000, fields
    assert EngineRecord.from_fields(fields).device_memory_bytes == 5_000_000


# ------------------------------------------------------------------ build --memory-budget
PLAN = b"\x00plan" * 200_000  # 1.0 MB


@pytest.fixture
def budget_build(digits_like_copy, monkeypatch):
    """``edgevit build`` with TensorRT replaced at edgevit's boundary: a 1.0 MB plan whose engine needs
    ``device[0]`` bytes for its profile (None: a TensorRT that does not say)."""
    from edgevit.tensorrt.fusion import fusion_report
    from edgevit.tensorrt.rules import build_mode

    device = [3_000_000]

    def build_plan(onnx_path, opts):
        mode = build_mode("10.3.0.30", opts.precision, opts.has_qdq, opts.config.weakly_typed)
        return build_mod.BuildResult(PLAN, dict(FACTS), mode.to_dict(), fusion_report(VIT), [], 1.0,
                                     device_memory_bytes=device[0])

    monkeypatch.setattr(build_mod, "import_tensorrt", lambda: None)
    monkeypatch.setattr(bindings, "import_tensorrt", lambda: None)
    monkeypatch.setattr(build_mod, "build_plan", build_plan)
    monkeypatch.setattr(session_mod, "device_facts", lambda trt=None: dict(FACTS))
    return digits_like_copy, device


def test_memory_budget_refuses_an_engine_that_does_not_fit(budget_build):
    work, device = budget_build
    out = work / "model.plan"
    res = CliRunner().invoke(main, ["build", str(work), "-o", str(out), "--memory-budget", "3.5"])
    assert res.exit_code != 0 and not out.exists(), (res.exit_code, res.output)
    text = " ".join(res.output.split())
    assert "4.0 MB" in text and "--memory-budget 3.5 MB" in text and "--batch" in text, text
    ok = CliRunner().invoke(main, ["build", str(work), "-o", str(out), "--memory-budget", "4.5", "--json"])
    assert ok.exit_code == 0 and out.exists(), ok.output
    art = Manifest.load(work).artifact(format="tensorrt")
    record = EngineRecord.from_artifact(art)
    assert record.device_memory_bytes == 3_000_000 and record.build_options["memory_budget_mb"] == 4.5, art.extra


def test_memory_budget_counts_the_plan_where_device_memory_is_unknown(budget_build):
    from edgevit.tensorrt.memory import check_memory_budget

    work, device = budget_build
    device[0] = None
    res = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan"), "--memory-budget", "0.5"])
    assert res.exit_code != 0 and "plan 1.0 MB" in " ".join(res.output.split()), res.output
    assert check_memory_budget(10**6, None, 2.0)["note"], "an unknown device memory is said"
    assert check_memory_budget(10**6, None, None) is None
    with pytest.raises(ValueError, match="memory-budget"):
        build_mod.EngineBuildConfig(memory_budget_mb=0)
