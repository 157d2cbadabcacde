"""Every ``tensorrt`` (and ``cuda.bindings``) call edgevit makes lives in this one module.

Written against NVIDIA's documented TensorRT 10/11 Python API (checked against the Python
bindings in NVIDIA/TensorRT ``python/src`` and Polygraphy's ``backend/trt/loader.py`` and
``config.py``) and cuda-python's ``cuda.bindings.runtime``. **None of it has run against a real
TensorRT in this project's CI** (no GPU, no TensorRT there); the ``trt``-marked tests run it
wherever TensorRT and a GPU exist. Decisions (versions, flags, DLA, profiles, fusion report,
compatibility) are pure functions in :mod:`edgevit.tensorrt_rules`, tested on CPU.

Polygraphy's TensorRT backend was evaluated for the version-dependent calls: it covers them
(``CreateConfig``, ``EngineFromNetwork``, ``TrtRunner``), but it is a large dependency that is
not on Jetson by default and it hides the few calls we need behind lazy loaders; the calls here
are the ~30 it would make, written out.

Thread safety: one :class:`EngineSession` (execution context + stream + buffers) per thread.
The deserialized engine could be shared, but edgevit keeps it per session for simplicity.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError
from .tensorrt_rules import (
    INSTALL_ADVICE,
    TensorRTError,
    build_mode,
    check_dla,
    check_realized_precision,
    fusion_report,
    read_tegra_release,
)


def import_tensorrt():
    """``import tensorrt`` or MissingDependencyError with the install advice for Jetson and desktop."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError(f"{INSTALL_ADVICE}\n(import tensorrt failed: {exc})") from exc
    return trt


def import_cudart():
    """cuda-python's runtime API (``cuda.bindings.runtime``; older releases: ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415
    except ImportError:
        try:
            from cuda import cudart  # noqa: PLC0415
        except ImportError as exc:
            raise MissingDependencyError(
                f"cuda-python is needed to run TensorRT engines (device memory, streams) but could not be imported "
                f"({exc}). Install it with: pip install cuda-python (or pip install 'edgevit[trt]')") from exc
    return cudart


def _check(result):
    """cuda-python returns ``(err, *values)``; raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise TensorRTError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


_LOGGER = None


def _logger(trt):
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


# ------------------------------------------------------------------ device facts
def device_facts(trt=None) -> dict:
    """TensorRT and CUDA versions, GPU name, compute capability, DLA cores, JetPack/L4T."""
    trt = trt or import_tensorrt()
    cudart = import_cudart()
    dev = _check(cudart.cudaGetDevice())
    props = _check(cudart.cudaGetDeviceProperties(dev))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    name = name.rstrip("\x00").strip()
    runtime_v = _check(cudart.cudaRuntimeGetVersion())
    builder = trt.Builder(_logger(trt))
    return {
        "tensorrt_version": trt.__version__,
        "cuda_version": f"{runtime_v // 1000}.{(runtime_v % 1000) // 10}",
        "gpu_name": name,
        "compute_capability": f"{props.major}.{props.minor}",
        "dla_cores": int(builder.num_DLA_cores),
        "jetson": read_tegra_release(),
    }


# ------------------------------------------------------------------ build
@dataclass
class BuildOptions:
    precision: str = "fp32"
    has_qdq: bool = False
    profile: tuple[int, int, int] = (1, 1, 1)
    input_name: str = "images"
    input_shape: tuple = ()  # per-sample shape (C, H, W)
    workspace_mib: int | None = None
    optimization_level: int | None = None
    timing_cache: str | None = None
    dla_core: int | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"  # "none", "ampere_plus", "same_compute_capability"


@dataclass
class BuildResult:
    plan: bytes
    facts: dict
    mode: dict
    report: object  # FusionReport
    dla_fallback: list = field(default_factory=list)
    seconds: float = 0.0


def _parser_errors(parser) -> str:
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node_name() if hasattr(err, "node_name") else ""
        lines.append(f"node {err.node()} {node!r} ({err.code()}): {err.desc()}")
    return "; ".join(lines) or "no parser error recorded"


def build_plan(onnx_path: str | os.PathLike, opts: BuildOptions) -> BuildResult:
    """Parse ``onnx_path`` and build a serialized engine (plan bytes) with ``opts``."""
    trt = import_tensorrt()
    start = time.perf_counter()
    facts = device_facts(trt)
    mode = build_mode(trt.__version__, opts.precision, opts.has_qdq)
    check_dla(trt.__version__, facts, opts.dla_core)

    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if mode.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # finds external data beside the file
        raise TensorRTError(f"TensorRT {trt.__version__} could not parse {onnx_path}: {_parser_errors(parser)}")

    config = builder.create_builder_config()
    for name in mode.flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise TensorRTError(f"TensorRT {trt.__version__} has no BuilderFlag.{name}; cannot build {opts.precision}")
        config.set_flag(flag)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if opts.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mib) << 20)
    if opts.optimization_level is not None:
        config.builder_optimization_level = int(opts.optimization_level)
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if opts.hardware_compatibility != "none":
        config.hardware_compatibility_level = {
            "ampere_plus": trt.HardwareCompatibilityLevel.AMPERE_PLUS,
            "same_compute_capability": trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY,
        }[opts.hardware_compatibility]

    lo, opt, hi = opts.profile
    profile = builder.create_optimization_profile()
    shape = tuple(opts.input_shape)
    profile.set_shape(opts.input_name, (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)

    cache = None
    if opts.timing_cache:
        data = Path(opts.timing_cache).read_bytes() if Path(opts.timing_cache).exists() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)

    dla_fallback = []
    if opts.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not config.can_run_on_DLA(layer):
                dla_fallback.append({"layer": layer.name, "type": str(layer.type).split(".")[-1]})

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TensorRTError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} "
                            "(see the TensorRT log above)")
    plan = bytes(plan)
    if opts.timing_cache:
        from ._io import atomic_path

        with atomic_path(opts.timing_cache, force=True) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))

    report = fusion_report(inspect_plan(plan, trt))
    check_realized_precision(report, opts.precision)
    return BuildResult(plan, facts, mode.to_dict(), report, dla_fallback, time.perf_counter() - start)


def inspect_plan(plan: bytes, trt=None) -> str:
    """Layer information of a plan as JSON (detailed if it was built with DETAILED verbosity)."""
    trt = trt or import_tensorrt()
    runtime = trt.Runtime(_logger(trt))
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise TensorRTError("TensorRT could not deserialize the engine it just built")
    inspector = engine.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


# ------------------------------------------------------------------ execution
class EngineSession:
    """One execution context on one CUDA stream, with device buffers reused between calls.

    Not thread safe: create one session per thread. ``cuda_graph=True`` captures the enqueue in
    a CUDA graph per input shape and replays it (shapes change the graph, so it is re-captured
    when the batch changes).
    """

    def __init__(self, plan: bytes, cuda_graph: bool = False, version_compatible: bool = False):
        self.trt = trt = import_tensorrt()
        self.cudart = import_cudart()
        self.runtime = trt.Runtime(_logger(trt))
        if version_compatible:
            self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise TensorRTError("TensorRT could not deserialize this engine (wrong TensorRT version or GPU, "
                                "or not a TensorRT plan); rebuild it on this target with edgevit build")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.shapes = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}
        self.profiles = {n: [tuple(s) for s in self.engine.get_tensor_profile_shape(n, 0)] for n in self.inputs}
        self.cuda_graph = cuda_graph
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._graph = None
        self._graph_shapes = None

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (None, 0))
        if ptr is None or size < nbytes:
            if ptr is not None:
                _check(self.cudart.cudaFree(ptr))
            ptr = _check(self.cudart.cudaMalloc(max(nbytes, 1)))
            self._buffers[name] = (ptr, nbytes)
            self._graph = None  # addresses changed
            self.context.set_tensor_address(name, int(ptr))
        return int(ptr)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        shapes = tuple((n, feeds[n].shape) for n in self.inputs)
        hosts = {}
        for name in self.inputs:
            x = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            hosts[name] = x
            self.context.set_input_shape(name, tuple(x.shape))
            ptr = self._buffer(name, x.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream))
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            results[name] = np.empty(shape, dtype=self.dtypes[name])
            self._buffer(name, results[name].nbytes)
        if self.cuda_graph:
            if self._graph is None or self._graph_shapes != shapes:
                self.context.execute_async_v3(self.stream)  # warm-up before capture (TensorRT docs)
                mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
                _check(cudart.cudaStreamBeginCapture(self.stream, mode))
                self.context.execute_async_v3(self.stream)
                graph = _check(cudart.cudaStreamEndCapture(self.stream))
                self._graph = _check(cudart.cudaGraphInstantiate(graph, 0))
                self._graph_shapes = shapes
            _check(cudart.cudaGraphLaunch(self._graph, self.stream))
        elif not self.context.execute_async_v3(self.stream):
            raise TensorRTError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for name, out in results.items():
            ptr = self._buffers[name][0]
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        del hosts
        return results

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = None
        self.engine = None
