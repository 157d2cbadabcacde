"""The accuracy gate: is a precision graph good enough to keep?

A graph runs with ONNX Runtime on CPU over held-out data (the test split, :func:`load_gate_data`)
and is compared with the fp32 graph (:func:`gate_metrics`: :func:`edgevit.metrics.compare`); :func:`judge`
turns that :class:`edgevit.metrics.Comparison` into a :class:`GateResult` (an
:class:`edgevit.tolerances.Verdict` and the failed checks) through the one judge,
:meth:`edgevit.tolerances.Tolerance.judge`, of the precision's row of :data:`edgevit.tolerances.TOLERANCES`:

- logits: it fails if top-1 drops more than ``max_drop`` points or top-1 agreement with fp32 falls
  below the precision's ``min_agreement``;
- features / tokens (the manifest's ``model.output``; no labels needed): it fails if the lowest
  per-sample cosine with the fp32 outputs falls below ``min_cosine`` or the k-NN agreement
  (:func:`edgevit.metrics.neighbour_agreement`) below ``min_agreement`` of
  :data:`edgevit.tolerances.FEATURE_TOLERANCES`.

:func:`layer_sensitivity` quantizes one layer at a time to rank the layers by harm, and
:func:`auto_exclude` keeps the most harmful ones in higher precision, one at a time, until the gate
passes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..formats import BASE_PRECISION, QUANTIZED
from ..input_contract import contract_of
from ..manifest import Manifest
from ..metrics import Comparison, compare
from ..output_kinds import OutputKind
from ..tolerances import Check, Verdict, get_tolerance
from .graphs import build_precision_graph
from .recipe import PrecisionRecipe, quantizable_nodes

GATE_BATCH = 256


@dataclass
class GateData:
    images: np.ndarray
    labels: np.ndarray | None  # None for features/tokens: judged without labels
    description: str
    reference: np.ndarray      # fp32 graph's outputs
    output: str = "logits"     # the manifest's model.output: logits, features or tokens
    contract: object = None    # a raw-pixel graph's edgevit.input_contract.InputContract: fed the images' pixels
    batch: int = GATE_BATCH    # images run at once: fewer for large attention (gate_batch)


def bounded_batch(batch: int, manifest: Manifest, copies: int = 1) -> int:
    """``batch``, or fewer where that many images' attention scores, ``copies`` score-sized tensors an image, would
    not fit (:func:`edgevit.runtime.batching.score_bounded_batch`, the manifest's config: SAM at 1024 px runs 2 at
    a time)."""
    from ..models.config import ViTConfig
    from ..runtime.batching import score_bounded_batch

    score = ViTConfig.score_bytes_of(manifest.model.config)
    return score_bounded_batch(batch, score * copies if score else None)


def gate_batch(manifest: Manifest) -> int:
    """The gate's batch: GATE_BATCH, bounded by the attention scores (:func:`bounded_batch`)."""
    return bounded_batch(GATE_BATCH, manifest)


def run_graph(graph, images: np.ndarray, threads: int | None, contract=None, batch: int = GATE_BATCH) -> np.ndarray:
    """The first output of ``graph`` (a path or an onnx.ModelProto) on ``images``: ONNX Runtime on CPU
    with Q/DQ executed exactly as written (:data:`edgevit.runtime.onnxruntime_runner.JUDGED_BY`); a raw-pixel
    graph (``contract``) is fed the images' pixels."""
    from ..runtime import get_runner
    from ..runtime.normalized_feed import normalized_feed
    from ..runtime.onnxruntime_runner import JUDGED_BY
    from ..runtime.batching import in_input_dtype, run_batched

    with normalized_feed(get_runner("onnxruntime", graph, threads=threads, qdq=JUDGED_BY), contract) as runner:
        fed = in_input_dtype(images, runner)  # a graph quantized with --io-dtype fp16 takes float16
        return np.asarray(run_batched(runner, fed, batch)[runner.output_names()[0]], dtype=np.float32)


@dataclass(frozen=True)
class GateResult:
    """The gate's record of one graph: the verdict, why, and the numbers it was judged on.

    ``comparison`` is the graph's outputs against the fp32 graph's (:func:`gate_metrics`); the limits
    are ``max_drop`` (logits: the top-1 budget in points), ``min_agreement`` and, for features /
    tokens, ``min_cosine``. :meth:`to_dict` is what the manifest's ``gate`` field and ``--json`` hold."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    comparison: Comparison | None = None
    max_drop: float | None = None
    min_agreement: float | None = None
    min_cosine: float | None = None
    data: str | None = None
    arithmetic: str | None = None

    @property
    def features(self) -> bool:
        """Judged without labels (features / tokens): by cosine and k-NN agreement."""
        return self.comparison is not None and not OutputKind(self.comparison.output).classes

    @property
    def top1(self) -> float | None:
        return self.comparison.accuracy_candidate if self.comparison is not None else None

    @property
    def fp32_top1(self) -> float | None:
        return self.comparison.accuracy_reference if self.comparison is not None else None

    @property
    def drop_points(self) -> float | None:
        return drop_points(self.comparison) if self.comparison is not None else None

    @property
    def agreement(self) -> float | None:
        return self.comparison.agreement if self.comparison is not None else None

    def with_reason(self, reason: str) -> "GateResult":
        return replace(self, reasons=(*self.reasons, reason))

    def to_dict(self) -> dict:
        record: dict = {}
        if self.data is not None:
            record["data"] = self.data
        if self.arithmetic is not None:
            record["arithmetic"] = self.arithmetic
        c = self.comparison
        if c is not None and self.features:
            record.update(output=str(c.output), agreement=c.agreement, agreement_metric=c.agreement_metric,
                          max_abs=c.max_abs, cosine_min=c.cosine_min, cosine_mean=c.cosine_mean,
                          min_cosine=self.min_cosine, min_agreement=self.min_agreement)
        elif c is not None:
            record.update(top1=self.top1, fp32_top1=self.fp32_top1, drop_points=self.drop_points,
                          agreement=c.agreement, max_abs=c.max_abs, cosine_min=c.cosine_min,
                          max_drop=self.max_drop, min_agreement=self.min_agreement)
        return {**record, "verdict": self.verdict.value, "reasons": list(self.reasons)}


def drop_points(comparison: Comparison) -> float | None:
    """How many top-1 points the candidate loses against the reference (None without labels)."""
    if comparison.accuracy_reference is None or comparison.accuracy_candidate is None:
        return None
    return round((comparison.accuracy_reference - comparison.accuracy_candidate) * 100, 4)


def gate_metrics(outputs: np.ndarray, data: GateData) -> Comparison:
    """How the ``outputs`` of a candidate graph compare with the fp32 graph's on ``data`` (with the
    labels, each side's top-1 accuracy)."""
    return compare(data.reference, outputs, labels=data.labels, output=data.output)


def judge(comparison: Comparison, precision: str, max_drop: float) -> GateResult:
    """The gate's verdict on ``comparison``, by the one judge (:meth:`edgevit.tolerances.Tolerance.judge`)
    of the precision's tolerance row: top-1 agreement and the ``max_drop`` budget (logits), or the lowest
    cosine and k-NN agreement (features / tokens); each failed check is a reason, with its numbers."""
    output = comparison.output
    tol = get_tolerance(precision, output)
    classes = OutputKind(output).classes
    why = f"{precision} tolerance" if classes else f"{precision} {output} tolerance"
    checks = {c.name: replace(c, detail=why) for c in tol.judge(comparison)}
    if not classes:
        decisive = [checks["cosine_min"]] + [c for n, c in checks.items() if n.startswith("knn")]
    else:
        drop = drop_points(comparison)
        decisive = [] if drop is None else [
            Check("top1_drop_points", drop, max_drop, "<=", drop <= max_drop + 1e-9, "the max_drop budget")]
        decisive += [checks[n] for n in ("top1_agreement",) if n in checks]
    return GateResult(Verdict.of(decisive), tuple(c.describe() for c in decisive if not c.passed), comparison,
                      max_drop if classes else None, tol.min_agreement,
                      None if classes else tol.min_cosine)


def gate_graph(graph, precision: str, data: GateData | None, max_drop: float, threads: int | None) -> GateResult:
    """The gate's record for one graph: its data, numbers and verdict (not run without data)."""
    if data is None:
        return GateResult(Verdict.NOT_RUN, ("--no-gate",))
    from ..runtime.onnxruntime_runner import JUDGED_BY, QDQ_MODES

    outputs = run_graph(graph, data.images, threads, data.contract, data.batch)
    result = judge(gate_metrics(outputs, data), precision, max_drop)
    return replace(result, data=data.description, arithmetic=QDQ_MODES[JUDGED_BY] if precision in QUANTIZED else None)


def input_preprocessing(manifest: Manifest, spec: str, preprocessed: bool, option: str):
    """How ``spec`` becomes model input: the manifest's preprocessing, or, for arrays that already are
    model input (``--preprocessed``), none at all (an identity of the graph's input shape)."""
    from ..data import Preprocessing

    if manifest.preprocessing is not None:  # checked when the manifest was loaded
        return manifest.preprocessing
    if preprocessed:
        return Preprocessing.identity(manifest.sample_shape)
    raise DataError(f"{manifest.root}: the manifest records no preprocessing (the model was exported without one), "
                    f"so {option} {spec!r} cannot be turned into model input; give arrays that already are model "
                    "input with --preprocessed, re-export from a checkpoint that records its preprocessing, "
                    "or pass --no-gate")


def load_gate_data(spec: str, manifest: Manifest, fp32_path: Path, threads: int | None,
                   preprocessed: bool = False) -> GateData:
    """The gate's held-out data (its test split) and the fp32 graph's outputs on it; labels are
    needed for logits only."""
    from ..data import load_dataset

    ds = load_dataset(spec, input_preprocessing(manifest, spec, preprocessed, "--data"), split="test",
                      preprocessed=preprocessed, model_labels=manifest.labels)
    output = manifest.output_kind
    if output.classes and (ds.labels is None or len(ds.labels) == 0):
        raise DataError(f"gate data {spec!r} has no labels; give labelled data with --data or pass --no-gate")
    if len(ds.images) < 2:
        raise DataError(f"gate data {spec!r} holds {len(ds.images)} image(s) in its test split; the gate needs "
                        "at least 2 (k-NN agreement compares samples with each other): give more with --data")
    labels = np.asarray(ds.labels) if output.classes else None
    note = "" if output.classes else f"; {output}: no labels used, judged by cosine and k-NN agreement with fp32"
    contract, batch = contract_of(manifest), gate_batch(manifest)
    return GateData(ds.images, labels, f"{spec} test split ({len(ds.images)} images{note})",
                    run_graph(str(fp32_path), ds.images, threads, contract, batch), output, contract, batch)


# ------------------------------------------------------------------------------ sensitivity
def graph_for_names(fp32_path: Path):
    """The fp32 graph without its weights: enough to list node names."""
    import onnx

    return onnx.load(str(fp32_path), load_external_data=False)


def layer_sensitivity(fp32_path: Path, recipe: PrecisionRecipe, amax: dict, data: GateData,
                      threads: int | None = None, progress: bool = True) -> list[dict]:
    """Quantize one layer at a time; most harmful first (largest drop, then lowest agreement)."""
    from tqdm import tqdm

    layers = quantizable_nodes(graph_for_names(fp32_path), recipe)
    rows = []
    for layer in tqdm(layers, desc=f"sensitivity ({recipe.precision})", disable=not progress, file=sys.stderr):
        graph = build_precision_graph(fp32_path, replace(recipe, base=BASE_PRECISION), amax, nodes=[layer])
        m = gate_metrics(run_graph(graph, data.images, threads, data.contract, data.batch), data)
        rows.append({"layer": layer, "drop_points": drop_points(m),
                     "agreement": m.agreement, "cosine_min": m.cosine_min, "max_abs": m.max_abs})
    return sorted(rows, key=lambda r: (-(r["drop_points"] or 0.0), r["agreement"], -r["max_abs"]))


def auto_exclude(fp32_path: Path, recipe: PrecisionRecipe, amax: dict, graph, gate: GateResult, sensitivity: list[dict],
                 data: GateData, max_drop: float, threads: int | None):
    """Keep the layers of ``sensitivity`` (most harmful first) out of quantization one at a time,
    rebuilding and re-gating, until the gate passes; the last quantized layer always stays, so the
    graph and its recipe agree. Returns (recipe, graph, gate, excluded layers)."""
    excluded: list[str] = []
    names = graph_for_names(fp32_path)
    start = recipe
    for row in sensitivity:
        trial = replace(start, exclude=start.exclude + tuple(excluded) + (row["layer"],))
        if not quantizable_nodes(names, trial):
            gate = gate.with_reason(f"--auto-exclude kept {len(excluded)} layer(s) unquantized and "
                                    f"the gate still fails with only {row['layer']} quantized")
            break
        excluded.append(row["layer"])
        recipe = trial
        graph = build_precision_graph(fp32_path, recipe, amax)
        gate = gate_graph(graph, recipe.precision, data, max_drop, threads)
        if gate.verdict is Verdict.PASSED:
            break
    return recipe, graph, gate, excluded


__all__ = ["GateData", "GateResult", "auto_exclude", "drop_points", "gate_graph", "gate_metrics", "graph_for_names", "input_preprocessing", "judge",
           "layer_sensitivity", "load_gate_data", "run_graph"]
