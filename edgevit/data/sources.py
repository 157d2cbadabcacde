"""Labelled (and unlabelled) image sources, turned into model input with a Preprocessing spec.

One entry point, :func:`load_dataset`, takes a *spec* string:

``"digits"``
    The bundled default: scikit-learn's ``load_digits()``, 1,797 real 8x8 grey images with
    values 0..16, classes ``"0"`` .. ``"9"``. (To read a directory that happens to be called
    ``digits``, write ``./digits``.)
a directory
    ImageFolder layout, ``root/<class>/<image>``, class names sorted, their position is the
    label; given the model's labels (``model_labels``, as eval, verify, bench and quantize's gate
    pass them), a folder's label is the model's label of its name. If ``root`` holds
    ``train/``, ``val/`` (or ``validation/``) and/or ``test/`` folders that are themselves
    ImageFolders, those are the splits. A directory of images
    without class folders is an unlabelled set.
a ``.npy`` / ``.npz`` file
    Arrays of images. An ``.npz`` names its images ``images``/``x``/``X``/``data``/``inputs``
    and its optional labels ``labels``/``y``/``Y``/``targets``/``target``; optional class
    names under ``class_names``/``classes``. A ``.npy`` holds images only (unlabelled).
a single image file
    One unlabelled image (``split`` must be ``"all"``).

Splits. Every source without explicit split folders is split by the same fixed rule:
70 % train, 10 % val, 20 % test, stratified by class (each class is shuffled with a fixed
seed and cut at those fractions, rounding half up; test and val are taken first), or
shuffled as a whole when there are no labels. The rule depends only on the labels, so the
splits are identical on every machine and every call, and the test split never overlaps
the train/val splits that training and calibration use. ``split="all"`` returns everything
in file order. For the bundled digits that gives 1,259 train, 179 val, 359 test images.

Arrays are raw pixels on the model's scale, 0..``pixel_max``, for every command. Their
values are divided by the spec's ``pixel_max`` and normalized with its mean/std, and resized /
center-cropped like images when their size differs from the model's. Accepted layouts:
(N, C, H, W), (N, H, W, C), (N, H, W) for one-channel models, and (N, C*H*W) flattened at
exactly the model's size; uint8, integer or float. Values must lie in [0, pixel_max]: an
array that is already normalized (negative values) or on another scale (values above
pixel_max) is refused rather than silently mis-scaled. ``preprocessed=True`` (the CLI's
``--preprocessed``) takes arrays that are already model input, (N, C, H, W), as they are.
Image files are read on their own bit depth (8-bit 0..255, 16-bit 0..65535) and rescaled to
0..pixel_max, converted to the model's channel count ("L" or "RGB") and preprocessed with
:func:`~edgevit.data.preprocess.read_image`.

Every problem raises :class:`edgevit.errors.DataError` saying what, where and how to fix it.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from .array_files import check_headers, read_member
from .preprocess import Preprocessing, preprocess_array, read_image

SPLITS = ("train", "val", "test", "all")
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
SPLIT_SEED = 0
DIGITS = "digits"
DIGITS_CLASS_NAMES = [str(i) for i in range(10)]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
ARRAY_EXTENSIONS = (".npy", ".npz")
IMAGE_KEYS = ("images", "x", "X", "data", "inputs")
LABEL_KEYS = ("labels", "y", "Y", "targets", "target")
CLASS_NAME_KEYS = ("class_names", "classes")
_SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


@dataclass
class Dataset:
    """Model-ready data: ``images`` float32 (N, C, H, W), ``labels`` int64 (N,) or None."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    source: str
    split: str = "all"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int | None:
        if self.class_names is not None:
            return len(self.class_names)
        if self.labels is not None and len(self.labels):
            return int(self.labels.max()) + 1
        return None

    def __repr__(self) -> str:
        labels = "unlabelled" if self.labels is None else f"{self.num_classes} classes"
        return (
            f"Dataset({self.source!r}, split={self.split!r}, {len(self)} images of "
            f"{tuple(self.images.shape[1:])}, {labels})"
        )


# --- the split rule -------------------------------------------------------------------------


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_indices(labels: np.ndarray | None, n: int | None = None, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Indices of the train/val/test splits (70/10/20), stratified by ``labels`` when given.

    Deterministic: depends only on the labels (or ``n`` when unlabelled) and ``seed``. The
    three index arrays are sorted, disjoint and together cover ``range(n)``.
    """
    if labels is None:
        if n is None:
            raise ValueError("split_indices needs labels or n")
        groups = [np.arange(n)]
    else:
        labels = np.asarray(labels)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for group in groups:
        group = rng.permutation(group)
        n_test = _round_half_up(len(group) * SPLIT_FRACTIONS["test"])
        n_val = _round_half_up(len(group) * SPLIT_FRACTIONS["val"])
        if n_test + n_val >= len(group):  # tiny classes keep at least one training image
            n_test = min(n_test, max(len(group) - 1, 0))
            n_val = min(n_val, max(len(group) - 1 - n_test, 0))
        parts["test"].append(group[:n_test])
        parts["val"].append(group[n_test : n_test + n_val])
        parts["train"].append(group[n_test + n_val :])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def _select(images: np.ndarray, labels: np.ndarray | None, split: str, where: str):
    if split == "all":
        return images, labels
    idx = split_indices(labels, n=len(images))[split]
    if len(idx) == 0:
        raise DataError(
            f"the {split!r} split of {where} is empty ({len(images)} images in all, split "
            f"70/10/20 per class); add images, or use split='all'"
        )
    return images[idx], (None if labels is None else labels[idx])


# --- checks ---------------------------------------------------------------------------------


def _check_finite(array: np.ndarray, where: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)).ravel()
        raise DataError(
            f"{where} holds NaN or Inf values in {len(bad)} image(s) (first at index {int(bad[0])}); "
            f"remove or repair those images"
        )


def _check_range(array: np.ndarray, spec: Preprocessing, where: str) -> None:
    lo, hi = float(array.min()), float(array.max())
    if lo < 0:
        raise DataError(
            f"{where} holds negative pixel values (min {lo:.4g}); raw pixels must lie in "
            f"[0, pixel_max={spec.pixel_max:g}]. If the array is already normalized model input, "
            f"pass --preprocessed (preprocessed=True); otherwise rescale it"
        )
    if hi > spec.pixel_max * (1 + 1e-6):
        raise DataError(
            f"{where} holds pixel values up to {hi:.4g}, above the model's pixel_max="
            f"{spec.pixel_max:g}; rescale the data to [0, {spec.pixel_max:g}], use a model whose "
            f"preprocessing has pixel_max={_suggest_max(hi):g}, or pass --preprocessed (preprocessed=True) "
            f"if the array is already model input"
        )


def _suggest_max(hi: float) -> float:
    for m in (1.0, 16.0, 255.0, 65535.0):
        if hi <= m:
            return m
    return hi


def _check_labels(labels, n: int, where: str, num_classes: int | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"labels in {where} must be one class index per image (shape ({n},)), got shape "
            f"{labels.shape}; one-hot labels need an argmax first"
        )
    if len(labels) != n:
        raise DataError(
            f"{where} has {n} images but {len(labels)} labels; give exactly one label per image"
        )
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or not np.all(labels == np.round(labels)):
            raise DataError(f"labels in {where} must be whole class indices, found non-integer values")
    elif not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise DataError(
            f"labels in {where} must be integer class indices, got dtype {labels.dtype}; "
            f"map class names to indices first"
        )
    labels = labels.astype(np.int64)
    if n and labels.min() < 0:
        raise DataError(f"labels in {where} must be >= 0, found {int(labels.min())}")
    if n and num_classes is not None and labels.max() >= num_classes:
        raise DataError(
            f"labels in {where} go up to {int(labels.max())} but the model has {num_classes} classes "
            f"(labels 0..{num_classes - 1}); use a model with more classes or fix the labels"
        )
    return labels


def _check_classes(class_names, where: str, num_classes: int | None) -> None:
    if num_classes is not None and class_names is not None and len(class_names) > num_classes:
        raise DataError(
            f"{where} has {len(class_names)} classes but the model has {num_classes}; "
            f"use a model trained on these classes"
        )


def _final_check(images: np.ndarray, spec: Preprocessing, where: str) -> np.ndarray:
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(spec.input_size):
        raise DataError(
            f"{where} gives images of shape {tuple(images.shape[1:])} after preprocessing, the model "
            f"takes {tuple(spec.input_size)}"
        )
    _check_finite(images, where)
    return np.ascontiguousarray(images, dtype=np.float32)


# --- bundled digits -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), 0..16
    labels = bunch.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits(preprocessing: Preprocessing, split: str = "test") -> Dataset:
    """scikit-learn's 8x8 digits (values 0..16), split 70/10/20 per class with a fixed seed.

    Grey levels are taken as raw pixels on a 0..16 scale (digits-tiny's ``pixel_max=16``);
    models with another ``pixel_max`` see them rescaled to theirs, so the images mean the same.
    Models with 3 channels get the grey plane repeated; other sizes are resized like images.
    """
    _check_split(split)
    images, labels = _digits_raw()
    images, labels = _select(images, labels, split, "the bundled digits")
    images = images * np.float32(preprocessing.pixel_max / 16.0)
    if preprocessing.channels == 3:
        images = np.repeat(images, 3, axis=1)
    elif preprocessing.channels != 1:
        raise DataError(
            f"the bundled digits are grey images; they can feed 1- or 3-channel models, this one "
            f"takes {preprocessing.channels}"
        )
    out = _final_check(preprocess_array(images, preprocessing), preprocessing, "the bundled digits")
    return Dataset(out, labels.copy(), list(DIGITS_CLASS_NAMES), DIGITS, split)


# --- image folders --------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_layout(root: Path) -> dict[str, Path] | None:
    """{split: folder} when ``root`` holds train/val/test folders that contain class folders."""
    subdirs = {p.name: p for p in _subdirs(root)}
    known = {name for names in _SPLIT_DIRS.values() for name in names}
    if not subdirs or not set(subdirs) <= known:
        return None
    found = {}
    for split, names in _SPLIT_DIRS.items():
        for name in names:
            if name in subdirs and _subdirs(subdirs[name]):
                found[split] = subdirs[name]
                break
    return found or None


def _read_images(paths: list[Path], spec: Preprocessing) -> np.ndarray:
    out = np.empty((len(paths), *spec.input_size), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = read_image(path, spec)
    return out


def _folder_labels(class_names: list[str], model_labels, where: str) -> tuple[list[int], list[str]]:
    """(the label of each class folder, the dataset's class names). Without the model's labels a
    folder's label is its position among the sorted folders; with them it is the model's label of
    the same name, so folders for only some of the model's classes ("3" and "7" of a digits model)
    are labelled 3 and 7, and the class names are the model's. A folder that names no label of the
    model is refused."""
    if not model_labels:
        return list(range(len(class_names))), list(class_names)
    names = [str(n) for n in model_labels]
    index = {n: i for i, n in enumerate(names)}
    unknown = [c for c in class_names if c not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in names[:20]) + (f", ... ({len(names)} labels)" if len(names) > 20 else "")
        raise DataError(
            f"{where}: class folder(s) {', '.join(repr(c) for c in unknown)} are not labels of the model, whose "
            f"labels are {shown}; name each class folder after the model's label of its images, or use a model "
            f"trained on these classes"
        )
    return [index[c] for c in class_names], names


def _scan_class_folder(root: Path, class_names: list[str], folder_labels: list[int]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in zip(folder_labels, class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if _is_image(p))
        if not files:
            raise DataError(
                f"class folder {folder} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                f"add images or remove the folder"
            )
        paths.extend(files)
        labels.extend([label] * len(files))
    return paths, labels


def load_image_folder(
    root: str | os.PathLike, preprocessing: Preprocessing, split: str = "test", num_classes: int | None = None,
    model_labels=None,
) -> Dataset:
    """An ImageFolder directory (see the module docstring for the layouts and the split rule).

    ``model_labels`` (the model's class names): each class folder is labelled with the model's
    label of its name, not with its position among the folders (DataError for a folder that is no
    label of the model)."""
    _check_split(split)
    root = Path(root)
    if not root.exists():
        raise DataError(f"data directory {root} does not exist; check the path")
    if not root.is_dir():
        raise DataError(f"{root} is not a directory")
    layout = _split_layout(root)
    if layout is not None:
        class_names = sorted({p.name for folder in layout.values() for p in _subdirs(folder)})
        _check_classes(class_names, str(root), num_classes)
        folder_labels, names = _folder_labels(class_names, model_labels, str(root))
        wanted = list(layout) if split == "all" else [split]
        paths: list[Path] = []
        labels: list[int] = []
        for name in wanted:
            if name not in layout:
                raise DataError(
                    f"{root} has split folders {sorted(p.name for p in layout.values())} but no "
                    f"{'/'.join(_SPLIT_DIRS[name])} folder for split {name!r}; add one or use another split"
                )
            p, lab = _scan_class_folder(layout[name], class_names, folder_labels)
            paths += p
            labels += lab
        if not paths:
            raise DataError(f"no images found for split {split!r} under {root}")
        images = _read_images(paths, preprocessing)
        images = _final_check(images, preprocessing, str(root))
        return Dataset(images, np.asarray(labels, dtype=np.int64), names, str(root), split)

    class_dirs = _subdirs(root)
    if class_dirs:
        class_names = [p.name for p in class_dirs]
        _check_classes(class_names, str(root), num_classes)
        folder_labels, class_names = _folder_labels(class_names, model_labels, str(root))
        paths, label_list = _scan_class_folder(root, [p.name for p in class_dirs], folder_labels)
        labels = np.asarray(label_list, dtype=np.int64)
    else:
        paths = sorted(p for p in root.iterdir() if _is_image(p))
        if not paths:
            raise DataError(
                f"data directory {root} is empty: expected class folders (root/<class>/<image>) or "
                f"image files ({', '.join(IMAGE_EXTENSIONS)})"
            )
        class_names, labels = None, None
    index = np.arange(len(paths))
    index, labels = _select(index, labels, split, str(root))
    images = _read_images([paths[i] for i in index], preprocessing)
    images = _final_check(images, preprocessing, str(root))
    return Dataset(images, labels, class_names, str(root), split)


# --- arrays ---------------------------------------------------------------------------------


def _to_nchw(array: np.ndarray, spec: Preprocessing, where: str) -> np.ndarray:
    c, h, w = spec.input_size
    shape = array.shape
    if array.ndim == 2:
        if shape[1] != c * h * w:
            raise DataError(
                f"{where} holds a 2-D array {shape}; flattened images must have C*H*W = {c * h * w} "
                f"values each for this model {spec.input_size}; save them as (N, C, H, W) instead"
            )
        return array.reshape(shape[0], c, h, w)
    if array.ndim == 3:
        if c != 1:
            raise DataError(
                f"{where} holds a 3-D array {shape}, read as (N, H, W) grey images, but the model takes "
                f"{c} channels; save (N, {c}, H, W) or (N, H, W, {c}) images"
            )
        return array[:, None]
    if array.ndim == 4:
        nchw, nhwc = shape[1] == c, shape[3] == c
        if nchw and nhwc:  # ambiguous only when H or W equals C: prefer the reading that fits
            nchw = shape[2:] == (h, w) or shape[1:3] != (h, w)
            nhwc = not nchw
        if nchw:
            return array
        if nhwc:
            return array.transpose(0, 3, 1, 2)
        raise DataError(
            f"{where} holds images of shape {shape[1:]}, neither (C, H, W) nor (H, W, C) with the "
            f"model's {c} channel(s); convert the images to {c} channel(s)"
        )
    raise DataError(
        f"{where} holds a {array.ndim}-D array {shape}; expected images as (N, C, H, W), (N, H, W, C), "
        f"(N, H, W) or (N, C*H*W)"
    )


def _check_numeric(array: np.ndarray, what: str, where: str) -> None:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{what} in {where} must be numeric, got dtype {array.dtype}")


def _validate_raw(images: np.ndarray, preprocessing: Preprocessing, preprocessed: bool, where: str) -> np.ndarray:
    images = np.asarray(images)
    _check_numeric(images, "images", where)
    if images.ndim == 0 or images.shape[0] == 0:
        raise DataError(f"{where} holds no images (shape {images.shape})")
    _check_finite(images.reshape(images.shape[0], -1) if images.ndim > 1 else images[:, None], where)
    images = _to_nchw(images, preprocessing, where)
    if not preprocessed:
        _check_range(images, preprocessing, where)
    return images


def prepare_array(
    images: np.ndarray, preprocessing: Preprocessing, preprocessed: bool = False, where: str = "the array"
) -> np.ndarray:
    """Images in any accepted layout -> model input (N, C, H, W) float32 (see module docstring).

    ``preprocessed=True``: the images are model input already, used as they are."""
    images = _validate_raw(images, preprocessing, preprocessed, where)
    if preprocessed:
        return _final_check(images.astype(np.float32), preprocessing, where)
    images = images.astype(np.float32)
    return _final_check(preprocess_array(images, preprocessing), preprocessing, where)


def _pick(keys: list[str], candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if name in keys:
            return name
    return None


def read_array_file(path: str | os.PathLike):
    """``(images, labels or None, class_names or None)`` as stored in a ``.npy`` (images only)
    or ``.npz`` file, not yet checked or preprocessed; DataError for a missing or unreadable file."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist; check the path")
    try:
        check_headers(path)  # before np.load allocates what a header claims
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as a NumPy {path.suffix} file: {exc}") from exc
    labels = class_names = None
    if isinstance(loaded, np.ndarray):
        return loaded, None, None
    with loaded:
        keys = list(loaded.files)
        image_key = _pick(keys, IMAGE_KEYS)
        if image_key is None and len(keys) == 1:
            image_key = keys[0]
        if image_key is None:
            raise DataError(
                f"{path} has arrays {keys} but none named like images; name the images one of "
                f"{list(IMAGE_KEYS)} and the labels one of {list(LABEL_KEYS)}"
            )
        images = read_member(loaded, image_key, path)
        label_key = _pick(keys, LABEL_KEYS)
        if label_key is not None:
            labels = read_member(loaded, label_key, path)
            _check_numeric(labels, "labels", where)
        names_key = _pick(keys, CLASS_NAME_KEYS)
        if names_key is not None:
            class_names = [str(v) for v in read_member(loaded, names_key, path).tolist()]
    return images, labels, class_names


def load_arrays(
    path: str | os.PathLike,
    preprocessing: Preprocessing,
    split: str = "test",
    num_classes: int | None = None,
    preprocessed: bool = False,
) -> Dataset:
    """A ``.npy`` (images only) or ``.npz`` (images, optional labels and class names) file."""
    _check_split(split)
    path = Path(path)
    where = str(path)
    images, labels, class_names = read_array_file(path)
    if labels is not None:
        labels = _check_labels(labels, len(images) if images.ndim else 0, where, num_classes)
        if class_names is not None and len(labels) and labels.max() >= len(class_names):
            raise DataError(
                f"{path} labels go up to {int(labels.max())} but only {len(class_names)} class names "
                f"are given; give one name per class"
            )
    _check_classes(class_names, where, num_classes)
    # Validate the whole file (so every split fails alike), then preprocess only the split.
    _validate_raw(images, preprocessing, preprocessed, where)
    images, labels = _select(images, labels, split, where)
    images = prepare_array(images, preprocessing, preprocessed=preprocessed, where=where)
    return Dataset(images, labels, class_names, where, split)


# --- the entry point ------------------------------------------------------------------------


def load_dataset(
    spec: str | os.PathLike,
    preprocessing: Preprocessing,
    split: str = "test",
    *,
    num_classes: int | None = None,
    preprocessed: bool = False,
    model_labels=None,
) -> Dataset:
    """Load ``spec`` ("digits", a directory, a .npy/.npz file or one image) as model input.

    ``split`` is "train", "val", "test" or "all" (see the module docstring for the fixed
    70/10/20 rule). ``num_classes`` (the model's) makes labels beyond it an error.
    ``preprocessed`` applies to arrays only: True means they are already model input
    (the CLI's ``--preprocessed``); by default they are raw pixels on 0..pixel_max.
    ``model_labels`` (the model's class names) labels an ImageFolder's class folders by name
    (:func:`load_image_folder`). Calibration must use "train" (or "val"), never "test".
    """
    _check_split(split)
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
    if isinstance(spec, str) and spec == DIGITS:
        return load_digits(preprocessing, split)
    path = Path(spec)
    if path.is_dir():
        return load_image_folder(path, preprocessing, split, num_classes, model_labels)
    suffix = path.suffix.lower()
    if suffix in ARRAY_EXTENSIONS:
        return load_arrays(path, preprocessing, split, num_classes, preprocessed=preprocessed)
    if not path.exists():
        raise DataError(
            f"data {str(spec)!r} not found: give 'digits', an ImageFolder directory, or a .npy/.npz file"
        )
    if suffix in IMAGE_EXTENSIONS:
        if split != "all":
            raise DataError(f"{path} is a single image; it has no {split!r} split, use split='all'")
        images = _final_check(_read_images([path], preprocessing), preprocessing, str(path))
        return Dataset(images, None, None, str(path), split)
    raise DataError(
        f"unknown data format {path.suffix!r} for {path}; give 'digits', an ImageFolder directory, "
        f"a .npy/.npz array file or an image ({', '.join(IMAGE_EXTENSIONS)})"
    )
