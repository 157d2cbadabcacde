"""A config is bounded before anything is built or resampled: one image's attention scores (heads x
tokens x tokens) must fit TensorRT's largest tensor, 2^31-1 elements, so ``--img-size 10000`` is
refused at once (exit 2, naming --img-size and the largest size that fits) instead of allocating
gigabytes. And a damaged value in a checkpoint's metadata is the file's error (exit 1), not the
command line's."""

from __future__ import annotations

import json

import pytest

import edgevit
from edgevit.models import ViTConfig, get_variant
from tests._fixtures import assert_exit, must_not_run, run_cli


MAX_ATTENTION_SCORES = 2**31 - 1  # TensorRT's largest tensor volume (int32 element counts)


def _scores(cfg: ViTConfig) -> int:
    return cfg.num_heads * cfg.num_tokens**2


@pytest.mark.parametrize("variant", ["digits-tiny", "deit_small_patch16_224", "vit_large_patch14_reg4_dinov2"])
def test_the_largest_size_named_is_exactly_the_bound(variant):
    base = get_variant(variant).config
    with pytest.raises(ValueError) as info:
        base.replace(img_size=10_000 * base.patch_size)
    message = str(info.value)
    assert "--img-size" in message and "2^31-1" in message, message
    largest = int(message.split("--img-size ")[1].split(",")[0])
    fits = base.replace(img_size=largest)
    assert _scores(fits) <= MAX_ATTENTION_SCORES, (largest, _scores(fits))
    with pytest.raises(ValueError, match="--img-size"):  # one more patch row and column is past the bound
        base.replace(img_size=largest + base.patch_size)


def test_every_registered_variant_fits():
    for name in edgevit.list_variants():
        cfg = get_variant(name).config
        assert _scores(cfg) <= MAX_ATTENTION_SCORES, (name, _scores(cfg))


@pytest.fixture
def nothing_built(monkeypatch):
    """Building a model or resampling a position table must not start."""
    from edgevit.models import checkpoint, convert

    monkeypatch.setattr(checkpoint, "VisionTransformer", must_not_run("VisionTransformer(...)"))
    monkeypatch.setattr(convert, "resample_pos_embed", must_not_run("resample_pos_embed"))


@pytest.fixture
def digits_checkpoint(tmp_path):
    from edgevit.models.checkpoint import save_model

    return save_model(edgevit.create_model("digits-tiny"), tmp_path / "digits.safetensors")


@pytest.mark.parametrize("source", ["digits-tiny", "checkpoint"])
def test_info_at_img_size_10000_is_refused_before_building(digits_checkpoint, nothing_built, source):
    source = digits_checkpoint if source == "checkpoint" else source
    res = run_cli("info", source, "--img-size", 10000)
    assert_exit(res, 2)
    assert "--img-size 304" in res.stderr and "25,000,001 tokens" in res.stderr, res.output
    res = run_cli("info", source, "--img-size", 10000, "--json")
    assert_exit(res, 2)
    answer = json.loads(res.stdout)
    assert answer["ok"] is False and "--img-size 304" in answer["message"], answer


def test_a_damaged_preprocessing_in_checkpoint_metadata_is_the_files_error(digits_checkpoint, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(digits_checkpoint), framework="pt") as fh:
        metadata, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    pre = json.loads(metadata["preprocessing"])
    pre["interpolation"] = "cubicx"
    damaged = tmp_path / "damaged.safetensors"
    save_file(tensors, str(damaged), metadata={**metadata, "preprocessing": json.dumps(pre)})
    res = run_cli("info", damaged)
    assert_exit(res, 1)
    assert str(damaged) in res.stderr and "invalid value" not in res.stderr, res.output
