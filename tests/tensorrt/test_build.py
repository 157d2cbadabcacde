"""``edgevit build`` / ``export --engine`` with TensorRT absent (exit 1, install advice, nothing written),
the refusals that come before TensorRT (asymmetric Q/DQ, DLA for an fp32 graph), the sidecar manifest entry,
the load-time mismatch refusals, and real builds marked ``trt`` + ``gpu`` (skipped without TensorRT or a GPU).

Where TensorRT is needed, the calls are replaced at edgevit's own boundary (``edgevit.tensorrt.build.build_plan``,
``edgevit.tensorrt.session.device_facts``): what is tested is edgevit's writing and checking, not TensorRT.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgevit.tensorrt._bindings as bindings
import edgevit.tensorrt.build as build_mod
import edgevit.tensorrt.session as session_mod
from edgevit.cli import main
from edgevit.errors import EngineMismatchError, ManifestError
from edgevit.manifest import Manifest
from edgevit.tensorrt import rules
from edgevit.tensorrt.fusion import fusion_report
from edgevit.tensorrt.record import EngineRecord

DATA = Path(__file__).parent / "data"


def _has_tensorrt() -> bool:
    try:
        bindings.import_tensorrt()
        return True
    except Exception:
        return False


no_trt = pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the missing-TensorRT path cannot run")


@pytest.fixture
def work(digits_like_copy):
    return digits_like_copy


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


ADVICE = [
    "sudo apt install nvidia-jetpack", "python3-libnvinfer", "--system-site-packages",
    "pip install 'cuda-python==12.6.*'", "edgevit[trt-cu12]", "edgevit[trt-cu13]", "driver >= 580",
    "--extra-index-url https://pypi.nvidia.com",
]


@no_trt
@pytest.mark.parametrize("target", ["outdir", "onnx"])
def test_build_without_tensorrt(work, target):
    before = _listing(work)
    source = work if target == "outdir" else work / "model.onnx"
    result = CliRunner().invoke(main, ["build", str(source), "-o", str(work / "model.plan")])
    assert result.exit_code == 1, (result.exit_code, result.output)
    for line in ADVICE:
        assert line in result.output, f"install advice lacks {line!r}:\n{result.output}"
    assert _listing(work) == before, f"files changed: {set(_listing(work)) ^ set(before)}"


@no_trt
def test_build_without_tensorrt_json(work):
    result = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "m.plan"), "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.output.splitlines()[0])
    assert data["ok"] is False and data["type"] == "MissingDependencyError", data
    assert "edgevit[trt-cu12]" in data["message"] and "pypi.nvidia.com" in data["message"]


@no_trt
def test_export_engine_without_tensorrt_fails_before_exporting(tmp_path):
    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["export", "digits-tiny", "-o", str(out), "--engine"])
    assert result.exit_code == 1, result.output
    assert "sudo apt install nvidia-jetpack" in result.output and "pypi.nvidia.com" in result.output
    assert not out.exists(), _listing(out)


def test_build_refuses_before_tensorrt(work):
    (work / "model.plan").write_bytes(b"old")
    exists = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan")])
    assert exists.exit_code == 1 and "--force" in exists.output, exists.output
    assert (work / "model.plan").read_bytes() == b"old"
    outside = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "x.plan"), "--batch", "1,4,64"])
    assert outside.exit_code == 2 and "outside the range" in outside.output and "1..8" in outside.output, outside.output
    nomanifest = work / "bare"
    nomanifest.mkdir()
    shutil.copy(work / "model.onnx", nomanifest / "model.onnx")
    bare = CliRunner().invoke(main, ["build", str(nomanifest / "model.onnx"), "-o", str(work / "y.plan")])
    assert bare.exit_code == 1 and "no manifest" in bare.output, bare.output


def test_dla_for_an_fp32_graph_refused_before_tensorrt(work):
    before = _listing(work)
    for args in ([], ["--json"]):
        result = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "dla.plan"), "--dla-core", "0", *args])
        assert result.exit_code == 1, result.output
        assert "FP16 and INT8 layers only" in result.output and "graph is fp32" in result.output, result.output
    assert json.loads(result.output.splitlines()[0])["type"] == "TensorRTError"
    assert _listing(work) == before


# ------------------------------------------------------------------ Q/DQ zero points (item 4)
class _Reader:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.items = iter([{"images": rng.standard_normal((1, 1, 8, 8)).astype(np.float32)} for _ in range(16)])

    def get_next(self):
        return next(self.items, None)


def _int8_graph(work: Path, symmetric: bool = True) -> Path:
    """An int8 Q/DQ graph from ONNX Runtime's quantize_static: symmetric (zero points 0, what TensorRT
    accepts) or with its defaults (asymmetric uint8 activations, which TensorRT's parser rejects)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra = {"ActivationSymmetric": True, "WeightSymmetric": True} if symmetric else {}
    types = dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8) if symmetric else {}
    out = work / "model.int8.onnx"
    quantize_static(str(work / "model.onnx"), str(out), _Reader(), quant_format=QuantFormat.QDQ,
                    extra_options=extra, **types)
    m = Manifest.load(work)
    m.add_artifact(out.name, format="onnx", precision="int8")
    m.save(work, force=True)
    return out


def _zero_points(path: Path) -> list:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    return [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]


def test_symmetric_int8_test_graph_has_zero_zero_points(work):
    zps = _zero_points(_int8_graph(work, symmetric=True))
    assert zps and all(np.all(z == 0) for z in zps), [z for z in zps if np.any(z != 0)][:3]
    lint = CliRunner().invoke(main, ["lint", str(work / "model.int8.onnx"), "--json"])
    assert "trt-qdq-zero-point" not in lint.output, lint.output


def test_asymmetric_qdq_refused_by_lint_and_build_before_tensorrt(work):
    path = _int8_graph(work, symmetric=False)
    assert any(np.any(z != 0) for z in _zero_points(path)), "quantize_static's defaults are expected asymmetric"
    lint = CliRunner().invoke(main, ["lint", str(path), "--json"])
    assert lint.exit_code == 1, lint.output
    codes = [f["code"] for f in json.loads(lint.output)["findings"] if f["severity"] == "error"]
    assert "trt-qdq-zero-point" in codes, codes
    table = CliRunner().invoke(main, ["lint", str(path)])
    assert table.exit_code == 1 and "non-zero zero point" in table.output, table.output
    before = _listing(work)
    built = CliRunner().invoke(main, ["build", str(work), "--precision", "int8", "-o", str(work / "m.plan")])
    assert built.exit_code == 1, built.output
    assert "non-zero zero point" in built.output and "symmetric" in built.output, built.output
    assert "pypi.nvidia.com" not in built.output, "refused before TensorRT is imported"
    assert _listing(work) == before


# ------------------------------------------------------------------ sidecar manifest (stubbed at edgevit's boundary)
FACTS = {"tensorrt_version": "10.3.0.30", "tensorrt_cuda_major": 12, "cuda_driver_version": "12.6",
         "gpu_name": "Orin", "compute_capability": "8.7", "dla_cores": 2,
         "jetson": {"l4t": "36.4.4", "jetpack": "6.2.1", "board": "generic", "model": "NVIDIA Jetson AGX Orin"}}
PLAN = b"\x00\x01ftrt-plan-bytes-as-built" * 4


@pytest.fixture
def stub_trt(monkeypatch):
    calls = {}

    def build_plan(onnx_path, opts):
        from edgevit.tensorrt.rules import build_mode

        calls["opts"] = opts
        report = fusion_report((DATA / "vit_depth3_shaped_detailed.json").read_text())
        mode = build_mode(FACTS["tensorrt_version"], opts.precision, opts.has_qdq, opts.config.weakly_typed)
        return build_mod.BuildResult(PLAN, dict(FACTS), mode.to_dict(), report, [], 1.5)

    monkeypatch.setattr(build_mod, "import_tensorrt", lambda: None)
    monkeypatch.setattr(bindings, "import_tensorrt", lambda: None)
    monkeypatch.setattr(build_mod, "build_plan", build_plan)
    monkeypatch.setattr(session_mod, "device_facts", lambda trt=None: dict(FACTS))
    return calls


def test_sidecar_manifest_entry(work, stub_trt):
    result = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan"), "--batch", "1,4,8",
                                       "--workspace", "512", "--json"])
    assert result.exit_code == 0, result.output
    assert (work / "model.plan").read_bytes() == PLAN, "the plan must be written raw, nothing prepended"
    opts = stub_trt["opts"]
    assert (opts.profile, opts.input_shape, opts.precision, opts.has_qdq, opts.config.workspace_mib, opts.config.weakly_typed) == (
        (1, 4, 8), (1, 8, 8), "fp32", False, 512, False), opts
    m = Manifest.load(work)
    art = m.artifact(format="tensorrt")
    assert art.path == "model.plan" and art.precision == "fp32" and art.size_bytes == len(PLAN)
    rec = EngineRecord.from_artifact(art)
    assert rec.tensorrt_version == "10.3.0.30" and rec.tensorrt_cuda_major == 12
    assert rec.cuda_driver_version == "12.6" and "cuda_version" not in art.to_dict()
    assert rec.gpu_name == "Orin" and rec.compute_capability == "8.7" and rec.jetson["jetpack"] == "6.2.1"
    assert rec.profile == (1, 4, 8) and art.extra["profile"] == {"min": 1, "opt": 4, "max": 8}, art.extra["profile"]
    assert rec.build_mode["strongly_typed"] is True and art.extra["weakly_typed"] is False, rec.build_mode
    assert "calibration_cache_sha256" not in art.to_dict(), "the unused calibration-cache hash is gone"
    assert rec.onnx["sha256"] == m.artifact(format="onnx").sha256
    assert rec.fused_attention_blocks == [0, 2] and rec.unfused_attention_blocks == [1]
    assert rec.unknown_attention_blocks == [] and rec.platform == rules.host_platform(), (rec.platform, rules.host_platform())
    assert art.extra == rec.to_fields(), "the record reads back every field the build wrote, in its order"
    assert list(art.extra) == list(rec.to_fields())
    report = json.loads((work / "model.plan.fusion.json").read_text())
    assert report["blocks"]["blocks.1"]["fused"] is False and report["fused_attention_layers"] == 2, report
    assert m.verify_checksums() == [], m.verify_checksums()
    again = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan")])
    assert again.exit_code == 1 and "--force" in again.output
    forced = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "blocks.1" in forced.output and "NO" in forced.output and "_gemm_mha_v2_myl0_2" in forced.output
    assert len(Manifest.load(work).find_artifacts(format="tensorrt")) == 1


def test_build_keeps_what_another_writer_recorded_while_it_built(work, stub_trt, monkeypatch):
    """Issue 16 item 2: the manifest is re-read under OUTDIR's lock before the engine's entry is merged,
    so a quantize that finished during the build stays listed (it used to be dropped)."""
    from edgevit.precision import QuantizeConfig, quantize

    slow_build = build_mod.build_plan

    def build_plan(onnx_path, opts):
        quantize(work, QuantizeConfig(precisions=("fp16",), gate=False))  # another writer, meanwhile
        return slow_build(onnx_path, opts)

    monkeypatch.setattr(build_mod, "build_plan", build_plan)
    result = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan")])
    assert result.exit_code == 0, result.output
    m = Manifest.load(work)
    assert sorted(a.path for a in m.artifacts) == ["model.fp16.onnx", "model.onnx", "model.plan"], m.artifacts
    assert m.verify_checksums() == [], m.verify_checksums()


def test_weakly_typed_is_opt_in_and_recorded(work, stub_trt):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(work / "model.onnx")), keep_io_types=True),
              str(work / "model.fp16.onnx"))
    m = Manifest.load(work)
    m.add_artifact("model.fp16.onnx", format="onnx", precision="fp16")
    m.save(work, force=True)
    result = CliRunner().invoke(main, ["build", str(work), "--precision", "fp16", "-o", str(work / "w.plan"),
                                       "--weakly-typed", "--json"])
    assert result.exit_code == 0, result.output
    art = Manifest.load(work).artifact(format="tensorrt")
    rec = EngineRecord.from_artifact(art)
    assert rec.weakly_typed is True and rec.build_mode["flags"] == ["FP16"], rec.build_mode
    assert art.extra["weakly_typed"] is True and rec.build_options["weakly_typed"] is True


def test_calibration_cache_option_is_gone(work, stub_trt, tmp_path):
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"calibration")
    result = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "m.plan"), "--calibration-cache", str(cache)])
    assert result.exit_code == 2 and "--calibration-cache" in result.output, result.output


def test_engine_in_another_directory_gets_a_manifest(work, stub_trt, tmp_path):
    dest = tmp_path / "device"
    result = CliRunner().invoke(main, ["build", str(work / "model.onnx"), "-o", str(dest / "vit.plan")])
    assert result.exit_code == 0, result.output
    m = Manifest.load(dest)
    assert [a.path for a in m.artifacts] == ["vit.plan"], m.artifacts
    assert m.labels == [str(i) for i in range(10)] and m.preprocessing and m.batch.max == 8


def test_engine_load_checks_the_record_against_the_machine(work, stub_trt, monkeypatch):
    from edgevit.runtime import Engine

    CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan")])
    other = {**FACTS, "gpu_name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"}
    monkeypatch.setattr(session_mod, "device_facts", lambda trt=None: other)
    with pytest.raises(EngineMismatchError, match="rebuild the engine on this target") as exc:
        Engine.load(work / "model.plan")
    assert "8.7" in str(exc.value) and "8.0" in str(exc.value), str(exc.value)
    for version in ("10.7.0", "10.3.0.26"):  # not version-compatible: all four parts must match
        monkeypatch.setattr(session_mod, "device_facts", lambda trt=None, v=version: {**FACTS, "tensorrt_version": v})
        with pytest.raises(EngineMismatchError, match="TensorRT 10.3.0.30"):
            Engine.load(work / "model.plan")
    result = CliRunner().invoke(main, ["predict", str(work / "model.plan"), str(work / "model.onnx")])
    assert result.exit_code == 1 and "rebuild" in result.output, result.output


def test_engine_from_another_platform_refused_even_when_ampere_plus(work, stub_trt, monkeypatch):
    """Before: the record held no platform and ampere_plus skipped every check but the compute capability."""
    from edgevit.runtime import Engine

    built = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan"), "--hardware-compat", "ampere_plus"])
    assert built.exit_code == 0, built.output
    other = "windows-x86_64" if not rules.host_platform().startswith("windows") else "linux-aarch64"
    monkeypatch.setattr(session_mod, "device_facts", lambda trt=None: {**FACTS, "platform": other})
    with pytest.raises(EngineMismatchError, match=f"built on {rules.host_platform()}, this machine is {other}"):
        Engine.load(work / "model.plan")


def test_build_resolve_errors(work):
    with pytest.raises(ManifestError, match="no artifact with precision='int8'"):
        build_mod.build_engine(work, work / "x.plan", build_mod.EngineBuildConfig(precision="int8"))
    with pytest.raises(ValueError, match="fp32 graph"):
        build_mod.build_engine(work / "model.onnx", work / "x.plan", build_mod.EngineBuildConfig(precision="fp16"))


# ------------------------------------------------------------------ real TensorRT (skipped without it)
@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_and_run_real_engine(work, precision, tmp_path):
    from edgevit.runtime import Engine

    if precision == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(work / "model.onnx")), keep_io_types=True),
                  str(work / "model.fp16.onnx"))
        m = Manifest.load(work)
        m.add_artifact("model.fp16.onnx", format="onnx", precision="fp16")
        m.save(work, force=True)
    elif precision == "int8":
        _int8_graph(work, symmetric=True)
    plan = work / f"model.{precision}.plan"
    result = build_mod.build_engine(work, plan, build_mod.EngineBuildConfig(
        precision=precision, timing_cache=str(tmp_path / "t.cache"), version_compatible=precision == "fp32"))
    assert plan.exists() and (tmp_path / "t.cache").exists()
    assert result.entry.precision == precision and EngineRecord.from_artifact(result.entry).build_mode["strongly_typed"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    with Engine.load(work / "model.onnx", threads=1) as ref, Engine.load(plan, cuda_graph=True) as eng:
        a = ref.infer({"images": x})["logits"]
        for batch in (8, 2, 8):  # re-capture on a new shape
            b = eng.infer({"images": x[:batch]})["logits"]
            cos = float(np.min(np.sum(a[:batch] * b, 1) / (np.linalg.norm(a[:batch], axis=1) * np.linalg.norm(b, axis=1))))
            limit = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98}[precision]
            assert cos >= limit, f"{precision} engine vs ONNX fp32, batch {batch}: min cosine {cos:.6f} < {limit}"
        with pytest.raises(Exception, match="outside the optimization profile"):
            eng.infer({"images": np.zeros((9, 1, 8, 8), np.float32)})
    assert hashlib.sha256(plan.read_bytes()).hexdigest() == result.entry.sha256
