"""Issue 16 item 6: the bundled digits (grey 8x8) are the default data only for models they fit
(1x8x8 input); another model's calibration, gate, eval and bench are not silently run on upscaled
digits: the commands ask for --calib-data / --data (bench falls back to random inputs, warned)."""

from __future__ import annotations

import json

import pytest

from tests._fixtures import assert_exit, run_cli, tiny_model


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """A 3-channel 32 px classifier checkpoint (not digits-shaped) and its export."""
    from edgevit.data.preprocess import Preprocessing
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models.checkpoint import save_model

    root = tmp_path_factory.mktemp("rgb")
    model = tiny_model(0, img_size=32, patch_size=8)
    model.labels = [str(i) for i in range(10)]
    model.preprocessing = Preprocessing(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, pixel_max=255.0)
    ckpt = save_model(model, root / "rgb32.safetensors")
    export_onnx(str(ckpt), root / "out", ExportConfig(batch=(1, 2, 8), verify=False, lint=False))
    return ckpt, root / "out"


@pytest.fixture
def rgb_copy(rgb, tmp_path):
    import shutil

    return shutil.copytree(rgb[1], tmp_path / "out")


def test_quantize_int8_asks_for_calib_data(rgb_copy):
    res = run_cli("quantize", rgb_copy, "--precision", "int8", "--no-gate")
    assert_exit(res, 1)
    assert "--calib-data" in res.stderr and "[3, 32, 32]" in res.stderr and "[1, 8, 8]" in res.stderr, res.stderr
    assert not (rgb_copy / "model.int8.onnx").exists() and not (rgb_copy / "calibration.json").exists()


def test_the_gate_asks_for_data(rgb_copy):
    res = run_cli("quantize", rgb_copy, "--precision", "fp16")  # no calibration; the gate has no data
    assert_exit(res, 1)
    assert "--data" in res.stderr and "--no-gate" in res.stderr and "[3, 32, 32]" in res.stderr, res.stderr
    assert not (rgb_copy / "model.fp16.onnx").exists()


def test_export_precision_int8_asks_for_calib_data(rgb, tmp_path):
    res = run_cli("export", rgb[0], "-o", tmp_path / "out", "--batch", "1,2,8", "--precision", "int8", "--no-gate")
    assert_exit(res, 1)
    assert "--calib-data" in res.stderr and "[3, 32, 32]" in res.stderr, res.stderr
    assert not (tmp_path / "out" / "model.int8.onnx").exists()


def test_eval_asks_for_data(rgb):
    res = run_cli("eval", rgb[0])
    assert_exit(res, 1)
    assert "--data" in res.stderr and "[3, 32, 32]" in res.stderr, res.stderr


def test_bench_uses_random_inputs_and_says_so(rgb):
    res = run_cli("bench", rgb[1], "--iterations", "2", "--warmup-s", "0", "--samples", "16", "--device", "cpu",
                  "--provider", "cpu", "--no-report", "--json")
    assert_exit(res, 0)
    data = json.loads(res.stdout)
    assert data["data"]["source"] == "random", data["data"]
    assert any("not digits-shaped" in w for w in data["warnings"]), data["warnings"]


def test_explicit_data_is_used_as_given(rgb_copy):
    res = run_cli("quantize", rgb_copy, "--precision", "int8", "--no-gate", "--calib-data", "digits",
                  "--calib-samples", "64", "--json")
    assert_exit(res, 0)
    assert "digits" in json.dumps(json.loads(res.stdout)["quantize"]["calibration"]), res.stdout


def test_digits_stay_the_default_for_a_digits_model(digits_like_copy):
    res = run_cli("quantize", digits_like_copy, "--precision", "int8", "--no-gate", "--calib-samples", "64", "--json")
    assert_exit(res, 0)
    assert "digits" in json.dumps(json.loads(res.stdout)["quantize"]["calibration"]), res.stdout
