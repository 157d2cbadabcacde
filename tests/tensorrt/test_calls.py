"""edgevit's own logic around the TensorRT and CUDA calls, on recording stand-ins for ``tensorrt`` and
``cuda.bindings.runtime``: which calls are made, in which order, and which return values are checked.

The stand-ins only record and return what the bindings are documented to return (bool from
``set_timing_cache`` / ``set_input_shape`` / ``execute_async_v3``, ``(err, value)`` tuples from cuda-python);
they say nothing about TensorRT's behaviour, which has never run here (see README, TensorRT section).
The names edgevit uses are checked per TensorRT version by the API-table test in this directory.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import edgevit.tensorrt._bindings as bindings
import edgevit.tensorrt.build as build_mod
import edgevit.tensorrt.session as session_mod
from edgevit.errors import TensorRTError
from edgevit.tensorrt.record import EngineRecord

VIT = (Path(__file__).parent / "data" / "vit_depth3_shaped_detailed.json").read_text()


# ------------------------------------------------------------------ stand-ins
class Recorder:
    def __init__(self):
        self.calls = []


def fake_trt(version="10.3.0.30", rec=None, timing_cache_ok=True, vc_plan=False, dla_cores=2):
    rec = rec or Recorder()
    levels = {"AMPERE_PLUS": "AMPERE_PLUS"}
    if tuple(int(p) for p in version.split(".")[:2]) >= (10, 9):
        levels["SAME_COMPUTE_CAPABILITY"] = "SAME_COMPUTE_CAPABILITY"
    flags = {"VERSION_COMPATIBLE": "VC", "GPU_FALLBACK": "GPU_FALLBACK"}
    if version.startswith("10."):
        flags.update(FP16="FP16", BF16="BF16", INT8="INT8", PREFER_PRECISION_CONSTRAINTS="PREFER_PRECISION_CONSTRAINTS")

    class Config:
        def __init__(self):
            self.flags = []

        def set_flag(self, flag):
            self.flags.append(flag)

        def set_memory_pool_limit(self, pool, size):
            rec.calls.append(("pool", pool, size))

        def add_optimization_profile(self, profile):
            rec.calls.append(("profile", profile.shapes))

        def create_timing_cache(self, data):
            rec.calls.append(("create_timing_cache", data))
            return SimpleNamespace(serialize=lambda: b"new-cache")

        def set_timing_cache(self, cache, ignore_mismatch):
            rec.calls.append(("set_timing_cache", ignore_mismatch))
            return timing_cache_ok

        def get_timing_cache(self):
            return SimpleNamespace(serialize=lambda: b"new-cache")

    class Profile:
        def __init__(self):
            self.shapes = None

        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger):
            rec.calls.append(("Builder",))

        def create_network(self, flags):
            rec.calls.append(("create_network", flags))
            return SimpleNamespace(num_layers=0)

        def create_builder_config(self):
            rec.config = Config()
            return rec.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec.calls.append(("build", list(config.flags)))
            return b"VCPLAN" if vc_plan else b"PLAN"

    class Engine:
        def create_engine_inspector(self):
            return SimpleNamespace(get_engine_information=lambda fmt: VIT)

    class Runtime:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            self.engine_host_code_allowed = False
            rec.runtime = self

        def deserialize_cuda_engine(self, plan):
            rec.calls.append(("deserialize", self.engine_host_code_allowed, getattr(self, "DLA_core", None)))
            if bytes(plan).startswith(b"VC") and not self.engine_host_code_allowed:
                return None  # a version-compatible plan needs engine_host_code_allowed
            return rec.engine if hasattr(rec, "engine") else Engine()

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    class Logger:
        WARNING = "W"

        def __init__(self, level):
            pass

    return SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, Runtime=Runtime, OnnxParser=Parser,
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=0),
        BuilderFlag=SimpleNamespace(**flags), HardwareCompatibilityLevel=SimpleNamespace(**levels),
        ProfilingVerbosity=SimpleNamespace(DETAILED="DETAILED"), MemoryPoolType=SimpleNamespace(WORKSPACE="WS"),
        LayerInformationFormat=SimpleNamespace(JSON="JSON"), DeviceType=SimpleNamespace(DLA="DLA"),
        TensorIOMode=SimpleNamespace(INPUT="IN", OUTPUT="OUT"), nptype=lambda dt: np.float32,
    ), rec


FACTS = {"tensorrt_version": "10.3.0.30", "tensorrt_cuda_major": 12, "cuda_driver_version": "12.6",
         "gpu_name": "Orin", "compute_capability": "8.7", "dla_cores": 2, "jetson": None}


@pytest.fixture
def use(monkeypatch):
    def install(trt):
        monkeypatch.setattr(bindings, "_LOGGER", None)
        monkeypatch.setattr(build_mod, "import_tensorrt", lambda: trt)
        monkeypatch.setattr(session_mod, "import_tensorrt", lambda: trt)
        monkeypatch.setattr(session_mod, "device_facts", lambda trt=None: {**FACTS, "tensorrt_version": trt.__version__})
    return install


def _opts(**settings):
    """BuildOptions of an fp16 1x8x8 graph, with ``settings`` as its EngineBuildConfig."""
    return build_mod.BuildOptions(precision="fp16", profile=(1, 2, 8), input_shape=(1, 8, 8),
                                  config=build_mod.EngineBuildConfig(**settings))


# ------------------------------------------------------------------ build_plan
def test_version_compatible_plan_is_deserialized_with_host_code_allowed(use):
    """Before: the just-built version-compatible plan was deserialized without engine_host_code_allowed: always failed."""
    trt, rec = fake_trt(vc_plan=True)
    use(trt)
    built = build_mod.build_plan("m.onnx", _opts(version_compatible=True))
    assert ("deserialize", True, None) in rec.calls, rec.calls
    assert "VC" in rec.config.flags and built.report.fused_attention_blocks == [0, 2]


def test_profile_spans_the_batch_and_a_dynamic_height_and_width(use):
    trt, rec = fake_trt()
    use(trt)
    build_mod.build_plan("m.onnx", _opts())
    assert ("profile", ("images", (1, 1, 8, 8), (2, 1, 8, 8), (8, 1, 8, 8))) in rec.calls, rec.calls
    sized = build_mod.BuildOptions(precision="fp16", profile=(1, 2, 8), input_shape=(1, 8, 8),
                                   size_range={"height": [4, 16], "width": [6, 12]})
    build_mod.build_plan("m.onnx", sized)
    assert ("profile", ("images", (1, 1, 4, 6), (2, 1, 8, 8), (8, 1, 16, 12))) in rec.calls, rec.calls


def test_strongly_typed_network_on_tensorrt_10(use):
    trt, rec = fake_trt()
    use(trt)
    built = build_mod.build_plan("m.onnx", _opts())
    assert ("create_network", 1) in rec.calls and "FP16" not in rec.config.flags, rec.calls
    assert built.mode["strongly_typed"] is True
    trt, rec = fake_trt("11.0.0")
    use(trt)
    build_mod.build_plan("m.onnx", _opts())
    assert ("create_network", 0) in rec.calls, "TensorRT 11 is always strongly typed; its flag is deprecated"
    trt, rec = fake_trt()
    use(trt)
    weak = build_mod.build_plan("m.onnx", _opts(weakly_typed=True))
    assert ("create_network", 0) in rec.calls and "FP16" in rec.config.flags and weak.mode["flags"] == ["FP16"]


def test_ampere_plus_on_tensorrt_10_3(use):
    """Before: {..., SAME_COMPUTE_CAPABILITY} was built eagerly: AttributeError on < 10.9 for every level."""
    trt, rec = fake_trt("10.3.0.30")
    use(trt)
    build_mod.build_plan("m.onnx", _opts(hardware_compatibility="ampere_plus"))
    assert rec.config.hardware_compatibility_level == "AMPERE_PLUS"


def test_same_compute_capability_refused_before_building_on_10_3(use):
    trt, rec = fake_trt("10.3.0.30")
    use(trt)
    with pytest.raises(TensorRTError, match=r"needs TensorRT >= 10\.9"):
        build_mod.build_plan("m.onnx", _opts(hardware_compatibility="same_compute_capability"))
    assert ("Builder",) not in rec.calls
    trt, rec = fake_trt("10.9.0.34")
    use(trt)
    build_mod.build_plan("m.onnx", _opts(hardware_compatibility="same_compute_capability"))
    assert rec.config.hardware_compatibility_level == "SAME_COMPUTE_CAPABILITY"


def test_mismatched_timing_cache_is_an_error_not_replaced(use, tmp_path):
    """Before: set_timing_cache's False was ignored and the user's cache file was overwritten."""
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"cache-from-another-gpu")
    trt, rec = fake_trt(timing_cache_ok=False)
    use(trt)
    with pytest.raises(TensorRTError, match=f"--timing-cache {cache} was made by another TensorRT"):
        build_mod.build_plan("m.onnx", _opts(timing_cache=str(cache)))
    assert cache.read_bytes() == b"cache-from-another-gpu"
    assert ("set_timing_cache", False) in rec.calls
    trt, rec = fake_trt(timing_cache_ok=True)
    use(trt)
    build_mod.build_plan("m.onnx", _opts(timing_cache=str(cache)))
    assert cache.read_bytes() == b"new-cache"


def test_dla_build_without_a_dla_layer_refused(use):
    trt, rec = fake_trt()
    use(trt)
    static = build_mod.BuildOptions(precision="fp16", profile=(1, 1, 1), input_shape=(1, 8, 8),
                                    config=build_mod.EngineBuildConfig(dla_core=0))  # DLA: one batch (issue 19)
    with pytest.raises(TensorRTError, match="no layer running on DLA"):
        build_mod.build_plan("m.onnx", static)
    assert rec.config.default_device_type == "DLA" and "GPU_FALLBACK" in rec.config.flags


# ------------------------------------------------------------------ device facts
class FakeCudart:
    def __init__(self, driver=12060):
        self.calls = []
        self.driver = driver
        self.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
        # cuda.bindings.runtime.cudaStreamCaptureMode: Global 0, ThreadLocal 1, Relaxed 2
        self.cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeGlobal=0, cudaStreamCaptureModeThreadLocal=1)
        self._next = 100

    def _ok(self, name, *values):
        self.calls.append(name)
        return (0, *values)

    def cudaDriverGetVersion(self):
        return self._ok("cudaDriverGetVersion", self.driver)

    def cudaGetDevice(self):
        return self._ok("cudaGetDevice", 0)

    def cudaGetDeviceProperties(self, dev):
        return self._ok("cudaGetDeviceProperties", SimpleNamespace(name=b"Orin\x00\x00", major=8, minor=7))

    def cudaStreamCreate(self):
        return self._ok("cudaStreamCreate", 7)

    def cudaMalloc(self, n):
        self._next += 1
        return self._ok("cudaMalloc", self._next)

    def __getattr__(self, name):  # cudaFree, cudaMemcpyAsync, cudaGraphDestroy, ...: record, succeed
        if not name.startswith("cuda"):
            raise AttributeError(name)

        def call(*args):
            self.calls.append(name)
            if name == "cudaStreamEndCapture":
                return (0, f"graph{self.calls.count(name)}")
            if name == "cudaGraphInstantiate":
                return (0, f"exec{self.calls.count(name)}")
            return (0,)
        return call


def test_device_facts_ask_the_runtime_and_the_driver(monkeypatch):
    """DLA cores from trt.Runtime (no Builder on every load); CUDA from the driver, not cuda-bindings' runtime."""
    trt, rec = fake_trt()
    cudart = FakeCudart(driver=12060)
    monkeypatch.setattr(bindings, "_LOGGER", None)
    monkeypatch.setattr(session_mod, "import_cudart", lambda: cudart)
    monkeypatch.setattr(session_mod, "read_tegra_release", lambda: None)
    monkeypatch.setattr(session_mod, "cuda_python_version", lambda: "12.6.2")
    monkeypatch.setattr(session_mod, "tensorrt_cuda_major", lambda: 12)
    facts = session_mod.device_facts(trt)
    assert facts == {"tensorrt_version": "10.3.0.30", "tensorrt_cuda_major": 12, "cuda_driver_version": "12.6",
                     "gpu_name": "Orin", "compute_capability": "8.7", "dla_cores": 2, "jetson": None}, facts
    assert ("Builder",) not in rec.calls and "cudaRuntimeGetVersion" not in cudart.calls


def test_device_facts_on_a_jetson_take_cuda_from_jetpack(monkeypatch):
    trt, _ = fake_trt()
    monkeypatch.setattr(bindings, "_LOGGER", None)
    monkeypatch.setattr(session_mod, "import_cudart", lambda: FakeCudart(driver=12060))
    monkeypatch.setattr(session_mod, "read_tegra_release",
                        lambda: {"l4t": "36.4.4", "jetpack": "6.2.1", "board": "generic"})
    monkeypatch.setattr(session_mod, "read_model", lambda: "NVIDIA Jetson AGX Orin Developer Kit")
    monkeypatch.setattr(session_mod, "cuda_python_version", lambda: "12.6.2")
    monkeypatch.setattr(session_mod, "tensorrt_cuda_major", lambda: None)  # JetPack's apt TensorRT: no wheel
    facts = session_mod.device_facts(trt)
    assert facts["tensorrt_cuda_major"] == 12 and facts["jetson"] == {
        "l4t": "36.4.4", "jetpack": "6.2.1", "board": "generic", "model": "NVIDIA Jetson AGX Orin Developer Kit"}


def test_device_facts_refuse_cuda_python_13_on_a_cuda_12_driver(monkeypatch):
    trt, _ = fake_trt()
    cudart = FakeCudart(driver=12060)
    monkeypatch.setattr(session_mod, "import_cudart", lambda: cudart)
    monkeypatch.setattr(session_mod, "read_tegra_release", lambda: None)
    monkeypatch.setattr(session_mod, "cuda_python_version", lambda: "13.0.1")
    monkeypatch.setattr(session_mod, "tensorrt_cuda_major", lambda: None)
    with pytest.raises(TensorRTError, match="cuda-python 13.0.1 needs a CUDA 13 driver"):
        session_mod.device_facts(trt)
    assert cudart.calls == ["cudaDriverGetVersion"], "refused before the first call that needs the driver"


# ------------------------------------------------------------------ EngineSession
class FakeContext:
    def __init__(self, rec):
        self.rec = rec
        self.shape = None
        self.enqueue_ok = True
        self.shape_ok = True

    def set_input_shape(self, name, shape):
        self.shape = shape
        return self.shape_ok

    def get_tensor_shape(self, name):
        return (self.shape[0], 10)

    def set_tensor_address(self, name, ptr):
        return True

    def execute_async_v3(self, stream):
        self.rec.calls.append(("enqueue",))
        return self.enqueue_ok


class FakeEngine:
    num_io_tensors = 2

    def __init__(self, rec):
        self.context = FakeContext(rec)

    def create_execution_context(self):
        return self.context

    def get_tensor_name(self, i):
        return ["images", "logits"][i]

    def get_tensor_mode(self, name):
        return "IN" if name == "images" else "OUT"

    def get_tensor_dtype(self, name):
        return "float"

    def get_tensor_shape(self, name):
        return (-1, 1, 8, 8) if name == "images" else (-1, 10)

    def get_tensor_profile_shape(self, name, index):
        return [(1, 1, 8, 8), (2, 1, 8, 8), (8, 1, 8, 8)]


@pytest.fixture
def session(monkeypatch):
    trt, rec = fake_trt()
    rec.engine = FakeEngine(rec)
    cudart = FakeCudart()
    monkeypatch.setattr(bindings, "_LOGGER", None)
    monkeypatch.setattr(session_mod, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(session_mod, "import_cudart", lambda: cudart)
    return rec, cudart


def test_cuda_graphs_destroyed_on_recapture_and_close(session):
    """Before: a new shape captured a new graph and leaked the old graph and its executable; close leaked the last."""
    rec, cudart = session
    s = session_mod.EngineSession(b"PLAN", cuda_graph=True)
    x = np.zeros((2, 1, 8, 8), np.float32)
    s.infer({"images": x})
    s.infer({"images": x})  # same shape: replay, no new capture
    assert cudart.calls.count("cudaStreamBeginCapture") == 1 and cudart.calls.count("cudaGraphLaunch") == 2
    s.infer({"images": np.zeros((4, 1, 8, 8), np.float32)})  # new shape (and bigger buffers): re-capture
    assert cudart.calls.count("cudaStreamBeginCapture") == 2
    assert cudart.calls.count("cudaGraphExecDestroy") == cudart.calls.count("cudaGraphDestroy") == 1, cudart.calls
    s.close()
    assert cudart.calls.count("cudaGraphExecDestroy") == cudart.calls.count("cudaGraphDestroy") == 2, cudart.calls
    assert "cudaStreamDestroy" in cudart.calls
    s.close()  # twice is harmless
    assert cudart.calls.count("cudaGraphDestroy") == 2


def test_enqueue_and_shape_return_values_are_checked(session):
    rec, cudart = session
    s = session_mod.EngineSession(b"PLAN")
    s.context.enqueue_ok = False
    with pytest.raises(TensorRTError, match="execute_async_v3 failed"):
        s.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})
    s.context.enqueue_ok, s.context.shape_ok = True, False
    with pytest.raises(TensorRTError, match=r"refused input shape \(9, 1, 8, 8\).*\(1, 1, 8, 8\) \.\. \(8, 1, 8, 8\)"):
        s.infer({"images": np.zeros((9, 1, 8, 8), np.float32)})
    g = session_mod.EngineSession(b"PLAN", cuda_graph=True)
    g.context.enqueue_ok, g.context.shape_ok = False, True
    with pytest.raises(TensorRTError, match="execute_async_v3 failed"):
        g.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})


def test_session_deserializes_version_compatible_and_dla_engines(session):
    rec, _ = session
    session_mod.EngineSession(b"VCPLAN", version_compatible=True, dla_core=1)
    assert rec.calls[-1] == ("deserialize", True, 1), rec.calls
    with pytest.raises(TensorRTError, match="could not deserialize"):
        session_mod.EngineSession(b"VCPLAN")


def test_runner_passes_the_manifest_record(monkeypatch, tmp_path):
    """The runtime adapter checks the record against the machine, then opens the session as the record says."""
    from edgevit.runtime.tensorrt_runner import TensorRTRunner

    seen = {}
    monkeypatch.setattr(bindings, "import_tensorrt", lambda: None)
    monkeypatch.setattr(session_mod, "device_facts", lambda: dict(FACTS))
    monkeypatch.setattr(session_mod, "EngineSession", lambda plan, **kw: seen.update(kw) or SimpleNamespace())
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"PLAN")
    entry = {**FACTS, "version_compatible": True, "dla_core": 0}
    runner = TensorRTRunner(plan, manifest_entry=EngineRecord.from_fields(entry))
    runner.activate_impl()
    assert seen == {"cuda_graph": False, "version_compatible": True, "dla_core": 0}, seen


def test_cpp_example_sizes_buffers_by_type_and_checks_calls():
    """examples/load_plan.cpp cannot be compiled here (no TensorRT, no CUDA): its text is checked instead."""
    src = (Path(__file__).resolve().parents[2] / "examples" / "load_plan.cpp").read_text()
    assert "sizeof(float)" not in src, "buffers must be sized from the tensor's type, not assumed float32"
    assert "bitsOf(engine->getTensorDataType(name))" in src
    assert 'cudaOk(cudaMalloc(&ptr, bytes), "cudaMalloc")' in src
    assert "setEngineHostCodeAllowed(true)" in src and "--version-compatible" in src
    assert "context->setInputShape(name, dims)" in src.replace("if (!", "")


def test_ampere_plus_refused_before_building_on_a_turing_gpu(use, monkeypatch):
    """Before: an AMPERE_PLUS build on a T4 (7.5) went to TensorRT; NvInfer.h v11.1 supports it on Ampere+ builders only."""
    trt, rec = fake_trt("10.3.0.30")
    use(trt)
    monkeypatch.setattr(session_mod, "device_facts",
                        lambda trt=None: {**FACTS, "gpu_name": "Tesla T4", "compute_capability": "7.5"})
    with pytest.raises(TensorRTError, match="Ampere or newer"):
        build_mod.build_plan("m.onnx", _opts(hardware_compatibility="ampere_plus"))
    assert ("Builder",) not in rec.calls, rec.calls
