"""edgevit.models.registry: named variants, their configs and preprocessing, and the refusals."""

from __future__ import annotations

import pytest

import edgevit
from edgevit.data.preprocess import Preprocessing
from edgevit.models import registry
from edgevit.models.registry import get_variant, list_variants, register
from edgevit.models.vit import ViTConfig


def test_list_is_sorted_and_holds_the_default_and_timm_names():
    names = list_variants()
    assert names == sorted(names) and len(names) == len(set(names)), names
    assert {"digits-tiny", "vit_base_patch16_224", "deit_small_patch16_224", "vit_small_patch14_dinov2"} <= set(names)
    assert edgevit.list_variants() == names


@pytest.mark.parametrize("name", list_variants())
def test_every_variant_is_consistent(name):
    v = get_variant(name)
    cfg, pre = v.config, v.preprocessing
    assert v.name == name and v.description, v
    assert cfg.embed_dim % cfg.num_heads == 0 and cfg.img_size % cfg.patch_size == 0, cfg
    assert pre.input_size == (cfg.in_chans, cfg.img_size, cfg.img_size), (name, pre.input_size, cfg)
    assert len(pre.mean) == len(pre.std) == cfg.in_chans, pre


@pytest.mark.parametrize("name, dims", [
    ("vit_base_patch16_224", (768, 12, 12, 16, 1000)),
    ("deit_tiny_patch16_224", (192, 12, 3, 16, 1000)),
    ("digits-tiny", (64, 4, 4, 2, 10)),
    ("vit_small_patch14_dinov2", (384, 12, 6, 14, 0)),
])
def test_timm_shapes(name, dims):
    c = get_variant(name).config
    assert (c.embed_dim, c.depth, c.num_heads, c.patch_size, c.num_classes) == dims, c


def test_create_model_builds_the_variant_with_its_preprocessing():
    m = edgevit.create_model("digits-tiny")
    assert m.config == get_variant("digits-tiny").config and m.preprocessing.pixel_max == 16.0
    assert m.labels == [str(i) for i in range(10)]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model variant 'nope'; known variants: \[.*'digits-tiny'"):
        get_variant("nope")


def test_a_name_registers_once(monkeypatch):
    monkeypatch.setattr(registry, "_VARIANTS", dict(registry._VARIANTS))
    pre = Preprocessing(input_size=(3, 32, 32))
    v = register("test-only", ViTConfig(img_size=32, patch_size=8), pre, "a test")
    assert get_variant("test-only") is v and "test-only" in list_variants()
    with pytest.raises(ValueError, match="'test-only' is already registered"):
        register("test-only", ViTConfig(img_size=32, patch_size=8), pre)
