"""The comparison of two outputs for the same samples, used wherever edgevit judges one artifact
against another (``edgevit verify``, ``edgevit bench``, the quantize gate):

- :func:`compare` -> :class:`Comparison`, the one comparison (:class:`ErrorStats` accumulates it
  over batches): max abs / max rel / mean abs error, the
  elementwise check ``|cand - ref| <= atol + rtol * |ref|`` with both terms explicit (never
  numpy's hidden default rtol), per-sample cosine over the flattened output, non-finite
  values, the worst element;
- :func:`cosine_per_sample`, :func:`topk_agreement` (top-1 / top-k agreement of class scores);
- :func:`neighbour_agreement`: how outputs without labels are judged, for models whose graphs
  output ``features`` (a headless model's pooled embedding) or ``tokens`` (its patch tokens)
  instead of ``logits``.

Bottom layer: imports nothing of edgevit but errors and the output kinds; numpy arrays are compared with
numpy (torch is imported only for torch tensors), so the gate and the export side use it without torch
or the verification harness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import VerificationError
from .output_kinds import OutputKind  # the output kinds' table (edgevit.output_kinds)
KNN_K = 5
KNN_WITHIN = 2  # a neighbour is kept while it stays among the candidate's KNN_WITHIN * k nearest
KNN_AGREEMENT = (f"k-NN agreement: the fraction of each sample's {KNN_K} nearest neighbours by cosine (among the "
                 f"compared samples) in the reference that stay among its {KNN_WITHIN * KNN_K} nearest in the "
                 "candidate")
"""What :func:`neighbour_agreement` measures, in the words the CLI prints under its tables."""


def neighbour_agreement(ref: np.ndarray, cand: np.ndarray, k: int = KNN_K) -> tuple[float, int]:
    """(k-NN agreement, k used) of two outputs for the same samples (first axis = sample, the rest
    flattened): for each sample, its ``k`` nearest neighbours among the other samples by cosine
    similarity in ``ref``; the mean fraction of them that are still among its ``2 k`` nearest in
    ``cand`` (1.0: no sample lost a neighbour). k = min(k, samples - 1); (1.0, 0) with fewer than
    2 samples. Non-finite candidate values count as 0.

    Why within 2k and not the overlap of the two k-sets: neighbours that are nearly tied swap ranks
    under any rounding without the embedding getting worse (the measurements are in
    benchmarks/README.md, "k-NN agreement")."""
    def unit(x):
        x = np.nan_to_num(np.asarray(x, np.float64).reshape(len(x), -1), nan=0.0, posinf=0.0, neginf=0.0)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)

    a, b = unit(ref), unit(cand)
    n = len(a)
    k = min(int(k), n - 1)
    if k < 1:
        return 1.0, 0
    wide = min(KNN_WITHIN * k, n - 1)
    kept = 0
    for start in range(0, n, 1024):  # 1024 x n similarities at a time
        rows = np.arange(start, min(start + 1024, n))
        near = []
        for x, count in ((a, k), (b, wide)):
            sims = x[rows] @ x.T
            sims[np.arange(len(rows)), rows] = -np.inf  # a sample is not its own neighbour
            near.append(np.argpartition(-sims, count - 1, axis=1)[:, :count])
        kept += sum(len(set(r.tolist()) & set(c.tolist())) for r, c in zip(*near))
    return float(kept / (n * k)), k


def _is_torch(x) -> bool:
    """``x`` is a torch tensor (told without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch"


class ErrorStats:
    """Error statistics of one tensor pair, accumulated over batches (first axis = sample).

    Args:
        atol: absolute term of the elementwise limit ``atol + rtol * |ref|``.
        rtol: relative term of that limit.
    """

    def __init__(self, atol: float, rtol: float):
        self.atol, self.rtol = atol, rtol
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.sum_abs = 0.0
        self.count = 0
        self.violations = 0
        self.cosines: list[np.ndarray] = []
        self.worst = None  # (excess, index, ref, cand)
        self.nonfinite = 0
        self.offset = 0

    def update(self, ref, cand) -> None:
        """Add one batch, computed in float64: with numpy for arrays, with torch for torch tensors
        (on the tensors' device, so GPU outputs are compared on the GPU; torch is imported only then)."""
        if _is_torch(ref) or _is_torch(cand):
            self._update_torch(ref, cand)
        else:
            self._update_numpy(np.asarray(ref), np.asarray(cand))

    def _check_shapes(self, ref_shape, cand_shape) -> None:
        if tuple(ref_shape) != tuple(cand_shape):
            raise VerificationError(f"shape mismatch: reference {tuple(ref_shape)} vs candidate {tuple(cand_shape)}")

    def _add(self, shape, max_abs, max_rel, sum_abs, count, violations, flat, worst, ref_at, cand_at, cos) -> None:
        """Fold one batch's numbers (``flat``: the flat index of its worst element) into the totals."""
        if count:
            self.max_abs = max(self.max_abs, max_abs)
            self.max_rel = max(self.max_rel, max_rel)
            self.sum_abs += sum_abs
            self.count += count
            self.violations += violations
            if self.worst is None or worst > self.worst[0]:
                index = np.unravel_index(flat, tuple(shape))
                index = (int(index[0]) + self.offset,) + tuple(int(i) for i in index[1:])
                self.worst = (worst, index, ref_at, cand_at)
        self.cosines.append(cos)
        self.offset += shape[0]

    def _update_numpy(self, ref: np.ndarray, cand: np.ndarray) -> None:
        self._check_shapes(ref.shape, cand.shape)
        ref = ref.astype(np.float64)
        cand = cand.astype(np.float64)
        finite = np.isfinite(cand)
        self.nonfinite += int((~finite).sum())
        with np.errstate(invalid="ignore"):
            diff = np.where(finite, np.abs(cand - ref), math.inf)
        cleaned = np.where(finite, cand, 0.0)
        cos = cosine_per_sample(ref, cleaned) if ref.shape[0] else np.ones(0)
        if not diff.size:
            self._add(ref.shape, 0.0, 0.0, 0.0, 0, 0, 0, 0.0, 0.0, 0.0, cos)
            return
        rel = diff / np.maximum(np.abs(ref), 1e-12)
        excess = diff - (self.atol + self.rtol * np.abs(ref))
        flat = int(excess.reshape(-1).argmax())
        self._add(ref.shape, float(diff.max()), float(rel.max()), float(np.where(finite, diff, 0.0).sum()),
                  diff.size, int((excess > 0).sum()), flat, float(excess.reshape(-1)[flat]),
                  float(ref.reshape(-1)[flat]), float(cand.reshape(-1)[flat]), cos)

    def _update_torch(self, ref, cand) -> None:
        import torch

        ref = torch.as_tensor(ref)
        cand = torch.as_tensor(cand).to(ref.device)
        self._check_shapes(ref.shape, cand.shape)
        ref = ref.to(torch.float64)
        cand = cand.to(torch.float64)
        finite = torch.isfinite(cand)
        self.nonfinite += int((~finite).sum())
        diff = torch.where(finite, (cand - ref).abs(), torch.full_like(ref, math.inf))
        a = ref.reshape(ref.shape[0], -1)
        b = torch.where(finite, cand, torch.zeros_like(cand)).reshape(cand.shape[0], -1)
        na, nb = a.norm(dim=1), b.norm(dim=1)
        denom = na * nb
        cos = torch.where(denom > 0, (a * b).sum(dim=1) / torch.where(denom > 0, denom, torch.ones_like(denom)),
                          torch.zeros_like(denom))
        cos = torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos.clamp(-1.0, 1.0)).cpu().numpy()
        if not diff.numel():
            self._add(tuple(ref.shape), 0.0, 0.0, 0.0, 0, 0, 0, 0.0, 0.0, 0.0, cos)
            return
        rel = diff / ref.abs().clamp_min(1e-12)
        excess = diff - (self.atol + self.rtol * ref.abs())
        flat = int(excess.reshape(-1).argmax())
        self._add(tuple(ref.shape), float(diff.max()), float(rel.max()),
                  float(torch.where(finite, diff, torch.zeros_like(diff)).sum()), diff.numel(),
                  int((excess > 0).sum()), flat, float(excess.reshape(-1)[flat]), float(ref.reshape(-1)[flat]),
                  float(cand.reshape(-1)[flat]), cos)

    def to_dict(self) -> dict:
        cos = np.concatenate(self.cosines) if self.cosines else np.ones(0)
        worst = None
        if self.worst is not None:
            excess, index, r, c = self.worst
            worst = {"index": list(index), "reference": r, "candidate": c, "abs_error": abs(c - r),
                     "allowed": self.atol + self.rtol * abs(r)}
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "mean_abs": self.sum_abs / max(self.count, 1),
            "cosine_min": float(cos.min()) if cos.size else 1.0,
            "cosine_mean": float(cos.mean()) if cos.size else 1.0,
            "violations": self.violations,
            "elements": self.count,
            "nonfinite": self.nonfinite,
            "worst": worst,
        }


def cosine_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` and ``b`` (float64); 1 where both rows are zero."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    denom = na * nb
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(both_zero, 1.0, np.clip(cos, -1.0, 1.0))


def topk_agreement(ref: np.ndarray, cand: np.ndarray, k: int = 5) -> tuple[float, float, int]:
    """(top-1 agreement, top-k agreement, k used) of two (samples, classes) score arrays: the
    fraction of samples whose argmax matches, and the mean fraction of the reference's top-k
    classes found in the candidate's top-k (k = min(k, classes))."""
    ref = np.asarray(ref, np.float64)
    cand = np.asarray(cand, np.float64)
    k = min(k, ref.shape[1])
    top1 = float((ref.argmax(1) == cand.argmax(1)).mean()) if len(ref) else 1.0
    rk = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    ck = np.argsort(-cand, axis=1, kind="stable")[:, :k]
    overlap = [len(set(r) & set(c)) / k for r, c in zip(rk, ck)]
    return top1, float(np.mean(overlap)) if overlap else 1.0, k


@dataclass(frozen=True)
class Comparison:
    """Every number of one comparison of a candidate output with a reference output (first axis =
    samples), under one name each. :func:`compare` makes it; :meth:`edgevit.tolerances.Tolerance.judge`
    judges it. ``atol`` / ``rtol`` are the elementwise limit ``violations`` and ``worst`` were taken
    against; the agreement fields are None where they do not apply (top-1/top-k for logits with more
    than one class, k-NN for features / tokens, accuracy with labels)."""

    output: str = "logits"
    shape: tuple = ()
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    cosine_min: float = 1.0
    cosine_mean: float = 1.0
    violations: int = 0
    elements: int = 0
    nonfinite: int = 0
    worst: dict | None = None
    atol: float = 0.0
    rtol: float = 0.0
    reference_scale: float = 0.0  # the largest |reference| value
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    topk: int | None = None
    knn_agreement: float | None = None
    knn_k: int | None = None
    accuracy_reference: float | None = None
    accuracy_candidate: float | None = None

    @property
    def agreement(self) -> float | None:
        """What agreement means for this output: top-1 for logits, k-NN for features / tokens."""
        return self.knn_agreement if self.knn_k is not None else self.top1_agreement

    @property
    def agreement_metric(self) -> str:
        """The name of :attr:`agreement`: ``top-1`` or ``k-NN@k``."""
        return f"k-NN@{self.knn_k}" if self.knn_k is not None else "top-1"

    @property
    def max_rel_to_scale(self) -> float:
        """``max_abs`` relative to the reference's largest magnitude (0 for an all-zero reference)."""
        return self.max_abs / self.reference_scale if self.reference_scale > 0 else 0.0

    def to_dict(self) -> dict:
        """The numbers as ``edgevit verify``'s JSON reports each output (fields that do not apply left out)."""
        data = {k: getattr(self, k) for k in ("max_abs", "max_rel", "mean_abs", "cosine_min", "cosine_mean",
                                              "violations", "elements", "nonfinite", "worst")}
        data["shape"] = list(self.shape)
        for key in ("knn_agreement", "knn_k", "top1_agreement", "top5_agreement", "topk", "accuracy_reference",
                    "accuracy_candidate"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


def compare(ref, cand, tolerance=None, labels=None, output: str = "logits") -> Comparison:
    """The one comparison of ``cand`` with ``ref`` (same shape, first axis = samples).

    numpy arrays are compared with numpy; torch tensors with torch (imported only then), on their device.

    Args:
        ref: the reference output.
        cand: the candidate output.
        tolerance: anything with ``atol`` and ``rtol`` (an :class:`edgevit.tolerances.Tolerance`):
            the elementwise limit the ``violations`` count is taken against; None: 0 and 0.
        labels: true classes of the samples; adds each side's top-1 accuracy to logits.
        output: "logits", or "features" / "tokens" (an :class:`OutputKind` without ``classes``): k-NN
            agreement (:func:`neighbour_agreement`) instead of top-1/top-5 agreement and accuracy.
    """
    atol, rtol = (tolerance.atol, tolerance.rtol) if tolerance is not None else (0.0, 0.0)
    acc = ErrorStats(atol, rtol)
    acc.update(ref, cand)
    if _is_torch(ref) or _is_torch(cand):
        ref, cand = (x.detach().cpu().numpy() if _is_torch(x) else np.asarray(x) for x in (ref, cand))
    ref, cand = np.asarray(ref), np.asarray(cand)
    stats = acc.to_dict()
    extra: dict = {}
    if not OutputKind(output).classes:
        extra["knn_agreement"], extra["knn_k"] = neighbour_agreement(ref, cand)
    elif ref.ndim == 2 and ref.shape[1] > 1:
        top1, topk, k = topk_agreement(ref, np.nan_to_num(cand.astype(np.float64), nan=-np.inf))
        extra.update(top1_agreement=top1, top5_agreement=topk, topk=k)
        if labels is not None:
            labels = np.asarray(labels)
            extra["accuracy_reference"] = float((ref.argmax(1) == labels).mean())
            extra["accuracy_candidate"] = float((cand.argmax(1) == labels).mean())
    scale = float(np.max(np.abs(ref.astype(np.float64)))) if ref.size else 0.0
    return Comparison(output=output, shape=tuple(ref.shape), atol=atol, rtol=rtol, reference_scale=scale,
                      **stats, **extra)


__all__ = ["Comparison", "ErrorStats", "KNN_AGREEMENT", "KNN_K", "KNN_WITHIN", "compare",
           "cosine_per_sample", "neighbour_agreement", "topk_agreement"]
