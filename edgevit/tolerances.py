"""The limits an artifact is judged by: :data:`TOLERANCES`, one row per precision, and
:func:`get_tolerance`. ``edgevit verify`` and ``edgevit bench`` compare against them, and
``edgevit quantize``'s accuracy gate takes each precision's ``min_agreement`` from them.
:mod:`edgevit.verify` re-exports all three; this module imports nothing of edgevit, so the export
side can use the table without the verification harness."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace


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


# THE table: one row per precision. Each limit is a few times the worst error measured on the
# models of benchmarks/README.md ("Tolerances"), where the measurements are; int8/fp8 were
# measured on digits-tiny only: re-measure on a real-weights ViT before relying on them for ImageNet.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=5e-4, rtol=1e-4, min_cosine=0.99999, min_agreement=0.99,
                      attn_atol=2e-4, attn_rtol=1e-4, attn_min_cosine=0.99999,
                      note="measured: worst logits |d| 7.7e-5, attention 3.5e-5 (ORT and PyTorch vs fp32 math)"),
    "fp16": Tolerance(atol=0.2, rtol=1e-2, min_cosine=0.999, min_agreement=0.95,
                      attn_atol=0.15, attn_rtol=1e-2, attn_min_cosine=0.9995,
                      note="measured: worst logits |d| 5.8e-2, cosine 0.99987; attention 5.0e-2 (PyTorch fp16, ORT fp16 graph)"),
    "bf16": Tolerance(atol=1.5, rtol=5e-2, min_cosine=0.98, min_agreement=0.90,
                      attn_atol=1.0, attn_rtol=5e-2, attn_min_cosine=0.995,
                      note="measured: worst logits |d| 0.44, cosine 0.9925; attention 0.28 (PyTorch bf16)"),
    "int8": Tolerance(atol=1.0, rtol=1e-1, min_cosine=0.98, min_agreement=0.97,
                      attn_atol=0.3, attn_rtol=1e-1, attn_min_cosine=0.998,
                      note="measured on digits-tiny: logits |d| 0.23, cosine 0.9964; attention 0.079 (ORT Q/DQ graph)"),
    "fp8": Tolerance(atol=1.5, rtol=1e-1, min_cosine=0.97, min_agreement=0.97,
                     attn_atol=0.8, attn_rtol=1e-1, attn_min_cosine=0.995,
                     note="measured on digits-tiny: logits |d| 0.41, cosine 0.9914; attention 0.205 (ORT fp8 Q/DQ)"),
}


# Outputs without classes ("features": the pooled embedding of a headless model; "tokens": its patch
# tokens). ``min_agreement`` is then the k-NN agreement (edgevit.metrics.neighbour_agreement: the
# fraction of each sample's 5 nearest neighbours by cosine that stay among its 10 nearest), not top-1
# agreement; the attention limits are the logits rows'. The logits rows fit, except fp8's k-NN
# agreement (0.95); the measurements are in benchmarks/README.md ("Tolerances").
FEATURE_TOLERANCES: dict[str, Tolerance] = {
    precision: replace(TOLERANCES[precision], **changes)
    for precision, changes in {
        "fp32": {"note": "logits row; features/tokens measured: |d| 1.4e-5, cosine 1 - 1e-12 (ORT vs PyTorch)"},
        "fp16": {"note": "logits row; features/tokens measured: |d| 2.2e-2, cosine 0.99999, k-NN 1.0"},
        "bf16": {"note": "logits row; features/tokens measured: |d| 0.24, cosine 0.9988, k-NN 0.9994"},
        "int8": {"note": "logits row; features/tokens measured: |d| 0.61, cosine 0.9949, k-NN 0.9967 (ORT Q/DQ graph)"},
        "fp8": {"min_agreement": 0.95,
                "note": "logits row but k-NN 0.95; features/tokens measured: |d| 1.42, cosine 0.980, k-NN 0.967 "
                        "(ORT fp8 Q/DQ graph)"},
    }.items()
}

OUTPUT_KINDS = ("logits", "features", "tokens")


def get_tolerance(precision: str, output: str = "logits", **overrides) -> Tolerance:
    """The :data:`TOLERANCES` row for ``precision`` (:data:`FEATURE_TOLERANCES` for an ``output`` of
    "features" or "tokens") with any non-None ``overrides`` applied.

    Overrides are Tolerance field names (``atol``, ``rtol``, ``min_cosine``,
    ``min_agreement``, ``attn_atol``, ``attn_rtol``, ``attn_min_cosine``).
    """
    if precision not in TOLERANCES:
        raise ValueError(f"precision must be one of {list(TOLERANCES)}, got {precision!r}")
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {list(OUTPUT_KINDS)}, got {output!r}")
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
    tol = TOLERANCES[precision] if output == "logits" else FEATURE_TOLERANCES[precision]
    if changes:
        tol = replace(tol, **changes, note=f"{tol.note}; overridden: {sorted(changes)}")
    return tol
