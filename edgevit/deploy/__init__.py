"""Deploy targets: what ``edgevit deploy TARGET OUTDIR -o ...`` writes for an application's runtime, each
checked against the reference with that consumer's own preprocessing rules and certified in the export's
manifest (:mod:`edgevit.certificates`). Layer 4 (beside verify and bench); imports no torch.

:data:`TARGETS` is the one table of targets: name -> what it writes and the ``"module:function"`` that
writes it (the ``edgevit deploy`` group reads it for its help). A target is added as one more row and
one module; :mod:`.common` holds what every target needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class DeployTarget:
    """One deploy target: ``name`` (the subcommand), ``writes`` (what, in words), ``writer``
    ("module:function" under this package)."""

    name: str
    writes: str
    writer: str

    def load(self):
        """The function that writes this target (imported on first use)."""
        module, _, function = self.writer.partition(":")
        return getattr(import_module(f"{__name__}.{module}"), function)


TARGETS = {t.name: t for t in (
    DeployTarget("triton", "a Triton Inference Server model repository: REPO/NAME/config.pbtxt, 1/model.onnx or "
                 "1/model.plan, labels.txt", "triton:write_triton"),
    DeployTarget("deepstream", "a DeepStream Gst-nvinfer config, its graph (1/std folded in) and labels",
                 "deepstream:write_deepstream"),
)}

__all__ = ["DeployTarget", "TARGETS"]
