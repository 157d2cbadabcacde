"""edgevit.evaluate: accuracy, top-5, per-class accuracy and confusions, checked against hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgevit
from edgevit.data import load_dataset
from edgevit.errors import DataError
from edgevit.evaluate import accuracy_report, evaluate, topk_correct

# 3 classes, 6 samples: labels 0 0 1 1 2 2; predictions 0 1 1 1 0 2 (two errors: 0->1, 2->0)
LOGITS = np.array([[3, 1, 0], [1, 3, 0], [0, 3, 1], [1, 2, 0], [3, 0, 2], [0, 1, 3]], np.float32)
LABELS = np.array([0, 0, 1, 1, 2, 2])


def test_accuracy_report_counts_by_hand():
    r = accuracy_report(LOGITS, LABELS, ["a", "b", "c"], source="m", data="d:test")
    assert (r.samples, r.top1, r.top5) == (6, 4 / 6, 1.0), r
    assert r.per_class == {"a": 0.5, "b": 1.0, "c": 0.5}, r.per_class
    assert r.confusion_matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]], r.confusion_matrix
    assert sorted((c["true"], c["predicted"], c["count"]) for c in r.confusions) == [("a", "b", 1), ("c", "a", 1)]
    assert r.to_dict()["top1"] == r.top1 and r.to_dict()["source"] == "m"


def test_topk_is_top2_of_3_classes_and_caps_k_at_the_class_count():
    # sample 4 (label 2): logits 3, 0, 2 -> class 2 is second; sample 1 (label 0): 1, 3, 0 -> second
    assert topk_correct(LOGITS, LABELS, 2).tolist() == [True, True, True, True, True, True]
    assert topk_correct(LOGITS, LABELS, 1).tolist() == [True, False, True, True, False, True]
    assert topk_correct(LOGITS, LABELS, 5).all()  # k = 5 > 3 classes: every label is in the top 3


def test_missing_class_names_are_the_index_and_confusions_are_capped():
    r = accuracy_report(LOGITS, LABELS, ["a"], top_confusions=1)
    assert set(r.per_class) == {"a", "1", "2"}, r.per_class
    assert len(r.confusions) == 1, r.confusions


@pytest.mark.parametrize("logits, labels, words", [
    (np.zeros((0, 3), np.float32), np.zeros(0, int), "no samples to evaluate"),
    (LOGITS, LABELS[:4], "4 labels for 6 samples"),
])
def test_bad_inputs_raise_data_error(logits, labels, words):
    with pytest.raises(DataError, match=words):
        accuracy_report(logits, labels, None, data="d")


def test_evaluate_matches_the_model_on_the_digits_test_split(tmp_path):
    torch.manual_seed(0)
    model = edgevit.create_model("digits-tiny")
    path = edgevit.save_model(model, tmp_path / "m.safetensors")
    report = evaluate(str(path), data="digits", split="test", batch_size=64)
    data = load_dataset("digits", model.preprocessing, split="test")
    with torch.inference_mode():
        expected = (model.eval()(torch.from_numpy(data.images)).argmax(1).numpy() == data.labels).mean()
    assert report.samples == len(data.labels) == 359, report.samples
    assert abs(report.top1 - expected) < 1e-9, (report.top1, expected)
    assert report.data.endswith(":test") and report.source == str(path), (report.data, report.source)


def test_evaluate_refuses_unlabelled_data(tmp_path):
    images = np.random.default_rng(0).integers(0, 17, (4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    with pytest.raises(DataError, match="has no labels"):
        evaluate("digits-tiny", data=str(tmp_path / "x.npy"), split="all")
