"""Checkpoints a user hands the CLI that are wrong: each is one clear message and a stated exit
status, never a traceback; a guessed head count is printed and recorded."""

import json

import pytest
import torch

import edgevit
from edgevit.models import checkpoint, get_variant
from edgevit.models.vit import VisionTransformer

from ..conftest import requires_transformers

from .._fixtures import assert_exit, run_cli




@pytest.fixture
def digits_pth(tmp_path):
    """A digits-tiny state dict (dim 64, 4 heads of 16): shapes cannot tell its head count."""
    path = tmp_path / "digits.pth"
    torch.save(edgevit.create_model("digits-tiny").state_dict(), path)
    return path


@pytest.fixture
def no_big_models(monkeypatch):
    """Fail (instead of allocating until the machine dies) if a model of a config that was not
    checked against the weights is ever constructed."""
    def guarded(cfg):
        d, h = cfg.embed_dim, cfg.mlp_hidden
        params = (cfg.depth * (4 * d * d + 2 * d * h) + cfg.num_tokens * d
                  + d * cfg.in_chans * cfg.patch_size**2 + cfg.num_classes * d)
        if params > 50_000_000:
            raise AssertionError(f"a model of ~{params:.1e} parameters was constructed ({cfg}): "
                                 "the config was not checked against the weights first")
        return VisionTransformer(cfg)

    monkeypatch.setattr(checkpoint, "VisionTransformer", guarded)


# ----------------------------------------------------------------- --arch and the head count
@pytest.mark.parametrize("command", ["info", "eval", "export"])
def test_arch_the_shapes_contradict_is_refused(tmp_path, digits_pth, command):
    extra = ["-o", tmp_path / "out"] if command == "export" else []
    res = run_cli(command, digits_pth, "--arch", "deit_tiny_patch16_224", *extra)
    assert_exit(res, 1)
    for words in ("digits.pth", "does not fit --arch deit_tiny_patch16_224", "patch_size 16 (weights: 2)",
                  "embed_dim 192 (weights: 64)", "Drop --arch"):
        assert words in res.stderr, f"{words!r} missing:\n{res.stderr}"
    assert not (tmp_path / "out").exists()


def test_arch_may_differ_in_class_count_only(tmp_path):
    """A fine-tuned head (10 classes on DeiT-Tiny, 1000) is no contradiction."""
    state = VisionTransformer(get_variant("deit_tiny_patch16_224").config.replace(num_classes=10)).state_dict()
    torch.save(state, tmp_path / "deit10.pth")
    res = run_cli("info", tmp_path / "deit10.pth", "--arch", "deit_tiny_patch16_224", "--json")
    assert_exit(res, 0)
    info = json.loads(res.stdout)
    assert (info["num_classes"], info["heads"], info["tokens"], info["guessed"]) == (10, 3, 197, {}), info
    assert "warning" not in res.stderr, res.stderr


def test_guessed_head_count_is_printed_and_recorded(tmp_path, digits_pth):
    res = run_cli("info", digits_pth, "--json")
    assert_exit(res, 0)
    info = json.loads(res.stdout)
    assert info["heads"] == 1 and info["guessed"] == {"num_heads": 1}, info
    assert "edgevit: warning:" in res.stderr and "guessed num_heads=1" in res.stderr and "--arch" in res.stderr, \
        res.stderr

    human = run_cli("eval", digits_pth)
    assert_exit(human, 0)
    assert "edgevit: warning:" in human.stderr and "guessed num_heads=1" in human.stderr, human.stderr

    named = run_cli("info", digits_pth, "--arch", "digits-tiny", "--json")
    assert_exit(named, 0)
    info = json.loads(named.stdout)
    assert info["heads"] == 4 and info["guessed"] == {}, info
    assert "warning" not in named.stderr, named.stderr


def test_guessed_head_count_is_in_the_manifest(tmp_path, digits_pth):
    res = run_cli("export", digits_pth, "-o", tmp_path / "out")
    assert_exit(res, 0)
    assert "guessed num_heads=1" in res.stderr, res.stderr
    manifest = json.loads((tmp_path / "out" / "edgevit.json").read_text())
    assert manifest["model"]["guessed"] == {"num_heads": 1}, manifest["model"]


# ----------------------------------------------------------------- unreadable files
@pytest.mark.parametrize("content", [b"", b"\x80\x02"], ids=["zero-bytes", "truncated-pickle"])
@pytest.mark.parametrize("command", ["info", "export"])
def test_empty_or_truncated_pth_is_a_message(tmp_path, content, command):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    extra = ["-o", tmp_path / "out"] if command == "export" else []
    res = run_cli(command, path, *extra)
    assert_exit(res, 1)
    assert "bad.pth" in res.stderr and ("empty (0 bytes)" if not content else "truncated") in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- Hugging Face config.json
@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from transformers import ViTConfig as HFConfig
    from transformers import ViTForImageClassification

    root = tmp_path_factory.mktemp("hf")
    ViTForImageClassification(HFConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=200, image_size=64, patch_size=16,
                                       num_labels=5)).save_pretrained(root)
    return root


def _with_config(hf_dir, tmp_path, **changes):
    import shutil

    shutil.copytree(hf_dir, tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**cfg, **changes}))
    return tmp_path / "hf"


@requires_transformers
@pytest.mark.parametrize("key,value", [
    ("hidden_size", "96"), ("hidden_size", 96.5), ("num_hidden_layers", 2.0), ("num_attention_heads", None),
    ("image_size", [64, 64]), ("patch_size", True), ("intermediate_size", "200"), ("num_channels", 0),
])
def test_hf_config_with_a_non_integer_size_is_a_message(tmp_path, hf_dir, key, value):
    res = run_cli("info", _with_config(hf_dir, tmp_path, **{key: value}))
    assert_exit(res, 1)
    assert "config.json" in res.stderr and f"{key} must be a positive integer" in res.stderr, res.stderr


@requires_transformers
@pytest.mark.parametrize("key,value,weights", [
    ("num_hidden_layers", 10**6, 2), ("hidden_size", 10**9, 96), ("image_size", 128, 64),
    ("patch_size", 8, 16), ("intermediate_size", 10**9, 200), ("num_channels", 1, 3),
])
@pytest.mark.parametrize("command", ["info", "export"])
def test_hf_config_contradicting_the_weights_is_refused_before_building(tmp_path, hf_dir, no_big_models, key,
                                                                        value, weights, command):
    extra = ["-o", tmp_path / "out"] if command == "export" else []
    res = run_cli(command, _with_config(hf_dir, tmp_path, **{key: value}), *extra)
    assert_exit(res, 1)
    assert f"contradicts the weights in model.safetensors: {key} {value} (weights: {weights})" in res.stderr, \
        res.stderr


def test_damaged_edgevit_metadata_is_refused_before_building(tmp_path, no_big_models):
    from safetensors.torch import save_file

    model = edgevit.create_model("digits-tiny")
    path = edgevit.save_model(model, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    meta["config"] = json.dumps({**model.config.to_dict(), "depth": 10**6})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "bad.safetensors"), meta)
    res = run_cli("info", tmp_path / "bad.safetensors")
    assert_exit(res, 1)
    assert "edgevit metadata contradicts its weights: depth 1000000 (weights: 4)" in res.stderr, res.stderr
