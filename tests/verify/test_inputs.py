"""The inputs a comparison runs on (--data) and bad inputs and options."""

import numpy as np
import pytest

from edgevit.errors import DataError, VerificationError
from edgevit.verify import VerifyConfig, load_inputs, verify
from tests._fixtures import tiny_model


def test_wrong_input_shape(ckpt, tmp_path):
    other = tiny_model(seed=0, img_size=32)
    from tests._fixtures import export_onnx

    path = export_onnx(other, tmp_path / "other.onnx")
    with pytest.raises(VerificationError, match=r"takes \['batch', 3, 16, 16\] but the candidate takes"):
        verify(ckpt, str(path), samples=2)
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"shape \(3, 8, 8\) after preprocessing, the model takes \(3, 16, 16\)"):
        verify(ckpt, None, data=str(bad), samples=2, preprocessed=True)  # model input is not resized


def test_nan_inputs(ckpt, tmp_path):
    x = np.zeros((4, 3, 16, 16), np.float32)
    x[2, 1, 3, 3] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, x)
    with pytest.raises(DataError, match="NaN or Inf values in 1 image"):
        verify(ckpt, None, data=str(path), samples=4, preprocessed=True)


def test_config_validation():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        VerifyConfig(batch_size=0)
    with pytest.raises(ValueError, match="backends must be among"):
        VerifyConfig(backends=("xformers",))
    with pytest.raises(DataError, match="not 'random', 'digits'"):
        load_inputs("nope", (3, 16, 16), 2)


def test_image_folder_data(ckpt, outdirs, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    report = verify(ckpt, outdirs["fused"], data=str(tmp_path / "imgs"), samples=8)
    assert report.ok, report.failures
    assert report.data["labelled"] and report.data["samples"] == 2, report.data  # test split: 1 per class
