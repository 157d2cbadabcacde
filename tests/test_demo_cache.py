"""Issue 16 item 9: the demo reports the recorded score of its cached checkpoint only when the file is
the one that was scored (its sha256); another file under the cached name is re-scored."""

from __future__ import annotations

import json

from edgevit import demo
from edgevit._io import sha256_file
from edgevit.demo import DemoConfig, _cached_checkpoint_path
from edgevit.evaluate import evaluate
from edgevit.models.checkpoint import save_model
from tests._fixtures import digits_like_model

CLAIM = {"test_accuracy": 0.9889, "train_wall_s": 60.0, "summary": "digits test top-1 0.9889 (85 epochs)"}


def _cache(tmp_path, monkeypatch, meta: dict):
    monkeypatch.setenv("EDGEVIT_CACHE", str(tmp_path / "cache"))
    cached = _cached_checkpoint_path(None)
    cached.parent.mkdir(parents=True)
    save_model(digits_like_model(3), cached)  # an untrained model under the cached name
    cached.with_suffix(".json").write_text(json.dumps(meta))
    return cached


def test_another_checkpoint_under_the_cached_name_is_rescored(tmp_path, monkeypatch):
    cached = _cache(tmp_path, monkeypatch, {**CLAIM, "sha256": "0" * 64})
    run = tmp_path / "run"
    run.mkdir()
    info = demo._train(DemoConfig(), run, run / "checkpoint.safetensors")
    truth = evaluate(str(cached), "digits").top1
    assert abs(info["test_accuracy"] - truth) < 1e-9, (info["test_accuracy"], truth)
    assert "0.9889" not in info["summary"] and "85 epochs" not in info["summary"], info["summary"]
    assert "re-scored" in info["summary"] and info["sha256"] == sha256_file(cached), info


def test_a_cache_without_a_recorded_hash_is_rescored(tmp_path, monkeypatch):
    cached = _cache(tmp_path, monkeypatch, CLAIM)  # written before the hash was recorded
    run = tmp_path / "run"
    run.mkdir()
    info = demo._train(DemoConfig(), run, run / "checkpoint.safetensors")
    assert "0.9889" not in info["summary"] and "re-scored" in info["summary"], info["summary"]
    assert abs(info["test_accuracy"] - evaluate(str(cached), "digits").top1) < 1e-9, info


def test_the_cached_checkpoint_it_scored_keeps_its_score(tmp_path, monkeypatch):
    cached = _cache(tmp_path, monkeypatch, CLAIM)
    cached.with_suffix(".json").write_text(json.dumps({**CLAIM, "sha256": sha256_file(cached)}))
    run = tmp_path / "run"
    run.mkdir()
    info = demo._train(DemoConfig(), run, run / "checkpoint.safetensors")
    assert info["summary"].startswith(CLAIM["summary"]) and info["test_accuracy"] == 0.9889, info
    assert sha256_file(run / "checkpoint.safetensors") == sha256_file(cached)
