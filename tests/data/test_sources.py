"""Data sources: the bundled digits and its fixed splits, ImageFolder, .npy/.npz, and every
kind of bad input (each must raise DataError saying what, where and how to fix it)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgevit.data import (
    Dataset,
    Preprocessing,
    load_dataset,
    load_digits,
    preprocess_image,
    resize_shape,
    split_indices,
)
from edgevit.errors import DataError
from edgevit.models import get_variant

DIGITS_PRE = get_variant("digits-tiny").preprocessing
GREY255 = Preprocessing(input_size=(1, 8, 8), mean=(0.5,), std=(0.25,), interpolation="bilinear",
                        crop_pct=1.0, pixel_max=255.0)
RGB16 = Preprocessing(input_size=(3, 16, 16), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                      interpolation="bicubic", crop_pct=0.875, pixel_max=255.0)


def _raw_digits():
    from sklearn.datasets import load_digits as sk

    bunch = sk()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


# --- the split rule and the bundled digits --------------------------------------------------


def test_digits_splits_are_fixed_stratified_and_disjoint():
    _, labels = _raw_digits()
    a, b = split_indices(labels), split_indices(labels)
    for name in ("train", "val", "test"):
        assert np.array_equal(a[name], b[name]), f"{name} split differs between calls"
    sizes = {k: len(v) for k, v in a.items()}
    assert sizes == {"train": 1259, "val": 179, "test": 359}, f"split sizes {sizes}"
    allidx = np.concatenate([a["train"], a["val"], a["test"]])
    assert len(np.unique(allidx)) == len(labels) == len(allidx), "splits overlap or miss images"
    for name, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        for c in range(10):
            n_class = int((labels == c).sum())
            got = int((labels[a[name]] == c).sum())
            assert abs(got - frac * n_class) <= 1, f"class {c}: {got} of {n_class} in {name}, expected ~{frac * n_class:.1f}"


def test_split_indices_unlabelled_and_tiny_classes():
    parts = split_indices(None, n=50)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [35, 5, 10], {k: len(v) for k, v in parts.items()}
    tiny = split_indices(np.array([0, 1, 1, 2, 2, 2]))
    for c, idx in ((0, [0]), (1, [1, 2]), (2, [3, 4, 5])):
        assert any(i in tiny["train"] for i in idx), f"class {c} lost all its training images: {tiny}"


def test_load_digits_is_model_input():
    train = load_dataset("digits", DIGITS_PRE, "train")
    test = load_dataset("digits", DIGITS_PRE, "test")
    assert isinstance(train, Dataset) and train.class_names == [str(i) for i in range(10)]
    assert train.images.dtype == np.float32 and train.images.shape == (1259, 1, 8, 8), train.images.shape
    assert test.labels.dtype == np.int64 and test.images.shape == (359, 1, 8, 8)
    everything = load_digits(DIGITS_PRE, "all")
    assert abs(float(everything.images.mean())) < 0.01 and abs(float(everything.images.std()) - 1) < 0.01, (
        f"normalized digits: mean {everything.images.mean():.4f}, std {everything.images.std():.4f}")
    raw, labels = _raw_digits()
    idx = split_indices(labels)["test"]
    expected = (raw[idx][:, None] / 16.0 - DIGITS_PRE.mean[0]) / DIGITS_PRE.std[0]
    assert np.allclose(test.images, expected, atol=1e-6), float(np.abs(test.images - expected).max())
    assert np.array_equal(test.labels, labels[idx])


def test_digits_feed_other_input_specs():
    d = load_dataset("digits", RGB16, "val")
    assert d.images.shape == (179, 3, 16, 16), d.images.shape
    # the grey plane is repeated: un-normalized channels are equal
    raw = d.images * np.array(RGB16.std).reshape(1, 3, 1, 1) + np.array(RGB16.mean).reshape(1, 3, 1, 1)
    assert np.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and np.allclose(raw[:, 1], raw[:, 2], atol=1e-5)


def test_bad_split_name():
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", DIGITS_PRE, "validation")


# --- preprocessing of single images ---------------------------------------------------------


def test_resize_shape_follows_timm():
    spec = Preprocessing(input_size=(3, 224, 224), crop_pct=0.875)
    assert resize_shape(spec, 480, 640) == (256, 341)
    assert resize_shape(spec, 640, 480) == (341, 256)
    assert resize_shape(Preprocessing(input_size=(3, 224, 224), crop_pct=1.0), 224, 224) == (224, 224)


def test_preprocess_image_values_and_modes():
    flat = Image.new("L", (8, 8), color=128)
    out = preprocess_image(flat, GREY255)
    assert out.shape == (1, 8, 8) and out.dtype == np.float32
    assert np.allclose(out, (128 / 255 - 0.5) / 0.25, atol=1e-6), out[0, 0, 0]
    rgba = Image.new("RGBA", (40, 30), color=(255, 0, 51, 10))
    out = preprocess_image(rgba, RGB16)
    assert out.shape == (3, 16, 16)
    expected = (np.array([1.0, 0.0, 0.2]) - np.array(RGB16.mean)) / np.array(RGB16.std)
    assert np.allclose(out.mean(axis=(1, 2)), expected, atol=1e-5), out.mean(axis=(1, 2))
    grey_as_rgb = preprocess_image(Image.new("L", (16, 16), color=51), RGB16)
    assert np.allclose(grey_as_rgb.mean(axis=(1, 2)), (0.2 - np.array(RGB16.mean)) / np.array(RGB16.std), atol=1e-5)
    assert preprocess_image(Image.new("RGB", (9, 12), color=(10, 20, 30)), GREY255).shape == (1, 8, 8)
    deep = Image.fromarray(np.full((8, 8), 1000, dtype=np.int32))  # mode "I": read as 16-bit
    spec = Preprocessing(input_size=(1, 8, 8), mean=(0.0,), std=(1.0,), crop_pct=1.0, pixel_max=4000.0)
    assert np.allclose(preprocess_image(deep, spec), 1000 / 65535), preprocess_image(deep, spec)[0, 0, 0]


def test_image_files_are_read_on_their_own_bit_depth(tmp_path):
    """The image contract: 8-bit files are 0..255, 16-bit files 0..65535, both rescaled to the
    model's 0..pixel_max; so a digit saved either way gives the bundled digit's model input."""
    raw, _ = _raw_digits()
    digit = raw[1]  # 0..16
    reference = load_dataset("digits", DIGITS_PRE, "all").images[1]
    Image.fromarray(np.round(digit * 255 / 16).astype(np.uint8), mode="L").save(tmp_path / "d8.png")
    Image.fromarray(np.round(digit * 65535 / 16).astype(np.uint16)).save(tmp_path / "d16.png")
    Image.fromarray(np.round(digit * 65535 / 16).astype(np.int32)).save(tmp_path / "dI.tif")  # mode "I"
    # rounding to 8 bits moves a pixel by up to half a grey step, 0.5/255 of full scale, / std after normalizing
    step8 = 0.5 / 255 / DIGITS_PRE.std[0] + 1e-6
    for name, tol in (("d8.png", step8), ("d16.png", 1e-4), ("dI.tif", 1e-4)):
        got = load_dataset(tmp_path / name, DIGITS_PRE, "all").images[0]
        diff = float(np.abs(got - reference).max())
        assert diff <= tol, f"{name} ({Image.open(tmp_path / name).mode}): max diff {diff:.2e} from the digit (tol {tol:.1e})"
    Image.fromarray(digit.astype(np.float32), mode="F").save(tmp_path / "float.tif")
    with pytest.raises(DataError, match=r"float.tif is a floating-point image .*8-bit or 16-bit"):
        load_dataset(tmp_path / "float.tif", DIGITS_PRE, "all")
    Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(DataError, match=r"wide.tif is a 32-bit integer image with values 70000..70000"):
        load_dataset(tmp_path / "wide.tif", DIGITS_PRE, "all")


def test_preprocess_image_center_crop():
    # a 10x10 image with a bright 2x2 centre; crop_pct 0.8 -> resize 10 (no-op), crop the central 8x8
    array = np.zeros((10, 10), dtype=np.uint8)
    array[4:6, 4:6] = 255
    spec = Preprocessing(input_size=(1, 8, 8), mean=(0.0,), std=(1.0,), crop_pct=0.8, pixel_max=255.0)
    out = preprocess_image(Image.fromarray(array), spec)[0]
    assert np.array_equal(np.argwhere(out > 0.5).min(0), [3, 3]) and np.array_equal(np.argwhere(out > 0.5).max(0), [4, 4]), out


def test_image_files_cannot_feed_four_channels():
    spec = Preprocessing(input_size=(4, 8, 8), mean=(0.5,) * 4, std=(0.5,) * 4, crop_pct=1.0)
    with pytest.raises(DataError, match="1- or 3-channel"):
        preprocess_image(Image.new("RGB", (8, 8)), spec)


# --- ImageFolder ----------------------------------------------------------------------------


def _write_folder(root, classes=("cat", "dog", "emu"), per_class=10, size=(8, 8), mode="L", scale=16):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            value = (c * 4 + i % 3) if mode == "L" else None
            if mode == "L":
                img = Image.fromarray(np.full(size[::-1], value, dtype=np.uint8))
            else:
                img = Image.fromarray(rng.integers(0, scale, size=(*size[::-1], 3), dtype=np.uint8), "RGB")
            img.save(root / name / f"{i:03d}.png")
    return root


def test_image_folder_labels_and_splits(tmp_path):
    root = _write_folder(tmp_path / "data")
    (root / "cat" / "notes.txt").write_text("not an image")  # ignored
    everything = load_dataset(root, DIGITS_PRE, "all")
    assert everything.class_names == ["cat", "dog", "emu"]
    assert everything.images.shape == (30, 1, 8, 8) and everything.labels.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    raw = everything.images * DIGITS_PRE.std[0] + DIGITS_PRE.mean[0]  # 0..1 of full scale
    assert np.allclose(raw[:, 0, 0, 0] * 255, [c * 4 + i % 3 for c in range(3) for i in range(10)], atol=1e-4)
    parts = {s: load_dataset(root, DIGITS_PRE, s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [21, 3, 6], {s: len(d) for s, d in parts.items()}
    for s, d in parts.items():
        assert np.bincount(d.labels).tolist() == {"train": [7, 7, 7], "val": [1, 1, 1], "test": [2, 2, 2]}[s]
    again = load_dataset(root, DIGITS_PRE, "test")
    assert np.array_equal(again.images, parts["test"].images), "test split is not deterministic"


def test_image_folder_with_split_folders(tmp_path):
    _write_folder(tmp_path / "d" / "train", per_class=4)
    _write_folder(tmp_path / "d" / "val", classes=("cat", "dog"), per_class=2)
    d = load_dataset(tmp_path / "d", DIGITS_PRE, "val")
    assert d.class_names == ["cat", "dog", "emu"] and d.labels.tolist() == [0, 0, 1, 1]
    assert len(load_dataset(tmp_path / "d", DIGITS_PRE, "train")) == 12
    assert len(load_dataset(tmp_path / "d", DIGITS_PRE, "all")) == 16
    with pytest.raises(DataError, match="no test folder"):
        load_dataset(tmp_path / "d", DIGITS_PRE, "test")


def test_image_folder_rgb_resized(tmp_path):
    root = _write_folder(tmp_path / "rgb", classes=("a", "b"), per_class=5, size=(20, 12), mode="RGB", scale=256)
    d = load_dataset(root, RGB16, "all")
    assert d.images.shape == (10, 3, 16, 16) and np.isfinite(d.images).all()


def test_unlabelled_image_folder_and_single_image(tmp_path):
    for i in range(10):
        Image.new("L", (8, 8), color=i).save(tmp_path / f"{i}.png")
    d = load_dataset(tmp_path, DIGITS_PRE, "train")
    assert d.labels is None and d.class_names is None and len(d) == 7
    one = load_dataset(tmp_path / "3.png", DIGITS_PRE, "all")
    assert one.images.shape == (1, 1, 8, 8) and one.labels is None
    with pytest.raises(DataError, match="single image"):
        load_dataset(tmp_path / "3.png", DIGITS_PRE, "test")


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="nowhere' not found"):
        load_dataset(tmp_path / "nowhere", DIGITS_PRE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_dataset(tmp_path / "empty", DIGITS_PRE)
    root = _write_folder(tmp_path / "holes", per_class=3)
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra holds no images"):
        load_dataset(root, DIGITS_PRE, "all")
    root = _write_folder(tmp_path / "corrupt", per_class=3)
    (root / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="bad.png: not a readable image"):
        load_dataset(root, DIGITS_PRE, "all")
    root = _write_folder(tmp_path / "few", classes=("a",), per_class=2)
    with pytest.raises(DataError, match="'test' split .* is empty"):
        load_dataset(root, DIGITS_PRE, "test")
    with pytest.raises(DataError, match="has 3 classes but the model has 2"):
        load_dataset(_write_folder(tmp_path / "three", per_class=3), DIGITS_PRE, "all", num_classes=2)


# --- arrays ---------------------------------------------------------------------------------


def test_npz_layouts_match_digits(tmp_path):
    raw, labels = _raw_digits()
    reference = load_dataset("digits", DIGITS_PRE, "test")
    layouts = {
        "nchw_uint8": raw[:, None].astype(np.uint8),
        "nhwc_float": raw[:, :, :, None],
        "nhw_int": raw.astype(np.int64),
        "flat": raw.reshape(len(raw), -1),
    }
    for name, images in layouts.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=images, labels=labels)
        d = load_dataset(path, DIGITS_PRE, "test")
        assert np.allclose(d.images, reference.images, atol=1e-6), f"{name}: max diff {np.abs(d.images - reference.images).max()}"
        assert np.array_equal(d.labels, reference.labels), name
    np.savez(tmp_path / "xy.npz", x=raw, y=labels.astype(np.float32), classes=np.array(list("abcdefghij")))
    d = load_dataset(tmp_path / "xy.npz", DIGITS_PRE, "val", num_classes=10)
    assert d.class_names == list("abcdefghij") and d.labels.dtype == np.int64 and len(d) == 179


def test_npy_is_unlabelled_and_preprocessed_is_used_as_is(tmp_path):
    raw, _ = _raw_digits()
    np.save(tmp_path / "x.npy", raw[:100])
    d = load_dataset(tmp_path / "x.npy", DIGITS_PRE, "train")
    assert d.labels is None and len(d) == 70
    normalized = load_dataset("digits", DIGITS_PRE, "all").images[:20]
    np.save(tmp_path / "n.npy", normalized)
    d = load_dataset(tmp_path / "n.npy", DIGITS_PRE, "all", preprocessed=True)
    assert np.array_equal(d.images, normalized)
    with pytest.raises(DataError, match="negative pixel values .*pass --preprocessed"):
        load_dataset(tmp_path / "n.npy", DIGITS_PRE, "all")


def test_arrays_are_resized_like_images(tmp_path):
    ramp = np.linspace(0, 255, 12)
    images = np.stack([np.stack([*np.meshgrid(ramp, ramp[::-1]), np.full((12, 12), 40.0 * k)], -1)
                       for k in range(6)]).round().astype(np.uint8)  # smooth: no bicubic overshoot to clip
    np.save(tmp_path / "big.npy", images)
    d = load_dataset(tmp_path / "big.npy", RGB16, "all")
    assert d.images.shape == (6, 3, 16, 16)
    diff = np.abs(d.images - np.stack([preprocess_image(Image.fromarray(im), RGB16) for im in images])).max()
    assert diff < 0.03, f"array path vs PIL uint8 path: max diff {diff}"  # PIL rounds to uint8


@pytest.mark.parametrize(
    "case, match",
    [
        ("nan", "NaN or Inf values in 1 image"),
        ("inf", "NaN or Inf"),
        ("label_count", "1797 images but 1796 labels"),
        ("label_float", "whole class indices"),
        ("label_range", "go up to 12 but the model has 10 classes"),
        ("label_negative", "must be >= 0"),
        ("label_2d", r"one class index per image"),
        ("channels", r"neither \(C, H, W\) nor \(H, W, C\) with the model's 1 channel"),
        ("too_bright", "up to 255, above the model's pixel_max=16"),
        ("keys", r"none named like images; name the images one of"),
        ("dims", "5-D array"),
        ("empty", "holds no images"),
        ("strings", "must be numeric"),
        ("flat_size", "C\\*H\\*W = 64"),
        ("names_short", "only 3 class names"),
    ],
)
def test_bad_arrays(tmp_path, case, match):
    raw, labels = _raw_digits()
    arrays = {"images": raw, "labels": labels}
    if case == "nan":
        arrays["images"] = raw.copy()
        arrays["images"][5, 2, 2] = np.nan
    elif case == "inf":
        arrays["images"] = raw.copy()
        arrays["images"][7, 0, 0] = np.inf
    elif case == "label_count":
        arrays["labels"] = labels[:-1]
    elif case == "label_float":
        arrays["labels"] = labels + 0.5
    elif case == "label_range":
        arrays["labels"] = labels.copy()
        arrays["labels"][0] = 12
    elif case == "label_negative":
        arrays["labels"] = labels - 1
    elif case == "label_2d":
        arrays["labels"] = np.eye(10)[labels]
    elif case == "channels":
        arrays["images"] = np.repeat(raw[:, None], 3, axis=1)
    elif case == "too_bright":
        arrays["images"] = raw * 255 / 16
    elif case == "keys":
        arrays = {"pixels": raw, "targets": labels}
    elif case == "dims":
        arrays["images"] = raw[:, None, None]
    elif case == "empty":
        arrays = {"images": raw[:0], "labels": labels[:0]}
    elif case == "strings":
        arrays["images"] = np.array(["a"] * len(raw))
    elif case == "flat_size":
        arrays["images"] = raw.reshape(len(raw), -1)[:, :60]
    elif case == "names_short":
        arrays["class_names"] = np.array(["a", "b", "c"])
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path, DIGITS_PRE, "all", num_classes=10)
    assert str(path) in str(info.value), f"error does not say where: {info.value}"


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "missing.png", DIGITS_PRE, "all")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "missing.npz", DIGITS_PRE)
    (tmp_path / "table.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match=r"unknown data format '.csv'"):
        load_dataset(tmp_path / "table.csv", DIGITS_PRE)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(tmp_path / "broken.npz", DIGITS_PRE)
    with pytest.raises(TypeError, match="Preprocessing"):
        load_dataset("digits", {"input_size": (1, 8, 8)})
