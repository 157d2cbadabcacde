"""edgevit.models.info: fused-MHA eligibility, output kind and the numbers ``edgevit info`` shows."""

from __future__ import annotations

import pytest

import edgevit
from edgevit.models.info import (
    FUSED_MHA_HEAD_SIZES,
    INT8_FUSED_MHA_MAX_SEQ,
    fused_mha_eligibility,
    model_info,
    output_kind,
)
from edgevit.models.vit import ViTConfig, VisionTransformer, macs_per_image


@pytest.mark.parametrize("fields, fp16, int8, words", [
    (dict(embed_dim=768, num_heads=12), True, True, "eligible"),  # ViT-B/16 at 224: 197 tokens, head 64
    (dict(embed_dim=768, num_heads=12, img_size=384), True, False, "sequence 577 > 512"),
    (dict(embed_dim=768, num_heads=16), False, False, "head size 48 is not one of [16, 32, 64]"),
])
def test_fused_mha_eligibility(fields, fp16, int8, words):
    e = fused_mha_eligibility(ViTConfig(**fields))
    assert (e["fp16"], e["int8"]) == (fp16, int8), e
    assert words in e["reasons"], e


def test_eligibility_limits_are_the_documented_ones():
    assert FUSED_MHA_HEAD_SIZES == (16, 32, 64) and INT8_FUSED_MHA_MAX_SEQ == 512  # docs/design.md §5.4


def test_output_kind():
    assert output_kind(ViTConfig(num_classes=10)) == "logits"
    assert output_kind(ViTConfig(num_classes=0)) == "features"


def test_model_info_of_a_saved_model(tmp_path):
    cfg = ViTConfig(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=2, num_heads=2)
    model = VisionTransformer(cfg)
    path = edgevit.save_model(model, tmp_path / "m.safetensors")
    info = model_info(str(path))
    params = sum(p.numel() for p in model.parameters())
    assert info["params"] == params, (info["params"], params)
    assert (info["tokens"], info["head_dim"], info["depth"], info["num_classes"]) == (17, 16, 2, 5), info
    assert info["input"]["shape"] == ["batch", 3, 16, 16], info["input"]
    assert abs(info["gmacs_per_image"] - macs_per_image(cfg) / 1e9) < 1e-6, info["gmacs_per_image"]
    assert info["family"] == "vit" and info["output"] == "logits" and info["guessed"] == {}, info
    assert info["fused_mha"] == {"fp16": True, "int8": True, "reasons": "eligible"}, info["fused_mha"]
