"""edgevit: Vision Transformers from PyTorch to TensorRT engines, verified at every step.

``import edgevit`` imports neither torch, onnxruntime nor tensorrt: the model API below is
loaded on first use (module ``__getattr__``), so a device application can use
:mod:`edgevit.runtime` without PyTorch installed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "ViTConfig": "edgevit.models",
    "VisionTransformer": "edgevit.models",
    "create_model": "edgevit.models",
    "list_variants": "edgevit.models",
    "load_model": "edgevit.models",
    "save_model": "edgevit.models",
}

__all__ = ["ViTConfig", "VisionTransformer", "create_model", "list_variants", "load_model", "save_model", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgevit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
