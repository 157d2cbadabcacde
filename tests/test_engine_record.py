"""`edgevit verify` and `edgevit bench` hand a TensorRT engine's manifest record to the runner, so
the record is checked against the machine before the engine is used (as Engine.load does).

No TensorRT here: the test replaces the machine's facts (`session.device_facts`) and the engine
session, and watches the real compatibility check (`rules.check_engine_compat`). It shows that the
record reaches the check and that a mismatch stops the command; nothing here runs an engine."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgevit import save_model
from edgevit.cli import main
from edgevit.manifest import Manifest

RECORD = {"tensorrt_version": "10.3.0.30", "tensorrt_cuda_major": 12, "gpu_name": "Orin",
          "compute_capability": "8.7", "version_compatible": False, "hardware_compatibility_level": "none"}
MACHINE = {"tensorrt_version": "10.9.0.34", "tensorrt_cuda_major": 12, "cuda_driver_version": "12.6",
           "gpu_name": "Orin", "compute_capability": "8.7"}


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory):
    """An export of digits_like_model (from its checkpoint) plus an fp16 engine entry built 'elsewhere'."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from tests._fixtures import digits_like_model

    root = tmp_path_factory.mktemp("engine-record")
    ckpt = save_model(digits_like_model(), root / "model.safetensors")
    out = root / "out"
    export_onnx(str(ckpt), out, ExportConfig(batch=(1, 2, 8), verify=False, lint=False))
    (out / "model.plan").write_bytes(b"a plan that no test deserializes")
    m = Manifest.load(out)
    m.add_artifact("model.plan", format="tensorrt", precision="fp16", **RECORD)
    m.save(force=True)
    return str(ckpt), out


@pytest.fixture
def checked(monkeypatch):
    """The records the compatibility check saw; this machine has TensorRT 10.9, not the record's 10.3."""
    from edgevit.tensorrt import rules, session

    seen: list = []
    real = rules.check_engine_compat

    def spy(recorded, current, engine="engine"):
        seen.append(recorded)
        return real(recorded, current, engine=engine)

    def no_session(*args, **kwargs):
        raise AssertionError("the engine was deserialized without its manifest record being checked")

    monkeypatch.setattr("edgevit.tensorrt._bindings.import_tensorrt", lambda: None)
    monkeypatch.setattr(session, "device_facts", lambda trt=None: dict(MACHINE))
    monkeypatch.setattr(session, "EngineSession", no_session)
    monkeypatch.setattr(rules, "check_engine_compat", spy)
    return seen


def _assert_record_checked(seen: list) -> None:
    assert seen, "the engine's manifest record never reached check_engine_compat"
    got = {k: getattr(seen[0], k) for k in RECORD}
    assert got == RECORD, f"the check saw {got}, the manifest records {RECORD}"


def test_verify_checks_the_engine_record_before_use(engine_dir, checked):
    ckpt, out = engine_dir
    res = CliRunner().invoke(main, ["verify", ckpt, str(out / "model.plan"), "--samples", "4", "--json"])
    _assert_record_checked(checked)
    assert res.exit_code == 1 and "Traceback" not in res.output, f"exit {res.exit_code}: {res.output}"
    err = json.loads(res.output.splitlines()[0])
    assert err["type"] == "EngineMismatchError", err
    assert "built with TensorRT 10.3.0.30" in err["message"] and "10.9.0.34" in err["message"], err["message"]
    assert "edgevit build" in err["message"], err["message"]
    human = CliRunner().invoke(main, ["verify", ckpt, str(out / "model.plan"), "--samples", "4"])
    assert human.exit_code == 1 and "built with TensorRT 10.3.0.30" in human.output, human.output


def test_bench_checks_the_engine_record_before_use(engine_dir, checked):
    _, out = engine_dir
    args = ["bench", str(out / "model.plan"), "--device", "cpu", "--no-report", "--data", "random",
            "--samples", "8", "--iterations", "3", "--warmup-s", "0"]
    res = CliRunner().invoke(main, [*args, "--json"])
    _assert_record_checked(checked)
    assert res.exit_code == 1 and "Traceback" not in res.output, f"exit {res.exit_code}: {res.output}"
    rows = {r["name"]: r for r in json.loads(res.stdout)["rows"]}
    engine = rows["tensorrt fp16 model.plan"]
    assert engine["status"] == "failed" and engine["latency_ms"] is None, engine
    assert "EngineMismatchError" in engine["reason"] and "built with TensorRT 10.3.0.30" in engine["reason"], \
        engine["reason"]
    human = CliRunner().invoke(main, args)
    assert human.exit_code == 1 and "built with TensorRT 10.3.0.30" in " ".join(human.output.split()), human.output
