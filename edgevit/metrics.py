"""The comparison of two outputs for the same samples, used wherever edgevit judges one artifact
against another (``edgevit verify``, ``edgevit bench``, the quantize gate):

- :class:`ErrorStats` / :func:`compare_outputs`: max abs / max rel / mean abs error, the
  elementwise check ``|cand - ref| <= atol + rtol * |ref|`` with both terms explicit (never
  numpy's hidden default rtol), per-sample cosine over the flattened output, non-finite
  values, the worst element;
- :func:`cosine_per_sample`, :func:`topk_agreement` (top-1 / top-k agreement of class scores);
- :func:`neighbour_agreement`: how outputs without labels are judged, for models whose graphs
  output ``features`` (a headless model's pooled embedding) or ``tokens`` (its patch tokens)
  instead of ``logits``.

Bottom layer: imports nothing of edgevit but errors (torch only inside :meth:`ErrorStats.update`),
so the export side uses it without the verification harness.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import VerificationError

FEATURE_OUTPUTS = ("features", "tokens")
"""Output names of graphs without classes (edgevit export names the graph output by what it holds)."""
OUTPUT_RANKS = {"logits": (2, "(batch, classes)"), "features": (2, "(batch, dim)"), "tokens": (3, "(batch, patches, dim)")}
"""The rank and layout of each kind of output an edgevit export writes (manifest ``model.output``)."""
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
        """Add one batch. Arrays or torch tensors; computed in float64 with torch (on the
        tensors' device, so GPU outputs are compared on the GPU)."""
        import torch

        ref = torch.as_tensor(ref)
        cand = torch.as_tensor(cand).to(ref.device)
        if tuple(ref.shape) != tuple(cand.shape):
            raise VerificationError(f"shape mismatch: reference {tuple(ref.shape)} vs candidate {tuple(cand.shape)}")
        ref = ref.to(torch.float64)
        cand = cand.to(torch.float64)
        finite = torch.isfinite(cand)
        self.nonfinite += int((~finite).sum())
        diff = torch.where(finite, (cand - ref).abs(), torch.full_like(ref, math.inf))
        if diff.numel():
            self.max_abs = max(self.max_abs, float(diff.max()))
            rel = diff / ref.abs().clamp_min(1e-12)
            self.max_rel = max(self.max_rel, float(rel.max()))
            self.sum_abs += float(torch.where(finite, diff, torch.zeros_like(diff)).sum())
            self.count += diff.numel()
            excess = diff - (self.atol + self.rtol * ref.abs())
            self.violations += int((excess > 0).sum())
            flat = int(excess.reshape(-1).argmax())
            worst = float(excess.reshape(-1)[flat])
            if self.worst is None or worst > self.worst[0]:
                index = np.unravel_index(flat, tuple(diff.shape))
                index = (int(index[0]) + self.offset,) + tuple(int(i) for i in index[1:])
                self.worst = (worst, index, float(ref.reshape(-1)[flat]), float(cand.reshape(-1)[flat]))
        a = ref.reshape(ref.shape[0], -1)
        b = torch.where(finite, cand, torch.zeros_like(cand)).reshape(cand.shape[0], -1)
        na, nb = a.norm(dim=1), b.norm(dim=1)
        denom = na * nb
        cos = torch.where(denom > 0, (a * b).sum(dim=1) / torch.where(denom > 0, denom, torch.ones_like(denom)),
                          torch.zeros_like(denom))
        cos = torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos.clamp(-1.0, 1.0))
        self.cosines.append(cos.cpu().numpy())
        self.offset += ref.shape[0]

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


def compare_outputs(ref: np.ndarray, cand: np.ndarray, tolerance, labels=None, output: str = "logits") -> dict:
    """All metrics of one output (first axis = samples).

    Args:
        ref: the reference output.
        cand: the candidate output, same shape.
        tolerance: anything with ``atol`` and ``rtol`` (an :class:`edgevit.tolerances.Tolerance`):
            the elementwise limit the ``violations`` count is taken against.
        labels: true classes of the samples; adds each side's top-1 accuracy to logits stats.
        output: "logits", or "features" / "tokens" (:data:`FEATURE_OUTPUTS`, no classes): k-NN
            agreement (:func:`neighbour_agreement`) instead of top-1/top-5 agreement and accuracy.
    """
    acc = ErrorStats(tolerance.atol, tolerance.rtol)
    acc.update(ref, cand)
    stats = acc.to_dict()
    stats["shape"] = list(np.shape(ref))
    if output in FEATURE_OUTPUTS:
        stats["knn_agreement"], stats["knn_k"] = neighbour_agreement(ref, cand)
    elif np.ndim(ref) == 2 and np.shape(ref)[1] > 1:
        top1, topk, k = topk_agreement(ref, np.nan_to_num(np.asarray(cand, np.float64), nan=-np.inf))
        stats.update(top1_agreement=top1, top5_agreement=topk, topk=k)
        if labels is not None:
            labels = np.asarray(labels)
            stats["accuracy_reference"] = float((np.asarray(ref).argmax(1) == labels).mean())
            stats["accuracy_candidate"] = float((np.asarray(cand).argmax(1) == labels).mean())
    return stats


__all__ = ["ErrorStats", "FEATURE_OUTPUTS", "OUTPUT_RANKS", "KNN_AGREEMENT", "KNN_K", "KNN_WITHIN", "compare_outputs",
           "cosine_per_sample", "neighbour_agreement", "topk_agreement"]
