"""Optional dependencies: import them where they are needed, or fail early with the fix."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingDependencyError

# What export, training and quantization need and a device install leaves out (pyproject.toml's `export` extra).
EXPORT_EXTRA = "export"
_EXPORT_PURPOSE = ("exporting, training or evaluating a PyTorch model and quantizing an export (the deploy side: "
                   "predict, embed, build, deploy, bench of artifacts, runs without it)")

# module name -> (extra, what it is for)
_EXTRAS = {
    **{name: (EXPORT_EXTRA, _EXPORT_PURPOSE)
       for name in ("torch", "torchvision", "onnxscript", "onnx_ir", "onnxslim", "safetensors", "tqdm")},
    "timm": ("timm", "loading or comparing against timm models"),
    "transformers": ("hf", "loading or comparing against Hugging Face models"),
    "matplotlib": ("plot", "drawing report plots"),
}


def require(module: str, extra: str | None = None, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError with the exact install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(module, exc, extra, purpose) from exc


def require_export(purpose: str) -> None:
    """Fail early, before anything is written, when the `export` extra (PyTorch) is not installed."""
    require("torch", EXPORT_EXTRA, purpose)


def has_module(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_dependency(exc: BaseException) -> MissingDependencyError | None:
    """A ModuleNotFoundError of an optional dependency (a lazy import deep in a command) as the
    MissingDependencyError that names the extra to install; None for anything else."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not name or name.split(".")[0] not in _EXTRAS:
        return None
    return _missing(name.split(".")[0], exc)


def _missing(module: str, exc: BaseException, extra: str | None = None,
             purpose: str | None = None) -> MissingDependencyError:
    known_extra, known_purpose = _EXTRAS.get(module, (None, None))
    extra = extra or known_extra
    purpose = purpose or known_purpose or "this feature"
    fix = f"pip install 'edgevit[{extra}]'" if extra else f"pip install {module}"
    return MissingDependencyError(
        f"{module} is needed for {purpose} but could not be imported ({exc}). "
        f"Install it with: {fix}"
    )
