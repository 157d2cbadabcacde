"""`edgevit models` / `edgevit info` name the family a model belongs to, what it outputs (logits
or features) and its tokens (patches plus class / distillation / register tokens)."""

import json

import pytest
from click.testing import CliRunner

import edgevit
from edgevit.cli import main
from edgevit.models.info import model_family
from edgevit.models.vit import ViTConfig, VisionTransformer

from .._fixtures import rich_table

TINY = dict(img_size=28, patch_size=14, embed_dim=64, depth=1, num_heads=2)


@pytest.mark.parametrize("fields, family", [
    ({}, "vit"),
    ({"distilled": True, "pool": "cls_dist"}, "deit-distilled"),
    ({"class_token": False, "pool": "map"}, "siglip"),
    ({"pre_norm": True, "act": "quick_gelu", "proj_dim": 32, "num_classes": 0}, "clip"),
    ({"pre_norm": True}, "clip"),
    ({"class_token": False, "pool": "mean", "fc_norm": True}, "gap"),
    ({"init_values": 1e-5, "num_classes": 0}, "dinov2"),
    ({"init_values": 1e-5, "reg_tokens": 4, "no_embed_class": True, "num_classes": 0}, "dinov2"),
    ({"init_values": 1e-5, "patch_size": 7}, "vit"),  # LayerScale alone (DeiT-III): a plain ViT
])
def test_family_from_the_config(fields, family):
    assert model_family(ViTConfig(**{**TINY, **fields})) == family


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0 and res.exception is None, (res.exit_code, res.output)
    return res


def test_info_shows_family_output_and_prefix_tokens(tmp_path):
    cfg = ViTConfig(**TINY, num_classes=0, reg_tokens=4, no_embed_class=True, init_values=1e-5)
    path = edgevit.save_model(VisionTransformer(cfg), tmp_path / "dinov2-like.safetensors")
    info = json.loads(_run("info", path, "--json").stdout)
    # 2x2 patches + class token + 4 registers
    assert (info["family"], info["output"], info["tokens"], info["prefix_tokens"], info["num_classes"]) == \
        ("dinov2", "features", 9, 5, 0), info
    rows = dict((r[0], r[1]) for r in rich_table(_run("info", path).stdout, "field") if len(r) == 2)
    assert (rows["family"], rows["output"], rows["tokens"], rows["prefix_tokens"]) == ("dinov2", "features", "9", "5")


def test_models_lists_family_tokens_and_output():
    data = json.loads(_run("models", "--json").stdout)
    digits = next(v for v in data if v["name"] == "digits-tiny")
    assert (digits["family"], digits["tokens"], digits["output"]) == ("vit", 17, "logits"), digits
    rows = {r[0]: r for r in rich_table(_run("models").stdout, "name")}
    assert rows["digits-tiny"][1] == "vit" and "17" in rows["digits-tiny"] and "logits" in rows["digits-tiny"]
