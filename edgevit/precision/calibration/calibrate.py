"""Activation ranges (amax per tensor) from calibration images, with a reusable JSON cache.

The collectors are ONNX Runtime's (``onnxruntime.quantization.calibrate``): MinMax, Percentile
and Entropy (KL). They run on the fp32 graph augmented with the tensors the quantized graphs read
(``tensors``: the activation inputs of the nodes a recipe could quantize; without it every input and
output of the MatMul / Gemm / Conv ops, ONNX Runtime's own choice, which includes each block's
attention scores: 0.8 GB an image per global block of SAM at 1024 px), one batch per call so that
memory stays at one batch and a progress bar can follow. ``mse`` is ours: ONNX Runtime has no MSE calibrator, so it takes the absolute-value
histogram ONNX Runtime's percentile collector builds and picks, per tensor, the clipping
threshold with the least expected int8 quantization error (clipping plus rounding noise).

The cache (``calibration.json``)::

    {"format": "edgevit-calibration-cache", "version": 2,
     "graph_sha256": "<sha256 of the fp32 ONNX file>", "method": "percentile",
     "params": {"percentile": 99.99, "num_bins": 2048}, "data": "digits train split, 512 images",
     "data_key": {"source": "digits", "fingerprint": "digits", "num_samples": 512, "batch_size": 32,
                  "seed": 0, "preprocessed": false},
     "num_samples": 512, "warnings": [], "created": "...", "amax": {"tensor name": 3.25, ...}}

It is reused when ``graph_sha256``, ``method``, ``params`` and ``data_key`` (the data source
-- absolute path and a fingerprint of its files' sizes and times --, sample count, batch size,
seed; :func:`edgevit.precision.calibration.data.calibration_data_key`) all match, and recomputed (then
rewritten atomically) otherwise: ``--calib-data`` pointing at other data recalibrates.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..._io import sha256_file, write_text_atomic
from ...errors import DataError, EdgeVitError, EdgeVitWarning
from ...formats import CALIBRATION_CACHE_FORMAT as CACHE_FORMAT
from ..recipe import QUANTIZED_OP_TYPES
from .data import CalibrationData

METHODS = ("minmax", "percentile", "entropy", "mse")
CACHE_VERSION = 2  # 2: keyed on the data as well (data_key)


@dataclass(frozen=True)
class CalibrationConfig:
    """How ranges are computed. ``percentile`` is used by the percentile method only."""

    method: str = "percentile"
    percentile: float = 99.99
    num_bins: int = 2048

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {list(METHODS)}, got {self.method!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.num_bins < 16:
            raise ValueError(f"num_bins must be >= 16, got {self.num_bins}")

    def params(self) -> dict:
        p = {"num_bins": self.num_bins} if self.method != "minmax" else {}
        if self.method == "percentile":
            p["percentile"] = float(self.percentile)
        return p

    def to_dict(self) -> dict:
        return {"method": self.method, **self.params()}


@dataclass
class Calibration:
    amax: dict[str, float]
    config: CalibrationConfig
    graph_sha256: str
    data: str
    num_samples: int
    cache_path: Path | None = None
    cache_hit: bool = False
    data_key: dict | None = None
    warnings: list[str] = field(default_factory=list)   # about the data (CalibrationData.warnings)

    def to_dict(self) -> dict:
        return {"method": self.config.method, "params": self.config.params(), "data": self.data,
                "num_samples": self.num_samples, "tensors": len(self.amax), "graph_sha256": self.graph_sha256,
                "data_key": self.data_key, "cache": str(self.cache_path) if self.cache_path else None,
                "cache_hit": self.cache_hit, "warnings": list(self.warnings)}


# ------------------------------------------------------------------------------ cache
def read_cache(path: Path, graph_sha256: str, config: CalibrationConfig, data_key: dict | None = None,
               tensors: set[str] | None = None) -> dict | None:
    """The cache in ``path`` if it was computed for this graph, method and ``data_key`` (None:
    whatever data it was computed on) and holds a range for each of ``tensors``, else None."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable calibration cache ({exc}); delete it to recalibrate") from exc
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: not an edgevit calibration cache; delete it or pass another --calib-cache")
    valid = (data.get("version") == CACHE_VERSION and data.get("graph_sha256") == graph_sha256
             and data.get("method") == config.method and data.get("params") == config.params()
             and (data_key is None or data.get("data_key") == data_key)
             and (not tensors or isinstance(data.get("amax"), dict) and tensors <= set(data["amax"])))
    return data if valid else None


def write_cache(path: Path, calib: Calibration) -> Path:
    payload = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "graph_sha256": calib.graph_sha256,
               "method": calib.config.method, "params": calib.config.params(), "data": calib.data,
               "data_key": calib.data_key, "num_samples": calib.num_samples, "warnings": list(calib.warnings),
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "amax": {k: float(v) for k, v in sorted(calib.amax.items())}}
    return write_text_atomic(Path(path), json.dumps(payload, indent=1), force=True)


# ------------------------------------------------------------------------------ collection
def calibrate(onnx_path, data: CalibrationData | None, config: CalibrationConfig | None = None, *,
              cache: str | Path | None = None, data_key: dict | None = None, progress: bool = True,
              graph_sha256: str | None = None, contract=None, tensors: set[str] | None = None) -> Calibration:
    """amax of ``tensors`` (None: every input/output of the graph's MatMul/Gemm/Conv ops).

    With ``cache``: a cache for this graph, method and data is reused (the data's key is
    ``data.key``, or ``data_key`` when ``data`` is None; with neither, any cached data will do);
    otherwise the ranges are computed from ``data`` and the cache is (re)written. Nothing is
    written on error. ``graph_sha256``: the graph file's sha256 when the caller has it already.
    ``contract``: a raw-pixel graph's :class:`edgevit.input_contract.InputContract` (fed the images' pixels).
    """
    config = config or CalibrationConfig()
    onnx_path = Path(onnx_path)
    graph_sha = graph_sha256 or sha256_file(onnx_path)
    key = data.key if data is not None and data.key is not None else data_key
    if cache is not None:
        hit = read_cache(Path(cache), graph_sha, config, key, tensors)
        if hit is not None:
            for note in hit.get("warnings") or ():  # the cached ranges rest on that data still
                warnings.warn(f"{note} (calibration reused from {cache})", EdgeVitWarning, stacklevel=2)
            return Calibration({k: float(v) for k, v in hit["amax"].items()}, config, graph_sha, hit["data"],
                               int(hit["num_samples"]), Path(cache), cache_hit=True, data_key=hit.get("data_key"),
                               warnings=list(hit.get("warnings") or []))
    if data is None:
        raise DataError(f"no valid calibration cache at {cache} for this graph, method ({config.method}) and "
                        f"data; give calibration data (--calib-data)")
    amax = _collect(onnx_path, data, config, progress, contract, tensors)
    calib = Calibration(amax, config, graph_sha, data.description, len(data.images), data_key=key,
                        warnings=list(data.warnings))
    if cache is not None:
        calib.cache_path = write_cache(Path(cache), calib)
    return calib


# edgevit's method -> ONNX Runtime's calibrater class and its options (as its create_calibrator builds them)
_CALIBRATERS = {"minmax": ("MinMaxCalibrater", ("symmetric",)),
                "percentile": ("PercentileCalibrater", ("symmetric", "num_bins", "percentile")),
                "entropy": ("EntropyCalibrater", ("symmetric", "num_bins", "num_quantized_bins")),
                "mse": ("PercentileCalibrater", ("symmetric", "num_bins", "percentile"))}


def _calibrater(onnx_path: Path, config: CalibrationConfig, augmented: Path, tensors: set[str] | None):
    """ONNX Runtime's calibrater for ``config.method``, its graph augmented with ``tensors`` only (None: its own
    choice, every input and output of the MatMul / Gemm / Conv ops), its session created."""
    from onnxruntime.quantization import calibrate as ort_calibrate

    name, keys = _CALIBRATERS[config.method]
    base = getattr(ort_calibrate, name)

    class Selected(base):
        def select_tensors_to_calibrate(self, model):
            found, infos = super().select_tensors_to_calibrate(model)
            return (found if tensors is None else found & tensors), infos

    options = {"symmetric": True, "num_bins": config.num_bins, "percentile": float(config.percentile),
               "num_quantized_bins": 128}
    calibrator = Selected(str(onnx_path), list(QUANTIZED_OP_TYPES), augmented_model_path=str(augmented),
                          **{k: options[k] for k in keys})
    calibrator.augment_graph()
    calibrator.create_inference_session()
    return calibrator


def _collect(onnx_path: Path, data: CalibrationData, config: CalibrationConfig, progress: bool,
             contract=None, tensors: set[str] | None = None) -> dict[str, float]:
    from tqdm import tqdm

    with tempfile.TemporaryDirectory(prefix="edgevit-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        # ORT's collectors print chatter on stdout; keep stdout clean for --json
        calibrator = _calibrater(onnx_path, config, Path(tmp) / "augmented.onnx", tensors)
        name = calibrator.infer_session.get_inputs()[0].name
        bar = tqdm(total=len(data.images), desc=f"calibrating ({config.method})", unit="img",
                   disable=not progress, file=sys.stderr)
        for batch in data.batches():
            calibrator.collect_data(_OneBatch({name: contract.feed(batch) if contract is not None else batch}))
            bar.update(len(batch))
        bar.close()
        if config.method == "mse":
            hists = calibrator.collector.histogram_dict
            amax = {t: _mse_amax(h[0], h[1]) for t, h in hists.items()}
        else:
            ranges = calibrator.compute_data()
            amax = {t: float(max(abs(float(np.asarray(td.range_value[0]).max())),
                                 abs(float(np.asarray(td.range_value[1]).max()))))
                    for t, td in ranges.items()}
    bad = sorted(t for t, v in amax.items() if not np.isfinite(v))
    if bad:
        raise EdgeVitError(f"calibration produced non-finite ranges for {bad[:5]}; the fp32 graph overflows "
                           "on the calibration data")
    return amax


class _OneBatch:
    """The smallest CalibrationDataReader: one feed dict, then None."""

    def __init__(self, feeds: dict):
        self._feeds = [feeds]

    def get_next(self):
        return self._feeds.pop() if self._feeds else None


def _mse_amax(hist: np.ndarray, edges: np.ndarray, levels: int = 127) -> float:
    """Clipping threshold of an |x| histogram minimizing expected symmetric-quantization MSE.

    For threshold T (tried at every bin edge): values above T cost (x - T)^2 (clipping), values
    below cost step^2 / 12 (uniform rounding noise), step = T / levels.
    """
    hist = np.asarray(hist, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    total = hist.sum()
    if total == 0 or edges[-1] <= 0:
        return float(edges[-1])
    candidates = edges[1:]
    clip_mass = np.cumsum((hist * centers ** 2)[::-1])[::-1]
    clip_first = np.cumsum((hist * centers)[::-1])[::-1]
    clip_count = np.cumsum(hist[::-1])[::-1]
    errors = np.empty(len(candidates))
    for i, t in enumerate(candidates):
        above = i + 1
        clipped = 0.0
        if above < len(hist):  # sum over bins above t of hist * (c - t)^2
            clipped = clip_mass[above] - 2 * t * clip_first[above] + t * t * clip_count[above]
        inside = hist[:above].sum()
        errors[i] = clipped + inside * (t / levels) ** 2 / 12
    return float(candidates[int(np.argmin(errors))])

