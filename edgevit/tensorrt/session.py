"""Execution: the machine's TensorRT facts and :class:`EngineSession` (one context, one stream).

Written against the TensorRT Python bindings (NVIDIA/TensorRT ``python/src/infer/pyCore.cpp`` at
v10.3.0, v10.9.0 and v11.0) and cuda-python's ``cuda.bindings.runtime``; the names used are
checked per version by tests/tensorrt (names, not behaviour). **None of it has run against a
real TensorRT in this project's CI** (no GPU, no TensorRT there); the ``trt``-marked tests run it
wherever TensorRT and a GPU exist.

Thread safety: one :class:`EngineSession` (execution context + stream + buffers) per thread.
"""

from __future__ import annotations

import numpy as np

from ..errors import TensorRTError
from ._bindings import cuda_check, cuda_python_version, import_cudart, import_tensorrt, logger, tensorrt_cuda_major
from .jetson import JETPACK_CUDA_MAJOR, read_model, read_tegra_release
from .rules import check_cuda_python


def _cuda_version(value: int) -> str:
    """CUDA's integer version (12060) -> ``"12.6"``."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def device_facts(trt=None) -> dict:
    """TensorRT version and its CUDA major, the driver's CUDA version, GPU name, compute
    capability, DLA cores (``trt.Runtime.num_DLA_cores``) and the Jetson facts.

    Refuses a cuda-python whose CUDA major the driver cannot run (rules.check_cuda_python)
    before the first CUDA call that would fail with an insufficient-driver error.
    """
    trt = trt or import_tensorrt()
    cudart = import_cudart()
    driver = _cuda_version(cuda_check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion"))
    release = read_tegra_release() or {}  # the files only: no nvpmodel / jetson_clocks on every load
    trt_cuda = tensorrt_cuda_major()
    if trt_cuda is None and release.get("jetpack"):
        trt_cuda = JETPACK_CUDA_MAJOR.get(release["jetpack"].split(".")[0])
    check_cuda_python(cuda_python_version(), driver, trt_cuda, tegra=bool(release))  # Jetson: major.minor
    dev = cuda_check(cudart.cudaGetDevice(), "cudaGetDevice")
    props = cuda_check(cudart.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    runtime = trt.Runtime(logger(trt))
    return {
        "tensorrt_version": trt.__version__,
        "tensorrt_cuda_major": trt_cuda,
        "cuda_driver_version": driver,
        "gpu_name": name.rstrip("\x00").strip(),
        "compute_capability": f"{props.major}.{props.minor}",
        "dla_cores": int(runtime.num_DLA_cores),
        "jetson": {**release, "model": read_model()} if release else None,
    }


def plan_load_options(record=None, *, version_compatible: bool | None = None, dla_core: int | None = None,
                      vouched: bool = True) -> tuple[bool, int | None]:
    """(host code allowed, DLA core) for deserializing a plan: what TensorRT's runtime must be told before
    ``deserialize_cuda_engine``, from the plan's manifest ``record`` (:class:`EngineRecord`, or None for a plan
    without its ``edgevit.json`` entry) and the caller's explicit options, which win.

    Host code: a version-compatible plan embeds its lean runtime, and TensorRT loads it only with
    ``IRuntime::setEngineHostCodeAllowed(true)`` ("The default value is false", NvInferRuntime.h v10.3.0).
    That runs the file's code on this host, so it is allowed only for a plan someone vouched for: the caller
    (``version_compatible=True``) or a manifest entry whose sha256 this file matched (``vouched``: the hash
    was checked). An entry that says version-compatible for a file whose hash was not checked is refused.
    DLA: ``IRuntime::setDLACore`` "Defaults to -1" (same header): a DLA plan needs its core set, from
    ``dla_core`` or the record's ``dla_core``.
    """
    if dla_core is not None and (not isinstance(dla_core, int) or isinstance(dla_core, bool) or dla_core < 0):
        raise ValueError(f"dla_core must be a DLA core index (0, 1, ...), got {dla_core!r}")
    recorded_vc = bool(record is not None and record.version_compatible)
    if version_compatible is None and recorded_vc and not vouched:
        raise TensorRTError(
            "the manifest records this plan as version-compatible, but the plan's sha256 was not checked "
            "(verify_hash=False), so nothing vouches that this file is the plan it records; TensorRT would run "
            "host code from it. Load it with verify_hash=True, or pass version_compatible=True if you trust it")
    allow = recorded_vc if version_compatible is None else bool(version_compatible)
    core = dla_core if dla_core is not None else (record.dla_core if record is not None else None)
    return allow, core


def deserialize(trt, plan: bytes, version_compatible: bool, dla_core: int | None = None):
    """(runtime, engine) of a plan. A version-compatible plan carries its own lean runtime, which
    TensorRT only loads with ``engine_host_code_allowed`` (what Polygraphy and trtexec set); the caller
    decides that (:func:`plan_load_options`), never this function."""
    runtime = trt.Runtime(logger(trt))
    if version_compatible:
        runtime.engine_host_code_allowed = True
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        hint = ("" if version_compatible else
                "; a plan built with --version-compatible carries its own runtime and loads only with host code "
                "allowed: keep its edgevit.json entry beside it, or pass Engine.load(path, "
                "version_compatible=True) (TensorRTRunner(..., version_compatible=True)) if you trust the file")
        raise TensorRTError("TensorRT could not deserialize this engine (another TensorRT version or GPU, "
                            "or not a TensorRT plan); rebuild it on this target with edgevit build ... --force"
                            + hint)
    return runtime, engine


# trt.nptype maps float32, float16, int8, int32, int64, bool and uint8 only, and raises TypeError for the rest
# ("fp8 and bfloat16 have no equivalent numpy type": python/packaging/bindings_wheel/tensorrt/__init__.py at
# v10.3.0 and v11.1). bf16 I/O is mapped here: the host side is float32, sent as bf16 bits (round to nearest
# even) and read back exactly; fp8/fp4/int4 I/O is refused by name. DataType member names (BF16, FP8, INT4; FP4 and
# E8M0 in v11.1) as python/src/infer/pyFoundationalTypes.cpp binds them at v10.3.0 and v11.1.
_NO_HOST_TYPE = ("FP8", "FP4", "INT4", "E8M0")


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> the uint16 bits of the nearest bfloat16 (ties to even; NaN stays a quiet NaN)."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    u = f.view(np.uint32)
    with np.errstate(over="ignore"):  # wraps only for NaN bit patterns, replaced below
        rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(f)
    return np.where(nan, ((u >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16), rounded) if nan.any() else rounded


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """The uint16 bits of bfloat16 values -> float32 (exact)."""
    return (np.ascontiguousarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def io_dtypes(trt, trt_dtype, name: str) -> tuple[np.dtype, np.dtype]:
    """(host dtype, device dtype) of an I/O tensor of TensorRT type ``trt_dtype``: the same numpy type for the
    types trt.nptype maps; (float32, uint16) for BF16 (EngineSession converts); TensorRTError for fp8/fp4/int4."""
    kind = str(getattr(trt_dtype, "name", trt_dtype)).rsplit(".", 1)[-1].upper()
    if kind in ("BF16", "BFLOAT16"):
        return np.dtype(np.float32), np.dtype(np.uint16)
    if kind in _NO_HOST_TYPE:
        raise TensorRTError(f"engine tensor {name!r} has TensorRT type {kind}, which has no numpy type and which "
                            "EngineSession does not convert; build the engine from a graph with float32, float16 "
                            "or bfloat16 inputs and outputs (`edgevit quantize --io-dtype fp32`, the default)")
    try:
        host = np.dtype(trt.nptype(trt_dtype))
    except TypeError as err:
        raise TensorRTError(f"engine tensor {name!r} has TensorRT type {kind}, which has no numpy type "
                            f"(trt.nptype: {err})") from err
    return host, host


class EngineSession:
    """One execution context on one CUDA stream, with device buffers reused between calls.

    Not thread safe: create one session per thread. ``cuda_graph=True`` captures the enqueue in
    a CUDA graph per input shape and replays it; a new shape (or new buffers) destroys the old
    graph and its executable and captures again. Captures use ``cudaStreamCaptureModeThreadLocal``
    (trtexec's ``TrtCudaGraph::beginCapture``, samples/common/sampleDevice.h v10.3.0), so a capture in
    one thread does not invalidate CUDA calls of the sessions in other threads.

    I/O types: ``dtypes`` is what :meth:`infer` takes and returns. A bfloat16 tensor is float32 there: inputs
    are rounded to bf16 (nearest even) on the way in, outputs widened exactly on the way out
    (``device_dtypes`` says uint16, the bf16 bits). fp8/fp4/int4 I/O is refused when the session opens.
    """

    def __init__(self, plan: bytes, cuda_graph: bool = False, version_compatible: bool = False,
                 dla_core: int | None = None):
        self.trt = trt = import_tensorrt()
        self.cudart = import_cudart()
        self.stream = None
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._graph = None       # (cudaGraph_t, cudaGraphExec_t)
        self._graph_shapes = None
        self.runtime, self.engine = deserialize(trt, plan, version_compatible, dla_core)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise TensorRTError("TensorRT could not create an execution context (out of device memory?)")
        self.stream = cuda_check(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        types = {n: io_dtypes(trt, self.engine.get_tensor_dtype(n), n) for n in names}
        self.dtypes = {n: host for n, (host, _) in types.items()}  # what infer takes and returns
        self.device_dtypes = {n: dev for n, (_, dev) in types.items()}  # uint16 for bf16 tensors
        self.shapes = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}
        self.profiles = {n: [tuple(s) for s in self.engine.get_tensor_profile_shape(n, 0)] for n in self.inputs}
        self.cuda_graph = cuda_graph

    def _drop_graph(self) -> None:
        """Destroy the captured graph and its executable (on re-capture and close)."""
        if self._graph is not None:
            graph, exec_ = self._graph
            self._graph = None
            cuda_check(self.cudart.cudaGraphExecDestroy(exec_), "cudaGraphExecDestroy")
            cuda_check(self.cudart.cudaGraphDestroy(graph), "cudaGraphDestroy")
        self._graph_shapes = None

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (None, 0))
        if ptr is None or size < nbytes:
            if ptr is not None:
                cuda_check(self.cudart.cudaFree(ptr), "cudaFree")
            ptr = cuda_check(self.cudart.cudaMalloc(max(nbytes, 1)), f"cudaMalloc of {nbytes} bytes for {name}")
            self._buffers[name] = (ptr, nbytes)
            self._drop_graph()  # the graph holds the old addresses
            if not self.context.set_tensor_address(name, int(ptr)):
                raise TensorRTError(f"TensorRT refused the device address of tensor {name!r}")
        return int(ptr)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise TensorRTError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        shapes = tuple((n, feeds[n].shape) for n in self.inputs)
        hosts = {}
        for name in self.inputs:
            x = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            if self.device_dtypes[name] != self.dtypes[name]:
                x = bf16_bits(x)
            hosts[name] = x
            if not self.context.set_input_shape(name, tuple(x.shape)):
                raise TensorRTError(f"TensorRT refused input shape {tuple(x.shape)} for {name!r}; the engine's "
                                    f"profile allows {self.profiles[name][0]} .. {self.profiles[name][2]}")
            ptr = self._buffer(name, x.nbytes)
            cuda_check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream), "cudaMemcpyAsync")
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            results[name] = np.empty(shape, dtype=self.device_dtypes[name])
            self._buffer(name, results[name].nbytes)
        if self.cuda_graph:
            if self._graph is None or self._graph_shapes != shapes:
                self._drop_graph()
                self._enqueue()  # warm-up before capture (TensorRT docs: a shape change needs one enqueue)
                self._capture()
                self._graph_shapes = shapes
            cuda_check(cudart.cudaGraphLaunch(self._graph[1], self.stream), "cudaGraphLaunch")
        else:
            self._enqueue()
        for name, out in results.items():
            ptr = self._buffers[name][0]
            cuda_check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self.stream), "cudaMemcpyAsync")
        cuda_check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        del hosts
        return {n: bf16_to_float32(out) if self.device_dtypes[n] != self.dtypes[n] else out
                for n, out in results.items()}

    def _capture(self) -> None:
        """Capture one enqueue into ``self._graph``, as trtexec's TrtCudaGraph does (samples/common/sampleDevice.h,
        v10.3.0): begin in ``cudaStreamCaptureModeThreadLocal``; on a failed enqueue or an exception end the
        capture anyway (``endCaptureOnError``: the stream would stay in capture mode) and destroy the graph it
        returns; destroy the graph when ``cudaGraphInstantiate`` fails."""
        cudart = self.cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_check(cudart.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
        try:
            ok = self.context.execute_async_v3(self.stream)
        except BaseException:
            self._end_capture_on_error()
            raise
        if not ok:
            self._end_capture_on_error()
            raise TensorRTError("TensorRT execute_async_v3 failed while capturing a CUDA graph; run without "
                                "--cuda-graph (Engine.load(..., cuda_graph=False))")
        graph = cuda_check(cudart.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
        try:
            exec_ = cuda_check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except BaseException:
            cudart.cudaGraphDestroy(graph)
            raise
        self._graph = (graph, exec_)

    def _end_capture_on_error(self) -> None:
        """End an interrupted capture without raising (the caller's error is the one to report): an
        invalidated capture returns no graph; a returned graph is destroyed unused. Clears the sticky error."""
        cudart = self.cudart
        result = cudart.cudaStreamEndCapture(self.stream)
        graph = result[1] if len(result) > 1 else None
        if graph is not None and int(result[0]) == 0:
            cudart.cudaGraphDestroy(graph)
        cudart.cudaGetLastError()

    def close(self) -> None:
        """Free the graph, the buffers and the stream; safe to call twice."""
        self._drop_graph()
        for ptr, _ in self._buffers.values():
            self.cudart.cudaFree(ptr)
        self._buffers.clear()
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = None
        self.engine = None
        self.runtime = None
