"""The data contracts as every command meets them (click's CliRunner, as a user runs them):
.npy/.npz arrays are raw pixels on 0..pixel_max unless --preprocessed says they are model input,
the same option exists on every command that reads arrays and every message names it, .npz works
wherever .npy does, and image files that cannot be read safely are a DataError naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.data import load_dataset
from tests._fixtures import export_digits_like


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An exported digits-shaped model with its checkpoint, and the same 200 labelled digits as raw
    pixels (0..16) and as model input."""
    from sklearn.datasets import load_digits

    from edgevit.models import save_model

    root = tmp_path_factory.mktemp("contract")
    model = export_digits_like(root / "out")
    save_model(model, root / "model.safetensors")
    bunch = load_digits()
    raw, labels = bunch.images[:200].astype(np.float32)[:, None], bunch.target[:200]
    np.savez(root / "raw.npz", images=raw, labels=labels)
    np.save(root / "raw.npy", raw)
    normalized = load_dataset(root / "raw.npz", model.preprocessing, "all").images
    np.savez(root / "input.npz", images=normalized, labels=labels)
    np.save(root / "input.npy", normalized)
    return root


def _run(*args):
    res = CliRunner().invoke(main, [*map(str, args), "--json"])
    return res, json.loads(res.stdout)  # --json: one document on stdout, messages on stderr


def _refused_naming_preprocessed(res, data):
    assert res.exit_code == 1, res.output
    assert data["type"] == "DataError" and "--preprocessed" in data["message"], data
    assert "raw=False" not in data["message"], data


def test_eval_takes_raw_or_preprocessed_arrays(setup):
    ckpt = setup / "model.safetensors"
    _, by_raw = _run("eval", ckpt, "--data", setup / "raw.npz", "--split", "all")
    res, data = _run("eval", ckpt, "--data", setup / "input.npz", "--split", "all")
    _refused_naming_preprocessed(res, data)
    res, by_input = _run("eval", ckpt, "--data", setup / "input.npz", "--split", "all", "--preprocessed")
    assert res.exit_code == 0, res.output
    assert (by_input["samples"], by_input["top1"]) == (by_raw["samples"], by_raw["top1"]) == (200, by_raw["top1"]), \
        (by_raw, by_input)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_verify_takes_npy_and_npz_as_raw_pixels_or_model_input(setup, suffix):
    ckpt, onnx = setup / "model.safetensors", setup / "out"
    res, raw = _run("verify", ckpt, onnx, "--data", setup / f"raw{suffix}", "--samples", "16")
    assert res.exit_code == 0, res.output
    assert raw["data"]["description"].endswith("(16 of 200 images, raw pixels)"), raw["data"]
    assert raw["data"]["labelled"] == (suffix == ".npz"), raw["data"]
    res, data = _run("verify", ckpt, onnx, "--data", setup / f"input{suffix}", "--samples", "16")
    _refused_naming_preprocessed(res, data)
    res, inp = _run("verify", ckpt, onnx, "--data", setup / f"input{suffix}", "--samples", "16", "--preprocessed")
    assert res.exit_code == 0, res.output
    assert inp["data"]["description"].endswith("(16 of 200 images, model input)"), inp["data"]
    # the same images either way: the same comparison
    assert inp["outputs"]["logits"]["max_abs"] == pytest.approx(raw["outputs"]["logits"]["max_abs"], abs=1e-6), \
        (inp["outputs"]["logits"]["max_abs"], raw["outputs"]["logits"]["max_abs"])


def test_verify_without_preprocessing_needs_preprocessed(setup, tmp_path):
    import shutil

    bare = tmp_path / "model.onnx"  # no manifest beside it: no preprocessing is known
    shutil.copyfile(setup / "out" / "model.onnx", bare)
    res, data = _run("verify", bare, bare, "--data", setup / "raw.npy", "--samples", "8")
    _refused_naming_preprocessed(res, data)
    res, data = _run("verify", bare, bare, "--data", setup / "input.npy", "--samples", "8", "--preprocessed")
    assert res.exit_code == 0 and data["ok"], res.output


def test_bench_takes_npz(setup):
    common = ["--samples", "32", "--iterations", "2", "--warmup-s", "0", "--no-report", "--device", "cpu",
              "--threads", "1"]
    res, data = _run("bench", setup / "out", "--data", setup / "raw.npz", *common)
    assert res.exit_code == 0, res.output
    assert data["data"]["labelled"] and "raw pixels" in data["data"]["description"], data["data"]
    res, err = _run("bench", setup / "out", "--data", setup / "input.npz", *common)
    _refused_naming_preprocessed(res, err)
    res, inp = _run("bench", setup / "out", "--data", setup / "input.npz", "--preprocessed", *common)
    assert res.exit_code == 0, res.output
    top1 = {r["name"]: r["top1"] for r in data["rows"]}
    assert top1 == {r["name"]: r["top1"] for r in inp["rows"]}, (data["rows"], inp["rows"])


def test_predict_takes_npy_and_npz(setup):
    onnx = setup / "out" / "model.onnx"
    res, raw = _run("predict", onnx, setup / "raw.npz", "--topk", "1", "--threads", "1")
    assert res.exit_code == 0 and len(raw["predictions"]) == 200, res.output
    res, data = _run("predict", onnx, setup / "input.npy", "--topk", "1", "--threads", "1")
    _refused_naming_preprocessed(res, data)
    res, inp = _run("predict", onnx, setup / "input.npy", "--topk", "1", "--threads", "1", "--preprocessed")
    assert res.exit_code == 0, res.output
    assert [p["topk"][0]["index"] for p in inp["predictions"]] == [p["topk"][0]["index"] for p in raw["predictions"]]


def test_train_takes_preprocessed_npz(setup, tmp_path):
    common = ["--epochs", "1", "--batch-size", "64", "--device", "cpu"]
    res, data = _run("train", "--data", setup / "input.npz", "-o", tmp_path / "a", *common)
    _refused_naming_preprocessed(res, data)
    res, data = _run("train", "--data", setup / "input.npz", "--preprocessed", "-o", tmp_path / "b", *common)
    assert res.exit_code == 0 and data["num_test"] == 40, res.output


def test_decompression_bomb_in_an_image_folder(tmp_path, monkeypatch):
    from PIL import Image

    for name in ("0", "1"):  # class folders named after digits-tiny's labels
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "data" / name / "small.png")
    Image.new("L", (60, 60)).save(tmp_path / "data" / "1" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    res, data = _run("eval", "digits-tiny", "--data", tmp_path / "data", "--split", "all")
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert data["type"] == "DataError" and str(tmp_path / "data" / "1" / "huge.png") in data["message"], data
    assert "decompression bomb" in data["message"], data
