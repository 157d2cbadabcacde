"""The lazy ``tensorrt`` and ``cuda.bindings`` imports, with install advice when they fail.

Nothing else in edgevit imports these two packages: :mod:`edgevit.tensorrt.build` and
:mod:`edgevit.tensorrt.session` call :func:`import_tensorrt` / :func:`import_cudart` when they
need them, so ``import edgevit`` and ``import edgevit.runtime`` load neither.

cuda-python must match the CUDA major version of the TensorRT it runs with: ``pip install
cuda-python`` alone now gives 13.x (a CUDA 13 runtime), which fails on every CUDA 12 driver
(JetPack 6, desktop drivers before 580). The extras pin the pair: ``edgevit[trt-cu12]`` and
``edgevit[trt-cu13]``; on a Jetson, TensorRT comes from JetPack and cuda-python is pinned to
JetPack's CUDA by hand (:data:`INSTALL_ADVICE`).
"""

from __future__ import annotations

from ..errors import MissingDependencyError, TensorRTError

INSTALL_ADVICE = (
    "TensorRT is not installed in this Python environment. Install it with the cuda-python of the same CUDA major:\n"
    "  Jetson, JetPack 6 (CUDA 12.6): sudo apt install nvidia-jetpack   (or just python3-libnvinfer), then a venv\n"
    "    that sees the system TensorRT: python3 -m venv --system-site-packages .venv\n"
    "    and in it: pip install 'cuda-python>=12.6,<13'\n"
    "  Jetson, JetPack 7 (CUDA 13): the same with pip install 'cuda-python>=13,<14'\n"
    "  Desktop / data-center GPU: pick the CUDA major your driver supports (nvidia-smi shows it; CUDA 13 needs\n"
    "    driver >= 580):\n"
    "    CUDA 12: pip install 'edgevit[trt-cu12]' --extra-index-url https://pypi.nvidia.com\n"
    "    CUDA 13: pip install 'edgevit[trt-cu13]' --extra-index-url https://pypi.nvidia.com\n"
    "    (or by hand: pip install tensorrt --extra-index-url https://pypi.nvidia.com and a matching cuda-python)"
)

CUDA_PYTHON_ADVICE = (
    "install the cuda-python of TensorRT's CUDA major: pip install 'cuda-python>=12,<13' for CUDA 12 "
    "(JetPack 6, drivers before 580) or 'cuda-python>=13,<14' for CUDA 13 (the extras edgevit[trt-cu12] / "
    "edgevit[trt-cu13] pin both)"
)


def import_tensorrt():
    """``import tensorrt`` or MissingDependencyError with the install advice for Jetson and desktop."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError(f"{INSTALL_ADVICE}\n(import tensorrt failed: {exc})") from exc
    return trt


def import_cudart():
    """cuda-python's runtime API (``cuda.bindings.runtime``; releases before 12.6: ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415
    except ImportError:
        try:
            from cuda import cudart  # noqa: PLC0415
        except ImportError as exc:
            raise MissingDependencyError(
                f"cuda-python is needed to run TensorRT engines (device memory, streams) but could not be imported "
                f"({exc}); {CUDA_PYTHON_ADVICE}") from exc
    return cudart


def cuda_python_version() -> str | None:
    """The installed cuda-python (or cuda-bindings) distribution's version, None when neither is installed."""
    from importlib import metadata

    for dist in ("cuda-python", "cuda-bindings"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def tensorrt_cuda_major() -> int | None:
    """The CUDA major the pip TensorRT was built for, from its wheel's name (``tensorrt-cu12``,
    ``tensorrt_cu13_libs``...); None for JetPack's apt TensorRT (its CUDA is JetPack's)."""
    from importlib import metadata

    for major in (12, 13):
        for dist in (f"tensorrt-cu{major}", f"tensorrt_cu{major}_libs", f"tensorrt_cu{major}_bindings"):
            try:
                metadata.version(dist)
                return major
            except metadata.PackageNotFoundError:
                continue
    return None


def cuda_check(result, what: str = "CUDA call"):
    """cuda-python returns ``(err, *values)``; raise TensorRTError naming ``what`` on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise TensorRTError(f"{what} failed with CUDA error {err}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


_LOGGER = None


def logger(trt):
    """One ``trt.Logger`` at WARNING for the process (TensorRT wants one logger per process)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER
