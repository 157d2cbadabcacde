"""edgevit.input_contract: the one conversion between edgevit's normalized float NCHW batches and a graph's feed.

Properties: a float graph's feed is the batch itself; a raw-pixel feed is the pixels a decoder delivers (round,
clip to the dtype's range) in the graph's layout; ``represented`` is edgevit's own normalize of those pixels,
and feeding it again gives the same pixels (a reference and the graph see the same image).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.data.preprocess import normalize
from edgevit.errors import DataError, ManifestError
from edgevit.input_contract import InputContract
from edgevit.specs import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, TensorSpec

SPEC = Preprocessing(input_size=(3, 4, 5), mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=1.0, pixel_max=255.0)


def contract(layout="NHWC") -> InputContract:
    return InputContract("images", "uint8", layout, False, SPEC)


def test_feed_is_the_rounded_clipped_pixels_in_the_layout():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 3, 4, 5)).astype(np.float32)
    x = normalize(pixels + rng.uniform(-0.49, 0.49, pixels.shape).astype(np.float32), SPEC)  # off the integer grid
    x[0, 0, 0, 0], x[0, 1, 0, 0] = -50.0, 50.0  # beyond 0..255 once denormalized
    nhwc, nchw = contract("NHWC").feed(x), contract("NCHW").feed(x)
    assert nhwc.dtype == np.uint8 and nhwc.shape == (3, 4, 5, 3) and nchw.shape == (3, 3, 4, 5)
    np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))
    want = pixels.astype(np.uint8)
    want[0, 0, 0, 0], want[0, 1, 0, 0] = 0, 255
    np.testing.assert_array_equal(nchw, want)


def test_represented_is_edgevits_normalize_of_the_fed_pixels_and_feeds_the_same_pixels():
    c = contract()
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
    rep = c.represented(x)
    np.testing.assert_array_equal(rep, normalize(c.pixels(x).astype(np.float32), SPEC))
    np.testing.assert_array_equal(c.feed(rep), c.feed(x))
    np.testing.assert_array_equal(c.reference_input(c.feed(x)), rep)


def test_a_float_contract_changes_nothing():
    c = InputContract("images", preprocessing=SPEC)
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 5)).astype(np.float32)
    assert not c.raw
    np.testing.assert_array_equal(c.feed(x), x)
    np.testing.assert_array_equal(c.represented(x), x)


def test_from_spec_reads_the_manifest_input_and_old_manifests_are_float():
    old = TensorSpec("images", ("batch", 3, 4, 5), "float32")
    assert InputContract.from_spec(old, SPEC) == InputContract("images", preprocessing=SPEC)
    spec = contract().tensor_spec("batch", True, (3, 4, 5))
    assert spec.to_dict() == {"name": "images", "dtype": "uint8", "shape": ["batch", 4, 5, 3],
                              "dynamic_axes": {"0": "batch"}, "layout": "NHWC", "normalized": False}
    assert InputContract.from_spec(TensorSpec.from_dict(spec.to_dict()), SPEC) == contract()


@pytest.mark.parametrize("fields, message", [
    ({"layout": "HWC"}, "layout"), ({"dtype": "int16"}, "must be one of"), ({"preprocessing": None}, "no \"preprocessing\""),
])
def test_a_bad_contract_names_the_key(fields, message):
    values = {"name": "images", "dtype": "uint8", "layout": "NHWC", "normalized": False, "preprocessing": SPEC,
              **fields}
    with pytest.raises(ManifestError, match=message):
        InputContract(**values)


def test_check_feed_names_what_the_graph_takes():
    c = contract()
    c.check_feed(np.zeros((1, 4, 5, 3), np.uint8))
    with pytest.raises(DataError, match="got dtype float32"):
        c.check_feed(np.zeros((1, 4, 5, 3), np.float32))
    with pytest.raises(DataError, match="that is NCHW"):
        c.check_feed(np.zeros((1, 3, 4, 5), np.uint8))
    with pytest.raises(DataError, match="expected a numpy array"):
        c.check_feed([[1, 2]])
