"""SAM's ViT image encoder loads exactly: the same weights give timm's / transformers' outputs.

Small random encoders in the real key layouts (timm samvit, Meta's original, transformers SamVisionModel
and SamModel), every weight moved off its initial value and the relative position tables scaled up, so a
bias that is missing, transposed or read from the wrong window moves the outputs far beyond TOL. The
configurations cover a grid padded to whole windows, a window as large as the grid, global blocks first,
in the middle and none.
"""

import json
import warnings
from functools import partial

import pytest
import torch

import edgevit
from edgevit.errors import CheckpointError, EdgeVitWarning
from edgevit.models import sam_parts

from ..conftest import requires_timm, requires_transformers
from .test_families import _randomize

TOL = 1e-5
# (img_size, window_size, global blocks): an 8x8 grid in 3x3 windows (padded to 9x9), a 6x6 grid in one window,
# a 4x4 grid in 3x3 windows with global blocks first and last
CASES = [(128, 3, (1,)), (96, 6, ()), (64, 3, (0, 2))]
SMALL = dict(embed_dim=64, depth=3, num_heads=4, neck_chans=32)


def _maxerr(a, b) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


def _strong_tables(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos_" in name:
                p.mul_(20.0)
    return model


def _timm(img, window, blocks, eps=None, **kw):
    import timm

    extra = {"norm_layer": partial(torch.nn.LayerNorm, eps=eps)} if eps else {}
    model = timm.create_model("samvit_base_patch16", pretrained=False, img_size=img, window_size=window,
                              global_attn_indexes=blocks, **{**SMALL, **kw}, **extra)
    return _strong_tables(_randomize(model))


def _tokens(nchw: torch.Tensor) -> torch.Tensor:
    return nchw.flatten(2).transpose(1, 2)


def _load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeVitWarning)  # the shapes tell everything: nothing is guessed
        return edgevit.load_model(path, **kw)


@pytest.mark.parametrize("grid,window", [((8, 8), 3), ((6, 6), 6), ((4, 3), 3), ((5, 9), 2), ((7, 7), 7)])
def test_partition_then_unpartition_is_the_identity(grid, window):
    x = torch.randn(2, grid[0] * grid[1], 5)
    windows = sam_parts.partition(x, grid, window)
    count = -(-grid[0] // window) * -(-grid[1] // window)
    assert windows.shape == (2 * count, window * window, 5), f"windows {tuple(windows.shape)}"
    assert torch.equal(sam_parts.unpartition(windows, grid, window), x)


@requires_timm
@pytest.mark.parametrize("img,window,blocks", CASES)
@pytest.mark.parametrize("classes", [0, 5])
def test_timm_samvit_loads_exactly(tmp_path, img, window, blocks, classes):
    ref = _timm(img, window, blocks, num_classes=classes)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    model = _load(tmp_path / "w.pth")
    cfg = model.config
    # a window as large as the grid is global attention: the tables cannot tell the two apart, nor need to
    expected = (0, ()) if window == img // 16 else (window, blocks)
    assert (cfg.window_size, cfg.global_blocks, cfg.num_heads, cfg.neck_dim, cfg.img_size) == (*expected, 4, 32, img), cfg
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        for impl in ("sdpa", "math"):
            model.set_attn_impl(impl)
            out, tokens = _maxerr(ref(x), model(x)), _maxerr(_tokens(ref.forward_features(x)), model.forward_tokens(x))
            assert out <= TOL and tokens <= TOL, f"{impl}: output {out:.2e}, tokens {tokens:.2e} (tol {TOL})"


@requires_timm
def test_the_tables_matter(tmp_path):
    """A model without its relative position tables is far off: the test above could fail."""
    ref = _timm(128, 3, (1,), num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    model = _load(tmp_path / "w.pth")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos_" in name:
                p.zero_()
        x = torch.randn(2, 3, 128, 128)
        err = _maxerr(_tokens(ref.forward_features(x)), model.forward_tokens(x))
    assert err > 100 * TOL, f"zeroed tables moved the tokens by only {err:.2e}"


@requires_timm
def test_metas_original_checkpoint_loads_its_image_encoder(tmp_path):
    ref = _timm(128, 3, (1,), eps=1e-6, num_classes=0)
    state = {"image_encoder." + k.replace("mlp.fc", "mlp.lin"): v for k, v in ref.state_dict().items()}
    state.update({"prompt_encoder.point_embeddings.0.weight": torch.zeros(1, 32),
                  "mask_decoder.iou_token.weight": torch.zeros(1, 32)})
    torch.save(state, tmp_path / "sam_vit_tiny.pth")
    with pytest.warns(EdgeVitWarning, match="mask_decoder, prompt_encoder"):
        model = edgevit.load_model(tmp_path / "sam_vit_tiny.pth")
    assert model.config.norm_eps == 1e-6, model.config.norm_eps
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        err = _maxerr(_tokens(ref.forward_features(x)), model.forward_tokens(x))
    assert err <= TOL, f"Meta layout: max abs error {err:.2e}"


def _hf_vision(img=128, window=3, blocks=(1,)):
    import transformers

    config = transformers.SamVisionConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                          image_size=img, patch_size=16, window_size=window,
                                          global_attn_indexes=list(blocks), output_channels=32, mlp_dim=96)
    return config, _strong_tables(_randomize(transformers.SamVisionModel(config)))


@requires_transformers
@pytest.mark.parametrize("img,window,blocks", CASES)
def test_transformers_sam_vision_model_loads_exactly(tmp_path, img, window, blocks):
    _, ref = _hf_vision(img, window, blocks)
    ref.save_pretrained(tmp_path / "hf")
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        want = _tokens(ref(pixel_values=x).last_hidden_state)
        for path in (tmp_path / "hf", tmp_path / "hf" / "model.safetensors"):
            model = _load(path)
            assert model.config.mlp_hidden == 96, model.config
            err = _maxerr(want, model.forward_tokens(x))
            assert err <= TOL, f"{path.name}: max abs error {err:.2e}"


@requires_transformers
def test_transformers_sam_model_loads_its_vision_encoder(tmp_path):
    import transformers

    vision, ref = _hf_vision()
    whole = transformers.SamModel(transformers.SamConfig(vision_config=vision.to_dict()))
    whole.vision_encoder.load_state_dict(ref.vision_encoder.state_dict())
    whole.save_pretrained(tmp_path)
    with pytest.warns(EdgeVitWarning, match="prompt_encoder"):
        model = edgevit.load_model(tmp_path)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        err = _maxerr(_tokens(ref(pixel_values=x).last_hidden_state), model.forward_tokens(x))
    assert err <= TOL, f"SamModel: max abs error {err:.2e}"


@requires_timm
@pytest.mark.parametrize("size", [96, 160, 224])
def test_another_image_size_gives_timms_samvit_at_that_size(tmp_path, size):
    """Before: refused. timm's samvit takes another size at run time: the position grid resampled (bicubic,
    antialias) and the global blocks' tables interpolated (get_rel_pos); edgevit does both at load."""
    ref = _timm(128, 3, (1,), num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    model = _load(tmp_path / "w.pth", img_size=size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        err = _maxerr(_tokens(ref.forward_features(x)), model.forward_tokens(x))
    assert err <= TOL, f"at {size} px: max abs error vs timm {err:.2e}"


@requires_timm
def test_sam_without_neck_is_refused_by_name(tmp_path):
    import timm

    state = timm.create_model("samvit_base_patch16_224", pretrained=False, img_size=64, depth=1,
                              embed_dim=64, num_heads=4).state_dict()
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="SAM's image encoder with a position table of none"):
        edgevit.load_model(tmp_path / "w.pth")


def test_a_sam_config_json_with_relative_positions_off_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam_vision_model", "use_rel_pos": False}))
    with pytest.raises(CheckpointError, match="use_rel_pos"):
        edgevit.load_model(tmp_path)


@requires_timm
def test_sam_preprocessing_is_samvits_whole_image(tmp_path):
    """SAM resizes the whole image (no center crop) and normalises with ImageNet's statistics, as timm's samvit."""
    ref = _timm(128, 3, (1,), num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    pre = _load(tmp_path / "w.pth").preprocessing
    want = ref.pretrained_cfg  # samvit_base_patch16.sa1b
    got = (*pre.mean, *pre.std, pre.crop_pct)
    assert got == pytest.approx((*want["mean"], *want["std"], want["crop_pct"])), (pre, want)


@requires_timm
def test_a_classifier_whose_neck_is_twice_the_width_loads(tmp_path):
    """Before: a head twice as wide as the blocks read as DINOv2's [class token, patch mean] head (cls_mean),
    refused for want of a class token; SAM's head reads the neck's mean."""
    ref = _timm(128, 3, (1,), num_classes=5, embed_dim=32, num_heads=2, neck_chans=64)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    model = _load(tmp_path / "w.pth")
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"max abs error {err:.2e}"


# ------------------------------------------------------------------------ found by a hostile-user pass
@requires_transformers
def test_a_transformers_sam_directory_gets_sams_preprocessing(tmp_path):
    """Before: save_pretrained writes no preprocessor_config.json and the directory got Inception's 0.5 / 0.5, the
    bare file SAM's ImageNet statistics."""
    _, ref = _hf_vision()
    ref.save_pretrained(tmp_path)
    pre = _load(tmp_path).preprocessing
    got = (*pre.mean, *pre.std, pre.crop_pct)
    assert got == pytest.approx((0.485, 0.456, 0.406, 0.229, 0.224, 0.225, 1.0)), pre


@requires_timm
@pytest.mark.parametrize("option,fixed", [({"act": "relu"}, "act='gelu'"), ({"num_heads": 8}, "num_heads=4")])
def test_options_that_contradict_what_sams_weights_fix_are_refused(tmp_path, option, fixed):
    """Before: --act relu loaded SAM with another activation (tokens off by 0.5) without a word; --num-heads 8 failed
    with a list of shape mismatches."""
    torch.save(_timm(128, 3, (1,), num_classes=0).state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="contradicts") as err:
        edgevit.load_model(tmp_path / "w.pth", **option)
    assert fixed in str(err.value), str(err.value)


@requires_transformers
def test_an_activation_option_cannot_override_config_json(tmp_path):
    _, ref = _hf_vision()
    ref.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="config.json"):
        edgevit.load_model(tmp_path, act="relu")


@requires_transformers
@pytest.mark.parametrize("change,named", [({"window_size": 0}, "window_size"),
                                          ({"global_attn_indexes": [0, 2]}, "global_attn_indexes"),
                                          ({"num_attention_heads": 8}, "num_attention_heads")])
def test_a_config_json_that_contradicts_the_tables_is_named(tmp_path, change, named):
    """Before: "block 0's tables belong to a 3x3 grid ... load it at img_size 48", advice that then failed."""
    _, ref = _hf_vision()
    ref.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=f"contradicts the weights.*{named}"):
        edgevit.load_model(tmp_path)


@requires_timm
def test_sam_without_relative_positions_is_refused_by_name(tmp_path):
    """Before: "pos_embed holds 8 patch positions, not a square grid" (the table is a square 8x8 grid)."""
    torch.save(_timm(128, 3, (1,), num_classes=0, use_rel_pos=False).state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="without decomposed relative positions"):
        edgevit.load_model(tmp_path / "w.pth")


@requires_timm
def test_a_missing_table_is_named(tmp_path):
    state = _timm(128, 3, (1,), num_classes=0).state_dict()
    del state["blocks.0.attn.rel_pos_h"]
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="blocks.0.attn.rel_pos_w has no blocks.0.attn.rel_pos_h"):
        edgevit.load_model(tmp_path / "w.pth")
