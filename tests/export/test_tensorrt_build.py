"""``edgevit build`` / ``export --engine``: without TensorRT (exit 1, install advice, nothing
written), the sidecar manifest entry and the load-time mismatch refusals (TensorRT calls
replaced at the edgevit.tensorrt_api boundary, never a fake tensorrt module), and real builds
marked ``trt`` + ``gpu`` (skipped where TensorRT or a GPU is absent)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit import tensorrt_api
from edgevit.cli import main
from edgevit.errors import ManifestError
from edgevit.manifest import Manifest
from edgevit.tensorrt_rules import EngineMismatchError, fusion_report
from tests._fixtures import export_digits_like

DATA = Path(__file__).resolve().parents[1] / "runtime" / "data"


def _has_tensorrt() -> bool:
    try:
        tensorrt_api.import_tensorrt()
        return True
    except Exception:
        return False


no_trt = pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the missing-TensorRT path cannot run")


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_like")
    export_digits_like(out, batch=(1, 2, 8))
    return out


@pytest.fixture
def work(outdir, tmp_path):
    dst = tmp_path / "out"
    shutil.copytree(outdir, dst)
    return dst


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


ADVICE = [
    "sudo apt install nvidia-jetpack", "python3-libnvinfer", "--system-site-packages",
    "pip install tensorrt --extra-index-url https://pypi.nvidia.com", "pip install 'edgevit[trt]'",
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
    assert "pypi.nvidia.com" in data["message"]


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


# ------------------------------------------------------------------ sidecar manifest (TensorRT calls stubbed
# at the tensorrt_api boundary: what is tested is edgevit's writing, not TensorRT)
FACTS = {"tensorrt_version": "10.3.0.30", "cuda_version": "12.6", "gpu_name": "Orin", "compute_capability": "8.7",
         "dla_cores": 2, "jetson": {"l4t": "36.4.0", "jetpack": "6.1", "board": "generic"}}
PLAN = b"\x00\x01ftrt-plan-bytes-as-built" * 4


@pytest.fixture
def stub_trt(monkeypatch):
    calls = {}

    def build_plan(onnx_path, opts):
        calls["opts"] = opts
        report = fusion_report((DATA / "trex_resnet_a100_fp16.onnx.engine.graph.json").read_text())
        return tensorrt_api.BuildResult(PLAN, dict(FACTS), {"strongly_typed": False, "flags": [], "reason": "x"},
                                        report, [], 1.5)

    monkeypatch.setattr(tensorrt_api, "import_tensorrt", lambda: None)
    monkeypatch.setattr(tensorrt_api, "build_plan", build_plan)
    monkeypatch.setattr(tensorrt_api, "device_facts", lambda trt=None: dict(FACTS))
    return calls


def test_sidecar_manifest_entry(work, stub_trt, tmp_path):
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"calibration")
    result = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan"), "--batch", "1,4,8",
                                       "--calibration-cache", str(cache), "--workspace", "512", "--json"])
    assert result.exit_code == 0, result.output
    assert (work / "model.plan").read_bytes() == PLAN, "the plan must be written raw, nothing prepended"
    opts = stub_trt["opts"]
    assert (opts.profile, opts.input_shape, opts.precision, opts.has_qdq, opts.workspace_mib) == (
        (1, 4, 8), (1, 8, 8), "fp32", False, 512), opts
    m = Manifest.load(work)
    art = m.artifact(format="tensorrt")
    onnx_art = m.artifact(format="onnx")
    assert art.path == "model.plan" and art.precision == "fp32" and art.size_bytes == len(PLAN)
    assert art["tensorrt_version"] == "10.3.0.30" and art["cuda_version"] == "12.6"
    assert art["gpu_name"] == "Orin" and art["compute_capability"] == "8.7" and art["jetson"]["jetpack"] == "6.1"
    assert art["profile"] == {"min": 1, "opt": 4, "max": 8}, art["profile"]
    assert art["onnx"]["sha256"] == onnx_art.sha256
    import hashlib

    assert art["calibration_cache_sha256"] == hashlib.sha256(b"calibration").hexdigest()
    report = json.loads((work / "model.plan.fusion.json").read_text())
    assert report["num_layers"] == 36 and report["fused_attention_layers"] == 0, report
    assert m.verify_checksums() == [], m.verify_checksums()
    # a second build needs --force
    again = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan")])
    assert again.exit_code == 1 and "--force" in again.output
    forced = CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(Manifest.load(work).find_artifacts(format="tensorrt")) == 1


def test_engine_in_another_directory_gets_a_manifest(work, stub_trt, tmp_path):
    dest = tmp_path / "device"
    result = CliRunner().invoke(main, ["build", str(work / "model.onnx"), "-o", str(dest / "vit.plan")])
    assert result.exit_code == 0, result.output
    m = Manifest.load(dest)
    assert [a.path for a in m.artifacts] == ["vit.plan"], m.artifacts
    assert m.labels == [str(i) for i in range(10)] and m.preprocessing and m.batch["max"] == 8


def test_engine_load_refuses_mismatch(work, stub_trt, monkeypatch):
    from edgevit.runtime import Engine

    CliRunner().invoke(main, ["build", str(work), "-o", str(work / "model.plan")])
    other = {**FACTS, "gpu_name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"}
    monkeypatch.setattr(tensorrt_api, "device_facts", lambda trt=None: other)
    with pytest.raises(EngineMismatchError, match="rebuild the engine on this target") as exc:
        Engine.load(work / "model.plan")
    assert "8.7" in str(exc.value) and "8.0" in str(exc.value), str(exc.value)
    newer = {**FACTS, "tensorrt_version": "10.7.0"}
    monkeypatch.setattr(tensorrt_api, "device_facts", lambda trt=None: newer)
    with pytest.raises(EngineMismatchError, match="TensorRT 10.3.0.30"):
        Engine.load(work / "model.plan")
    result = CliRunner().invoke(main, ["predict", str(work / "model.plan"), str(work / "model.onnx")])
    assert result.exit_code == 1 and "rebuild" in result.output, result.output


def test_resolve_onnx_errors(work):
    from edgevit.export.tensorrt import resolve_onnx

    with pytest.raises(ManifestError, match="no artifact with precision='int8'"):
        resolve_onnx(work, "int8")
    with pytest.raises(ValueError, match="fp32 graph"):
        resolve_onnx(work / "model.onnx", "fp16")


# ------------------------------------------------------------------ real TensorRT (skipped without it)
def _fp16_graph(work: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(work / "model.onnx")), keep_io_types=True)
    onnx.save(model, str(work / "model.fp16.onnx"))
    m = Manifest.load(work)
    m.add_artifact("model.fp16.onnx", format="onnx", precision="fp16")
    m.save(work, force=True)


def _int8_graph(work: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"images": rng.standard_normal((1, 1, 8, 8)).astype(np.float32)} for _ in range(16)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(work / "model.onnx"), str(work / "model.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    m = Manifest.load(work)
    m.add_artifact("model.int8.onnx", format="onnx", precision="int8")
    m.save(work, force=True)


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_and_run_real_engine(work, precision, tmp_path):
    from edgevit.export.tensorrt import EngineBuildConfig, build_engine
    from edgevit.runtime import Engine

    if precision == "fp16":
        _fp16_graph(work)
    elif precision == "int8":
        _int8_graph(work)
    plan = work / f"model.{precision}.plan"
    result = build_engine(work, plan, EngineBuildConfig(precision=precision, timing_cache=str(tmp_path / "t.cache")))
    assert plan.exists() and (tmp_path / "t.cache").exists()
    assert result.artifact["precision"] == precision, result.artifact
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    with Engine.load(work / "model.onnx", threads=1) as ref, Engine.load(plan) as eng:
        a = ref.infer({"images": x})["logits"]
        b = eng.infer({"images": x})["logits"]
        cos = float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
        limit = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98}[precision]
        assert cos >= limit, f"{precision} engine vs ONNX fp32: min cosine {cos:.6f} < {limit}"
        with pytest.raises(Exception, match="outside the optimization profile"):
            eng.infer({"images": np.zeros((9, 1, 8, 8), np.float32)})
