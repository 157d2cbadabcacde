"""Compare two artifacts on the same inputs: final outputs, and per block the attention output.

``verify(reference, candidate)`` runs a checkpoint / variant / ONNX reference and a candidate (an
ONNX file, a TensorRT engine, an export OUTDIR, or the reference itself in PyTorch) on the same
inputs and checks the outputs against the candidate precision's row of
:data:`edgevit.tolerances.TOLERANCES`; ``attention=True`` adds the per-block attention check.

- :mod:`.artifacts`: what each side is (:func:`resolve_artifact`, a :class:`Side`) and how to run it;
- :mod:`.inputs`: the images both sides run on (:func:`load_inputs`);
- :mod:`.outputs`: which outputs of the two sides are compared;
- :mod:`.attention`: the per-block attention check (ONNX debug outputs, PyTorch SDPA backends);
- :mod:`.run`: :func:`verify`, :class:`VerifyConfig`, :class:`VerifyReport`.

The comparison itself (errors, cosine, agreement) is :func:`edgevit.metrics.compare`; the limits and
the judge (:meth:`Tolerance.judge` -> :class:`Check`) are :mod:`edgevit.tolerances`; both are re-exported
here. ``python -m edgevit.verify`` is
``edgevit verify``.
"""

from __future__ import annotations

from ..metrics import (
    KNN_AGREEMENT,
    Comparison,
    compare,
    cosine_per_sample,
    neighbour_agreement,
    topk_agreement,
)
from ..output_kinds import FEATURE_OUTPUTS
from ..tolerances import TOLERANCES, Check, Tolerance, Verdict, get_tolerance
from .artifacts import Side, resolve_artifact
from .attention import BACKENDS, verify_attention_onnx, verify_attention_torch
from .inputs import Inputs, load_inputs
from .run import VerifyConfig, VerifyReport, verify

__all__ = [
    "BACKENDS", "Check", "Comparison", "FEATURE_OUTPUTS", "Inputs", "KNN_AGREEMENT", "Side", "TOLERANCES",
    "Tolerance", "Verdict", "VerifyConfig", "VerifyReport", "compare", "cosine_per_sample",
    "get_tolerance", "load_inputs", "neighbour_agreement", "resolve_artifact", "topk_agreement",
    "verify", "verify_attention_onnx", "verify_attention_torch",
]
