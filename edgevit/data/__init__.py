"""Data: the bundled digits, ImageFolder directories and .npy/.npz arrays, preprocessed with
the model's :class:`Preprocessing` spec (see :mod:`edgevit.data.sources` for the rules)."""

from .preprocess import (
    Preprocessing,
    normalize,
    preprocess_array,
    preprocess_image,
    read_image,
    resize_shape,
)
from .sources import (
    DIGITS,
    DIGITS_CLASS_NAMES,
    SPLIT_FRACTIONS,
    SPLIT_SEED,
    SPLITS,
    Dataset,
    load_arrays,
    load_dataset,
    load_digits,
    load_image_folder,
    prepare_array,
    read_array_file,
    split_indices,
)

__all__ = [
    "DIGITS",
    "DIGITS_CLASS_NAMES",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "SPLIT_SEED",
    "Dataset",
    "Preprocessing",
    "load_arrays",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "normalize",
    "prepare_array",
    "preprocess_array",
    "preprocess_image",
    "read_array_file",
    "read_image",
    "resize_shape",
    "split_indices",
]
