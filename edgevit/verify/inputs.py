"""The images a comparison runs both sides on: :func:`load_inputs` turns ``--data`` (random, the
bundled digits, a .npy/.npz array, an ImageFolder directory) into float32 NCHW model input,
with labels where the data has them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..formats import MANIFEST_NAME


@dataclass
class Inputs:
    """Model input for a comparison: ``images`` (N, C, H, W) float32, ``labels`` (N,) or None,
    a ``description`` for the report, and the data's ``class_names`` where it has them."""

    images: np.ndarray
    labels: np.ndarray | None
    description: str
    class_names: list | None = None


def load_inputs(data: str, input_shape: tuple, samples: int, seed: int = 0, preprocessing=None,
                preprocessed: bool = False, model_labels=None) -> Inputs:
    """Float32 NCHW inputs for a comparison.

    Args:
        data: ``random`` (standard normal, seeded), ``digits`` (the bundled digits, test split,
            with labels), a ``.npy``/``.npz`` file taken whole (labels from a .npz), or an
            ImageFolder directory (class subfolders of images; labels from folder names; its
            test split, see :func:`edgevit.data.load_dataset`). Arrays are raw pixels on
            0..pixel_max like everywhere in edgevit, or model input (N, C, H, W) with
            ``preprocessed=True``.
        input_shape: the model input (C, H, W).
        samples: how many images at most.
        seed: the seed of ``random`` data.
        preprocessing: an :class:`edgevit.data.Preprocessing`; needed for images and raw arrays.
        preprocessed: arrays are model input already (``--preprocessed``).
        model_labels: the model's class names; label an ImageFolder's class folders by name.
    """
    from ..data.sources import ARRAY_EXTENSIONS

    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    shape = tuple(int(d) for d in input_shape)
    if data == "random":
        rng = np.random.default_rng(seed)
        images = rng.standard_normal((samples, *shape), dtype=np.float32)
        return Inputs(images, None, f"random normal, seed {seed}")
    if data == "digits" or (Path(data).is_dir()):
        return _load_dataset(data, shape, samples, preprocessing, model_labels)
    path = Path(data)
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return _load_array(path, shape, samples, preprocessing, preprocessed)
    raise DataError(
        f"--data {data!r}: not 'random', 'digits', an existing ImageFolder directory or a .npy/.npz file"
    )


def _load_array(path: Path, shape: tuple, samples: int, preprocessing, preprocessed: bool) -> Inputs:
    from ..data import Preprocessing, load_dataset

    if preprocessing is None:
        if not preprocessed:
            raise DataError(
                f"--data {path}: arrays are raw pixels unless --preprocessed is given, and no preprocessing is known "
                f"for these artifacts (no checkpoint and no {MANIFEST_NAME} manifest beside the ONNX); pass "
                f"--preprocessed if the array is model input already, or give a checkpoint as REFERENCE"
            )
        preprocessing = Preprocessing.identity(shape)  # model input is used as it is
    elif tuple(preprocessing.input_size) != tuple(shape):
        raise DataError(f"preprocessing input_size {preprocessing.input_size} differs from the model input {shape}")
    ds = load_dataset(path, preprocessing, split="all", preprocessed=preprocessed)
    images = np.ascontiguousarray(ds.images[:samples], dtype=np.float32)
    labels = None if ds.labels is None else np.asarray(ds.labels[:samples])
    kind = "model input" if preprocessed else "raw pixels"
    return Inputs(images, labels, f"{path} ({len(images)} of {len(ds)} images, {kind})", ds.class_names)


def _load_dataset(data: str, shape, samples: int, preprocessing, model_labels=None) -> Inputs:
    if preprocessing is None:
        raise DataError(
            f"--data {data}: no preprocessing is known for these artifacts (no checkpoint and no "
            f"{MANIFEST_NAME} manifest beside the ONNX); give a checkpoint as REFERENCE, or use "
            "--data random or a .npy/.npz of model input with --preprocessed"
        )
    if tuple(preprocessing.input_size) != tuple(shape):
        raise DataError(f"preprocessing input_size {preprocessing.input_size} differs from the model input {shape}")
    from ..data import load_dataset

    ds = load_dataset(data, preprocessing, split="test", model_labels=model_labels)
    images = np.ascontiguousarray(ds.images[:samples], dtype=np.float32)
    labels = None if ds.labels is None else np.asarray(ds.labels[:samples])
    return Inputs(images, labels, f"{data} test split ({len(images)} of {len(ds)} images)", ds.class_names)


__all__ = ["Inputs", "load_inputs"]
