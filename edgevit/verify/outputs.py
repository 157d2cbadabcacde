"""The checks on the final outputs of a comparison: what passes and what fails, with the numbers.

Each output's statistics come from :func:`edgevit.metrics.compare_outputs`; :func:`output_checks`
turns them into :class:`Check` rows against a :class:`edgevit.tolerances.Tolerance`: no
non-finite values, every element within ``atol + rtol * |ref|``, the lowest per-sample cosine,
and top-1 agreement (logits) or k-NN agreement (features / tokens).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import VerificationError
from ..metrics import KNN_AGREEMENT
from ..tolerances import Tolerance


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


def format_value(v) -> str:
    """A number as a check message prints it: 6 significant digits, scientific when tiny or huge."""
    if isinstance(v, float):
        if v == 0 or (1e-3 <= abs(v) < 1e4):
            return f"{v:.6g}"
        return f"{v:.3e}"
    return str(v)


def output_checks(name: str, stats: dict, tol: Tolerance, prefix: str = "") -> list[Check]:
    """The checks of one output's stats: finite, elementwise, cosine and (logits) top-1 agreement."""
    checks = []
    label = f"{prefix}{name}"
    checks.append(Check(f"{label}.finite", float(stats["nonfinite"]), 0.0, "<=", stats["nonfinite"] == 0,
                        "NaN/Inf values in the candidate output" if stats["nonfinite"] else ""))
    w = stats.get("worst") or {}
    detail = (f"{stats['violations']} of {stats['elements']} elements exceed atol {tol.atol:g} + rtol {tol.rtol:g}"
              f"*|ref|; worst at {w.get('index')}: ref {format_value(w.get('reference'))} "
              f"cand {format_value(w.get('candidate'))}"
              if w else "")
    checks.append(Check(f"{label}.max_abs_error_within_atol_rtol", float(stats["max_abs"]),
                        tol.atol, "<=", stats["violations"] == 0, detail if stats["violations"] else ""))
    checks.append(Check(f"{label}.cosine_min", float(stats["cosine_min"]), tol.min_cosine, ">=",
                        stats["cosine_min"] >= tol.min_cosine))
    if "top1_agreement" in stats:
        checks.append(Check(f"{label}.top1_agreement", float(stats["top1_agreement"]), tol.min_agreement, ">=",
                            stats["top1_agreement"] >= tol.min_agreement))
    if stats.get("knn_k"):
        checks.append(Check(f"{label}.knn{stats['knn_k']}_agreement", float(stats["knn_agreement"]),
                            tol.min_agreement, ">=", stats["knn_agreement"] >= tol.min_agreement,
                            f"no labels; {KNN_AGREEMENT}"))
    return checks


def pair_outputs(ref_out: dict, cand_out: dict) -> list[tuple[str, str]]:
    """(reference name, candidate name) of the outputs to compare: the names both have, else the
    single output of each."""
    common = [n for n in ref_out if n in cand_out]
    if common:
        return [(n, n) for n in common]
    if len(ref_out) == 1 and len(cand_out) == 1:
        return [(next(iter(ref_out)), next(iter(cand_out)))]
    raise VerificationError(
        f"no output names in common: reference {sorted(ref_out)} vs candidate {sorted(cand_out)}"
    )


__all__ = ["Check", "format_value", "output_checks", "pair_outputs"]
