"""The TensorRT runner. Registered by name now; the TensorRT issue implements engine execution.

Importing this module does not import tensorrt: constructing the runner does, through
:func:`edgevit._deps.require`, so a machine without TensorRT gets MissingDependencyError with
the install command instead of an ImportError.
"""

from __future__ import annotations

from pathlib import Path

from .._deps import require
from ..errors import EdgeVitError, OnnxModelError
from .base import Runner


class TensorRTRunner(Runner):
    """Run a serialized TensorRT engine (``.plan`` / ``.engine``). Not implemented yet."""

    def __init__(self, source, **options):
        super().__init__()
        require("tensorrt", purpose="running TensorRT engines")
        path = Path(source)
        if not path.exists():
            raise OnnxModelError(f"{path}: no such TensorRT engine file")
        self.source = path
        self.options = options
        self.name = f"tensorrt[{path.name}]"
        raise EdgeVitError(
            "the TensorRT runner is registered but not implemented yet in this edgevit version; "
            "verify the ONNX artifact with the onnxruntime runner meanwhile"
        )
