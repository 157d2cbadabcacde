"""Issue 16 item 7: class names that cannot name the model's classes (another count, duplicates) are
refused where they are loaded, checkpoint metadata and manifest alike, naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._fixtures import assert_exit, digits_like_model, run_cli


def _checkpoint(path, labels):
    from edgevit.models.checkpoint import save_model

    model = digits_like_model(0)  # 10 classes
    model.labels = labels
    return save_model(model, path)


@pytest.mark.parametrize("labels, words", [(["0", "1", "2"], "3 labels for 10 classes"),
                                           (["a", "b", "c", "d", "e", "f", "g", "h", "i", "a"], "repeats 'a'")])
def test_eval_refuses_a_checkpoint_whose_labels_do_not_fit(tmp_path, labels, words):
    ckpt = _checkpoint(tmp_path / "bad.safetensors", labels)
    res = run_cli("eval", ckpt)
    assert_exit(res, 1)
    assert words in res.stderr and "bad.safetensors" in res.stderr and "labels" in res.stderr, res.stderr


def test_a_checkpoint_whose_labels_fit_loads_them(tmp_path):
    from edgevit.models import load_model

    names = [f"class {i}" for i in range(10)]
    assert load_model(_checkpoint(tmp_path / "ok.safetensors", names)).labels == names
    headless = digits_like_model(0, num_classes=0)  # no classes to name: its labels are dropped, not refused
    from edgevit.models.checkpoint import save_model

    assert load_model(save_model(headless, tmp_path / "headless.safetensors")).labels is None


@pytest.mark.parametrize("labels, words", [(["0", "1", "2"], "3 labels for 10 classes"),
                                           (["0"] * 10, "repeats '0'")])
def test_a_manifest_whose_labels_do_not_fit_is_refused(digits_like_copy, labels, words):
    path = digits_like_copy / "edgevit.json"
    data = json.loads(path.read_text())
    data["labels"] = labels
    path.write_text(json.dumps(data))
    npy = digits_like_copy.parent / "x.npy"
    np.save(npy, np.zeros((2, 1, 8, 8), np.float32))
    res = run_cli("predict", digits_like_copy / "model.onnx", npy, "--preprocessed")
    assert_exit(res, 1)
    assert words in res.stderr and "edgevit.json" in res.stderr and '"labels"' in res.stderr, res.stderr
