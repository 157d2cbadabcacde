"""``edgevit quantize``: precision graphs next to ``model.onnx``, each gated on labelled data.

    from edgevit.precision import QuantizeConfig, quantize
    result = quantize("out", QuantizeConfig(precisions=("fp16", "int8")))
    result.ok, result.entries["int8"]["gate"]

For every precision asked for, :func:`quantize`

1. builds the graph (:mod:`edgevit.precision.graphs`; int8/fp8 calibrated once, with the
   calibration cache ``OUTDIR/calibration.json`` reused while the fp32 graph and method match);
2. runs it with ONNX Runtime on CPU over held-out data and gates it against the fp32 graph
   (:mod:`edgevit.precision.gate`);
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
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._io import atomic_path, check_output_dir, check_writable, outdir_lock, remove_stale_temporaries, sha256_file
from ..formats import BASE_PRECISION, CALIBRATION_CACHE, CAST, FP16, ONNX_PRECISIONS, QUANTIZED, onnx_file
from ..formats import precision as lookup
from ..data.defaults import default_data
from ..input_contract import contract_of
from ..manifest import Manifest
from ..tolerances import Verdict, VerdictRecord
from .calibration import (DEFAULT_BATCH, DEFAULT_SAMPLES, CalibrationConfig, calibrate, calibration_data_key,
                          load_calibration_data, read_cache)
from .gate import (GateData, auto_exclude, bounded_batch, gate_graph, graph_for_names, input_preprocessing, layer_sensitivity,
                   load_gate_data)
from .graphs import build_precision_graph
from .recipe import PrecisionRecipe, calibrated_tensors, check_exclude


@dataclass(frozen=True)
class QuantizeConfig:
    """What :func:`quantize` builds and how it calibrates and gates it (the ``edgevit quantize`` options)."""

    precisions: tuple[str, ...] = tuple(p for p in ONNX_PRECISIONS if p != BASE_PRECISION)
    io_dtype: str = BASE_PRECISION
    int8_base: str = FP16                   # the Q/DQ graphs' base precision (PrecisionRecipe.base)
    quantize_attention: bool = False
    quantize_patch_embed: bool = False
    exclude: tuple[str, ...] = ()
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    calib_data: str | None = None           # None: the bundled digits when they fit the model (else refused)
    calib_samples: int = DEFAULT_SAMPLES
    calib_batch: int = DEFAULT_BATCH
    calib_cache: str | None = None          # None: OUTDIR/calibration.json
    data: str | None = None                 # the gate's labelled held-out data (test split); None: as calib_data's
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
        bad = [p for p in self.precisions if p not in ONNX_PRECISIONS]
        if bad or not self.precisions:
            raise ValueError(f"precisions must be a non-empty subset of {list(ONNX_PRECISIONS)}, "
                             f"got {list(self.precisions)}")
        if not self.max_drop >= 0:
            raise ValueError(f"max_drop must be >= 0 top-1 points, got {self.max_drop}")
        if self.auto_exclude and not self.gate:
            raise ValueError("auto_exclude needs the gate (it excludes layers until the gate passes); drop --no-gate")
        # every option is checked here, before anything is written (a half-done run would leave files behind)
        clash = [p for p in self.precisions if lookup(p).graph == CAST and self.io_dtype not in (BASE_PRECISION, p)]
        if clash:
            raise ValueError(f"--io-dtype {self.io_dtype} does not fit the {clash[0]} graph (its inputs and outputs "
                             f"are {BASE_PRECISION} or {clash[0]}); run --precision {clash[0]} separately with "
                             f"--io-dtype {clash[0]} or {BASE_PRECISION}, or keep --io-dtype {BASE_PRECISION} for all")
        for precision in self.precisions:
            self.recipe(precision)
        if self.exclude and not any(p in QUANTIZED for p in self.precisions):
            qdq = "/".join(QUANTIZED)
            raise ValueError(f"--exclude {' '.join(self.exclude)} only applies to {qdq} graphs, and --precision "
                             f"asks for {','.join(self.precisions)}; drop --exclude or add {qdq}")

    def recipe(self, name: str) -> PrecisionRecipe:
        io = self.io_dtype if lookup(name).graph == CAST or self.io_dtype == BASE_PRECISION else BASE_PRECISION
        return PrecisionRecipe(name, io_dtype=io, base=self.int8_base, quantize_attention=self.quantize_attention,
                               quantize_patch_embed=self.quantize_patch_embed, exclude=self.exclude)


@dataclass
class QuantizeResult:
    """What :func:`quantize` did: one entry per precision (path, recipe, ``gate``: a
    :class:`edgevit.precision.gate.GateResult`, sensitivity), the calibration."""

    outdir: Path
    entries: dict[str, dict]
    calibration: dict | None
    seconds: float

    @property
    def ok(self) -> bool:
        return all(e["gate"].verdict is not Verdict.FAILED for e in self.entries.values())

    def to_dict(self) -> dict:
        precisions = {p: {**e, "gate": e["gate"].to_dict()} for p, e in self.entries.items()}
        return {"ok": self.ok, "outdir": str(self.outdir), "precisions": precisions,
                "calibration": self.calibration, "seconds": round(self.seconds, 2)}


def quantize(source, config: QuantizeConfig | None = None, *, force: bool = False) -> QuantizeResult:
    """Build, gate and record every precision of ``config`` for the export in ``source``.

    Args:
        source: an ``edgevit export`` output directory, or the fp32 ``model.onnx`` its manifest lists
            (its sha256 is checked unless ``config.verify_hash`` is False).
        config: the precisions, recipe options, calibration and gate (:class:`QuantizeConfig`;
            None: fp16, bf16, int8 and fp8 with the defaults).
        force: overwrite precision graphs that already exist (otherwise refused before anything runs).

    Returns:
        A :class:`QuantizeResult`; ``ok`` is False when a precision failed its gate (the graph is
        still written and recorded with ``"gate": "failed"``).

    Raises:
        OnnxModelError: ``source`` does not exist.
        ManifestError: ``source`` is not an export (or its model.onnx is not in the manifest).
        ArtifactIntegrityError: model.onnx does not match the sha256 its manifest records.
        DataError: the calibration or gate data cannot be read or used.
        ValueError: an option that does not fit the graph (``exclude`` matching no quantized node).
    """
    cfg = config or QuantizeConfig()
    start = time.perf_counter()
    fp32 = Manifest.resolve(source, BASE_PRECISION, "onnx", verify_hash=cfg.verify_hash)
    manifest, fp32_art, fp32_path = fp32.manifest, fp32.entry, fp32.path
    outdir = manifest.root
    check_output_dir(outdir, "OUTDIR (copy the export somewhere writable)")
    if cfg.calib_cache:
        check_output_dir(Path(cfg.calib_cache).parent, "--calib-cache")
    remove_stale_temporaries(outdir)
    wanted = [p for p in cfg.precisions if p != BASE_PRECISION]
    for p in wanted:
        check_writable(outdir / onnx_file(p), force)
    quantized = [p for p in wanted if p in QUANTIZED]
    shape = manifest.sample_shape  # the digits fit 1x8x8 models only
    cfg = replace(cfg, calib_data=default_data(cfg.calib_data, shape, "--calib-data") if quantized else cfg.calib_data,
                  data=default_data(cfg.data, shape, "--data", " or pass --no-gate") if cfg.gate else cfg.data)
    if cfg.exclude and quantized:
        check_exclude(graph_for_names(fp32_path), cfg.recipe(quantized[0]), fp32_path)
    gate_data = load_gate_data(cfg.data, manifest, fp32_path, cfg.threads, cfg.preprocessed) if cfg.gate else None
    calib = None
    if any(p in QUANTIZED for p in wanted):
        tensors = calibrated_tensors(graph_for_names(fp32_path), [cfg.recipe(p) for p in quantized])
        calib = calibrate_export(cfg, manifest, fp32_path, fp32_art.sha256 if cfg.verify_hash else None, tensors)
    entries: dict[str, dict] = {}
    if BASE_PRECISION in cfg.precisions:
        entries[BASE_PRECISION] = {"path": onnx_file(BASE_PRECISION), "recipe": {"precision": BASE_PRECISION},
                                   "gate": gate_graph(str(fp32_path), BASE_PRECISION, gate_data, cfg.max_drop,
                                                      cfg.threads)}
    fields: dict[str, dict] = {}
    # Every graph is written under a temporary name and all are renamed together after the last one
    # is built: a failure on the way leaves OUTDIR as it was, with no unlisted graph to block the next run.
    # They are renamed, and the manifest re-read, merged and saved, under OUTDIR's lock (another quantize,
    # export or build may have written it meanwhile).
    with contextlib.ExitStack() as held:
        with contextlib.ExitStack() as files:
            for precision in wanted:
                tmp = files.enter_context(atomic_path(outdir / onnx_file(precision), force=True))
                entries[precision], fields[precision] = _one_precision(precision, cfg, fp32_path, calib, gate_data, tmp)
            held.enter_context(outdir_lock(outdir))  # held until the manifest is saved
            manifest = _current_manifest(outdir, fp32_art, wanted, force)
        for precision in wanted:
            manifest.add_artifact(onnx_file(precision), format="onnx", precision=precision, **fields[precision])
        manifest.save(outdir, force=True)
    return QuantizeResult(outdir, entries, calib.to_dict() if calib else None, time.perf_counter() - start)


def _current_manifest(outdir: Path, fp32_art, wanted: list[str], force: bool) -> Manifest:
    """OUTDIR's manifest as it is now (under its lock), when it still lists the fp32 graph the new
    graphs were built from, and no other run wrote them meanwhile (unless ``force``)."""
    for p in wanted:
        check_writable(outdir / onnx_file(p), force)
    manifest = Manifest.load(outdir)
    manifest.check_still_lists(fp32_art, "quantizing", "edgevit quantize")
    return manifest


def calibrate_export(cfg: QuantizeConfig, manifest: Manifest, fp32_path: Path, checked_sha256: str | None,
                     tensors: set[str] | None = None):
    """The activation ranges of ``tensors`` (None: every MatMul / Gemm / Conv input and output) of the export's
    fp32 graph ``fp32_path`` for ``cfg``: the calibration cache's (``cfg.calib_cache``, else
    ``OUTDIR/calibration.json``) while it matches the graph, method and data and ranges them all, else
    calibrated on ``cfg.calib_data`` (and cached). ``checked_sha256``: the graph's hash, already checked."""
    cache = Path(cfg.calib_cache) if cfg.calib_cache else manifest.root / CALIBRATION_CACHE
    data = None
    batch = calibration_batch(cfg, manifest)
    key = calibration_data_key(cfg.calib_data, cfg.calib_samples, batch, preprocessed=cfg.preprocessed)
    graph_sha = checked_sha256 or sha256_file(fp32_path)  # resolve() already hashed and checked it
    if read_cache(cache, graph_sha, cfg.calibration, key, tensors) is None:
        shape = manifest.sample_shape
        preprocessing = input_preprocessing(manifest, cfg.calib_data, cfg.preprocessed, "--calib-data")
        data = load_calibration_data(cfg.calib_data, preprocessing, shape,
                                     num_samples=cfg.calib_samples, batch_size=batch,
                                     preprocessed=cfg.preprocessed)
    return calibrate(fp32_path, data, cfg.calibration, cache=cache, data_key=key, progress=cfg.progress,
                     graph_sha256=graph_sha, contract=contract_of(manifest), tensors=tensors)


def calibration_batch(cfg: QuantizeConfig, manifest: Manifest) -> int:
    """``--calib-batch``, or fewer: calibration reads the tensors it ranges for a whole batch at once, and with
    --quantize-attention those are each block's softmax output, score-sized (SAM ViT-B at 1024 px: 1 image)."""
    copies = int((manifest.model.config or {}).get("depth", 1)) if cfg.quantize_attention else 1
    return bounded_batch(cfg.calib_batch, manifest, copies)


def _one_precision(precision: str, cfg: QuantizeConfig, fp32_path: Path, calib, data: GateData | None,
                   tmp: Path) -> tuple[dict, dict]:
    """Build, gate and save to ``tmp`` one precision graph: (result entry, manifest fields)."""
    import onnx

    recipe = cfg.recipe(precision)
    amax = calib.amax if calib is not None and recipe.quantized else None
    graph = build_precision_graph(fp32_path, recipe, amax)
    gate = gate_graph(graph, precision, data, cfg.max_drop, cfg.threads)
    entry: dict = {"path": onnx_file(precision)}
    if recipe.quantized and data is not None and (cfg.sensitivity or (cfg.auto_exclude and gate.verdict is Verdict.FAILED)):
        entry["sensitivity"] = layer_sensitivity(fp32_path, recipe, amax, data, cfg.threads, cfg.progress)
    if recipe.quantized and cfg.auto_exclude and gate.verdict is Verdict.FAILED:
        recipe, graph, gate, entry["auto_excluded"] = auto_exclude(
            fp32_path, recipe, amax, graph, gate, entry["sensitivity"], data, cfg.max_drop, cfg.threads)
    entry["recipe"] = recipe.to_dict()
    entry["gate"] = gate
    onnx.save_model(graph, str(tmp))
    fields = {"recipe": entry["recipe"], "gate": gate.to_dict(), "verdict": VerdictRecord(gate.verdict, "gate").to_dict()}
    if amax is not None:
        fields["calibration"] = calib.to_dict()
    for key in ("sensitivity", "auto_excluded"):
        if key in entry:
            fields[key] = entry[key]
    return entry, fields


__all__ = ["QuantizeConfig", "QuantizeResult", "calibrate_export", "quantize"]
