"""The lazy ``tensorrt`` and ``cuda.bindings`` imports, with install advice when they fail.

Nothing else in edgevit imports these two packages: :mod:`edgevit.tensorrt.build` and
:mod:`edgevit.tensorrt.session` call :func:`import_tensorrt` / :func:`import_cudart` when they
need them, so ``import edgevit`` and ``import edgevit.runtime`` load neither.

cuda-python must match the CUDA major version of the TensorRT it runs with: ``pip install
cuda-python`` alone now gives 13.x (a CUDA 13 runtime), which fails on every CUDA 12 driver
(JetPack 6, desktop drivers before 580). The extras pin the pair: ``edgevit[trt-cu12]`` and
``edgevit[trt-cu13]``, bounded to the TensorRT majors of :data:`CHECKED_TENSORRT`; on a Jetson,
TensorRT comes from JetPack and cuda-python is pinned to JetPack's CUDA *minor* by hand
(:data:`INSTALL_ADVICE`). :func:`version_report` is what ``edgevit info --json`` prints.
"""

from __future__ import annotations

from ..errors import MissingDependencyError, TensorRTError

# What edgevit has checked, the one home of this table (pyproject's extras are bounded by it and
# ``edgevit info --json`` reports against it; tests/tensorrt/test_bindings.py holds both to it):
# TensorRT: the minors whose Python binding sources (NVIDIA/TensorRT python/src at each release tag)
# the names audit read, tests/tensorrt/data/trt_python_api.json "tensorrt.sources";
# cuda-python: the releases whose runtime module that audit read ("cudart.sources": 12.0.0, 12.6.0,
# 12.6.2.post1, 12.9.10, 13.0.0, 13.1.1; from 13.2 the wheels ship no .pyx to read), by major.minor.
# Names and documented behaviour only: none of these has run against a real TensorRT here.
CHECKED_TENSORRT = ("10.0", "10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "10.7", "10.8", "10.9", "10.10",
                    "10.11", "10.12", "10.13", "10.14", "10.15", "10.16", "11.0", "11.1")
CHECKED_TENSORRT_MAJORS = tuple(sorted({int(v.split(".")[0]) for v in CHECKED_TENSORRT}))
CHECKED_CUDA_PYTHON = ("12.0", "12.6", "12.9", "13.0", "13.1")
CHECKED_CUDA_PYTHON_MAJORS = tuple(sorted({int(v.split(".")[0]) for v in CHECKED_CUDA_PYTHON}))

# Jetson (Tegra) has no CUDA minor-version compatibility: a cuda-python built for a newer CUDA minor
# than JetPack's driver (12.9 on JetPack 6's 12.6) fails its first runtime call with
# cudaErrorInsufficientDriver (third-party reports: NVlabs/FoundationStereo#209 on JetPack 6.1,
# anduril/jetpack-nixos#328 on JetPack 6). cuda.bindings' support policy (nvidia.github.io/cuda-python,
# support.html) rests on CUDA minor-version compatibility; on Jetson a newer CUDA than JetPack's goes
# through NVIDIA's cuda-compat (forward-compatibility) package instead (NVIDIA blog "Simplifying CUDA
# Upgrades for NVIDIA Jetson Users"). So on a Jetson cuda-python is pinned to JetPack's CUDA minor, and
# rules.check_cuda_python compares major.minor there. Read in those sources; never run on a Jetson here.
# JetPack 6's Python is Ubuntu 22.04's 3.10, the only Python JetPack's python3-libnvinfer is built
# for; cuda-python 12.6.2.post1 ships a cp310 manylinux aarch64 wheel (checked on PyPI: pip download
# --python-version 3.10 --platform manylinux2014_aarch64 'cuda-python==12.6.*').
INSTALL_ADVICE = (
    "TensorRT is not installed in this Python environment. Install it with the cuda-python of the same CUDA "
    "version:\n"
    "  Jetson, JetPack 6 (CUDA 12.6, Python 3.10): sudo apt install nvidia-jetpack   (or just python3-libnvinfer),\n"
    "    then a venv made with JetPack's own Python 3.10 (its TensorRT bindings are built for that Python only)\n"
    "    that sees the system TensorRT: /usr/bin/python3 -m venv --system-site-packages .venv\n"
    "    and in it, cuda-python pinned to JetPack's CUDA minor (Jetson has no minor-version compatibility:\n"
    "    a newer 12.x such as 12.9 fails with cudaErrorInsufficientDriver): pip install 'cuda-python==12.6.*'\n"
    "  Jetson, JetPack 7 (CUDA 13): the same, pinned to the CUDA minor JetPack ships (nvcc --version or\n"
    "    edgevit's error names it), e.g. pip install 'cuda-python==13.0.*'\n"
    "  Desktop / data-center GPU: pick the CUDA major your driver supports (nvidia-smi shows it; CUDA 13 needs\n"
    "    driver >= 580):\n"
    "    CUDA 12: pip install 'edgevit[trt-cu12]' --extra-index-url https://pypi.nvidia.com\n"
    "    CUDA 13: pip install 'edgevit[trt-cu13]' --extra-index-url https://pypi.nvidia.com\n"
    f"    (TensorRT {' and '.join(map(str, CHECKED_TENSORRT_MAJORS))}, the majors edgevit has checked; or by hand: "
    "pip install tensorrt --extra-index-url https://pypi.nvidia.com and a matching cuda-python)"
)

CUDA_PYTHON_ADVICE = (
    "install the cuda-python of TensorRT's CUDA major: pip install 'cuda-python>=12,<13' for CUDA 12 "
    "(drivers before 580) or 'cuda-python>=13,<14' for CUDA 13 (the extras edgevit[trt-cu12] / "
    "edgevit[trt-cu13] pin both); on a Jetson pin JetPack's CUDA minor instead ('cuda-python==12.6.*' on "
    "JetPack 6.1/6.2)"
)


def tegra_cuda_python_advice(driver_cuda: str) -> str:
    """The cuda-python pin for a Jetson whose driver reports CUDA ``driver_cuda`` ("12.6")."""
    major_minor = ".".join(str(driver_cuda).split(".")[:2])
    return (f"on a Jetson pin cuda-python to JetPack's CUDA minor: pip install 'cuda-python=={major_minor}.*' "
            "(Jetson has no CUDA minor-version compatibility, so a cuda-python of a newer CUDA minor fails "
            "with cudaErrorInsufficientDriver)")


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


def tensorrt_version() -> str | None:
    """The installed TensorRT's version from its distribution metadata (pip's ``tensorrt`` /
    ``tensorrt-cu12`` / ``tensorrt-cu13``, JetPack's python3-libnvinfer ships a ``tensorrt`` one), without
    importing it; None when none is installed."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu13_bindings", "tensorrt_cu12_bindings"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def version_report(tensorrt: str | None = None, cuda_python: str | None = None) -> dict:
    """The TensorRT and cuda-python versions found (None: not installed) and whether each one's
    major.minor is in what edgevit has checked (:data:`CHECKED_TENSORRT`, :data:`CHECKED_CUDA_PYTHON`;
    None when not installed; False means "not read by edgevit's audit", not "known broken").
    Defaults: what this environment has installed (read from package metadata, nothing imported)."""
    found = {"tensorrt": tensorrt if tensorrt is not None else tensorrt_version(),
             "cuda_python": cuda_python if cuda_python is not None else cuda_python_version()}
    tables = {"tensorrt": CHECKED_TENSORRT, "cuda_python": CHECKED_CUDA_PYTHON}
    report = {}
    for name, version in found.items():
        checked = None if not version else ".".join(str(version).split(".")[:2]) in tables[name]
        report[name] = {"found": version, "checked": checked, "checked_versions": list(tables[name])}
    return report
