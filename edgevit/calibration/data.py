"""Calibration images: the bundled digits' train split, an ImageFolder or a ``.npy``/``.npz`` file.

Calibration never reads the test split: digits and ImageFolder sources give their ``train``
split (the fixed 70/10/20 rule of :mod:`edgevit.data.sources`); an array file is taken whole,
as a calibration set the user prepared. Every image is preprocessed as the model's manifest says.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..data import Preprocessing, load_dataset
from ..data.sources import ARRAY_EXTENSIONS
from ..errors import DataError

DEFAULT_SAMPLES = 512   # NVIDIA recommends >= 500 calibration images for ViTs (Model Optimizer)
DEFAULT_BATCH = 32


@dataclass
class CalibrationData:
    images: np.ndarray          # float32 NCHW, normalized model input
    description: str
    batch_size: int

    def batches(self):
        for start in range(0, len(self.images), self.batch_size):
            yield self.images[start:start + self.batch_size]

    @property
    def num_batches(self) -> int:
        return -(-len(self.images) // self.batch_size)


def load_calibration_data(spec, preprocessing: Preprocessing, input_shape: tuple, *,
                          num_samples: int = DEFAULT_SAMPLES, batch_size: int = DEFAULT_BATCH,
                          seed: int = 0) -> CalibrationData:
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
    ds = load_dataset(spec, preprocessing, split=split)
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
    if len(images) < DEFAULT_SAMPLES:
        warnings.warn(f"{where}: calibrating on {len(images)} images, below the {DEFAULT_SAMPLES} recommended "
                      "for ViTs; ranges may be too narrow", stacklevel=2)
    desc = f"{spec_str} {split} split, {len(images)} images" if split != "all" else f"{spec_str}, {len(images)} images"
    return CalibrationData(np.ascontiguousarray(images, dtype=np.float32), desc, batch_size)
