"""Compare two artifacts on the same inputs: final outputs, and per block the attention output.

``verify(reference, candidate)`` runs a checkpoint / variant / ONNX reference and a candidate (an
ONNX file, a TensorRT engine, an export OUTDIR, or the reference itself in PyTorch) on the same
inputs and checks the outputs against the candidate precision's row of
:data:`edgevit.tolerances.TOLERANCES`; ``attention=True`` adds the per-block attention check.

- :mod:`.artifacts`: what each side is (:func:`resolve_artifact`) and how to run it;
- :mod:`.inputs`: the images both sides run on (:func:`load_inputs`);
- :mod:`.outputs`: the pass/fail checks on the final outputs (:class:`Check`);
- :mod:`.attention`: the per-block attention check (ONNX debug outputs, PyTorch SDPA backends);
- :mod:`.run`: :func:`verify`, :class:`VerifyConfig`, :class:`VerifyReport`.

The comparison itself (errors, cosine, agreement) is :mod:`edgevit.metrics`; the limits are
:mod:`edgevit.tolerances`; both are re-exported here. ``python -m edgevit.verify`` is
``edgevit verify``.
"""

from __future__ import annotations

from ..metrics import (
    FEATURE_OUTPUTS,
    KNN_AGREEMENT,
    compare_outputs,
    cosine_per_sample,
    neighbour_agreement,
    topk_agreement,
)
from ..tolerances import TOLERANCES, Tolerance, get_tolerance
from .artifacts import Artifact, detect_onnx_precision, resolve_artifact
from .attention import BACKENDS, verify_attention_onnx, verify_attention_torch
from .inputs import Inputs, load_inputs
from .outputs import Check, output_checks
from .run import VerifyConfig, VerifyReport, verify

__all__ = [
    "Artifact", "BACKENDS", "Check", "FEATURE_OUTPUTS", "Inputs", "KNN_AGREEMENT", "TOLERANCES", "Tolerance",
    "VerifyConfig", "VerifyReport", "compare_outputs", "cosine_per_sample", "detect_onnx_precision",
    "get_tolerance", "load_inputs", "neighbour_agreement", "output_checks", "resolve_artifact", "topk_agreement",
    "verify", "verify_attention_onnx", "verify_attention_torch",
]
