import pytest
import torch

import edgevit
from edgevit.models import count_params, get_variant, list_variants, macs_per_image, register
from edgevit.models.vit import ViTConfig, VisionTransformer, sincos_pos_embed

SMALL = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=7)


@pytest.mark.parametrize("name", list_variants())
def test_variant_shapes(name):
    cfg = get_variant(name).config
    # Keep the big ones cheap: shrink depth, keep every shape that matters (tokens, dim, heads).
    model = edgevit.create_model(name, depth=1).eval()
    x = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        out = model(x)
    width = cfg.num_classes or cfg.feature_dim  # headless: the features
    assert out.shape == (2, width), f"{name}: {model.output_kind} {tuple(out.shape)}"
    assert model.pos_embed.shape == (1, cfg.pos_embed_len, cfg.embed_dim)
    assert model.forward_tokens(x).shape == (2, cfg.num_patches, cfg.embed_dim)


def test_param_count_matches_known_vit_base():
    model = VisionTransformer(get_variant("vit_base_patch16_224").config)
    assert count_params(model) == 86_567_656, count_params(model)  # timm's vit_base_patch16_224
    gmacs = macs_per_image(model.config) / 1e9
    assert abs(gmacs - 17.56) < 0.05, gmacs  # timm/fvcore report 17.6 GMACs


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("pos", ["learned", "sincos"])
def test_sdpa_and_math_attention_agree(pool, pos):
    model = VisionTransformer(ViTConfig(**SMALL, pool=pool, pos_embed=pos)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        sdpa = model(x)
        math = model.set_attn_impl("math")(x)
    err = (sdpa - math).abs().max().item()
    assert err <= 1e-5, f"sdpa vs math max abs error {err:.3e} > 1e-5"
    assert all(b.attn.attn_impl == "math" for b in model.blocks)
    assert model.config.attn_impl == "math"


def test_set_attn_impl_rejects_unknown():
    model = VisionTransformer(ViTConfig(**SMALL))
    with pytest.raises(ValueError, match="sdpa"):
        model.set_attn_impl("flash")


def test_sincos_is_deterministic_and_distinct_per_position():
    a = sincos_pos_embed(64, 4)
    b = sincos_pos_embed(64, 4)
    assert torch.equal(a, b)
    assert a.shape == (1, 17, 64)
    assert torch.count_nonzero(a[0, 0]) == 0, "class token row should be zeros"
    patches = a[0, 1:]
    dists = torch.cdist(patches, patches)
    off_diag = dists[~torch.eye(16, dtype=torch.bool)]
    assert off_diag.min() > 1e-3, f"two positions share an encoding (min distance {off_diag.min():.2e})"
    # sincos is a buffer, not a parameter: it is not trained and not saved
    model = VisionTransformer(ViTConfig(**SMALL, pos_embed="sincos"))
    assert "pos_embed" not in model.state_dict()
    assert torch.equal(model.pos_embed, sincos_pos_embed(64, 4))


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(embed_dim=65), "divisible by num_heads"),
        (dict(img_size=30), "divisible by patch_size"),
        (dict(attn_impl="flash"), r"\['sdpa', 'math'\]"),
        (dict(act="swish"), "gelu"),
        (dict(pos_embed="rope"), "learned"),
        (dict(pool="max"), "cls"),
        (dict(depth=0), "positive integer"),
        (dict(drop_rate=1.5), r"\[0, 1\)"),
    ],
)
def test_config_validation_names_allowed_values(fields, match):
    with pytest.raises(ValueError, match=match):
        ViTConfig(**{**SMALL, **fields})


def test_registry_refuses_duplicates_and_unknown():
    variant = get_variant("digits-tiny")
    with pytest.raises(ValueError, match="already registered"):
        register("digits-tiny", variant.config, variant.preprocessing)
    with pytest.raises(ValueError, match="known variants"):
        get_variant("vit_huge_patch99")


def test_digits_tiny_matches_the_spec():
    c = get_variant("digits-tiny").config
    assert (c.in_chans, c.img_size, c.patch_size, c.embed_dim, c.depth, c.num_heads, c.num_classes) == (
        1, 8, 2, 64, 4, 4, 10)


def test_relu_activation_and_wrong_input_shape():
    model = VisionTransformer(ViTConfig(**SMALL, act="relu")).eval()
    assert isinstance(model.blocks[0].mlp.act, torch.nn.ReLU)
    with pytest.raises(ValueError, match=r"\(batch, 3, 32, 32\)"):
        model(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize("family", [dict(), dict(pool="cls_mean", init_values=1e-5),
                                    dict(distilled=True, pool="cls_dist"), dict(pre_norm=True, proj_dim=16)])
def test_reset_classifier_gives_a_head_on_the_features_or_none(family):
    model = VisionTransformer(ViTConfig(**{**SMALL, "num_classes": 0}, **family)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model(x)
        model.reset_classifier(5)
        logits = model(x)
        assert (model.output_kind, logits.shape) == ("logits", (2, 5))
        assert (model.head_dist is None) == (model.config.pool != "cls_dist"), "DeiT distilled: two heads"
        assert torch.equal(model.forward_head(model.forward_features(x), pre_logits=True), features)
        assert model.reset_classifier(0).output_kind == "features" and torch.equal(model(x), features)


@pytest.mark.parametrize("fields,words", [
    (dict(class_token=False), "reads the class token"),
    (dict(pool="cls_dist"), "needs a distillation token"),
    (dict(distilled=True, pool="mean"), "distilled model pools"),
    (dict(pool="map", fc_norm=True), "fc_norm must be False"),
    (dict(reg_tokens=-1), "reg_tokens must be a non-negative integer"),
    (dict(act="swiglu"), "quick_gelu"),
])
def test_family_fields_that_contradict_each_other_are_refused(fields, words):
    with pytest.raises(ValueError, match=words):
        ViTConfig(**{**SMALL, **fields})


def test_prefix_tokens_count_in_the_sequence():
    cfg = ViTConfig(**{**SMALL, "num_classes": 0}, distilled=True, pool="cls_dist", reg_tokens=4, no_embed_class=True)
    model = VisionTransformer(cfg)
    assert (cfg.num_prefix_tokens, cfg.num_tokens, cfg.pos_embed_len) == (6, 16 + 6, 16)
    assert model.num_prefix_tokens == 6 and model.output_kind == "features"
