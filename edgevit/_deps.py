"""Optional dependencies: import them where they are needed, or fail early with the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module name -> (extra, what it is for)
_EXTRAS = {
    "timm": ("timm", "loading or comparing against timm models"),
    "transformers": ("hf", "loading or comparing against Hugging Face models"),
    "matplotlib": ("plot", "drawing report plots"),
}


def require(module: str, extra: str | None = None, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError with the exact install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        known_extra, known_purpose = _EXTRAS.get(module, (None, None))
        extra = extra or known_extra
        purpose = purpose or known_purpose or "this feature"
        fix = f"pip install 'edgevit[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(
            f"{module} is needed for {purpose} but could not be imported ({exc}). "
            f"Install it with: {fix}"
        ) from exc
