"""Calibration: the amax cache (reused while graph, method and data match), the methods, and
calibration data that is refused before anything is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from edgevit.errors import DataError
from edgevit.precision import QuantizeConfig, quantize
from edgevit.precision.calibration import CalibrationConfig, calibrate, load_calibration_data
from edgevit.precision.calibration.calibrate import _mse_amax


def test_calibration_cache_reused_and_invalidated(exported, preprocessing, tmp_path):
    fp32 = exported / "model.onnx"
    cache = tmp_path / "calib.json"
    data = load_calibration_data("digits", preprocessing, (1, 8, 8), num_samples=128)
    first = calibrate(fp32, data, CalibrationConfig("minmax"), cache=cache, progress=False)
    assert not first.cache_hit and cache.exists()
    again = calibrate(fp32, None, CalibrationConfig("minmax"), cache=cache, progress=False)
    assert again.cache_hit and again.amax == first.amax
    other = calibrate(fp32, data, CalibrationConfig("percentile", 99.9), cache=cache, progress=False)
    assert not other.cache_hit, "a method change must invalidate the cache"
    assert json.loads(cache.read_text())["method"] == "percentile"
    assert all(other.amax[k] <= first.amax[k] + 1e-6 for k in first.amax), "percentile ranges exceed minmax ones"
    changed = tmp_path / "changed.onnx"
    proto = onnx.load(str(fp32))
    proto.doc_string = "another graph"
    onnx.save(proto, str(changed))
    with pytest.raises(DataError, match="no valid calibration cache"):
        calibrate(changed, None, CalibrationConfig("percentile", 99.9), cache=cache, progress=False)
    mse = calibrate(fp32, data, CalibrationConfig("mse"), progress=False)
    ent = calibrate(fp32, data, CalibrationConfig("entropy"), progress=False)
    for name, calib in (("mse", mse), ("entropy", ent)):
        bad = {k: (v, first.amax[k]) for k, v in calib.amax.items() if not 0 < v <= first.amax[k] * 1.01}
        assert not bad, f"{name} amax outside (0, minmax amax]: {list(bad.items())[:3]}"


def test_mse_threshold_clips_rare_outliers():
    edges = np.linspace(0, 100, 1001)
    hist = np.zeros(1000)
    hist[:10] = 1e6             # bulk of values in [0, 1]
    hist[-1] = 1.0              # one outlier near 100: clipping it costs ~1e4, spreading 127 levels to 100
    amax = _mse_amax(hist, edges)  # would cost 1e7 * (100/127)^2 / 12 ~ 5e5 in rounding noise
    centers = (edges[:-1] + edges[1:]) / 2
    brute = min(np.linspace(0.1, 100, 2000), key=lambda t: float(
        (hist * np.where(centers > t, (centers - t) ** 2, (t / 127) ** 2 / 12)).sum()))
    assert 0.5 < amax < 50 and abs(amax - brute) <= 0.2, f"mse amax {amax}, brute-force optimum {brute:.2f}"
    flat = _mse_amax(np.ones(1000), edges)
    assert flat > 90, f"a uniform histogram should keep (almost) the whole range, got {flat}"


@pytest.mark.parametrize("case", ["empty_dir", "wrong_shape", "nan", "too_few"])
def test_bad_calibration_data_is_refused_without_a_cache(exported, tmp_path, case):
    if case == "empty_dir":
        spec = tmp_path / "empty"
        spec.mkdir()
    else:
        arr = {"wrong_shape": np.zeros((64, 3, 8, 8), np.float32), "nan": np.full((64, 1, 8, 8), np.nan, np.float32),
               "too_few": np.zeros((5, 1, 8, 8), np.float32)}[case]
        spec = tmp_path / "calib.npy"
        np.save(spec, arr)
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    with pytest.raises(DataError) as err:
        quantize(out, QuantizeConfig(precisions=("int8",), calib_data=str(spec), gate=False, progress=False))
    assert str(spec) in str(err.value) or spec.name in str(err.value), str(err.value)
    assert not (out / "calibration.json").exists(), "a failed calibration must not leave a cache"
    assert not (out / "model.int8.onnx").exists()
