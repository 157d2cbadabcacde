"""The ViT families people ship load exactly: the same weights give timm's / transformers' outputs.

Small random-initialised models in the real key layouts (no downloads). Every weight is moved away
from its initial value first (LayerScale gammas of 1e-5, unit norms and zero biases would hide a
wrong or missing LayerScale, norm or bias).
"""

import json
import warnings

import pytest
import torch

import edgevit
from edgevit.errors import CheckpointError, EdgeVitWarning

from ..conftest import requires_timm, requires_transformers

TOL = 1e-5  # fp32 outputs against the library that defines the weights
SMALL = dict(embed_dim=128, depth=2, num_heads=2)  # 2 heads of 64: timm's dim / 64 rule holds


def _randomize(module: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1 and name.endswith("weight"):  # a norm's scale
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_((0.2 if p.ndim == 1 else 0.05) * noise)
    return module.eval()


def _maxerr(a, b) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


def _load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeVitWarning)  # nothing may be guessed: the tests name what is not stored
        return edgevit.load_model(path, **kw)


# ------------------------------------------------------------------------------------------- timm
# name -> (timm architecture, kwargs, load_model overrides, expected output kind)
TIMM = {
    "dinov2": ("vit_small_patch14_dinov2", dict(img_size=56, num_classes=0), {}, "features"),
    "dinov2-reg4": ("vit_small_patch14_reg4_dinov2", dict(img_size=56, num_classes=0), {}, "features"),
    "dinov2-reg4-classifier": ("vit_small_patch14_reg4_dinov2", dict(img_size=56, num_classes=5), {}, "logits"),
    "clip-projection": ("vit_base_patch16_clip_224", dict(img_size=64, num_classes=32), {"act": "gelu"}, "features"),
    "clip-finetuned": ("vit_base_patch16_clip_224", dict(img_size=64, num_classes=5), {"act": "gelu"}, "logits"),
    "clip-quickgelu": ("vit_base_patch16_clip_quickgelu_224", dict(img_size=64, num_classes=0),
                       {"act": "quick_gelu"}, "features"),
    # attention-pooled towers: the activation (SigLIP's GELU, SigLIP2's tanh GELU) and, beside registers,
    # whether the pool reads them are not in the weights (the load refuses or warns without them)
    "siglip": ("vit_base_patch16_siglip_224", dict(img_size=64, num_classes=0), {"act": "gelu"}, "features"),
    "siglip-classifier": ("vit_base_patch16_siglip_224", dict(img_size=64, num_classes=5), {"act": "gelu"}, "logits"),
    "siglip2": ("vit_base_patch16_siglip_224", dict(img_size=64, num_classes=0, act_layer="gelu_tanh"),
                {"act": "gelu_tanh"}, "features"),
    "reg4-map": ("vit_so150m_patch16_reg4_map_256", dict(img_size=64, num_classes=0),
                 {"act": "gelu", "pool_include_prefix": False}, "features"),
    "map-include-prefix": ("test_vit3", dict(img_size=64, num_classes=5),
                           {"act": "gelu", "pool_include_prefix": True}, "logits"),
    "res-post-norm": ("vit_base_patch16_rpn_224", dict(img_size=64, num_classes=5), {"post_norm": True}, "logits"),
    "deit-distilled": ("deit_tiny_distilled_patch16_224", dict(img_size=64, num_classes=5), {}, "logits"),
    "deit-distilled-headless": ("deit_tiny_distilled_patch16_224", dict(img_size=64, num_classes=0), {}, "features"),
    "gap": ("vit_base_patch16_gap_224", dict(img_size=64, num_classes=5), {}, "logits"),
    "gap-layerscale": ("vit_medium_patch16_gap_256", dict(img_size=64, num_classes=0), {}, "features"),
    "avg-fc-norm": ("vit_small_patch16_224", dict(img_size=64, num_classes=5, global_pool="avg"), {}, "logits"),
    "siglip-gap": ("vit_base_patch16_siglip_gap_224", dict(img_size=64, num_classes=0), {}, "features"),
    "reg1-gap-fc-norm": ("vit_so150m2_patch16_reg1_gap_256", dict(img_size=64, num_classes=5), {}, "logits"),
    "deit3-layerscale": ("deit3_small_patch16_224", dict(img_size=64, num_classes=5), {}, "logits"),
}


def _timm_model(arch: str, **kw):
    import timm

    kwargs = {**SMALL, **kw}
    if "so150m" in arch:
        kwargs["mlp_ratio"] = 2.5  # keep the family's non-4 ratio, at the small width
    model = _randomize(timm.create_model(arch, pretrained=False, **kwargs))
    if arch.startswith("vit_base_patch16_clip") and kw.get("num_classes") == 32:
        torch.nn.init.zeros_(model.head.bias)  # timm's CLIP towers: the image projection as a zero-bias head
    return model


@requires_timm
@pytest.mark.parametrize("case", sorted(TIMM))
def test_timm_family_gives_timm_outputs(tmp_path, case):
    arch, kwargs, overrides, kind = TIMM[case]
    ref = _timm_model(arch, **kwargs)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth", num_heads=2, **overrides)
    assert model.output_kind == kind, f"{case}: output kind {model.output_kind}, expected {kind}"
    size = kwargs["img_size"]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = ref.forward_features(x)
        errs = {
            "forward": _maxerr(ref(x), model(x)),
            "tokens": _maxerr(feats[:, ref.num_prefix_tokens:], model.forward_tokens(x)),
        }
        if not model.config.proj_dim:  # timm's CLIP projection is its head: pre_logits come before it
            errs["pre_logits"] = _maxerr(ref.forward_head(feats, pre_logits=True),
                                         model.forward_head(model.forward_features(x), pre_logits=True))
    assert model.num_prefix_tokens == ref.num_prefix_tokens
    assert max(errs.values()) <= TOL, f"{case} ({arch}): max abs error vs timm {errs} > {TOL}"


@requires_timm
def test_timm_safetensors_dinov2_loads_too(tmp_path):
    from safetensors.torch import save_file

    ref = _timm_model("vit_small_patch14_reg4_dinov2", img_size=56, num_classes=0)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = _load(tmp_path / "w.safetensors", num_heads=2)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"max abs error vs timm {err:.2e}"


@requires_timm
def test_metas_dinov2_layout_with_registers_and_mask_token_loads(tmp_path):
    # facebookresearch/dinov2 checkpoints: register_tokens, a class token without its position row, mask_token
    ref = _timm_model("vit_small_patch14_reg4_dinov2", img_size=56, num_classes=0)
    state = dict(ref.state_dict())
    row = torch.randn(1, 1, 128)
    state["cls_token"] = state["cls_token"] - row
    state["pos_embed"] = torch.cat([row, state["pos_embed"]], dim=1)
    state["register_tokens"] = state.pop("reg_token")
    state["mask_token"] = torch.zeros(1, 128)
    torch.save(state, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    model = _load(tmp_path / "dinov2_vits14_reg4_pretrain.pth", num_heads=2)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"Meta's DINOv2 layout: max abs error vs timm {err:.2e}"


@requires_timm
def test_clip_activation_is_guessed_and_warned_then_overridden(tmp_path):
    ref = _timm_model("vit_base_patch16_clip_quickgelu_224", img_size=64, num_classes=0)
    torch.save(ref.state_dict(), tmp_path / "clip.pth")
    with pytest.warns(EdgeVitWarning, match="quick_gelu"):
        guessed = edgevit.load_model(tmp_path / "clip.pth", num_heads=2)
    assert guessed.guessed == {"act": "gelu"} and guessed.config.norm_eps == 1e-5 and guessed.config.pre_norm
    model = _load(tmp_path / "clip.pth", num_heads=2, act="quick_gelu")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        wrong, right = _maxerr(ref(x), guessed(x)), _maxerr(ref(x), model(x))
    assert right <= TOL < wrong, f"quick-GELU: {right:.2e} with act='quick_gelu', {wrong:.2e} with GELU"


@requires_timm
@pytest.mark.parametrize("arch,new_size", [("vit_small_patch14_dinov2", 84), ("vit_small_patch14_reg4_dinov2", 84),
                                           ("vit_small_patch14_reg4_dinov2", 28), ("vit_base_patch16_siglip_224", 96)])
def test_timm_pos_embed_resampled_once_to_the_deployed_size(tmp_path, arch, new_size):
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    src = _timm_model(arch, img_size=56 if "patch14" in arch else 64, num_classes=0)
    torch.save(src.state_dict(), tmp_path / "timm.pth")
    ref = timm.create_model(arch, pretrained=False, img_size=new_size, num_classes=0, **SMALL).eval()
    ref.load_state_dict(checkpoint_filter_fn(src.state_dict(), ref))
    act = {"act": "gelu"} if "siglip" in arch else {}  # a SigLIP tower's activation is not in its weights
    model = _load(tmp_path / "timm.pth", num_heads=2, img_size=new_size, **act)
    assert model.config.num_patches == (new_size // model.config.patch_size) ** 2
    x = torch.randn(2, 3, new_size, new_size)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"{arch} at {new_size}: max abs error vs timm {err:.2e}"


# ------------------------------------------------------------------------------------ transformers
def _hf(cls_name: str, config_name: str, **kw):
    import transformers

    base = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16)
    if not config_name.startswith("Dinov2"):
        base["intermediate_size"] = 320  # not 4x: the width is read, not assumed
    config = getattr(transformers, config_name)(**{**base, **kw})
    return _randomize(getattr(transformers, cls_name)(config))


# name -> (model class, config class, config kwargs, reference output, expected output kind)
HF = {
    "Dinov2Model": ("Dinov2Model", "Dinov2Config", {"patch_size": 14, "image_size": 56}, "pooler_output", "features"),
    "Dinov2ForImageClassification": ("Dinov2ForImageClassification", "Dinov2Config",
                                     {"patch_size": 14, "image_size": 56, "num_labels": 5}, "logits", "logits"),
    "Dinov2WithRegistersModel": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
                                 {"patch_size": 14, "image_size": 56}, "pooler_output", "features"),
    "Dinov2WithRegistersForImageClassification": (
        "Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig",
        {"patch_size": 14, "image_size": 56, "num_labels": 5, "num_register_tokens": 2}, "logits", "logits"),
    "CLIPVisionModel": ("CLIPVisionModel", "CLIPVisionConfig", {}, "pooler_output", "features"),
    "CLIPVisionModelWithProjection": ("CLIPVisionModelWithProjection", "CLIPVisionConfig", {"projection_dim": 32},
                                      "image_embeds", "features"),
    "SiglipVisionModel": ("SiglipVisionModel", "SiglipVisionConfig", {}, "pooler_output", "features"),
    "DeiTForImageClassification": ("DeiTForImageClassification", "DeiTConfig", {"num_labels": 5}, "logits", "logits"),
    "DeiTForImageClassificationWithTeacher": ("DeiTForImageClassificationWithTeacher", "DeiTConfig",
                                              {"num_labels": 5}, "logits", "logits"),
    "ViTForImageClassification": ("ViTForImageClassification", "ViTConfig", {"num_labels": 5}, "logits", "logits"),
}


@requires_transformers
@pytest.mark.parametrize("case", sorted(HF))
def test_hf_family_gives_transformers_outputs(tmp_path, case):
    cls_name, config_name, kw, output, kind = HF[case]
    ref = _hf(cls_name, config_name, **kw)
    ref.save_pretrained(tmp_path)
    model = _load(tmp_path)
    assert model.output_kind == kind, f"{case}: output kind {model.output_kind}, expected {kind}"
    if kind == "logits":
        assert model.labels == [ref.config.id2label[i] for i in range(model.config.num_classes)]
    else:
        assert model.labels is None, "a headless model has no class names"
    size = ref.config.image_size
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        err = _maxerr(getattr(ref(pixel_values=x), output), model(x))
    assert err <= TOL, f"{case}: max abs error vs transformers {output} {err:.2e} > {TOL}"


@requires_transformers
@pytest.mark.parametrize("cls_name,config_name", [("ViTModel", "ViTConfig"), ("DeiTModel", "DeiTConfig")])
def test_hf_backbone_loads_headless_and_says_the_pooler_is_not_deployed(tmp_path, cls_name, config_name):
    ref = _hf(cls_name, config_name)
    ref.save_pretrained(tmp_path)
    with pytest.warns(EdgeVitWarning, match="pooler"):
        model = edgevit.load_model(tmp_path)
    assert (model.output_kind, model.config.num_classes, model.labels) == ("features", 0, None), (
        "a backbone without a classifier must load headless, not with a random head")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = ref(pixel_values=x).last_hidden_state
        errs = (_maxerr(out[:, 0], model(x)), _maxerr(out[:, model.num_prefix_tokens:], model.forward_tokens(x)))
    assert max(errs) <= TOL, f"{cls_name}: max abs error vs last_hidden_state (features, tokens) {errs}"


@requires_transformers
@pytest.mark.parametrize("cls_name,config_name,prefix", [("Dinov2Model", "Dinov2Config", 1),
                                                        ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig", 5)])
@pytest.mark.parametrize("new_size", [28, 84])
def test_hf_dinov2_at_another_size_matches_its_run_time_interpolation(tmp_path, cls_name, config_name, prefix,
                                                                      new_size):
    # transformers interpolates the 4x4 table on every call; edgevit resamples it once at load, the same way
    ref = _hf(cls_name, config_name, patch_size=14, image_size=56)
    ref.save_pretrained(tmp_path)
    model = _load(tmp_path, img_size=new_size)
    x = torch.randn(2, 3, new_size, new_size)
    with torch.no_grad():
        out = ref(pixel_values=x)
        errs = (_maxerr(out.pooler_output, model(x)),
                _maxerr(out.last_hidden_state[:, prefix:], model.forward_tokens(x)))
    assert max(errs) <= TOL, f"{cls_name} at {new_size}: max abs error (features, tokens) {errs}"


@requires_transformers
def test_hf_dinov2_deploys_at_its_processor_crop(tmp_path):
    ref = _hf("Dinov2Model", "Dinov2Config", patch_size=14, image_size=56)
    ref.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "do_center_crop": True, "crop_size": {"height": 28, "width": 28}, "size": {"shortest_edge": 32},
        "resample": 3, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    model = _load(tmp_path)
    pre = model.preprocessing
    got = (model.config.img_size, pre.input_size, pre.crop_pct, pre.interpolation)
    assert got == (28, (3, 28, 28), 0.875, "bicubic"), got
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        err = _maxerr(ref(pixel_values=x).pooler_output, model(x))
    assert err <= TOL, f"Dinov2 at its crop size: max abs error {err:.2e}"


@requires_transformers
def test_hf_clip_at_another_size_matches_interpolate_pos_encoding(tmp_path):
    ref = _hf("CLIPVisionModelWithProjection", "CLIPVisionConfig", projection_dim=32)
    ref.save_pretrained(tmp_path)
    model = _load(tmp_path, img_size=96)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        err = _maxerr(ref(pixel_values=x, interpolate_pos_encoding=True).image_embeds, model(x))
    assert err <= TOL, f"CLIP at 96: max abs error vs interpolate_pos_encoding {err:.2e}"


# ------------------------------------------------------------------------------------- refusals
@requires_timm
@pytest.mark.parametrize("arch,kwargs,feature", [
    ("vit_small_patch16_rope_224", dict(img_size=64), "RoPE ViTs in the Eva layout"),  # EVA-02 loads: eva02
    ("naflexvit_base_patch16_gap", dict(), "NaFlexViT"),
    ("vit_small_r26_s32_224", dict(img_size=64), "hybrid CNN stem"),
    ("vit_relpos_base_patch16_224", dict(img_size=64), "relative position bias of another kind"),
    ("vit_small_patch16_rope_mixed_224", dict(img_size=64), "learned frequencies"),
    ("cait_xxs24_224", dict(img_size=64), "CaiT"),
    ("convit_tiny", dict(img_size=64), "ConViT"),
    ("xcit_nano_12_p16_224", dict(img_size=64), "XCiT"),
])
def test_unsupported_timm_families_are_refused_by_name(tmp_path, arch, kwargs, feature):
    import timm

    state = timm.create_model(arch, pretrained=False, num_classes=0, depth=1, **kwargs).state_dict()
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=feature) as err:
        edgevit.load_model(tmp_path / "w.pth", num_heads=2)
    assert "DINOv2" in str(err.value) and "SigLIP" in str(err.value), "the message lists the supported families"


@pytest.mark.parametrize("model_type,expected", [("swin", "not a ViT family edgevit loads"),
                                                 ("radio", "NVIDIA RADIO"),
                                                 ("clip", "CLIPVisionModelWithProjection")])
def test_unsupported_hf_model_types_are_refused(tmp_path, model_type, expected):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(CheckpointError, match=expected):
        edgevit.load_model(tmp_path)


def test_a_tensor_no_part_of_the_model_takes_fails_the_load(tmp_path):
    from edgevit.models.vit import ViTConfig, VisionTransformer

    model = VisionTransformer(ViTConfig(img_size=28, patch_size=14, num_classes=0, reg_tokens=4, no_embed_class=True,
                                        init_values=1e-5, **SMALL))
    state = {**model.state_dict(), "blocks.0.attn.extra_bias": torch.zeros(128)}
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="unexpected keys: blocks.0.attn.extra_bias"):
        edgevit.load_model(tmp_path / "w.pth", num_heads=2)


# ------------------------------------------------------------------------------ registry, export
@requires_timm
@pytest.mark.parametrize("name", [
    "vit_small_patch14_dinov2", "vit_base_patch14_reg4_dinov2", "vit_base_patch16_clip_224",
    "vit_base_patch32_clip_quickgelu_224", "vit_base_patch16_siglip_224", "deit_small_distilled_patch16_224",
    "vit_medium_patch16_gap_256",
])
def test_registered_family_variants_have_timms_tensors(name):
    import timm

    from edgevit.models.convert import timm_layout
    from edgevit.models.registry import get_variant
    from edgevit.models.vit import VisionTransformer

    cfg = get_variant(name).config
    with torch.device("meta"):  # shapes only: no memory, no time
        ref = timm.create_model(name, pretrained=False, num_classes=cfg.proj_dim or cfg.num_classes)
        ours = VisionTransformer(cfg)
    theirs = {k: torch.zeros(v.shape) if k == "head.bias" else v for k, v in ref.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in timm_layout(theirs).items()}  # CLIP: a zero-bias head is the projection
    assert theirs == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    block = ref.blocks[0]
    assert (block.attn.num_heads, type(block.mlp.act).__name__ == "QuickGELU") == (
        cfg.num_heads, cfg.act == "quick_gelu"), name
    assert ref.norm_pre.__class__.__name__ == ("LayerNorm" if cfg.pre_norm else "Identity")


# Tiny headless models of each family, exported and run on ONNX Runtime against eager PyTorch.
EXPORTED = {
    "dinov2": dict(img_size=28, patch_size=14, init_values=1e-5),
    "dinov2-reg4": dict(img_size=28, patch_size=14, init_values=1e-5, reg_tokens=4, no_embed_class=True),
    "clip-projection": dict(img_size=32, patch_size=16, pre_norm=True, norm_eps=1e-5, act="quick_gelu", proj_dim=16),
    "siglip-map": dict(img_size=32, patch_size=16, class_token=False, pool="map", act="gelu_tanh"),
    "deit-distilled": dict(img_size=32, patch_size=16, distilled=True, pool="cls_dist"),
    "gap-fc-norm": dict(img_size=32, patch_size=16, class_token=False, pool="mean", fc_norm=True, init_values=1e-6,
                        qkv_bias=False),
}


@pytest.mark.parametrize("family", sorted(EXPORTED))
def test_headless_family_exports_features_that_onnxruntime_reproduces(tmp_path, family):
    import numpy as np
    import onnxruntime as ort

    from edgevit.export import export_onnx
    from edgevit.models.vit import ViTConfig, VisionTransformer

    model = _randomize(VisionTransformer(ViTConfig(num_classes=0, embed_dim=64, depth=2, num_heads=2,
                                                   **EXPORTED[family])))
    result = export_onnx(model, tmp_path / "out")
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    size = model.config.img_size
    x = torch.randn(3, 3, size, size)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert session.get_outputs()[0].name == "features" and got.shape == (3, model.config.feature_dim), got.shape
    err = float(np.abs(got - want).max())
    assert err <= 1e-4, f"{family}: ONNX Runtime vs eager max abs error {err:.2e} > 1e-4"

    # the int8 graph of each family runs and passes its gate (features: cosine and k-NN agreement)
    # on preprocessed data of the model's input shape, through the CLI as a user runs it
    import json

    from click.testing import CliRunner

    from edgevit.cli import main

    data = tmp_path / "inputs.npy"
    np.save(data, np.random.default_rng(0).standard_normal((64, 3, size, size)).astype(np.float32))
    if family == "dinov2":  # no preprocessing recorded: raw arrays are refused, naming the option that fixes it
        res = CliRunner().invoke(main, ["quantize", str(tmp_path / "out"), "--precision", "int8",
                                        "--calib-data", str(data), "--data", str(data)])
        assert res.exit_code == 1 and "--preprocessed" in res.output and "Traceback" not in res.output, res.output
    res = CliRunner().invoke(main, ["quantize", str(tmp_path / "out"), "--precision", "int8", "--preprocessed",
                                    "--calib-data", str(data), "--data", str(data), "--json"])
    assert res.exit_code == 0, f"{family}: int8 quantize exit {res.exit_code}: {res.output[-2000:]}"
    entry = json.loads(res.stdout)["quantize"]["precisions"]["int8"]
    gate = entry["gate"]
    assert gate["verdict"] == "passed", f"{family}: int8 gate {gate}"
    ops = {n.op_type for n in __import__("onnx").load(str(tmp_path / "out" / entry["path"])).graph.node}
    assert "QuantizeLinear" in ops, f"{family}: the int8 graph holds no Q/DQ: {sorted(ops)}"
    from edgevit.runtime import get_runner
    from edgevit.tolerances import get_tolerance

    # judged by the graph's exact Q/DQ arithmetic, as the gate is: not by this CPU's int8 kernels
    with get_runner("onnxruntime", tmp_path / "out" / entry["path"], qdq="exact") as int8:
        q = int8.infer({next(iter(int8.input_spec())): x.numpy()})[int8.output_names()[0]]
    assert q.shape == want.shape and np.isfinite(q).all(), f"{family}: int8 output {q.shape}, finite {np.isfinite(q).all()}"
    cos = (q * want).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(want, axis=1))
    limit = get_tolerance("int8", "features").min_cosine
    assert cos.min() >= limit, f"{family}: int8 vs eager features cosine min {cos.min():.4f} < {limit} (int8 row)"


@pytest.mark.parametrize("family", sorted(EXPORTED))
def test_family_models_round_trip_through_our_format(tmp_path, family):
    from edgevit.models.vit import ViTConfig, VisionTransformer

    model = _randomize(VisionTransformer(ViTConfig(num_classes=3, embed_dim=64, depth=2, num_heads=2,
                                                   **EXPORTED[family])))
    path = edgevit.save_model(model, tmp_path / "m.safetensors")
    loaded = _load(path)
    assert loaded.config == model.config
    x = torch.randn(2, 3, model.config.img_size, model.config.img_size)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)), family


# Model types whose vision encoder is a ViT or a CLIP tower in the same key names: they load as those do.
# name -> (config kwargs, the reference: what the class returns as its image features or logits)
_CLS = lambda out: out.last_hidden_state[:, 0]  # noqa: E731  (no pooler: the final-normed class token)
RELABELLED = {
    "ViTMSNModel": ({}, _CLS),
    "ViTMSNForImageClassification": ({"num_labels": 5}, lambda out: out.logits),
    "ViTMAEModel": ({"mask_ratio": 0.0}, _CLS),
    "IJepaModel": ({}, lambda out: out.last_hidden_state.mean(dim=1)),
    "IJepaForImageClassification": ({"num_labels": 5}, lambda out: out.logits),
    "ChineseCLIPVisionModel": ({}, lambda out: out.pooler_output),
    "AltCLIPVisionModel": ({}, lambda out: out.pooler_output),
    "CLIPSegVisionModel": ({}, lambda out: out.pooler_output),
    "GitVisionModel": ({}, lambda out: out.last_hidden_state[:, 0]),
    "MetaClip2VisionModelWithProjection": ({"projection_dim": 32}, lambda out: out.image_embeds),
    "OwlViTVisionModel": ({}, lambda out: out.pooler_output),
    "Owlv2VisionModel": ({}, lambda out: out.pooler_output),
}


@requires_transformers
@pytest.mark.parametrize("cls_name", sorted(RELABELLED))
def test_vit_encoders_of_other_model_types_give_transformers_outputs(tmp_path, cls_name):
    import transformers

    kw, reference = RELABELLED[cls_name]
    config_name = cls_name.replace("ForImageClassification", "").replace("WithProjection", "").replace(
        "Model", "") + "Config"
    if not hasattr(transformers, cls_name):
        pytest.skip(f"this transformers has no {cls_name}")
    ref = _hf(cls_name, config_name, **kw)
    ref.save_pretrained(tmp_path)
    model = _load(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(reference(ref(pixel_values=x)), model(x))
    assert err <= TOL, f"{cls_name}: max abs error vs transformers {err:.2e} > {TOL}"
    if cls_name.startswith("Owl"):  # the dense image tokens OWL-ViT's detection heads read
        with torch.no_grad():
            out = ref(pixel_values=x).last_hidden_state
            dense = _maxerr(ref.vision_model.post_layernorm(out)[:, 1:], model.forward_tokens(x))
        assert dense <= TOL, f"{cls_name}: tokens vs post_layernorm(last_hidden_state) {dense:.2e} > {TOL}"


@requires_timm
@pytest.mark.parametrize("arch,kwargs,extra", [
    ("beit_base_patch16_224", dict(img_size=64), {}),
    ("vit_small_patch16_dinov3", dict(img_size=64), dict(num_heads=2, pool="mean")),
    ("eva02_tiny_patch14_224", dict(img_size=56), dict(num_heads=2)),
])
def test_an_activation_option_cannot_change_a_family_that_fixes_it(tmp_path, arch, kwargs, extra):
    """Before: --act relu loaded BEiT (0.28 from timm) and DINOv3 without a word, and an EVA-02 export recorded it."""
    import timm

    state = timm.create_model(arch, pretrained=False, num_classes=0, depth=1, embed_dim=128, num_heads=2,
                              **kwargs).state_dict()
    torch.save(state, tmp_path / "w.pth")
    assert edgevit.load_model(tmp_path / "w.pth", **extra).config.act == "gelu"
    with pytest.raises(CheckpointError, match="act='relu' contradicts.*act='gelu'"):
        edgevit.load_model(tmp_path / "w.pth", act="relu", **extra)
