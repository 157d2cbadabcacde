"""The accuracy gate: is a precision graph good enough to keep?

A graph runs with ONNX Runtime on CPU over held-out data (the test split, :func:`load_gate_data`)
and is compared with the fp32 graph (:func:`gate_metrics`); :func:`judge` turns the numbers into
a verdict against the precision's row of :data:`edgevit.tolerances.TOLERANCES`:

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
from ..formats import QUANTIZED
from ..export.onnx import compare_logits
from ..manifest import Manifest
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


def run_graph(graph, images: np.ndarray, threads: int | None) -> np.ndarray:
    """The first output of ``graph`` (a path or an onnx.ModelProto) on ``images``: ONNX Runtime on CPU
    with Q/DQ executed exactly as written (:data:`edgevit.runtime.onnxruntime_runner.JUDGED_BY`)."""
    from ..runtime import get_runner
    from ..runtime.onnxruntime_runner import JUDGED_BY
    from ..runtime.batching import run_batched

    with get_runner("onnxruntime", graph, threads=threads, qdq=JUDGED_BY) as runner:
        return np.asarray(run_batched(runner, images, GATE_BATCH)[runner.output_names()[0]], dtype=np.float32)


def gate_metrics(logits: np.ndarray, data: GateData) -> dict:
    """How the outputs ``logits`` of a candidate graph compare with the fp32 graph's on ``data``."""
    if data.output != "logits":  # no labels: per-sample cosine and nearest-neighbour agreement with fp32
        diff = compare_logits(data.reference, logits, data.output)
        return {"output": data.output, "agreement": diff["knn_agree"], "agreement_metric": f"k-NN@{diff['knn_k']}",
                "max_abs": diff["max_abs"], "min_cosine": diff["min_cosine"], "mean_cosine": diff["mean_cosine"]}
    ref_top1 = float((data.reference.argmax(1) == data.labels).mean())
    top1 = float((logits.argmax(1) == data.labels).mean())
    diff = compare_logits(data.reference, logits)
    return {"top1": top1, "fp32_top1": ref_top1, "drop_points": round((ref_top1 - top1) * 100, 4),
            "agreement": diff["top1_agree"], "max_abs": diff["max_abs"], "min_cosine": diff["min_cosine"]}


def judge(metrics: dict, precision: str, max_drop: float) -> dict:
    """The verdict ("passed"/"failed") on :func:`gate_metrics`' numbers, with the limits and the reasons."""
    from ..tolerances import get_tolerance

    output = metrics.get("output", "logits")
    tol = get_tolerance(precision, output)
    need = tol.min_agreement
    reasons = []
    if output != "logits":
        if metrics["min_cosine"] < tol.min_cosine:
            reasons.append(f"lowest per-sample cosine with fp32 {metrics['min_cosine']:.5f} < {tol.min_cosine} "
                           f"({precision} {output} tolerance)")
        if metrics["agreement"] < need:
            reasons.append(f"{metrics['agreement_metric']} agreement with fp32 {metrics['agreement']:.4f} < {need} "
                           f"({precision} {output} tolerance)")
        return {**metrics, "min_cosine_limit": tol.min_cosine, "min_agreement": need,
                "verdict": "failed" if reasons else "passed", "reasons": reasons}
    if metrics["drop_points"] > max_drop + 1e-9:
        reasons.append(f"top-1 drops {metrics['drop_points']:.2f} points > budget {max_drop:g}")
    if metrics["agreement"] < need:
        reasons.append(f"top-1 agreement with fp32 {metrics['agreement']:.4f} < {need} ({precision} tolerance)")
    return {**metrics, "max_drop": max_drop, "min_agreement": need,
            "verdict": "failed" if reasons else "passed", "reasons": reasons}


def gate_graph(graph, precision: str, data: GateData | None, max_drop: float, threads: int | None) -> dict:
    """The gate's record for one graph: its data, numbers and verdict ("not verified" without data)."""
    if data is None:
        return {"verdict": "not verified", "reasons": ["--no-gate"]}
    from ..runtime.onnxruntime_runner import JUDGED_BY, QDQ_MODES

    record = {"data": data.description}
    if precision in QUANTIZED:
        record["arithmetic"] = QDQ_MODES[JUDGED_BY]
    return {**record, **judge(gate_metrics(run_graph(graph, data.images, threads), data), precision, max_drop)}


def input_preprocessing(manifest: Manifest, spec: str, preprocessed: bool, option: str):
    """How ``spec`` becomes model input: the manifest's preprocessing, or, for arrays that already are
    model input (``--preprocessed``), none at all (an identity of the graph's input shape)."""
    from ..data import Preprocessing

    pre = Preprocessing.from_manifest(manifest)  # ManifestError for a damaged one
    if pre is not None:
        return pre
    if preprocessed:
        channels = int(manifest.inputs[0]["shape"][1])
        return Preprocessing(input_size=tuple(int(v) for v in manifest.inputs[0]["shape"][1:]),
                             mean=(0.0,) * channels, std=(1.0,) * channels, pixel_max=1.0, crop_pct=1.0)
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
    if output == "logits" and (ds.labels is None or len(ds.labels) == 0):
        raise DataError(f"gate data {spec!r} has no labels; give labelled data with --data or pass --no-gate")
    if len(ds.images) < 2:
        raise DataError(f"gate data {spec!r} holds {len(ds.images)} image(s) in its test split; the gate needs "
                        "at least 2 (k-NN agreement compares samples with each other): give more with --data")
    labels = np.asarray(ds.labels) if output == "logits" else None
    note = "" if output == "logits" else f"; {output}: no labels used, judged by cosine and k-NN agreement with fp32"
    return GateData(ds.images, labels, f"{spec} test split ({len(ds.images)} images{note})",
                    run_graph(str(fp32_path), ds.images, threads), output)


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
        graph = build_precision_graph(fp32_path, replace(recipe, base="fp32"), amax, nodes=[layer])
        m = gate_metrics(run_graph(graph, data.images, threads), data)
        rows.append({"layer": layer, "drop_points": m.get("drop_points"), "agreement": m["agreement"],
                     "min_cosine": m["min_cosine"], "max_abs": m["max_abs"]})
    return sorted(rows, key=lambda r: (-(r["drop_points"] or 0.0), r["agreement"], -r["max_abs"]))


def auto_exclude(fp32_path: Path, recipe: PrecisionRecipe, amax: dict, graph, gate: dict, sensitivity: list[dict],
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
            gate["reasons"] = [*gate["reasons"], f"--auto-exclude kept {len(excluded)} layer(s) unquantized and "
                               f"the gate still fails with only {row['layer']} quantized"]
            break
        excluded.append(row["layer"])
        recipe = trial
        graph = build_precision_graph(fp32_path, recipe, amax)
        gate = gate_graph(graph, recipe.precision, data, max_drop, threads)
        if gate["verdict"] == "passed":
            break
    return recipe, graph, gate, excluded


__all__ = ["GateData", "auto_exclude", "gate_graph", "gate_metrics", "graph_for_names", "input_preprocessing", "judge",
           "layer_sensitivity", "load_gate_data", "run_graph"]
