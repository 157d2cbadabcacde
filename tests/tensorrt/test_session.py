"""EngineSession and the TensorRT runner on the recording stand-ins of test_calls.py (issue 19, items 4, 5, 8).

What each test holds the code to, and where NVIDIA says so (read at the tags, not run: no TensorRT here):
* CUDA graphs (item 8): trtexec's ``TrtCudaGraph`` (samples/common/sampleDevice.h, v10.3.0) begins capture in
  ``cudaStreamCaptureModeThreadLocal`` and, when the enqueue fails, ``endCaptureOnError`` ends the capture and
  destroys the graph it returns.
* I/O types (item 5): ``trt.nptype`` (python/packaging/bindings_wheel/tensorrt/__init__.py, v10.3.0 and v11.1)
  maps float32/float16/int8/int32/int64/bool/uint8 and raises TypeError for the rest ("fp8 and bfloat16 have
  no equivalent numpy type"); the stand-in's ``nptype`` does the same.
* Loading a plan (item 4): ``IRuntime::setEngineHostCodeAllowed`` ("The default value is false") and
  ``IRuntime::setDLACore`` ("Defaults to -1"), include/NvInferRuntime.h v10.3.0.
"""

import ctypes
import threading
from types import SimpleNamespace

import numpy as np
import pytest

import edgevit.tensorrt._bindings as bindings
import edgevit.tensorrt.session as session_mod
from edgevit.errors import TensorRTError
from edgevit.tensorrt.record import EngineRecord
from tests.tensorrt.test_calls import FACTS, FakeCudart, FakeEngine, fake_trt

NPTYPE = {"float": np.float32, "half": np.float16, "int8": np.int8, "int32": np.int32, "int64": np.int64,
          "bool": np.bool_, "uint8": np.uint8}


def nvidia_nptype(dt):
    """trt.nptype as NVIDIA writes it: the seven numpy types, TypeError for BF16 / FP8 / FP4 / INT4."""
    if dt in NPTYPE:
        return NPTYPE[dt]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


class CopyingCudart(FakeCudart):
    """FakeCudart whose copies move bytes: host->device into a dict per device pointer, device->host from it."""

    def __init__(self, fail=None):
        super().__init__()
        self.memory: dict[int, bytes] = {}
        self.capture_modes: list = []
        self.fail = fail or {}
        self.cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeGlobal=0, cudaStreamCaptureModeThreadLocal=1)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        self.calls.append("cudaMemcpyAsync")
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.memory[dst] = ctypes.string_at(src, n)
        else:
            ctypes.memmove(dst, self.memory.get(src, bytes(n)), n)
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.calls.append("cudaStreamBeginCapture")
        self.capture_modes.append(mode)
        return (0,)

    def cudaGraphInstantiate(self, graph, flags):
        self.calls.append("cudaGraphInstantiate")
        return (self.fail["cudaGraphInstantiate"], None) if "cudaGraphInstantiate" in self.fail else (0, "exec")


class TypedEngine(FakeEngine):
    def __init__(self, rec, dtype):
        super().__init__(rec)
        self.dtype = dtype

    def get_tensor_dtype(self, name):
        return self.dtype


@pytest.fixture
def stand_ins(monkeypatch):
    def make(dtype="float", cudart=None):
        trt, rec = fake_trt()
        trt.nptype = nvidia_nptype
        rec.engine = TypedEngine(rec, dtype)
        cudart = cudart or CopyingCudart()
        monkeypatch.setattr(bindings, "_LOGGER", None)
        monkeypatch.setattr(session_mod, "import_tensorrt", lambda: trt)
        monkeypatch.setattr(session_mod, "import_cudart", lambda: cudart)
        return rec, cudart
    return make


# ------------------------------------------------------------------ item 8: CUDA graphs
def test_graph_capture_is_thread_local(stand_ins):
    """Before: cudaStreamCaptureModeGlobal, under which a capture in one Engine's thread breaks the CUDA calls
    (cudaMalloc, ...) of the Engines in the other threads that the README recommends."""
    _, cudart = stand_ins()
    s = session_mod.EngineSession(b"PLAN", cuda_graph=True)
    s.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})
    thread_local = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    assert cudart.capture_modes == [thread_local], f"capture modes {cudart.capture_modes}, want [{thread_local}]"


def test_failed_instantiate_destroys_the_captured_graph(stand_ins):
    """Before: cudaGraphInstantiate's error raised and the graph cudaStreamEndCapture returned leaked."""
    _, cudart = stand_ins(cudart=CopyingCudart(fail={"cudaGraphInstantiate": 1}))
    s = session_mod.EngineSession(b"PLAN", cuda_graph=True)
    with pytest.raises(TensorRTError, match="cudaGraphInstantiate"):
        s.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})
    ends, destroys = cudart.calls.count("cudaStreamEndCapture"), cudart.calls.count("cudaGraphDestroy")
    assert ends == 1 and destroys == 1, f"{ends} captures ended, {destroys} graphs destroyed: {cudart.calls}"
    assert s._graph is None and "cudaGraphLaunch" not in cudart.calls


def test_an_exception_inside_the_capture_ends_it(stand_ins):
    """Before: an exception from execute_async_v3 while capturing left the stream in capture mode, so every
    later call on it failed. Now the capture is ended (the graph destroyed) and the exception propagates."""
    rec, cudart = stand_ins()
    s = session_mod.EngineSession(b"PLAN", cuda_graph=True)
    calls = {"n": 0}

    def enqueue(stream):
        calls["n"] += 1
        if calls["n"] == 2:  # the first is the warm-up outside the capture
            raise KeyboardInterrupt
        return True

    s.context.execute_async_v3 = enqueue
    with pytest.raises(KeyboardInterrupt):
        s.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})
    assert cudart.calls.count("cudaStreamBeginCapture") == cudart.calls.count("cudaStreamEndCapture") == 1, \
        cudart.calls
    assert cudart.calls.count("cudaGraphDestroy") == 1 and "cudaGraphInstantiate" not in cudart.calls, cudart.calls
    s.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})  # the next call captures afresh and replays
    assert cudart.calls.count("cudaGraphLaunch") == 1, cudart.calls


def test_sessions_in_two_threads_each_capture_their_own_graph(stand_ins):
    _, cudart = stand_ins()
    errors = []

    def run():
        try:
            s = session_mod.EngineSession(b"PLAN", cuda_graph=True)
            s.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})
            s.close()
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and cudart.capture_modes == [1, 1], (errors, cudart.capture_modes)


# ------------------------------------------------------------------ item 5: bf16 / fp8 I/O
# bf16 bit patterns (round to nearest even), by hand: 1 = 0x3F80; 1 + 2**-8 lies halfway between 0x3F80 and 0x3F81
# and goes to the even 0x3F80; 1 + 3 * 2**-8 lies halfway between 0x3F81 and 0x3F82 and goes to 0x3F82;
# -2.5 = 0xC020; inf = 0x7F80; 3.4e38 rounds past the largest bf16 (0x7F7F = 3.3895e38) to inf.
BF16_CASES = [(1.0, 0x3F80), (1 + 2 ** -8, 0x3F80), (1 + 3 * 2 ** -8, 0x3F82), (-2.5, 0xC020), (np.inf, 0x7F80),
              (3.4e38, 0x7F80)]


def test_bf16_rounding_matches_hand_computed_bits():
    x = np.array([v for v, _ in BF16_CASES], np.float32)
    got = [int(b) for b in session_mod.bf16_bits(x)]
    want = [b for _, b in BF16_CASES]
    assert got == want, f"bits {[hex(g) for g in got]}, want {[hex(w) for w in want]}"
    nan = int(session_mod.bf16_bits(np.array([np.nan], np.float32))[0])
    assert nan & 0x7F80 == 0x7F80 and nan & 0x7F, f"NaN became {nan:#x}, not a NaN"
    back = session_mod.bf16_to_float32(np.array(want, np.uint16))
    assert back.tolist() == [1.0, 1.0, 1.015625, -2.5, np.inf, np.inf], back


def test_bf16_io_engine_takes_and_returns_float32(stand_ins):
    """Before: trt.nptype(BF16) raised TypeError as the session opened, so a bf16-I/O engine could not run."""
    rec, cudart = stand_ins(dtype="BF16")
    s = session_mod.EngineSession(b"PLAN")
    assert s.dtypes == {"images": np.float32, "logits": np.float32}, s.dtypes
    assert s.device_dtypes == {"images": np.uint16, "logits": np.uint16}, s.device_dtypes
    x = np.full((2, 1, 8, 8), 1 + 3 * 2 ** -8, np.float32)
    # the output device buffer: logits (2, 10) of bf16 -1.5 (0xBFC0), as the engine would leave them
    rec.engine.context.execute_async_v3 = lambda stream: cudart.memory.__setitem__(
        s._buffers["logits"][0], np.full((2, 10), 0xBFC0, np.uint16).tobytes()) or True
    out = s.infer({"images": x})
    sent = np.frombuffer(cudart.memory[s._buffers["images"][0]], np.uint16)
    assert sent.size == x.size and set(sent.tolist()) == {0x3F82}, f"sent {sorted(set(sent.tolist()))}"
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (2, 10), out["logits"].dtype
    assert np.all(out["logits"] == -1.5), out["logits"]


@pytest.mark.parametrize("dtype", ["FP8", "FP4", "INT4"])
def test_fp8_io_engine_is_refused_by_name(stand_ins, dtype):
    stand_ins(dtype=dtype)
    with pytest.raises(TensorRTError, match=rf"'images' has TensorRT type {dtype}.*--io-dtype fp32"):
        session_mod.EngineSession(b"PLAN")


# ------------------------------------------------------------------ item 4: a plan without its entry
@pytest.fixture
def opened(monkeypatch, tmp_path):
    """The options the TensorRT runner opens its session with, and whether it checked the record."""
    from edgevit.tensorrt import rules

    seen = {"checked": 0}
    monkeypatch.setattr(bindings, "import_tensorrt", lambda: None)
    monkeypatch.setattr(session_mod, "device_facts", lambda: dict(FACTS))
    monkeypatch.setattr(rules, "check_engine_compat", lambda *a, **k: seen.__setitem__("checked", seen["checked"] + 1))
    monkeypatch.setattr(session_mod, "EngineSession", lambda plan, **kw: seen.update(kw) or SimpleNamespace())
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"VCPLAN")
    return seen, plan


VC_DLA = EngineRecord.from_fields({**FACTS, "version_compatible": True, "dla_core": 1})


def test_record_still_loads_the_plan_without_the_compat_check(opened):
    """Before: check_compat=False dropped the whole record, so a version-compatible DLA plan opened without host
    code (TensorRT cannot deserialize it) and without its DLA core."""
    from edgevit.runtime import runner_for_format

    seen, plan = opened
    runner_for_format("tensorrt", plan, manifest_entry=VC_DLA, plan_options={"check_compat": False}).activate()
    assert seen["checked"] == 0, "check_compat=False must skip the machine check"
    assert (seen["version_compatible"], seen["dla_core"]) == (True, 1), seen


def test_a_lone_plan_loads_with_explicit_options(opened):
    from edgevit.runtime.tensorrt_runner import TensorRTRunner

    seen, plan = opened
    TensorRTRunner(plan).activate()
    assert (seen["version_compatible"], seen["dla_core"]) == (False, None), "nobody vouched: no host code"
    TensorRTRunner(plan, version_compatible=True, dla_core=0).activate()
    assert (seen["version_compatible"], seen["dla_core"]) == (True, 0), seen
    with pytest.raises(ValueError, match="dla_core must be a DLA core index"):
        TensorRTRunner(plan, dla_core=-1)


def test_unverified_file_gets_no_host_code_from_its_entry(opened):
    """A manifest entry vouches for a file only when the file's sha256 was checked against it."""
    from edgevit.runtime.tensorrt_runner import TensorRTRunner

    seen, plan = opened
    with pytest.raises(TensorRTError, match=r"verify_hash=False.*version_compatible=True"):
        TensorRTRunner(plan, manifest_entry=VC_DLA, vouched=False)
    TensorRTRunner(plan, manifest_entry=VC_DLA, vouched=False, version_compatible=True).activate()
    assert seen["version_compatible"] is True


def test_engine_load_passes_the_load_options(monkeypatch, tmp_path):
    """Engine.load hands the record over whatever check_compat says, and its explicit options and verify_hash."""
    import edgevit.runtime as runtime
    from edgevit.runtime.engine import Engine

    got = {}

    class Stop(Exception):
        pass

    def spy(fmt, path, **kw):
        got.update(kw)
        raise Stop

    monkeypatch.setattr(runtime, "runner_for_format", spy)
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"VCPLAN")
    with pytest.raises(Stop):
        Engine.load(plan, check_compat=False, verify_hash=False, version_compatible=True, dla_core=1)
    # no manifest lists this plan: there is no record to vouch for (Resolved.plan_options), the caller's explicit
    # version_compatible=True is the vouching
    assert got["plan_options"] == {"check_compat": False, "version_compatible": True, "dla_core": 1}, got


def test_deserialize_failure_names_the_option(stand_ins):
    stand_ins()
    with pytest.raises(TensorRTError, match=r"version_compatible=True"):
        session_mod.EngineSession(b"VCPLAN")


def test_a_listed_plan_whose_hash_was_not_checked_is_not_vouched_for(tmp_path):
    """Resolved.plan_options, read by Engine.load, verify and bench: host code only for a checked file."""
    from edgevit.manifest import Artifact
    from edgevit.resolved import Resolved

    entry = Artifact("m.plan", "tensorrt", "fp16", "a" * 64)
    assert Resolved(tmp_path / "m.plan", "tensorrt", None, entry, hash_checked=False).plan_options == {"vouched": False}
    assert Resolved(tmp_path / "m.plan", "tensorrt", None, entry, hash_checked=True).plan_options is None
    assert Resolved(tmp_path / "m.plan", "tensorrt").plan_options is None  # no record: the caller's options decide
