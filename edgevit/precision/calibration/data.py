"""Calibration images: the bundled digits' train split, an ImageFolder or a ``.npy``/``.npz`` file.

Calibration never reads the test split: digits and ImageFolder sources give their ``train``
split (the fixed 70/10/20 rule of :mod:`edgevit.data.sources`); an array file is taken whole,
as a calibration set the user prepared (raw pixels, or model input with ``preprocessed=True``,
the CLI's ``--preprocessed``). Every image is preprocessed as the model's manifest says.

Problems that do not stop calibration (fewer images than recommended, images far darker than
the model's ``pixel_max``: data on the wrong scale) are warned about (EdgeVitWarning, which the
CLI prints as ``edgevit: warning:``) and kept in ``CalibrationData.warnings`` (then in the
calibration record and its cache). ``CalibrationData.key`` identifies the data for the cache.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...data import DIGITS, Preprocessing, load_dataset
from ...data.sources import ARRAY_EXTENSIONS
from ...errors import DataError, EdgeVitWarning

DEFAULT_SAMPLES = 512   # NVIDIA recommends >= 500 calibration images for ViTs (Model Optimizer)
DEFAULT_BATCH = 32
# Calibration images whose brightest pixel is at most pixel_max / DARK_FACTOR are on the wrong
# scale (0..1 data for a 0..16 or 0..255 model, 0..16 data for a 0..255 one), not merely dark.
DARK_FACTOR = 8


@dataclass
class CalibrationData:
    images: np.ndarray          # float32 NCHW, normalized model input
    description: str
    batch_size: int
    key: dict | None = None     # what the calibration cache is keyed on (calibration_data_key)
    warnings: list[str] = field(default_factory=list)

    def batches(self):
        for start in range(0, len(self.images), self.batch_size):
            yield self.images[start:start + self.batch_size]

    @property
    def num_batches(self) -> int:
        return -(-len(self.images) // self.batch_size)


def data_fingerprint(spec) -> str:
    """A short hash that changes when the data behind ``spec`` changes, without reading it:
    ``"digits"`` for the bundled digits; else the size and modification time of the file, or of
    every file under the directory (with their relative paths)."""
    if str(spec) == DIGITS:
        return DIGITS
    path = Path(spec)
    if not path.exists():
        return "missing"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(path) if path.is_dir() else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def calibration_data_key(spec, num_samples: int = DEFAULT_SAMPLES, batch_size: int = DEFAULT_BATCH,
                         seed: int = 0, preprocessed: bool = False) -> dict:
    """What a calibration cache must match to be reused: the data (its absolute path and
    :func:`data_fingerprint`), the sample count, batch size, seed and array contract."""
    source = DIGITS if str(spec) == DIGITS else os.path.abspath(spec)
    return {"source": source, "fingerprint": data_fingerprint(spec), "num_samples": int(num_samples),
            "batch_size": int(batch_size), "seed": int(seed), "preprocessed": bool(preprocessed)}


def load_calibration_data(spec, preprocessing: Preprocessing, input_shape: tuple, *,
                          num_samples: int = DEFAULT_SAMPLES, batch_size: int = DEFAULT_BATCH,
                          seed: int = 0, preprocessed: bool = False) -> CalibrationData:
    """``num_samples`` preprocessed images of ``spec`` (seeded random subset when there are more).

    Raises DataError, naming the source and the fix, for: no images, images whose shape differs
    from ``input_shape`` (C, H, W), or fewer images than one batch. NaN/Inf values are refused
    by the loaders of :mod:`edgevit.data` already.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"calibration samples must be a positive integer, got {num_samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"calibration batch size must be a positive integer, got {batch_size!r}")
    spec_str = str(spec)
    split = "all" if spec_str.lower().endswith(tuple(ARRAY_EXTENSIONS)) else "train"
    key = calibration_data_key(spec, num_samples, batch_size, seed, preprocessed)
    ds = load_dataset(spec, preprocessing, split=split, preprocessed=preprocessed)
    images = np.asarray(ds.images)
    where = f"calibration data {spec_str!r} ({split} split)"
    if images.ndim != 4 or len(images) == 0:
        raise DataError(f"{where}: no images found; give a directory of class folders with images, "
                        "a non-empty .npy/.npz, or 'digits'")
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise DataError(f"{where}: images are {tuple(images.shape[1:])} (C, H, W) but the model takes "
                        f"{tuple(input_shape)}; resize them or fix the channel count")
    if len(images) > num_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(images), num_samples, replace=False))
        images = images[pick]
    if len(images) < batch_size:
        raise DataError(f"{where}: {len(images)} images, fewer than one calibration batch of {batch_size}; "
                        "add images or lower --calib-batch")
    notes = []
    if len(images) < DEFAULT_SAMPLES:
        notes.append(f"{where}: calibrating on {len(images)} images, below the {DEFAULT_SAMPLES} recommended "
                     "for ViTs; ranges may be too narrow (--calib-samples, --calib-data)")
    brightest = raw_pixel_max(images, preprocessing)
    if brightest <= preprocessing.pixel_max / DARK_FACTOR:
        notes.append(
            f"{where}: its brightest pixel is {brightest:.3g} on the model's 0..{preprocessing.pixel_max:g} scale "
            f"(pixel_max={preprocessing.pixel_max:g}): the data looks scaled to 0..{brightest:.3g} instead, and ranges "
            f"calibrated on it will be too narrow. Give --calib-data as raw pixels on 0..{preprocessing.pixel_max:g}, "
            f"or pass --preprocessed if the array is model input already")
    for note in notes:
        warnings.warn(note, EdgeVitWarning, stacklevel=2)
    desc = f"{spec_str} {split} split, {len(images)} images" if split != "all" else f"{spec_str}, {len(images)} images"
    return CalibrationData(np.ascontiguousarray(images, dtype=np.float32), desc, batch_size, key, notes)


def raw_pixel_max(images: np.ndarray, preprocessing: Preprocessing) -> float:
    """The largest raw pixel value (0..pixel_max) that model input ``images`` stands for."""
    mean = np.asarray(preprocessing.mean, dtype=np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing.std, dtype=np.float64).reshape(1, -1, 1, 1)
    return float(((images.max(axis=(2, 3), keepdims=True) * std + mean) * preprocessing.pixel_max).max())
