"""EVA-02 (timm's eva02_*: Eva layout, SwiGLU, EVA-02 RoPE) loads exactly: timm's outputs and rope tables."""

import warnings

import pytest
import torch

import edgevit
from edgevit.errors import EdgeVitWarning
from edgevit.models import families
from edgevit.models.families import eva02

from ..conftest import requires_timm
from .test_families import _maxerr, _randomize

TOL = 1e-5
SMALL = dict(embed_dim=128, depth=2, num_heads=2)
# name -> (timm architecture, img_size, expected mlp, attn_norm, pool)
ARCHS = {
    "tiny": ("eva02_tiny_patch14_224", 56, "swiglu_packed", False, "mean"),
    "small": ("eva02_small_patch14_224", 56, "swiglu_packed", False, "mean"),
    "base": ("eva02_base_patch14_224", 56, "swiglu", False, "mean"),
    "clip": ("eva02_base_patch16_clip_224", 64, "swiglu", True, "cls"),
}


def _timm(arch: str, size: int, num_classes: int):
    import timm

    return _randomize(timm.create_model(arch, pretrained=False, img_size=size, num_classes=num_classes, **SMALL))


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeVitWarning)  # nothing may be guessed
        return edgevit.load_model(path, num_heads=2)


@requires_timm
@pytest.mark.parametrize("num_classes", [0, 5])
@pytest.mark.parametrize("case", sorted(ARCHS))
def test_eva02_gives_timm_outputs(tmp_path, case, num_classes):
    arch, size, mlp, attn_norm, pool = ARCHS[case]
    ref = _timm(arch, size, num_classes)
    state = ref.state_dict()
    assert families.recognise(state) is eva02, f"{arch}: not recognised as EVA-02"
    torch.save(state, tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth")
    cfg = model.config
    assert (cfg.rope, cfg.mlp, cfg.attn_norm, cfg.pool) == ("eva", mlp, attn_norm, pool), cfg
    x = torch.randn(2, 3, size, size)
    errs = {}
    with torch.no_grad():
        expected = ref(x)
        tokens = ref.forward_features(x)[:, ref.num_prefix_tokens:]
        for impl in ("sdpa", "math"):
            model.set_attn_impl(impl)
            errs[impl] = _maxerr(expected, model(x))
            errs[f"{impl}-tokens"] = _maxerr(tokens, model.forward_tokens(x))
    assert max(errs.values()) <= TOL, f"{case} ({arch}, num_classes={num_classes}): max abs error vs timm {errs}"


@requires_timm
@pytest.mark.parametrize("case", ["tiny", "clip"])
def test_eva02_rope_tables_match_timm(tmp_path, case):
    arch, size, *_ = ARCHS[case]
    ref = _timm(arch, size, 0)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth")
    sin, cos = ref.rope.get_embed().chunk(2, dim=-1)
    prefix = model.num_prefix_tokens
    errs = {"sin": _maxerr(sin, model.rope.sin[prefix:]), "cos": _maxerr(cos, model.rope.cos[prefix:])}
    assert max(errs.values()) <= TOL, f"{arch}: rope tables vs timm's get_embed() {errs}"
    assert torch.equal(model.rope.sin[:prefix], torch.zeros_like(model.rope.sin[:prefix]))
    assert torch.equal(model.rope.cos[:prefix], torch.ones_like(model.rope.cos[:prefix]))


@requires_timm
def test_eva02_rope_matters(tmp_path):
    arch, size, *_ = ARCHS["tiny"]
    ref = _timm(arch, size, 0)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth")
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = ref(x)
        for block in model.blocks:
            block.attn.rope = None
        err = _maxerr(expected, model(x))
    assert err > 1e-3, f"without its RoPE the model still matches timm (max abs error {err:.2e}): RoPE untested"


@requires_timm
def test_other_eva_families_keep_their_own():
    import timm

    for arch, family in [("vit_small_patch14_dinov2", None), ("beit_base_patch16_224", "beit"),
                         ("vit_small_patch16_dinov3", "dinov3"), ("eva02_tiny_patch14_224", "eva02"),
                         ("vit_small_patch16_rope_224", None)]:
        state = timm.create_model(arch, pretrained=False, img_size=64 if "14" not in arch else 56, num_classes=0,
                                  depth=1, embed_dim=128, num_heads=2).state_dict()
        found = families.recognise(state)
        assert (found.NAME if found else None) == family, f"{arch}: recognised as {found and found.NAME}"


def test_eva02_has_no_hf_config():
    assert eva02.HF_MODEL_TYPES == ()
    with pytest.raises(ValueError, match="EVA-02"):
        eva02.config_from_hf({})


@requires_timm
def test_a_bare_eva02_file_gets_timms_eva02_preprocessing(tmp_path):
    """Before: ImageNet's mean and std (timm's eva02_* normalise with OpenAI CLIP's statistics)."""
    ref = _timm("eva02_tiny_patch14_224", 56, 0)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    pre, want = _load(tmp_path / "w.pth").preprocessing, ref.pretrained_cfg
    got = (*pre.mean, *pre.std, pre.crop_pct)
    assert got == pytest.approx((*want["mean"], *want["std"], want["crop_pct"])), (pre, want)
    assert pre.interpolation == want["interpolation"], (pre, want)
