"""The ONNX Runtime runner: CPU by default; CUDA or TensorRT execution providers on request."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, OnnxModelError
from .base import InputSpec, Runner

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
"""The one list of ONNX Runtime providers edgevit names: short name (``--provider``, ``providers=``) ->
ExecutionProvider names, most preferred first (ORT falls back along the list)."""

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}

QDQ_MODES = {
    "kernels": "ONNX Runtime's fused int8 kernels: what a CPU deployment runs; their arithmetic depends on the "
               "CPU's instruction set (AVX2 without VNNI can saturate: docs/design.md §4.1)",
    "exact": "exact Q/DQ arithmetic: ONNX Runtime with session.disable_quant_qdq=1 (Q/DQ executed as written, "
             "float MatMul), what TensorRT's explicit quantization computes up to accumulation order",
}
"""How a runner executes Q/DQ graphs (``qdq=``): timing (bench) and applications use "kernels"."""
JUDGED_BY = "exact"
"""How every judge (the gate, sensitivity, auto-exclude, verify and its attention check, bench's verdict)
runs Q/DQ graphs, so that a verdict is the same on every host (docs/design.md §4.1)."""


def ort_dtype(type_str: str) -> np.dtype:
    """numpy dtype of an ORT type string such as ``tensor(float16)``."""
    if type_str in _ORT_TYPES:
        return np.dtype(_ORT_TYPES[type_str])
    if type_str == "tensor(bfloat16)":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    raise OnnxModelError(f"input/output type {type_str} is not supported by edgevit's ONNX Runtime runner")


def resolve_providers(providers) -> list[str]:
    """``None``/"cpu"/"cuda"/"tensorrt" or an explicit provider list -> an available provider list.

    The first provider asked for must be installed; otherwise MissingDependencyError says which
    onnxruntime package provides it.
    """
    import onnxruntime as ort

    if providers is None:
        providers = "cpu"
    if isinstance(providers, str):
        if providers not in PROVIDERS:
            raise ValueError(f"providers must be one of {list(PROVIDERS)} or a list of ORT provider names, "
                             f"got {providers!r}")
        providers = PROVIDERS[providers]
    providers = list(providers)
    available = ort.get_available_providers()
    if not providers or providers[0] not in available:
        fix = ("pip install onnxruntime-gpu (and TensorRT for TensorrtExecutionProvider)"
               if providers and providers[0] != "CPUExecutionProvider" else "pip install onnxruntime")
        raise MissingDependencyError(
            f"ONNX Runtime provider {providers[0] if providers else None!r} is not available in this "
            f"onnxruntime {ort.__version__} (available: {available}). Install it with: {fix}"
        )
    return [p for p in providers if p in available]


class OnnxRuntimeRunner(Runner):
    """Run an ONNX model with ONNX Runtime.

    ``source``: a path to a ``.onnx`` file (external data beside it is found), serialized
    bytes, or an ``onnx.ModelProto``. ``providers``: "cpu" (default), "cuda", "tensorrt" or an
    explicit list of ORT provider names. ``threads``: intra-op thread count (None: ORT's default).
    ``optimization``: ORT graph optimization level ("all", "extended", "basic", "disable").
    ``qdq``: how Q/DQ graphs run (:data:`QDQ_MODES`): "kernels" (default; ONNX Runtime fuses Q/DQ
    into this CPU's int8 kernels) or "exact" (the arithmetic the graph defines, on every host alike).
    """

    def __init__(self, source, providers=None, threads: int | None = None, optimization: str = "all",
                 qdq: str = "kernels"):
        super().__init__()
        if qdq not in QDQ_MODES:
            raise ValueError(f"qdq must be one of {list(QDQ_MODES)}, got {qdq!r}")
        self.qdq = qdq
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        if optimization not in ("all", "extended", "basic", "disable"):
            raise ValueError(f"optimization must be one of ['all', 'extended', 'basic', 'disable'], got {optimization!r}")
        self.source = source
        self.requested_providers = providers
        self.threads = threads
        self.optimization = optimization
        self.session = None
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise OnnxModelError(f"{path}: no such ONNX file")
            if path.is_dir():
                raise OnnxModelError(f"{path}: is a directory, not an ONNX file; point at its model.onnx")
            label = path.name
        else:
            label = "<in-memory model>"
        self.name = f"onnxruntime[{label}]"

    def activate_impl(self) -> None:
        import onnxruntime as ort

        providers = resolve_providers(self.requested_providers)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.optimization]
        if self.qdq == "exact":
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        source = self.source
        if isinstance(source, (str, os.PathLike)):
            source = str(source)
        elif hasattr(source, "SerializeToString"):
            source = source.SerializeToString()
        elif not isinstance(source, (bytes, bytearray)):
            raise OnnxModelError(
                f"cannot run a {type(source).__name__} with ONNX Runtime; give a .onnx path, bytes or onnx.ModelProto"
            )
        self.emulated = None
        try:
            try:
                self.session = ort.InferenceSession(source, sess_options=opts, providers=providers)
            except Exception:  # a bf16 graph on the CPU provider (no bf16 kernels) runs emulated
                emulated = self._emulate_bf16(source) if providers[0] == "CPUExecutionProvider" else None
                if emulated is None:
                    raise
                self.session = ort.InferenceSession(emulated, sess_options=opts, providers=providers)
        except Exception as exc:  # InvalidProtobuf, Fail, NotImplemented, ...
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise OnnxModelError(
                f"{self.name}: ONNX Runtime could not load this model ({type(exc).__name__}: {first}). "
                "Is it an ONNX file, complete (not truncated) and of an opset this onnxruntime supports?"
            ) from exc
        self.providers = self.session.get_providers()
        self.name = self.name.split("]")[0] + f", {self.providers[0]}]"
        self._spec = {i.name: (tuple(d if isinstance(d, int) else (d or None) for d in i.shape), ort_dtype(i.type))
                      for i in self.session.get_inputs()}
        self._outputs = [o.name for o in self.session.get_outputs()]

    def _emulate_bf16(self, source):
        """The fp32 emulation of a bf16 graph (see bf16_emulation), or None for any other graph."""
        try:
            import onnx
        except ImportError:  # a device install (edgevit.runtime without onnx): no bf16 emulation
            return None

        from .bf16_emulation import emulate_bf16, has_bf16

        try:
            proto = onnx.load_from_string(source) if isinstance(source, (bytes, bytearray)) else onnx.load(source)
        except Exception:  # noqa: BLE001 -- unreadable files get ORT's own error
            return None
        if not has_bf16(proto):
            return None
        self.emulated = "bf16 emulated in fp32 with bf16 rounding after every op (CPU provider has no bf16 kernels)"
        return emulate_bf16(proto).SerializeToString()

    def deactivate_impl(self) -> None:
        self.session = None

    def input_spec_impl(self) -> InputSpec:
        return dict(self._spec)

    def output_names(self) -> list[str]:
        self._require_active("output_names")
        return list(self._outputs)

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._outputs, feeds)
        return dict(zip(self._outputs, results))
