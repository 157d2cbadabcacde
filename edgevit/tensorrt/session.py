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
    check_cuda_python(cuda_python_version(), driver, trt_cuda)
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


def deserialize(trt, plan: bytes, version_compatible: bool, dla_core: int | None = None):
    """(runtime, engine) of a plan. A version-compatible plan carries its own lean runtime, which
    TensorRT only loads with ``engine_host_code_allowed`` (what Polygraphy and trtexec set)."""
    runtime = trt.Runtime(logger(trt))
    if version_compatible:
        runtime.engine_host_code_allowed = True
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise TensorRTError("TensorRT could not deserialize this engine (another TensorRT version or GPU, "
                            "or not a TensorRT plan); rebuild it on this target with edgevit build ... --force")
    return runtime, engine


class EngineSession:
    """One execution context on one CUDA stream, with device buffers reused between calls.

    Not thread safe: create one session per thread. ``cuda_graph=True`` captures the enqueue in
    a CUDA graph per input shape and replays it; a new shape (or new buffers) destroys the old
    graph and its executable and captures again.
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
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
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
            hosts[name] = x
            if not self.context.set_input_shape(name, tuple(x.shape)):
                raise TensorRTError(f"TensorRT refused input shape {tuple(x.shape)} for {name!r}; the engine's "
                                    f"profile allows {self.profiles[name][0]} .. {self.profiles[name][2]}")
            ptr = self._buffer(name, x.nbytes)
            cuda_check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream), "cudaMemcpyAsync")
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            results[name] = np.empty(shape, dtype=self.dtypes[name])
            self._buffer(name, results[name].nbytes)
        if self.cuda_graph:
            if self._graph is None or self._graph_shapes != shapes:
                self._drop_graph()
                self._enqueue()  # warm-up before capture (TensorRT docs: a shape change needs one enqueue)
                mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
                cuda_check(cudart.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
                ok = self.context.execute_async_v3(self.stream)
                graph = cuda_check(cudart.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
                if not ok:
                    cuda_check(cudart.cudaGraphDestroy(graph), "cudaGraphDestroy")
                    raise TensorRTError("TensorRT execute_async_v3 failed while capturing a CUDA graph; "
                                        "run without --cuda-graph")
                exec_ = cuda_check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
                self._graph = (graph, exec_)
                self._graph_shapes = shapes
            cuda_check(cudart.cudaGraphLaunch(self._graph[1], self.stream), "cudaGraphLaunch")
        else:
            self._enqueue()
        for name, out in results.items():
            ptr = self._buffers[name][0]
            cuda_check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self.stream), "cudaMemcpyAsync")
        cuda_check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        del hosts
        return results

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
