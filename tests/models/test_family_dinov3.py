"""DINOv3 loads exactly: timm's ``vit_*_dinov3`` / ``vit_*_dinov3_qkvb`` (Eva with DINOv3 RoPE), Hugging Face's
DINOv3ViTModel (a save_pretrained directory, and its model.safetensors alone) and Meta's original layout give
the defining library's outputs, with RoPE on the patch tokens' Q and K, registers, LayerScale and no
position table.

Small random-initialised models in the real key layouts (no downloads), every weight moved away from its
initial value (LayerScale of 1e-5 or 1.0, unit norms and zero biases would hide a missing one).
"""

import math

import pytest
import torch

import edgevit
from edgevit.errors import CheckpointError, EdgeVitWarning
from edgevit.models import families
from edgevit.models.families import dinov3
from edgevit.models.info import model_family
from edgevit.models.rope import RotaryEmbedding, dinov3_tables
from edgevit.models.vit import ViTConfig, VisionTransformer

from ..conftest import requires_timm, requires_transformers
from .test_families import _load, _maxerr, _randomize

TOL = 1e-5  # fp32 outputs against the library that defines the weights
SMALL = dict(embed_dim=128, depth=2, num_heads=2, img_size=64)  # 4 x 4 patches of 16, 2 heads of 64
LOAD = dict(num_heads=2, img_size=64)  # what a bare state dict cannot tell (no position table to read the size from)
TIMM_LOAD = dict(LOAD, pool="mean")  # timm's layout: its DINOv3 pool the patch mean, LingBot the class token


def _images(n=2, size=64):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(2))


def _check_both_impls(model, x, ref, what):
    for impl in ("sdpa", "math"):
        model.set_attn_impl(impl)
        with torch.no_grad():
            err = _maxerr(model(x), ref)
        assert err <= TOL, f"{what} ({impl} attention): max abs error {err:.3g} > {TOL}"


def _check_dinov3_config(model, pool):
    cfg = model.config
    assert (cfg.rope, cfg.pos_embed, cfg.pool, cfg.reg_tokens, cfg.norm_eps) == ("dinov3", "none", pool, 4, 1e-5), cfg
    assert cfg.init_values is not None, "LayerScale missing"
    assert model.pos_embed is None and not any("pos_embed" in k for k in model.state_dict()), "DINOv3 has no table"
    assert model_family(cfg) == "dinov3"


# ------------------------------------------------------------------------------------------- timm
def _timm(arch, **kw):
    import timm

    return _randomize(timm.create_model(arch, pretrained=False, **{**SMALL, **kw}))


@requires_timm
@pytest.mark.parametrize("num_classes", [0, 5])
@pytest.mark.parametrize("arch", ["vit_small_patch16_dinov3", "vit_small_patch16_dinov3_qkvb"])
def test_timm_dinov3_gives_timm_outputs(tmp_path, arch, num_classes):
    """timm's default for DINOv3 pools the patch mean after the final norm (global_pool 'avg', no fc_norm):
    the headless features and a head's logits both match timm's forward."""
    ref = _timm(arch, num_classes=num_classes)
    assert ref.global_pool == "avg" and ref.rope.__class__.__name__ == "RotaryEmbeddingDinoV3"
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth", **TIMM_LOAD)
    _check_dinov3_config(model, "mean")
    assert model.config.qkv_bias == arch.endswith("_qkvb")
    assert model.output_kind == ("logits" if num_classes else "features")
    x = _images()
    with torch.no_grad():
        expected = ref(x)
    _check_both_impls(model, x, expected, f"timm {arch} num_classes={num_classes}")


@requires_timm
def test_timm_dinov3_class_token_pooling_as_upstream(tmp_path):
    """pool='cls' gives timm's global_pool='token' (upstream DINOv3's class token), from a .safetensors."""
    from safetensors.torch import save_file

    ref = _timm("vit_small_patch16_dinov3_qkvb", num_classes=0, global_pool="token")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = _load(tmp_path / "w.safetensors", pool="cls", **LOAD)
    x = _images()
    with torch.no_grad():
        expected = ref(x)
    _check_both_impls(model, x, expected, "timm DINOv3 global_pool='token'")


@requires_timm
def test_timm_dinov3_head_count_and_size_are_guessed_and_warned(tmp_path):
    ref = _timm("vit_small_patch16_dinov3")
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    with pytest.raises(CheckpointError, match="--pool mean or --pool cls"):  # LingBot-Vision has the same keys
        edgevit.load_model(tmp_path / "timm.pth")
    with pytest.warns(EdgeVitWarning, match="num_heads") as record:
        model = edgevit.load_model(tmp_path / "timm.pth", pool="mean")
    assert model.guessed == {"num_heads": 2, "img_size": 224}, model.guessed
    assert "img_size=224" in str(record[0].message)
    assert model.config.pos_embed == "none", "no table to fall back to: not 'sincos'"


@requires_timm
def test_rope_matters(tmp_path):
    """Without the rotation (or rotating the prefix tokens too) the outputs are far off: the exactness
    checks above would catch a wrong or missing RoPE."""
    ref = _timm("vit_small_patch16_dinov3_qkvb", num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    x = _images()
    with torch.no_grad():
        expected = ref(x)
        model = _load(tmp_path / "timm.pth", **TIMM_LOAD)
        plain = VisionTransformer(model.config.replace(rope="none")).eval()  # the same weights, not rotated
        plain.load_state_dict(model.state_dict())
        assert _maxerr(plain(x), expected) > 1e-3
        sin, cos = dinov3_tables(4, 64, 100.0, num_prefix_tokens=0)
        prefix = 5
        model.rope.sin[:prefix], model.rope.cos[:prefix] = sin[:prefix], cos[:prefix]  # rotate class + registers
        assert _maxerr(model(x), expected) > 1e-3


# ------------------------------------------------------------------------------------ Meta's layout
@requires_timm
def test_metas_layout_loads_with_class_token_features(tmp_path):
    """Meta's checkpoint names (storage_tokens, ls1.gamma, one qkv.bias with a bias_mask zeroing the key's
    third, rope_embed.periods, mask_token), checked through timm's own filter: the features are the class
    token after the final norm, as upstream DINOv3 returns them."""
    from timm.models.eva import checkpoint_filter_fn

    ref = _timm("vit_small_patch16_dinov3_qkvb", num_classes=0, global_pool="token")
    meta = {}
    for key, value in ref.state_dict().items():
        key = key.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        if key.endswith("attn.q_bias"):
            junk = torch.full_like(value, 3.0)  # the mask drops whatever the key's bias holds
            meta[key.replace("q_bias", "qkv.bias")] = torch.cat([value, junk, ref.state_dict()[key[:-6] + "v_bias"]])
            meta[key.replace("q_bias", "qkv.bias_mask")] = torch.cat([torch.ones_like(value), torch.zeros_like(value),
                                                                     torch.ones_like(value)])
        elif not key.endswith("attn.v_bias"):
            meta[key] = value
    meta["mask_token"] = torch.randn(1, 128)
    meta["rope_embed.periods"] = torch.ones(16)
    ref.load_state_dict(checkpoint_filter_fn(dict(meta), ref))  # timm reads it as Meta's layout: the layout is right
    torch.save(meta, tmp_path / "dinov3_vits16_pretrain.pth")
    assert families.recognise(meta) is dinov3
    model = _load(tmp_path / "dinov3_vits16_pretrain.pth", **LOAD)
    _check_dinov3_config(model, "cls")
    x = _images()
    with torch.no_grad():
        expected = ref(x)
    _check_both_impls(model, x, expected, "Meta's DINOv3 layout")


# ------------------------------------------------------------------------------------ transformers
HF_SMALL = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                patch_size=16, num_register_tokens=4)


def _hf(**kw):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    return _randomize(DINOv3ViTModel(DINOv3ViTConfig(**{**HF_SMALL, **kw})))


def _pooler_output(hf, x):
    with torch.no_grad():
        return hf(pixel_values=x).pooler_output


@requires_transformers
@pytest.mark.parametrize("biases", ["default", "none"])
def test_hf_directory_gives_pooler_output(tmp_path, biases):
    """DINOv3ViTModel's save_pretrained directory: pooler_output (class token after the final norm). 'none':
    no query/value, output-projection or MLP biases (the loader supplies zero biases where edgevit's
    Linears have one)."""
    kw = {} if biases == "default" else dict(query_bias=False, value_bias=False, proj_bias=False, mlp_bias=False)
    hf = _hf(**kw)
    hf.save_pretrained(tmp_path / "hf")
    model = _load(tmp_path / "hf")
    _check_dinov3_config(model, "cls")
    assert (model.config.num_heads, model.config.img_size, model.config.num_classes) == (2, 64, 0)
    assert model.config.qkv_bias == (biases == "default")
    assert model.output_kind == "features"
    x = _images()
    _check_both_impls(model, x, _pooler_output(hf, x), f"HF DINOv3ViTModel directory (biases {biases})")


@requires_transformers
def test_hf_bare_safetensors_gives_pooler_output(tmp_path):
    """The directory's model.safetensors alone (no config.json: heads and image size passed)."""
    hf = _hf()
    hf.save_pretrained(tmp_path / "hf")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes((tmp_path / "hf" / "model.safetensors").read_bytes())
    model = _load(weights, **LOAD)
    _check_dinov3_config(model, "cls")
    x = _images()
    _check_both_impls(model, x, _pooler_output(hf, x), "HF DINOv3ViTModel model.safetensors alone")
    # and the in-memory names (transformers 5: model.layer.N)
    assert any(k.startswith("model.layer.") for k in hf.state_dict())
    torch.save(hf.state_dict(), tmp_path / "in_memory.pth")
    model = _load(tmp_path / "in_memory.pth", **LOAD)
    _check_both_impls(model, x, _pooler_output(hf, x), "HF DINOv3ViTModel in-memory state dict")


@requires_transformers
def test_hf_gated_mlp_is_refused_by_name(tmp_path):
    """ViT-H+ / 7B (use_gated_mlp): the loader refuses DINOv3's SwiGLU by name (for now: the mapping is exact,
    see test_swiglu_mapping_is_exact)."""
    hf = _hf(use_gated_mlp=True, hidden_act="silu")
    hf.save_pretrained(tmp_path / "hf")
    with pytest.raises(CheckpointError, match="SwiGLU"):
        edgevit.load_model(tmp_path / "hf")
    torch.save(hf.state_dict(), tmp_path / "gated.pth")
    with pytest.raises(CheckpointError, match="SwiGLU"):
        edgevit.load_model(tmp_path / "gated.pth", **LOAD)
    with pytest.raises(ValueError, match="SiLU gate"):
        dinov3.config_from_hf({**hf.config.to_dict(), "hidden_act": "gelu"})


@requires_timm
@requires_transformers
def test_swiglu_mapping_is_exact():
    """The SwiGLU MLP of ViT-H+ / 7B (timm fc1_g / fc1_x; HF gate_proj / up_proj) maps onto mlp='swiglu' exactly,
    built directly from the family's mapping and config (load_model refuses it for now)."""
    ref = _timm("vit_huge_plus_patch16_dinov3", num_classes=0)
    state, fields = dinov3.to_edgevit(ref.state_dict())
    cfg = ViTConfig(**{**SMALL, **fields}, num_classes=0, reg_tokens=4, init_values=1e-5, mlp="swiglu", pool="mean",
                    mlp_ratio=ref.blocks[0].mlp.fc2.in_features / 128, qkv_bias=False)
    model = VisionTransformer(cfg).eval()
    model.load_state_dict(state)
    x = _images()
    with torch.no_grad():
        expected = ref(x)
    _check_both_impls(model, x, expected, "timm vit_huge_plus_patch16_dinov3 (SwiGLU) mapping")
    hf = _hf(use_gated_mlp=True, hidden_act="silu")
    model = VisionTransformer(dinov3.config_from_hf(hf.config.to_dict())).eval()
    model.load_state_dict(dinov3.to_edgevit(hf.state_dict())[0])
    _check_both_impls(model, x, _pooler_output(hf, x), "HF DINOv3 use_gated_mlp mapping")


# ------------------------------------------------------------------------------------------- RoPE
@requires_timm
@requires_transformers
@pytest.mark.parametrize("grid", [4, 14])
def test_rope_tables_are_timms_and_transformers(grid):
    """The sin / cos tables against timm's RotaryEmbeddingDinoV3 and transformers' DINOv3 RoPE, at eval;
    the prefix tokens' rows are the identity rotation."""
    from timm.layers.pos_embed_sincos import RotaryEmbeddingDinoV3
    from transformers import DINOv3ViTConfig
    from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTRopePositionEmbedding

    head_dim, prefix = 64, 5
    sin, cos = dinov3_tables(grid, head_dim, 100.0, prefix)
    assert sin.shape == cos.shape == (prefix + grid * grid, head_dim) and sin.dtype == torch.float32
    assert torch.equal(sin[:prefix], torch.zeros(prefix, head_dim))
    assert torch.equal(cos[:prefix], torch.ones(prefix, head_dim))
    timm_rope = RotaryEmbeddingDinoV3(head_dim, temperature=100.0, rotate_half=True, feat_shape=[grid, grid]).eval()
    t_sin, t_cos = timm_rope.get_embed().chunk(2, dim=-1)
    hf_rope = DINOv3ViTRopePositionEmbedding(DINOv3ViTConfig(hidden_size=128, num_attention_heads=2,
                                                               image_size=16 * grid, patch_size=16)).eval()
    h_cos, h_sin = hf_rope(torch.zeros(1, 3, 16 * grid, 16 * grid))
    for name, (a, b) in {"timm sin": (sin[prefix:], t_sin), "timm cos": (cos[prefix:], t_cos),
                         "HF sin": (sin[prefix:], h_sin), "HF cos": (cos[prefix:], h_cos)}.items():
        err = _maxerr(a, b)
        assert err <= 1e-5, f"{name}: max abs error {err:.3g}"


def test_rope_is_fixed_by_the_config():
    """No augmentation: the tables depend on the grid, head size and theta only; training mode changes
    nothing (timm and transformers jitter / rescale coordinates only while training, edgevit never)."""
    cfg = ViTConfig(img_size=64, patch_size=16, embed_dim=128, depth=2, num_heads=2, num_classes=0, reg_tokens=4,
                    init_values=1e-5, pos_embed="none", rope="dinov3", pool="mean")
    a, b = VisionTransformer(cfg), VisionTransformer(cfg)
    assert torch.equal(a.rope.sin, b.rope.sin) and torch.equal(a.rope.cos, b.rope.cos)
    assert all(block.attn.rope is a.rope for block in a.blocks), "one table, shared by every block"
    assert not any("rope" in k for k in a.state_dict()), "the tables are not weights"
    x = _images()
    with torch.no_grad():
        eval_out = a.eval()(x)
        train_out = a.train()(x)  # no dropout configured: only an augmentation could change the output
    assert torch.equal(eval_out, train_out)
    sin = dinov3_tables(4, 64, 100.0)[0]
    assert sin.shape == (16, 64)
    # the first patch (row -0.75, column -0.75) at period 1: angle 2*pi*(-0.75)
    assert math.isclose(sin[0, 0].item(), math.sin(2 * math.pi * -0.75), abs_tol=1e-6)
    assert isinstance(a.rope, RotaryEmbedding)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rope="dinov2"), "rope must be one of"),
    (dict(rope="dinov3", pos_embed="sincos"), "no absolute position table"),
    (dict(rope="dinov3", pos_embed="none", embed_dim=120, num_heads=4), "head size divisible by 4"),
    (dict(rope="dinov3", pos_embed="none", rope_theta=0), "rope_theta"),
    (dict(pos_embed="table"), "pos_embed must be one of"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViTConfig(**{"embed_dim": 128, "num_heads": 2, **kwargs})


def test_edgevit_format_round_trip(tmp_path):
    cfg = ViTConfig(img_size=64, patch_size=16, embed_dim=128, depth=2, num_heads=2, num_classes=3, reg_tokens=4,
                    init_values=1e-5, pos_embed="none", rope="dinov3", pool="mean", norm_eps=1e-5)
    model = _randomize(VisionTransformer(cfg))
    edgevit.save_model(model, tmp_path / "m.safetensors")
    back = _load(tmp_path / "m.safetensors")
    assert back.config == cfg
    x = _images()
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


# ------------------------------------------------------------------------------------- recognition
@requires_timm
@pytest.mark.parametrize("arch, kw", [
    ("vit_small_patch14_reg4_dinov2", dict(img_size=56)),  # registers and LayerScale, a position table
    ("vit_small_patch16_rope_224", dict(img_size=64)),  # Eva RoPE (axial), no registers
    ("vit_betwixt_patch16_rope_reg4_gap_256", dict(img_size=64)),  # Eva RoPE with registers, no class token
])
def test_other_families_are_not_dinov3(arch, kw):
    import timm

    state = timm.create_model(arch, pretrained=False, embed_dim=128, depth=1, num_heads=2, **kw).state_dict()
    assert not dinov3.recognise(state), arch


@requires_timm
def test_swiglu_dinov3_is_refused_by_name(tmp_path):
    """ViT-H+ / 7B DINOv3 use a SwiGLU MLP, which edgevit's ViT does not implement."""
    ref = _timm("vit_huge_plus_patch16_dinov3", num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "hplus.pth")
    with pytest.raises(CheckpointError, match="SwiGLU"):
        edgevit.load_model(tmp_path / "hplus.pth", **LOAD)
