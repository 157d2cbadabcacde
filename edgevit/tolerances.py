"""The limits an artifact is judged by, and the one judge: :data:`TOLERANCES`, one row per precision,
:func:`get_tolerance`, and :meth:`Tolerance.judge`, which turns a :class:`edgevit.metrics.Comparison`
into :class:`Check` rows (``edgevit verify``, ``edgevit bench`` and ``edgevit quantize``'s accuracy gate all
judge through it); :class:`Verdict` / :class:`VerdictRecord` are what a judge decided, as the manifest
stores it. :mod:`edgevit.verify` re-exports the table; this module imports only the bottom layer
(:mod:`edgevit.formats`, whose precision rows hold the limits, and :mod:`edgevit.metrics`), so the export
side and the gate use it without the verification harness or torch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum

from .formats import ONNX_PRECISIONS
from .formats import precision as lookup
from .metrics import KNN_AGREEMENT, Comparison
from .output_kinds import output_kind


EXPORT_ATOL = 1e-4
"""The largest |ONNX Runtime - PyTorch| ``edgevit export`` accepts between the fp32 graph and the
math-attention PyTorch reference on its check inputs (``ExportConfig.atol``'s default)."""


def format_value(v) -> str:
    """A number as a check message prints it: 6 significant digits, scientific when tiny or huge."""
    if isinstance(v, float):
        if v == 0 or (1e-3 <= abs(v) < 1e4):
            return f"{v:.6g}"
        return f"{v:.3e}"
    return str(v)


@dataclass
class Check:
    """One pass/fail check with its numbers."""

    name: str
    value: float
    limit: float
    op: str  # "<=" or ">="
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        status = "ok" if self.passed else "FAILED"
        text = f"{self.name}: {format_value(self.value)} (must be {self.op} {format_value(self.limit)}) {status}"
        return f"{text}; {self.detail}" if self.detail else text


class Verdict(str, Enum):
    """What a judge decided about an artifact; a member serializes as its value."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not verified"

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def verified(self) -> bool | None:
        """True (passed), False (failed) or None (not run): the manifest's ``verdict.verified``."""
        return {Verdict.PASSED: True, Verdict.FAILED: False}.get(self)

    @classmethod
    def of(cls, checks) -> "Verdict":
        """FAILED when any of ``checks`` failed, else PASSED."""
        return cls.FAILED if any(not c.passed for c in checks) else cls.PASSED

    @classmethod
    def from_verified(cls, verified: bool | None) -> "Verdict":
        return cls.NOT_RUN if verified is None else cls.PASSED if verified else cls.FAILED


@dataclass(frozen=True)
class VerdictRecord:
    """A manifest entry's ``verdict``: whether the artifact was verified and by which judge.

    ``by="gate"`` (a precision graph, judged by the quantize gate) is stored as
    ``{"verified", "gate"}``; ``by="export"`` (the fp32 graph, checked against PyTorch on export)
    as ``{"verified", "max_abs_vs_torch", "lint_errors", "lint_warnings"}``."""

    verdict: Verdict
    by: str  # "gate" or "export"
    max_abs_vs_torch: float | None = None
    lint_errors: int | None = None
    lint_warnings: int | None = None

    @property
    def verified(self) -> bool | None:
        return self.verdict.verified

    def to_dict(self) -> dict:
        if self.by == "gate":
            return {"verified": self.verified, "gate": self.verdict.value}
        return {"verified": self.verified, "max_abs_vs_torch": self.max_abs_vs_torch,
                "lint_errors": self.lint_errors, "lint_warnings": self.lint_warnings}

    @classmethod
    def from_dict(cls, data: dict) -> "VerdictRecord":
        """The record as :meth:`to_dict` wrote it."""
        if "gate" in data:
            return cls(Verdict(data["gate"]), "gate")
        return cls(Verdict.from_verified(data.get("verified")), "export", data.get("max_abs_vs_torch"),
                   data.get("lint_errors"), data.get("lint_warnings"))


@dataclass(frozen=True)
class Tolerance:
    """Limits for one candidate precision.

    Final outputs: every element within ``atol + rtol * |ref|``, the lowest per-sample cosine
    at least ``min_cosine``, top-1 agreement at least ``min_agreement``. Attention outputs
    (per block, against the float64 reference): ``attn_atol``, ``attn_rtol``,
    ``attn_min_cosine`` likewise.
    """

    atol: float
    rtol: float
    min_cosine: float
    min_agreement: float
    attn_atol: float
    attn_rtol: float
    attn_min_cosine: float
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def judge(self, comparison: Comparison, name: str = "") -> list[Check]:
        """The checks of one output's :class:`edgevit.metrics.Comparison` (``name``: the output, the
        checks' prefix): no non-finite values, every element within ``atol + rtol * |ref|``, the lowest
        per-sample cosine, and top-1 agreement (logits) or k-NN agreement (features / tokens)."""
        c = comparison
        label = f"{name}." if name else ""
        w = c.worst or {}
        detail = (f"{c.violations} of {c.elements} elements exceed atol {self.atol:g} + rtol {self.rtol:g}*|ref|; "
                  f"worst at {w.get('index')}: ref {format_value(w.get('reference'))} "
                  f"cand {format_value(w.get('candidate'))}" if w else "")
        checks = [
            Check(f"{label}finite", float(c.nonfinite), 0.0, "<=", c.nonfinite == 0,
                  "NaN/Inf values in the candidate output" if c.nonfinite else ""),
            Check(f"{label}max_abs_error_within_atol_rtol", float(c.max_abs), self.atol, "<=", c.violations == 0,
                  detail if c.violations else ""),
            Check(f"{label}cosine_min", float(c.cosine_min), self.min_cosine, ">=", c.cosine_min >= self.min_cosine),
        ]
        if c.top1_agreement is not None:
            checks.append(Check(f"{label}top1_agreement", float(c.top1_agreement), self.min_agreement, ">=",
                                c.top1_agreement >= self.min_agreement))
        if c.knn_k:
            checks.append(Check(f"{label}knn{c.knn_k}_agreement", float(c.knn_agreement), self.min_agreement, ">=",
                                c.knn_agreement >= self.min_agreement, f"no labels; {KNN_AGREEMENT}"))
        return checks


class _ToleranceRows(Mapping):
    """precision -> its :class:`Tolerance`, read off the rows of :data:`edgevit.formats.PRECISION_TABLE`
    (``tolerance``; with ``features``, updated by ``feature_tolerance``) each time."""

    def __init__(self, features: bool) -> None:
        self._features = features

    def __getitem__(self, name: str) -> Tolerance:
        try:
            row = lookup(name, onnx=True)  # every ONNX row has its tolerance (register_precision checks)
        except ValueError:
            raise KeyError(name) from None
        return Tolerance(**{**row.tolerance, **(row.feature_tolerance if self._features else {})})

    def __iter__(self):
        return iter(ONNX_PRECISIONS)

    def __len__(self) -> int:
        return len(ONNX_PRECISIONS)


TOLERANCES: Mapping[str, Tolerance] = _ToleranceRows(features=False)
"""THE tolerance table, one row per ONNX precision: each precision row's ``tolerance``
(:data:`edgevit.formats.PRECISION_TABLE`, where the limits and their measurements are)."""
FEATURE_TOLERANCES: Mapping[str, Tolerance] = _ToleranceRows(features=True)
"""The rows for outputs without classes ("features", "tokens"): the logits row with the precision's
``feature_tolerance`` applied. ``min_agreement`` is then the k-NN agreement
(edgevit.metrics.neighbour_agreement: the fraction of each sample's 5 nearest neighbours by cosine that
stay among its 10 nearest), not top-1 agreement."""


def get_tolerance(precision: str, output: str = "logits", **overrides) -> Tolerance:
    """The :data:`TOLERANCES` row for ``precision`` (:data:`FEATURE_TOLERANCES` for an ``output`` of
    "features" or "tokens") with any non-None ``overrides`` applied.

    Overrides are Tolerance field names (``atol``, ``rtol``, ``min_cosine``,
    ``min_agreement``, ``attn_atol``, ``attn_rtol``, ``attn_min_cosine``).
    """
    lookup(precision, onnx=True)  # ValueError naming the ONNX precisions
    kind = output_kind(output, "output")  # ValueError naming the kinds
    known = {f.name for f in fields(Tolerance)} - {"note"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown tolerance field(s) {unknown}; allowed: {sorted(known)}")
    changes = {k: float(v) for k, v in overrides.items() if v is not None}
    for key, value in changes.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {value}")
        if key in ("min_cosine", "attn_min_cosine") and value > 1:
            raise ValueError(f"{key} must be <= 1, got {value}")
        if key == "min_agreement" and value > 1:
            raise ValueError(f"min_agreement is a fraction in [0, 1], got {value}")
    tol = TOLERANCES[precision] if kind.classes else FEATURE_TOLERANCES[precision]
    if changes:
        tol = replace(tol, **changes, note=f"{tol.note}; overridden: {sorted(changes)}")
    return tol


__all__ = ["Check", "EXPORT_ATOL", "FEATURE_TOLERANCES", "TOLERANCES", "Tolerance", "Verdict", "VerdictRecord",
           "format_value", "get_tolerance"]
