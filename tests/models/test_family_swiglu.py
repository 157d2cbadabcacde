"""SwiGLU MLPs load exactly: DINOv2-giant in timm's packed layout (SwiGLUPacked: one fc1, the gate first) and
in transformers' (Dinov2 use_swiglu_ffn: the hub's weights_in / weights_out, 5.x's gate_proj / up_proj /
down_proj), and timm's split SwiGLU (fc1_g / fc1_x, with EVA-02's sub-LN ``mlp.norm``).

Small random-initialised models in the real key layouts (no downloads), every weight moved away from its
initial value first (see test_families.py). The hidden widths are the families' own roundings at a small
width: timm's int(128 * 2.66667 * 2) = 682 packed (341 per half, odd), transformers' (int(512 * 2/3) + 7)
// 8 * 8 = 344.
"""

from functools import partial

import pytest
import torch

from edgevit.errors import CheckpointError
from edgevit.models.vit import Mlp, SwiGLU, ViTConfig, VisionTransformer, macs_per_image

from ..conftest import requires_timm, requires_transformers
from .test_families import SMALL, TOL, _hf, _load, _maxerr, _randomize


def _timm(arch: str, **kw):
    import timm

    return _randomize(timm.create_model(arch, pretrained=False, **{**SMALL, **kw}))


def _compare_timm(ref, model, size: int) -> dict:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = ref.forward_features(x)
        return {
            "forward": _maxerr(ref(x), model(x)),
            "tokens": _maxerr(feats[:, ref.num_prefix_tokens:], model.forward_tokens(x)),
            "pre_logits": _maxerr(ref.forward_head(feats, pre_logits=True),
                                  model.forward_head(model.forward_features(x), pre_logits=True)),
        }


# ------------------------------------------------------------------------------------------- timm
@requires_timm
@pytest.mark.parametrize("arch,num_classes", [("vit_giant_patch14_dinov2", 0), ("vit_giant_patch14_dinov2", 5),
                                              ("vit_giant_patch14_reg4_dinov2", 0),
                                              ("vit_giant_patch14_reg4_dinov2", 5)])
def test_timm_dinov2_giant_packed_swiglu_is_exact(tmp_path, arch, num_classes):
    ref = _timm(arch, img_size=56, num_classes=num_classes)
    assert ref.blocks[0].mlp.fc1.out_features == 682, "timm's packed width at dim 128"
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth", num_heads=2)
    cfg = model.config
    assert (cfg.mlp, cfg.mlp_hidden, cfg.mlp_norm) == ("swiglu_packed", 341, False), cfg
    assert model.num_prefix_tokens == ref.num_prefix_tokens
    errs = _compare_timm(ref, model, 56)
    assert max(errs.values()) <= TOL, f"{arch} num_classes={num_classes}: max abs error vs timm {errs} > {TOL}"


@requires_timm
@pytest.mark.parametrize("mlp_layer,mlp_norm", [("SwiGLU", True), ("SwiGLU", False), ("Mlp", True)])
def test_timm_vit_with_split_swiglu_and_mlp_norm_is_exact(tmp_path, mlp_layer, mlp_norm):
    # timm's VisionTransformer with mlp_layer=SwiGLU (fc1_g / fc1_x) and scale_mlp_norm (mlp.norm, EVA-02's sub-LN)
    import timm.layers
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    act = torch.nn.SiLU if mlp_layer == "SwiGLU" else torch.nn.GELU  # a SwiGLU's gate is SiLU
    ref = _randomize(TimmViT(img_size=56, patch_size=14, num_classes=5, mlp_ratio=8 / 3, act_layer=act,
                             mlp_layer=getattr(timm.layers, mlp_layer), scale_mlp_norm=mlp_norm, **SMALL))
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth", num_heads=2)
    want = ("swiglu" if mlp_layer == "SwiGLU" else "mlp", mlp_norm, 341)
    assert (model.config.mlp, model.config.mlp_norm, model.config.mlp_hidden) == want, model.config
    errs = _compare_timm(ref, model, 56)
    assert max(errs.values()) <= TOL, f"{mlp_layer} mlp_norm={mlp_norm}: max abs error vs timm {errs} > {TOL}"


@requires_timm
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_swiglu_module_matches_timms(packed, norm):
    from timm.layers import SwiGLU as TimmSwiGLU
    from timm.layers import SwiGLUPacked

    dim, hidden = 64, 88
    cfg = ViTConfig(embed_dim=dim, num_heads=1, mlp_ratio=hidden / dim, mlp="swiglu_packed" if packed else "swiglu",
                    mlp_norm=norm)
    norm_layer = partial(torch.nn.LayerNorm, eps=1e-6) if norm else None
    ref = (SwiGLUPacked(dim, 2 * hidden, norm_layer=norm_layer) if packed
           else TimmSwiGLU(dim, hidden, norm_layer=norm_layer))
    ref = _randomize(ref)
    ours = SwiGLU(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 7, dim)
    with torch.no_grad():
        err = _maxerr(ref(x), ours(x))
    assert err <= TOL, f"packed={packed} norm={norm}: max abs error vs timm's module {err:.2e}"


# ------------------------------------------------------------------------------------ transformers
@requires_transformers
@pytest.mark.parametrize("cls_name,config_name,prefix", [
    ("Dinov2Model", "Dinov2Config", 1),
    ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig", 5),
    ("Dinov2ForImageClassification", "Dinov2Config", 1),
])
def test_hf_dinov2_swiglu_from_save_pretrained_is_exact(tmp_path, cls_name, config_name, prefix):
    kw = {"num_labels": 5} if "Classification" in cls_name else {}
    ref = _hf(cls_name, config_name, patch_size=14, image_size=56, use_swiglu_ffn=True, layerscale_value=0.5, **kw)
    ref.save_pretrained(tmp_path)
    model = _load(tmp_path)
    assert model.config.mlp_hidden == 344 and model.config.mlp.startswith("swiglu"), model.config
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        out = ref(pixel_values=x)
        if "Classification" in cls_name:
            errs = {"logits": _maxerr(out.logits, model(x))}
        else:
            errs = {"pooler_output": _maxerr(out.pooler_output, model(x)),
                    "tokens": _maxerr(out.last_hidden_state[:, prefix:], model.forward_tokens(x))}
    assert max(errs.values()) <= TOL, f"{cls_name} use_swiglu_ffn: max abs error vs transformers {errs} > {TOL}"


@requires_transformers
@pytest.mark.parametrize("layout", ["saved", "in_memory"])
def test_hf_dinov2_swiglu_bare_safetensors_is_exact(tmp_path, layout):
    # a model.safetensors alone: as save_pretrained writes it (the hub's weights_in / weights_out), and the
    # state dict transformers 5.x holds in memory (gate_proj / up_proj / down_proj)
    from safetensors.torch import save_file

    ref = _hf("Dinov2Model", "Dinov2Config", patch_size=14, image_size=56, use_swiglu_ffn=True)
    if layout == "saved":
        ref.save_pretrained(tmp_path / "hf")
        path = tmp_path / "hf" / "model.safetensors"
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
        assert any(".mlp.weights_in." in k for k in keys), [k for k in keys if ".mlp." in k][:4]
    else:
        path = tmp_path / "model.safetensors"
        state = ref.state_dict()
        assert any(".mlp.gate_proj." in k for k in state), [k for k in state if ".mlp." in k][:4]
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = _load(path, num_heads=2)
    want = "swiglu_packed" if layout == "saved" else "swiglu"
    assert (model.config.mlp, model.config.mlp_hidden) == (want, 344), model.config
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        out = ref(pixel_values=x)
        errs = {"pooler_output": _maxerr(out.pooler_output, model(x)),
                "tokens": _maxerr(out.last_hidden_state[:, 1:], model.forward_tokens(x))}
    assert max(errs.values()) <= TOL, f"bare {layout} model.safetensors: max abs error vs transformers {errs} > {TOL}"


@requires_transformers
def test_hf_config_swiglu_width_contradicting_the_weights_is_refused(tmp_path):
    import json

    ref = _hf("Dinov2Model", "Dinov2Config", patch_size=14, image_size=56, use_swiglu_ffn=True)
    ref.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["use_swiglu_ffn"] = False  # the plain MLP's width, 512, against the weights' 344
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="intermediate_size 512 .weights: 344"):
        _load(tmp_path)


# ------------------------------------------------------------------------------------------ config
def test_swiglu_config_counts_and_refusals():
    base = dict(img_size=56, patch_size=14, num_classes=5, mlp_ratio=344 / 128, **SMALL)
    plain, packed, split = (ViTConfig(**base, mlp=m) for m in ("mlp", "swiglu_packed", "swiglu"))
    n, d, h = plain.num_tokens, 128, 344
    assert macs_per_image(packed) - macs_per_image(plain) == 2 * n * d * h, "one more d x h projection per block"
    assert macs_per_image(packed) == macs_per_image(split)
    for cfg in (packed, split):
        model = VisionTransformer(cfg)
        macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
        assert macs == cfg.depth * (4 * d * d + 3 * d * h) + d * 5, "every Linear's weights counted once"
    assert isinstance(VisionTransformer(plain).blocks[0].mlp, Mlp)
    assert ViTConfig.from_dict(packed.to_dict()) == packed
    with pytest.raises(ValueError, match="mlp must be one of"):
        ViTConfig(mlp="geglu")
    with pytest.raises(ValueError, match="pool='map'"):
        ViTConfig(mlp="swiglu", pool="map")


# ----------------------------------------------------------------------------------------- refusals
@requires_timm
def test_what_stays_refused_by_name():
    """EVA-02 (SwiGLU in timm's Eva layout: its RoPE is not stored), Meta's original w12 / w3 names and DINOv3's
    gated MLP (no position table) stay refused; DINOv2-giant's layouts do not."""
    import timm

    from edgevit.models import convert
    from edgevit.models.families.common import timm_block_names

    def state(arch, **kw):
        return timm.create_model(arch, pretrained=False, depth=1, num_classes=0, img_size=56, **kw).state_dict()

    tiny = state("eva02_tiny_patch14_224")  # fused qkv + q_bias / v_bias, packed SwiGLU
    assert convert.is_eva_layout(tiny)
    assert "EVA-02" in convert.unsupported_family(timm_block_names(tiny), eva_layout=True)
    assert "EVA-02" in convert.unsupported_family(state("eva02_base_patch14_224"))  # q_proj / k_proj / v_proj
    giant = state("vit_giant_patch14_dinov2", embed_dim=128, num_heads=2)
    assert convert.unsupported_family(giant) is None
    meta = {k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3."): v for k, v in giant.items()}
    assert "mlp.w12" in convert.unsupported_family(meta)
    no_table = {k: v for k, v in giant.items() if k != "pos_embed"}
    assert "DINOv3" in convert.unsupported_family(no_table)


@pytest.mark.parametrize("mlp,mlp_norm", [("swiglu_packed", False), ("swiglu", True)])
def test_edgevit_format_round_trip(tmp_path, mlp, mlp_norm):
    import edgevit

    model = _randomize(VisionTransformer(ViTConfig(img_size=56, patch_size=14, num_classes=0, mlp_ratio=344 / 128,
                                                   mlp=mlp, mlp_norm=mlp_norm, **SMALL)))
    edgevit.save_model(model, tmp_path / "m.safetensors")
    back = _load(tmp_path / "m.safetensors")
    assert back.config == model.config
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        err = _maxerr(model(x), back(x))
    assert err == 0.0, f"{mlp}: round trip changed the outputs by {err:.2e}"


def test_int8_recipe_quantizes_both_input_projections_of_a_split_swiglu(tmp_path):
    """The recipe's Linear patterns cover fc1_g and fc1_x (named after the modules by the export)."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models.vit import ViTConfig, VisionTransformer
    from edgevit.precision.recipe import PrecisionRecipe, quantizable_nodes
    import onnx

    model = VisionTransformer(ViTConfig(img_size=32, patch_size=16, embed_dim=64, depth=2, num_heads=1,
                                        num_classes=3, mlp="swiglu", mlp_ratio=2.0)).eval()
    result = export_onnx(model, tmp_path / "out", ExportConfig(batch=(1, 1, 2)))
    names = quantizable_nodes(onnx.load(str(result.onnx_path)), PrecisionRecipe(precision="int8"))
    want = {f"blocks.{i}.mlp.{n}" for i in range(2) for n in ("fc1_g", "fc1_x", "fc2")}
    assert want <= set(names), f"int8 would leave {sorted(want - set(names))} unquantized; quantizes {names}"
