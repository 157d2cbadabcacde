"""How raw images become model input: the transforms that apply a :class:`Preprocessing` spec (the spec
itself lives in :mod:`edgevit.specs`, with the manifest that records it)."""

from __future__ import annotations

import math

import numpy as np

from ..specs import (  # noqa: F401  (the spec lives in the bottom layer; re-exported here)
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    INTERPOLATIONS,
    Preprocessing,
)


# --- applying the spec -----------------------------------------------------------------------
# PIL only (no torchvision). The steps and their rounding follow timm's eval transform
# (``transforms_factory.transforms_imagenet_eval``): Resize(floor(size / crop_pct)) on the
# shorter side, CenterCrop(size), ToTensor, Normalize -- with ``/ pixel_max`` for ToTensor's
# fixed ``/ 255``.
#
# The image contract (every command reads image files through :func:`read_image`): a file's
# values are read on its own bit depth -- 0..255 for 8-bit modes, 0..65535 for 16-bit ones
# ("I;16*", and "I", as Pillow opens some 16-bit PNGs) -- and rescaled to the model's
# 0..pixel_max. Float images ("F") carry no scale and are refused.

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
EIGHT_BIT_MAX = 255.0
SIXTEEN_BIT_MAX = 65535.0


def resize_shape(spec: Preprocessing, height: int, width: int) -> tuple[int, int]:
    """(height, width) an image of ``height x width`` is resized to before the center crop.

    Square inputs: the shorter side goes to ``floor(size / crop_pct)``, the longer side keeps
    the aspect ratio (``int(short * long / short_before)``, as torchvision does). Non-square
    inputs: each side goes to ``floor(side / crop_pct)``.
    """
    _, out_h, out_w = spec.input_size
    if out_h != out_w:
        return math.floor(out_h / spec.crop_pct), math.floor(out_w / spec.crop_pct)
    short = math.floor(out_h / spec.crop_pct)
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def _resample(name: str):
    from PIL import Image

    return {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "nearest": Image.Resampling.NEAREST,
    }[name]


def _resize_crop(image, spec: Preprocessing):
    """Resize then center-crop one PIL image to the spec's (height, width)."""
    _, out_h, out_w = spec.input_size
    width, height = image.size
    new_h, new_w = resize_shape(spec, height, width)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), resample=_resample(spec.interpolation))
    if (new_h, new_w) != (out_h, out_w):
        top = int(round((new_h - out_h) / 2.0))
        left = int(round((new_w - out_w) / 2.0))
        image = image.crop((left, top, left + out_w, top + out_h))
    return image


def normalize(images: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Raw pixels, channels first ((C, H, W) or (N, C, H, W)) -> ``(x / pixel_max - mean) / std``
    as float32."""
    x = np.asarray(images, dtype=np.float32)
    shape = (-1, 1, 1)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(shape)
    std = np.asarray(spec.std, dtype=np.float32).reshape(shape)
    return ((x / np.float32(spec.pixel_max) - mean) / std).astype(np.float32, copy=False)


def image_depth_max(image, where: str = "the image") -> float:
    """The largest value ``image``'s bit depth can hold: 255 (8-bit modes) or 65535 (16-bit).

    DataError for float images (mode "F": no bit depth to scale from) and for mode "I" values
    outside 0..65535 (a 32-bit image, not a 16-bit one).
    """
    from ..errors import DataError

    if image.mode == "F":
        raise DataError(
            f"{where} is a floating-point image (mode F): it has no bit depth that says what its values "
            f"mean; save it as an 8-bit or 16-bit image, or as a .npy array of raw pixels"
        )
    if image.mode not in SIXTEEN_BIT_MODES:
        return EIGHT_BIT_MAX  # every other Pillow mode stores 8 bits per channel
    if image.mode == "I":
        lo, hi = image.getextrema()
        if lo < 0 or hi > SIXTEEN_BIT_MAX:
            raise DataError(
                f"{where} is a 32-bit integer image with values {lo}..{hi}, outside the 16-bit range "
                f"0..65535; save it as an 8-bit or 16-bit image, or as a .npy array of raw pixels"
            )
    return SIXTEEN_BIT_MAX


def preprocess_image(image, spec: Preprocessing, where: str = "the image") -> np.ndarray:
    """One PIL image -> model input of shape ``spec.input_size`` (C, H, W), float32.

    Values are read on the image's own bit depth (:func:`image_depth_max`: 8-bit 0..255,
    16-bit 0..65535) and rescaled to the model's 0..``pixel_max``, so an 8-bit and a 16-bit
    file of the same picture give the same input. The image is converted to the model's
    channel count first ("L" for 1 channel, "RGB" for 3; 16-bit grey images as mode "F", their
    plane repeated for 3 channels), then resized, center cropped and normalized.
    """
    from ..errors import DataError

    channels = spec.channels
    if channels not in (1, 3):
        raise DataError(
            f"image files can feed 1- or 3-channel models, this model takes {channels} channels; "
            f"give the data as a .npy/.npz array with {channels} channels instead"
        )
    depth = image_depth_max(image, where)
    if depth == SIXTEEN_BIT_MAX:
        plane = np.asarray(_resize_crop(image.convert("F"), spec), dtype=np.float32)
        array = np.stack([plane] * channels)
    else:
        mode = "L" if channels == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        array = np.asarray(_resize_crop(image, spec), dtype=np.float32)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return normalize(array * np.float32(spec.pixel_max / depth), spec)


def read_image(path, spec: Preprocessing) -> np.ndarray:
    """One image file -> model input (C, H, W) by :func:`preprocess_image`.

    A file Pillow cannot read, and one so large that Pillow takes it for a decompression bomb
    (more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels), raise DataError naming the file.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    from ..errors import DataError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = image.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"{path}: refused as a possible decompression bomb ({str(exc).rstrip('.')}): edgevit reads no image "
            f"over Pillow's PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels; downscale the image, or "
            f"raise that limit in your own code if you trust the file"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); remove or replace the file") from None
    return preprocess_image(image, spec, where=str(path))


def preprocess_array(images: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Raw pixels as an (N, C, H, W) array with the model's channel count -> model input.

    When (H, W) already equals the model's input size and ``crop_pct`` is 1 only the scaling
    and normalization apply; otherwise every channel of every image is resized and center
    cropped through PIL (mode "F", so float values are kept) exactly as image files are.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != spec.channels:
        raise ValueError(f"expected (N, {spec.channels}, H, W) raw pixels, got shape {images.shape}")
    _, out_h, out_w = spec.input_size
    height, width = images.shape[2:]
    if resize_shape(spec, height, width) == (height, width) == (out_h, out_w):
        return normalize(images, spec)
    from PIL import Image

    out = np.empty((images.shape[0], spec.channels, out_h, out_w), dtype=np.float32)
    for i, image in enumerate(images):
        for c, plane in enumerate(image):
            out[i, c] = np.asarray(_resize_crop(Image.fromarray(np.ascontiguousarray(plane)), spec), dtype=np.float32)
    return normalize(out, spec)
