import json
import os
import pickle

import pytest
import torch

import edgevit
from edgevit.errors import ArtifactExistsError, CheckpointError, EdgeVitWarning
from edgevit.models.convert import resample_pos_embed
from edgevit.models.vit import ViTConfig, VisionTransformer

from ..conftest import requires_timm, requires_transformers

TOL = 1e-5  # fp32 logits against the library that defines the weights


def _tiny_deit(**kw):
    # DeiT-Tiny shapes (dim 192, 3 heads of 64, patch 16) at a small image and depth, for speed.
    cfg = ViTConfig(img_size=64, patch_size=16, embed_dim=192, depth=2, num_heads=3, num_classes=10, **kw)
    return VisionTransformer(cfg).eval()


def _maxerr(a, b):
    return (a - b).abs().max().item()


def test_own_format_round_trips_bit_exactly(tmp_path):
    model = edgevit.create_model("digits-tiny")
    path = edgevit.save_model(model, tmp_path / "m.safetensors")
    loaded = edgevit.load_model(path)
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert loaded.config == model.config
    assert loaded.labels == model.labels and loaded.preprocessing == model.preprocessing
    again = edgevit.save_model(loaded, tmp_path / "again.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as a, safe_open(str(again), "pt") as b:
        assert a.metadata() == b.metadata()
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def test_save_refuses_to_overwrite_without_force(tmp_path):
    model = edgevit.create_model("digits-tiny")
    path = edgevit.save_model(model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(ArtifactExistsError, match="--force"):
        edgevit.save_model(edgevit.create_model("digits-tiny"), path)
    assert path.read_bytes() == before
    edgevit.save_model(model, path, force=True)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p], "temporary file left behind"


@pytest.mark.parametrize("name", ["model", "model.pth", "model.safetensors.tmp"])
def test_save_refuses_a_name_load_cannot_read(tmp_path, name):
    with pytest.raises(ValueError, match=r"\.safetensors suffix; name the file"):
        edgevit.save_model(edgevit.create_model("digits-tiny"), tmp_path / name)
    assert not os.listdir(tmp_path), "nothing may be written"


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_saved_files_follow_the_umask(tmp_path, umask):
    """safetensors creates 0600 files; a checkpoint follows the umask like every other file."""
    old = os.umask(umask)
    try:
        path = edgevit.save_model(edgevit.create_model("digits-tiny"), tmp_path / "m.safetensors")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode, plain = path.stat().st_mode & 0o777, (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert mode == plain == 0o666 & ~umask, f"umask {umask:o}: checkpoint {mode:o}, plain file {plain:o}"


def test_mlp_width_read_from_shapes_round_trips(tmp_path):
    # 56 * (488 / 56) is 487.99999999999994 in floats: int() of it used to give a 487-wide MLP
    ref = VisionTransformer(ViTConfig(img_size=16, patch_size=8, embed_dim=56, depth=1, num_heads=4,
                                      num_classes=3, mlp_ratio=488.5 / 56)).eval()
    assert ref.blocks[0].mlp.fc1.out_features == 488
    torch.save(ref.state_dict(), tmp_path / "m.pth")
    model = edgevit.load_model(tmp_path / "m.pth", num_heads=4)
    assert model.config.mlp_hidden == 488 and model.config.mlp_ratio == 488 / 56


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict", "module_prefix"])
@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
def test_timm_layout_state_dicts_load_exactly(tmp_path, wrap, suffix):
    ref = _tiny_deit()
    state = ref.state_dict()
    if wrap == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        if wrap in ("model", "state_dict"):
            pytest.skip("safetensors holds a flat dict only")
        from safetensors.torch import save_file
        save_file(state, str(path))
    else:
        torch.save(state if wrap in ("bare", "module_prefix") else {wrap: state, "epoch": 3}, path)
    model = edgevit.load_model(path)
    assert model.config.num_heads == 3 and model.config.img_size == 64 and model.config.num_classes == 10
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"max abs error {err:.2e} > {TOL}"


def test_arch_sets_heads_and_preprocessing(tmp_path):
    ref = VisionTransformer(ViTConfig(embed_dim=192, depth=12, num_heads=3, img_size=224)).eval()
    torch.save(ref.state_dict(), tmp_path / "deit.pth")
    model = edgevit.load_model(tmp_path / "deit.pth", arch="deit_tiny_patch16_224")
    assert model.config.num_heads == 3
    assert model.preprocessing.mean == (0.485, 0.456, 0.406)


def test_resampled_pos_embed_keeps_cls_and_runs(tmp_path):
    ref = _tiny_deit()
    torch.save(ref.state_dict(), tmp_path / "m.pth")
    model = edgevit.load_model(tmp_path / "m.pth", img_size=96)
    assert model.pos_embed.shape == (1, 1 + 36, 192)
    assert torch.equal(model.pos_embed[:, 0], ref.pos_embed[:, 0]), "class token row changed"
    assert model.preprocessing.input_size == (3, 96, 96)
    # identity resampling leaves the table untouched
    assert torch.equal(resample_pos_embed(ref.pos_embed.detach(), 4), ref.pos_embed.detach())


@requires_timm
def test_resampling_matches_timm():
    from timm.layers import resample_abs_pos_embed

    pos = torch.randn(1, 1 + 14 * 14, 192)
    ours = resample_pos_embed(pos, 24)
    theirs = resample_abs_pos_embed(pos, new_size=(24, 24), num_prefix_tokens=1, interpolation="bicubic",
                                    antialias=True)
    assert _maxerr(ours, theirs) <= 1e-6, _maxerr(ours, theirs)


@requires_timm
@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "vit_small_patch16_224"])
def test_timm_checkpoint_gives_timm_logits(tmp_path, name):
    import timm

    ref = timm.create_model(name, pretrained=False, depth=2).eval()
    torch.save({"model": ref.state_dict()}, tmp_path / "timm.pth")
    model = edgevit.load_model(tmp_path / "timm.pth")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"{name}: max abs error vs timm {err:.2e} > {TOL}"


@requires_timm
def test_timm_at_new_image_size_matches_timm_filter(tmp_path):
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    # full depth: an arch the shapes contradict (depth 2 vs 12) is refused
    src = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    torch.save(src.state_dict(), tmp_path / "timm.pth")
    ref = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=288).eval()
    ref.load_state_dict(checkpoint_filter_fn(src.state_dict(), ref))
    model = edgevit.load_model(tmp_path / "timm.pth", arch="deit_tiny_patch16_224", img_size=288)
    x = torch.randn(1, 3, 288, 288)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"max abs error vs timm at 288 {err:.2e}"


def _hf_config(**kw):
    from transformers import ViTConfig as HFConfig

    base = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=200, image_size=64,
                patch_size=16, num_labels=5)
    return HFConfig(**{**base, **kw})


@requires_transformers
@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
@pytest.mark.parametrize("safe", [True, False])
def test_hf_classifier_directory_gives_hf_logits(tmp_path, act, safe):
    from transformers import ViTForImageClassification

    ref = ViTForImageClassification(_hf_config(hidden_act=act)).eval()
    ref.save_pretrained(tmp_path, safe_serialization=safe)
    model = edgevit.load_model(tmp_path)
    assert model.config.norm_eps == 1e-12, "HF layer_norm_eps must be honoured"
    assert model.labels == [ref.config.id2label[i] for i in range(5)]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(x).logits, model(x))
    assert err <= TOL, f"max abs error vs transformers {err:.2e} > {TOL}"


@requires_transformers
def test_hf_vitmodel_backbone_matches_hidden_states(tmp_path):
    from transformers import ViTModel

    ref = ViTModel(_hf_config(qkv_bias=False)).eval()
    ref.save_pretrained(tmp_path)
    model = edgevit.load_model(tmp_path)
    assert model.config.qkv_bias is False
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(x).last_hidden_state, model.forward_features(x))
    assert err <= TOL, f"max abs error vs ViTModel hidden states {err:.2e}"


@requires_transformers
def test_hf_in_memory_layout_state_dict(tmp_path):
    from transformers import ViTForImageClassification

    ref = ViTForImageClassification(_hf_config()).eval()
    torch.save(ref.state_dict(), tmp_path / "hf.pth")
    # a bare state dict carries no config: heads cannot be read from shapes, so name them; the LayerNorm eps
    # is transformers' ViT default (1e-12, not timm's 1e-6), a guess the warning names
    with pytest.warns(EdgeVitWarning, match="norm_eps=1e-12"):
        model = edgevit.load_model(tmp_path / "hf.pth", num_heads=4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(x).logits, model(x))
    assert err <= TOL, f"max abs error {err:.2e}"


# ----------------------------------------------------------------- bad checkpoints
def test_missing_file_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        edgevit.load_model(tmp_path / "nope.pth")


def test_truncated_safetensors(tmp_path):
    path = edgevit.save_model(edgevit.create_model("digits-tiny"), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*truncated or corrupt"):
        edgevit.load_model(path)


def test_truncated_pth(tmp_path):
    path = tmp_path / "m.pth"
    torch.save(_tiny_deit().state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"m\.pth.*truncated"):
        edgevit.load_model(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    with pytest.raises(CheckpointError, match="refuses to execute"):
        edgevit.load_model(path)


def test_unknown_format(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        edgevit.load_model(path)
    (tmp_path / "list.pth").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        edgevit.load_model(tmp_path / "list.pth")


def test_missing_unexpected_and_mismatched_keys_are_listed(tmp_path):
    state = _tiny_deit().state_dict()
    del state["blocks.1.mlp.fc2.bias"]
    state["blocks.0.attn.extra.weight"] = torch.ones(192)  # no part of any supported family
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(CheckpointError) as info:
        edgevit.load_model(tmp_path / "m.pth")
    msg = str(info.value)
    assert "m.pth" in msg and "missing keys: blocks.1.mlp.fc2.bias" in msg and "blocks.0.attn.extra.weight" in msg, msg

    state = _tiny_deit().state_dict()
    state["blocks.0.attn.proj.weight"] = torch.zeros(192, 100)
    torch.save(state, tmp_path / "m2.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches: blocks.0.attn.proj.weight: checkpoint \(192, 100\)"):
        edgevit.load_model(tmp_path / "m2.pth")


def test_not_a_vit(tmp_path):
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight"):
        edgevit.load_model(tmp_path / "resnet.pth")


def test_hf_directory_problems(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        edgevit.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "swin"}))
    with pytest.raises(CheckpointError, match="swin"):
        edgevit.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        edgevit.load_model(tmp_path)
