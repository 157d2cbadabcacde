"""``edgevit quantize``: precision graphs next to ``model.onnx``, each gated on labelled data.

    from edgevit.export.quantize import QuantizeConfig, quantize
    result = quantize("out", QuantizeConfig(precisions=("fp16", "int8")))
    result.ok, result.entries["int8"]["gate"]

For every precision asked for, :func:`quantize`

1. builds the graph (:mod:`edgevit.export.precision`; int8/fp8 calibrated once, with the
   calibration cache ``OUTDIR/calibration.json`` reused while the fp32 graph and method match);
2. runs it with ONNX Runtime on CPU over held-out labelled data (the digits test split by
   default) and gates it against the fp32 graph: it fails if top-1 drops more than
   ``max_drop`` points or top-1 agreement with fp32 falls below the precision's
   ``min_agreement`` in :data:`edgevit.tolerances.TOLERANCES`. A model without classes (the
   manifest's ``model.output`` is ``features`` or ``tokens``) needs no labels: it fails if the
   lowest per-sample cosine with the fp32 outputs falls below ``min_cosine`` or the k-NN
   agreement (:func:`edgevit.metrics.neighbour_agreement`) below ``min_agreement`` of
   :data:`edgevit.tolerances.FEATURE_TOLERANCES`;
3. optionally measures per-layer sensitivity (one Linear quantized at a time) and, with
   ``auto_exclude``, keeps the most sensitive layers in higher precision one at a time until
   the gate passes;
4. writes ``model.<precision>.onnx`` (temporary names, all renamed together after the last graph
   is built, so a failure leaves none; ``force`` to overwrite) and records recipe, calibration,
   gate verdict and numbers in ``edgevit.json``.

A precision that fails the gate is written and recorded with ``"gate": "failed"``; the result's
``ok`` is False (the CLI exits 1). ``gate=False`` records the precision as not verified.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .._io import atomic_path, check_output_dir, check_writable, remove_stale_temporaries, sha256_file
from ..calibration import (DEFAULT_BATCH, DEFAULT_SAMPLES, CalibrationConfig, calibrate, calibration_data_key,
                           load_calibration_data, read_cache)
from ..errors import DataError, ManifestError
from ..manifest import Manifest
from .onnx import compare_logits
from .precision import (FILES, PRECISIONS, QUANTIZED, PrecisionRecipe, build_precision_graph, check_exclude,
                        quantizable_nodes)

CACHE_FILE = "calibration.json"


@dataclass(frozen=True)
class QuantizeConfig:
    precisions: tuple[str, ...] = ("fp16", "bf16", "int8", "fp8")
    io_dtype: str = "fp32"
    int8_base: str = "fp16"
    quantize_attention: bool = False
    quantize_patch_embed: bool = False
    exclude: tuple[str, ...] = ()
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    calib_data: str = "digits"
    calib_samples: int = DEFAULT_SAMPLES
    calib_batch: int = DEFAULT_BATCH
    calib_cache: str | None = None          # None: OUTDIR/calibration.json
    data: str = "digits"                    # labelled held-out data of the gate (its test split)
    preprocessed: bool = False              # .npy/.npz calib_data and data are model input, not raw pixels
    max_drop: float = 1.0                   # top-1 points
    gate: bool = True
    sensitivity: bool = False
    auto_exclude: bool = False
    threads: int | None = None
    verify_hash: bool = True                # check model.onnx against the sha256 its manifest records
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "precisions", tuple(self.precisions))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise ValueError(f"precisions must be a non-empty subset of {list(PRECISIONS)}, got {list(self.precisions)}")
        if not self.max_drop >= 0:
            raise ValueError(f"max_drop must be >= 0 top-1 points, got {self.max_drop}")
        if self.auto_exclude and not self.gate:
            raise ValueError("auto_exclude needs the gate (it excludes layers until the gate passes); drop --no-gate")
        # every option is checked here, before anything is written (a half-done run would leave files behind)
        clash = [p for p in self.precisions if p in ("fp16", "bf16") and self.io_dtype not in ("fp32", p)]
        if clash:
            raise ValueError(f"--io-dtype {self.io_dtype} does not fit the {clash[0]} graph (its inputs and outputs "
                             f"are fp32 or {clash[0]}); run --precision {clash[0]} separately with --io-dtype "
                             f"{clash[0]} or fp32, or keep --io-dtype fp32 for all")
        for precision in self.precisions:
            self.recipe(precision)
        if self.exclude and not any(p in QUANTIZED for p in self.precisions):
            raise ValueError(f"--exclude {' '.join(self.exclude)} only applies to int8/fp8 graphs, and --precision "
                             f"asks for {','.join(self.precisions)}; drop --exclude or add int8/fp8")

    def recipe(self, precision: str) -> PrecisionRecipe:
        io = self.io_dtype if precision in ("fp16", "bf16") or self.io_dtype == "fp32" else "fp32"
        return PrecisionRecipe(precision, io_dtype=io, base=self.int8_base, quantize_attention=self.quantize_attention,
                               quantize_patch_embed=self.quantize_patch_embed, exclude=self.exclude)


@dataclass
class QuantizeResult:
    outdir: Path
    entries: dict[str, dict]
    calibration: dict | None
    seconds: float

    @property
    def ok(self) -> bool:
        return all(e["gate"]["verdict"] != "failed" for e in self.entries.values())

    def to_dict(self) -> dict:
        return {"ok": self.ok, "outdir": str(self.outdir), "precisions": self.entries,
                "calibration": self.calibration, "seconds": round(self.seconds, 2)}


# ------------------------------------------------------------------------------ gate
@dataclass
class GateData:
    images: np.ndarray
    labels: np.ndarray | None  # None for features/tokens: judged without labels
    description: str
    reference: np.ndarray      # fp32 graph's outputs
    output: str = "logits"     # the manifest's model.output: logits, features or tokens


def _run(graph, images: np.ndarray, threads: int | None) -> np.ndarray:
    from ..runtime import get_runner
    from ..runtime.batching import run_batched

    with get_runner("onnxruntime", graph, threads=threads) as runner:
        return np.asarray(run_batched(runner, images, 256)[runner.output_names()[0]], dtype=np.float32)


def gate_metrics(logits: np.ndarray, data: GateData) -> dict:
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


def input_preprocessing(manifest: Manifest, spec: str, preprocessed: bool, option: str):
    """How ``spec`` becomes model input: the manifest's preprocessing, or, for arrays that already are
    model input (``--preprocessed``), none at all (an identity of the graph's input shape)."""
    from ..data import Preprocessing

    if manifest.preprocessing is not None:
        return Preprocessing(**manifest.preprocessing)
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
                    _run(str(fp32_path), ds.images, threads), output)


# ------------------------------------------------------------------------------ sensitivity
def graph_for_names(fp32_path: Path):
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
        m = gate_metrics(_run(graph, data.images, threads), data)
        rows.append({"layer": layer, "drop_points": m.get("drop_points"), "agreement": m["agreement"],
                     "min_cosine": m["min_cosine"], "max_abs": m["max_abs"]})
    return sorted(rows, key=lambda r: (-(r["drop_points"] or 0.0), r["agreement"], -r["max_abs"]))


# ------------------------------------------------------------------------------ orchestration
def _fp32_artifact(source, verify_hash: bool = True) -> tuple[Manifest, Path]:
    """(manifest, fp32 graph) of an export OUTDIR or its model.onnx, the graph's sha256 checked."""
    path = Path(source)
    if not path.exists():
        raise ManifestError(f"{path}: no such ONNX file or export directory; run `edgevit export SOURCE -o DIR` first")
    manifest = Manifest.load(path if path.is_dir() else path.parent)
    art = manifest.artifact(precision="fp32", format="onnx") if path.is_dir() else manifest.entry_for(path)
    if art is None:
        raise ManifestError(f"{path} is not recorded in {manifest.root / 'edgevit.json'}; quantize the fp32 "
                            "model.onnx that edgevit export wrote")
    return manifest, manifest.check_artifact(art, verify_hash)


def quantize(source, config: QuantizeConfig | None = None, *, force: bool = False) -> QuantizeResult:
    """Build, gate and record every precision of ``config`` for the export in ``source``."""
    cfg = config or QuantizeConfig()
    start = time.perf_counter()
    manifest, fp32_path = _fp32_artifact(source, cfg.verify_hash)
    outdir = manifest.root
    check_output_dir(outdir, "OUTDIR (copy the export somewhere writable)")
    if cfg.calib_cache:
        check_output_dir(Path(cfg.calib_cache).parent, "--calib-cache")
    remove_stale_temporaries(outdir)
    wanted = [p for p in cfg.precisions if p != "fp32"]
    for p in wanted:
        check_writable(outdir / FILES[p], force)
    quantized = [p for p in wanted if p in QUANTIZED]
    if cfg.exclude and quantized:
        check_exclude(graph_for_names(fp32_path), cfg.recipe(quantized[0]), fp32_path)
    gate_data = load_gate_data(cfg.data, manifest, fp32_path, cfg.threads, cfg.preprocessed) if cfg.gate else None
    calib = None
    if any(p in QUANTIZED for p in wanted):
        calib = _calibrate(cfg, manifest, fp32_path)
    entries: dict[str, dict] = {}
    if "fp32" in cfg.precisions:
        entries["fp32"] = {"path": FILES["fp32"], "recipe": {"precision": "fp32"},
                           "gate": _gate(str(fp32_path), "fp32", cfg, gate_data)}
    fields: dict[str, dict] = {}
    # Every graph is written under a temporary name and all are renamed together after the last one
    # is built: a failure on the way leaves OUTDIR as it was, with no unlisted graph to block the next run.
    with contextlib.ExitStack() as files:
        for precision in wanted:
            tmp = files.enter_context(atomic_path(outdir / FILES[precision], force=True))  # checked up front
            entries[precision], fields[precision] = _one_precision(precision, cfg, fp32_path, calib, gate_data, tmp)
    for precision in wanted:
        manifest.add_artifact(FILES[precision], format="onnx", precision=precision, **fields[precision])
    manifest.save(outdir, force=True)
    return QuantizeResult(outdir, entries, calib.to_dict() if calib else None, time.perf_counter() - start)


def _calibrate(cfg: QuantizeConfig, manifest: Manifest, fp32_path: Path):
    cache = Path(cfg.calib_cache) if cfg.calib_cache else manifest.root / CACHE_FILE
    data = None
    key = calibration_data_key(cfg.calib_data, cfg.calib_samples, cfg.calib_batch, preprocessed=cfg.preprocessed)
    if read_cache(cache, sha256_file(fp32_path), cfg.calibration, key) is None:
        shape = tuple(manifest.inputs[0]["shape"][1:])
        preprocessing = input_preprocessing(manifest, cfg.calib_data, cfg.preprocessed, "--calib-data")
        data = load_calibration_data(cfg.calib_data, preprocessing, shape,
                                     num_samples=cfg.calib_samples, batch_size=cfg.calib_batch,
                                     preprocessed=cfg.preprocessed)
    return calibrate(fp32_path, data, cfg.calibration, cache=cache, data_key=key, progress=cfg.progress)


def _gate(graph, precision: str, cfg: QuantizeConfig, data: GateData | None) -> dict:
    if data is None:
        return {"verdict": "not verified", "reasons": ["--no-gate"]}
    return {"data": data.description, **judge(gate_metrics(_run(graph, data.images, cfg.threads), data),
                                               precision, cfg.max_drop)}


def _one_precision(precision: str, cfg: QuantizeConfig, fp32_path: Path, calib, data, tmp: Path) -> tuple[dict, dict]:
    """Build, gate and save to ``tmp`` one precision graph: (result entry, manifest fields)."""
    import onnx

    recipe = cfg.recipe(precision)
    amax = calib.amax if calib is not None and recipe.quantized else None
    graph = build_precision_graph(fp32_path, recipe, amax)
    gate = _gate(graph, precision, cfg, data)
    entry: dict = {"path": FILES[precision]}
    if recipe.quantized and data is not None and (cfg.sensitivity or (cfg.auto_exclude and gate["verdict"] == "failed")):
        entry["sensitivity"] = layer_sensitivity(fp32_path, recipe, amax, data, cfg.threads, cfg.progress)
    if recipe.quantized and cfg.auto_exclude and gate["verdict"] == "failed":
        excluded: list[str] = []
        names = graph_for_names(fp32_path)
        for row in entry["sensitivity"]:
            trial = replace(cfg.recipe(precision), exclude=cfg.exclude + tuple(excluded) + (row["layer"],))
            if not quantizable_nodes(names, trial):  # the last quantized layer stays: graph and recipe agree
                gate["reasons"] = [*gate["reasons"], f"--auto-exclude kept {len(excluded)} layer(s) unquantized and "
                                   f"the gate still fails with only {row['layer']} quantized"]
                break
            excluded.append(row["layer"])
            recipe = trial
            graph = build_precision_graph(fp32_path, recipe, amax)
            gate = _gate(graph, precision, cfg, data)
            if gate["verdict"] == "passed":
                break
        entry["auto_excluded"] = excluded
    entry["recipe"] = recipe.to_dict()
    entry["gate"] = gate
    onnx.save_model(graph, str(tmp))
    fields = {"recipe": entry["recipe"], "gate": gate,
              "verdict": {"verified": {"passed": True, "failed": False}.get(gate["verdict"]), "gate": gate["verdict"]}}
    if amax is not None:
        fields["calibration"] = calib.to_dict()
    for key in ("sensitivity", "auto_excluded"):
        if key in entry:
            fields[key] = entry[key]
    return entry, fields


__all__ = ["CACHE_FILE", "GateData", "QuantizeConfig", "QuantizeResult", "gate_metrics", "judge",
           "layer_sensitivity", "load_gate_data", "quantize"]
