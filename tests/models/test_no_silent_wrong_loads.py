"""Checkpoints that used to load without a word and give other outputs than the library that wrote
them (issue 20 §1). Each is now exact, or refused naming the option that decides, or warned about
naming every guess. The "wrong" side of each test measures how far the other reading is, so the
test shows that the option matters (a refusal of two layouts that gave the same outputs would be
pointless)."""

import warnings

import pytest
import torch

import edgevit
from edgevit.errors import CheckpointError, EdgeVitWarning

from .._fixtures import assert_exit, run_cli
from ..conftest import requires_timm, requires_transformers
from .test_families import TOL, _maxerr, _randomize, _timm_model

# Two readings of the same weights that are different architectures differ by far more than float
# error: the randomized weights move every branch by O(0.1..1) (a same-architecture reload is <= TOL).
DIFFERENT = 1e-2


def _exact(path, ref, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeVitWarning)
        model = edgevit.load_model(path, **kw)
    with torch.no_grad():
        return _maxerr(ref(x), model(x))


@requires_timm
def test_res_post_norm_vit_is_refused_naming_the_option_then_exact(tmp_path):
    ref = _timm_model("vit_base_patch16_rpn_224", img_size=64, num_classes=5)
    torch.save(ref.state_dict(), tmp_path / "rpn.pth")
    res = run_cli("info", str(tmp_path / "rpn.pth"), "--num-heads", "2")
    assert_exit(res, 1)
    assert "--post-norm or --no-post-norm" in res.stderr and "vit_base_patch16_rpn_224" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    x = torch.randn(2, 3, 64, 64)
    right = _exact(tmp_path / "rpn.pth", ref, x, num_heads=2, post_norm=True)
    wrong = _exact(tmp_path / "rpn.pth", ref, x, num_heads=2, post_norm=False)
    assert right <= TOL < DIFFERENT < wrong, f"post-norm {right:.2e} (<= {TOL}), pre-norm reading {wrong:.2e}"
    res = run_cli("info", str(tmp_path / "rpn.pth"), "--num-heads", "2", "--post-norm")
    assert_exit(res, 0)


@requires_timm
def test_attention_pool_over_registers_is_refused_then_exact_either_way(tmp_path):
    """test_vit3 pools its register token too, so150m's map ViT does not: the same keys."""
    x = torch.randn(2, 3, 64, 64)
    for arch, include in (("test_vit3", True), ("vit_so150m_patch16_reg4_map_256", False)):
        ref = _timm_model(arch, img_size=64, num_classes=0)
        path = tmp_path / f"{arch}.pth"
        torch.save(ref.state_dict(), path)
        with pytest.raises(CheckpointError, match="--pool-include-prefix or --pool-patches-only"):
            edgevit.load_model(path, num_heads=2, act="gelu")
        right = _exact(path, ref, x, num_heads=2, act="gelu", pool_include_prefix=include)
        wrong = _exact(path, ref, x, num_heads=2, act="gelu", pool_include_prefix=not include)
        assert right <= TOL < DIFFERENT < wrong, f"{arch}: {right:.2e} as trained, {wrong:.2e} the other way"


@requires_timm
def test_perception_encoder_core_is_refused_naming_it(tmp_path):
    ref = _timm_model("vit_pe_core_small_patch16_384", img_size=64, num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "pe.pth")
    res = run_cli("info", str(tmp_path / "pe.pth"), "--num-heads", "2", "--act", "gelu")
    assert_exit(res, 1)
    assert "Perception Encoder" in res.stderr and "Traceback" not in res.stderr, res.stderr


@requires_timm
def test_siglip2_tower_warning_names_every_guess_and_gelu_tanh(tmp_path):
    ref = _timm_model("vit_base_patch16_siglip_224", img_size=64, num_classes=0, act_layer="gelu_tanh")
    torch.save(ref.state_dict(), tmp_path / "siglip2.pth")
    with pytest.warns(EdgeVitWarning) as record:
        guessed = edgevit.load_model(tmp_path / "siglip2.pth")
    text = " ".join(str(w.message) for w in record)
    assert guessed.guessed.keys() == {"num_heads", "act"}, guessed.guessed
    assert "gelu_tanh" in text and "num_heads" in text and "--act" in text, text
    x = torch.randn(2, 3, 64, 64)
    right = _exact(tmp_path / "siglip2.pth", ref, x, num_heads=2, act="gelu_tanh")
    assert right <= TOL, f"SigLIP2 tower with act='gelu_tanh': {right:.2e} > {TOL}"


# ------------------------------------------------------------------- bare transformers safetensors
def _bare(tmp_path, model):
    """The model.safetensors of ``model.save_pretrained`` alone, as users pass it (no config.json)."""
    model.save_pretrained(tmp_path / "hf")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "weights.safetensors").write_bytes((tmp_path / "hf" / "model.safetensors").read_bytes())
    return bare / "weights.safetensors"


@requires_transformers
def test_bare_siglip_classifier_uses_the_mean_pool_its_classifier_reads(tmp_path):
    import transformers

    vision = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=320, image_size=64,
                  patch_size=16)
    config = transformers.SiglipConfig(vision_config=vision, text_config=dict(hidden_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=128), num_labels=5)
    ref = _randomize(transformers.SiglipForImageClassification(config))
    path = _bare(tmp_path, ref)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(pixel_values=x).logits
    with pytest.warns(EdgeVitWarning, match="attention-pool head"):
        model = edgevit.load_model(path, num_heads=2, act="gelu_tanh")
    with torch.no_grad():
        err = _maxerr(want, model(x))
    assert model.config.pool == "mean" and err <= TOL, f"bare SiglipForImageClassification: {err:.2e} > {TOL}"
    # the directory: its config.json (model_type siglip) names the classifier, so it loads as itself
    with pytest.warns(EdgeVitWarning, match="attention-pool head"):
        model = edgevit.load_model(tmp_path / "hf")
    with torch.no_grad():
        err = _maxerr(want, model(x))
    assert err <= TOL and model.labels and len(model.labels) == 5, f"directory: {err:.2e} > {TOL}"


@requires_transformers
def test_bare_deit_model_returns_the_class_token_as_transformers_does(tmp_path):
    import transformers

    config = transformers.DeiTConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=320, image_size=64, patch_size=16)
    ref = _randomize(transformers.DeiTModel(config))
    path = _bare(tmp_path, ref)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(pixel_values=x).last_hidden_state[:, 0]
    with pytest.warns(EdgeVitWarning, match="pooler"):
        model = edgevit.load_model(path, num_heads=2)
    with torch.no_grad():
        err = _maxerr(want, model(x))
    assert model.config.pool == "cls" and err <= TOL, f"bare DeiTModel: pool {model.config.pool}, {err:.2e} > {TOL}"


@requires_transformers
@pytest.mark.parametrize("cls_name,config_name,named", [
    ("Siglip2VisionModel", "Siglip2VisionConfig", "SigLIP2"),
    ("CLIPForImageClassification", "CLIPConfig", "CLIPForImageClassification"),
])
def test_bare_layouts_edgevit_cannot_load_are_refused_naming_them(tmp_path, cls_name, config_name, named):
    import transformers

    vision = dict(hidden_size=128, num_hidden_layers=1, num_attention_heads=2, intermediate_size=320, patch_size=16)
    if config_name == "CLIPConfig":
        config = transformers.CLIPConfig(vision_config={**vision, "image_size": 64}, num_labels=3,
                                         text_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=128))
    else:
        config = getattr(transformers, config_name)(**vision)
    path = _bare(tmp_path, getattr(transformers, cls_name)(config))
    res = run_cli("info", str(path))
    assert_exit(res, 1)
    assert named in res.stderr and "Traceback" not in res.stderr, res.stderr


@requires_timm
def test_eva_layout_asks_whether_it_rotates_then_eva01_is_exact(tmp_path):
    """timm's Eva blocks never store their RoPE: EVA-01 (none) and EVA-02 / vit_*_rope_* (RoPE) look alike."""
    ref = _timm_model("eva_giant_patch14_224", img_size=56, num_classes=5, mlp_ratio=4.0)
    torch.save(ref.state_dict(), tmp_path / "eva01.pth")
    res = run_cli("info", str(tmp_path / "eva01.pth"), "--num-heads", "2")
    assert_exit(res, 1)
    assert "--rope none" in res.stderr and "EVA-01" in res.stderr and "Traceback" not in res.stderr, res.stderr
    x = torch.randn(2, 3, 56, 56)
    err = _exact(tmp_path / "eva01.pth", ref, x, num_heads=2, rope="none")
    assert err <= TOL, f"EVA-01 layout with --rope none: max abs error vs timm {err:.2e} > {TOL}"
    res = run_cli("info", str(tmp_path / "eva01.pth"), "--num-heads", "2", "--rope", "none")
    assert_exit(res, 0)


@requires_timm
@pytest.mark.parametrize("arch,kw,option", [
    ("vit_small_patch16_224", {"rope": "dinov3"}, "rope='dinov3'"),  # RoPE on a plain ViT
    ("vit_small_patch16_224", {"post_norm": True}, "post_norm=True"),  # nothing asked: no post-norm to choose
    ("vit_base_patch16_clip_224", {"rope": "dinov3", "act": "gelu"}, "rope='dinov3'"),
])
def test_an_answer_to_a_question_the_weights_do_not_leave_open_is_refused(tmp_path, arch, kw, option):
    ref = _timm_model(arch, img_size=64, num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="do not leave open") as err:
        edgevit.load_model(tmp_path / "w.pth", num_heads=2, **kw)
    assert option in str(err.value), str(err.value)


@requires_timm
def test_timms_rope_vits_are_refused_even_with_rope_none(tmp_path):
    """vit_*_rope_* keep LayerScale in the Eva layout (EVA-01 has none): their RoPE is not implemented."""
    ref = _timm_model("vit_small_patch16_rope_224", img_size=64, num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "rope.pth")
    with pytest.raises(CheckpointError, match="RoPE ViTs in the Eva layout"):
        edgevit.load_model(tmp_path / "rope.pth", num_heads=2, rope="none")


@requires_transformers
def test_hf_directory_options_that_contradict_its_config_are_refused(tmp_path):
    import transformers

    ref = _randomize(transformers.ViTModel(transformers.ViTConfig(hidden_size=128, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=320, image_size=64, patch_size=16)))
    ref.save_pretrained(tmp_path / "hf")
    res = run_cli("info", str(tmp_path / "hf"), "--post-norm")
    assert_exit(res, 1)
    assert "post_norm=True" in res.stderr and "do not leave open" in res.stderr, res.stderr
    clip = transformers.CLIPConfig(vision_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=128, image_size=32, patch_size=16), num_labels=3,
                                   text_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                                    intermediate_size=128))
    transformers.CLIPForImageClassification(clip).save_pretrained(tmp_path / "clipcls")
    res = run_cli("info", str(tmp_path / "clipcls"))
    assert_exit(res, 1)
    assert "CLIPForImageClassification" in res.stderr and "mean of the patch tokens" in res.stderr, res.stderr


@requires_timm
def test_verify_loads_the_exports_checkpoint_with_the_options_the_export_recorded(tmp_path):
    """An export with --num-heads (a head count the dim/64 guess gets wrong) verifies against its own
    checkpoint without repeating the option; another checkpoint gets no such help."""
    import timm

    ref = _randomize(timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, embed_dim=64,
                                       depth=1, num_heads=4, num_classes=3))
    torch.save(ref.state_dict(), tmp_path / "vit.pth")
    res = run_cli("export", str(tmp_path / "vit.pth"), "-o", str(tmp_path / "out"), "--num-heads", "4")
    assert_exit(res, 0)
    res = run_cli("verify", str(tmp_path / "vit.pth"), str(tmp_path / "out"))
    assert_exit(res, 0)
    assert "PASSED" in res.stdout, res.stdout
    (tmp_path / "copy.pth").write_bytes((tmp_path / "vit.pth").read_bytes())  # the same weights, another file
    res = run_cli("verify", str(tmp_path / "copy.pth"), str(tmp_path / "out"))
    assert_exit(res, 1)  # loaded with the guessed 1 head: the outputs differ, and the warning says it guessed
    assert "num_heads" in res.stderr and "FAILED" in res.stdout, (res.stdout, res.stderr)
