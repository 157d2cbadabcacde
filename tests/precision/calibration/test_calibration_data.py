"""Calibration data through `edgevit quantize` as a user runs it: the cache is keyed on the data,
arrays follow the one .npy/.npz contract (raw pixels, or --preprocessed model input), and data on
the wrong scale is named in a warning."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.cli import main

SMALL = ["--precision", "int8", "--no-gate", "--calib-samples", "64", "--calib-batch", "32"]


@pytest.fixture
def outdir(digits_like_copy):
    return digits_like_copy


def _digits(n: int = 64, offset: int = 0) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[offset:offset + n].astype(np.float32)[:, None]  # raw 0..16


def _quantize(outdir, *args):
    res = CliRunner().invoke(main, ["quantize", str(outdir), *SMALL, "--force", "--json", *args])
    return res, (json.loads(res.stdout) if res.exit_code == 0 else None)  # warnings go to stderr


def test_calibration_cache_is_keyed_on_the_data(outdir, tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, _digits(64, 0))
    np.save(b, _digits(64, 500))
    first = _quantize(outdir, "--calib-data", str(a))[1]["quantize"]["calibration"]
    assert not first["cache_hit"] and "a.npy" in first["data"], first
    other = _quantize(outdir, "--calib-data", str(b))[1]["quantize"]["calibration"]
    assert not other["cache_hit"] and "b.npy" in other["data"], f"--calib-data b.npy reused a.npy's cache: {other}"
    again = _quantize(outdir, "--calib-data", str(b))[1]["quantize"]["calibration"]
    assert again["cache_hit"] and "b.npy" in again["data"], again
    cached = json.loads((outdir / "calibration.json").read_text())
    assert cached["data_key"]["source"] == str(b) and cached["data_key"]["num_samples"] == 64, cached["data_key"]
    fewer = _quantize(outdir, "--calib-data", str(b), "--calib-samples", "32")[1]["quantize"]["calibration"]
    assert not fewer["cache_hit"] and fewer["num_samples"] == 32, f"another sample count reused the cache: {fewer}"
    np.save(b, _digits(64, 1000))  # same path, new data
    changed = _quantize(outdir, "--calib-data", str(b))[1]["quantize"]["calibration"]
    assert not changed["cache_hit"], f"a rewritten b.npy reused the cache: {changed}"
    human = CliRunner().invoke(main, ["quantize", str(outdir), *SMALL, "--force", "--calib-data", "digits"])
    assert human.exit_code == 0 and "calibration: percentile on digits train split, 64 images (computed" in human.output, \
        human.output


def test_npy_contract_and_the_preprocessed_option(outdir, tmp_path):
    from edgevit.data import load_dataset
    from edgevit.models import get_variant

    normalized = load_dataset("digits", get_variant("digits-tiny").preprocessing, "train").images[:64]
    for suffix in (".npy", ".npz"):
        path = tmp_path / f"model_input{suffix}"
        np.save(path, normalized) if suffix == ".npy" else np.savez(path, images=normalized)
        res, _ = _quantize(outdir, "--calib-data", str(path))
        assert res.exit_code == 1, res.output
        message = json.loads(res.stdout)["message"]
        assert "negative pixel values" in message and "--preprocessed" in message, message
        assert "raw=False" not in message, message
        res, data = _quantize(outdir, "--calib-data", str(path), "--preprocessed")
        assert res.exit_code == 0, res.output
        calib = data["quantize"]["calibration"]
        assert calib["data_key"]["preprocessed"], calib
        assert not [n for n in calib["warnings"] if "pixel_max" in n], calib["warnings"]  # the scale is right
    raw = tmp_path / "raw.npz"
    np.savez(raw, images=_digits(64))
    by_raw = _quantize(outdir, "--calib-data", str(raw))[1]["quantize"]["calibration"]
    assert not by_raw["cache_hit"], "raw pixels must not reuse the cache of model input"


def test_calibration_data_on_the_wrong_scale_is_named_in_a_warning(outdir, tmp_path):
    unit = tmp_path / "unit.npy"
    np.save(unit, _digits(64) / 16)  # 0..1 for a 0..16 model
    res, data = _quantize(outdir, "--calib-data", str(unit))
    assert res.exit_code == 0, res.output
    notes = data["quantize"]["calibration"]["warnings"]
    scale = [n for n in notes if "pixel_max=16" in n]
    assert len(scale) == 1 and "--calib-data" in scale[0] and "--preprocessed" in scale[0], notes
    assert "brightest pixel is 1 " in scale[0], scale[0]
    assert f"edgevit: warning: {scale[0]}" in res.stderr, res.stderr
    human = CliRunner().invoke(main, ["quantize", str(outdir), *SMALL, "--force", "--calib-data", str(unit)])
    assert human.exit_code == 0, human.output
    assert "edgevit: warning: calibration data" in human.stderr and "looks scaled to 0..1" in human.stderr, \
        human.stderr
    assert "(calibration reused from" in human.stderr, f"a cache hit must repeat the warning: {human.stderr}"
    ok = tmp_path / "ok.npy"
    np.save(ok, _digits(64))
    res, data = _quantize(outdir, "--calib-data", str(ok))
    assert not [n for n in data["quantize"]["calibration"]["warnings"] if "pixel_max" in n], data
