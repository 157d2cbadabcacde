"""Hub names (timm/NAME.TAG, hf-hub:ORG/REPO) resolve through huggingface_hub's cache; offline,
a name that is not cached is one clear message saying how to pass a local copy.

No test touches the network: HF_HUB_OFFLINE=1 and a cache directory of the test's own, filled
in huggingface_hub's layout (what a download leaves behind)."""

import json
import warnings

import pytest
import torch

import edgevit
from edgevit.errors import CheckpointError, EdgeVitWarning

from ..conftest import requires_timm, requires_transformers

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache, offline."""
    hf = pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants  # noqa: F401  (loads the submodule)

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _cached_repo(cache, repo: str):
    """The snapshot folder of ``repo`` in ``cache``, as huggingface_hub lays it out."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot

from .._fixtures import assert_exit, run_cli




@pytest.mark.parametrize("name", ["timm/vit_small_patch14_reg4_dinov2.lvd142m", "hf-hub:facebook/dinov2-small",
                                  "hf_hub:facebook/dinov2-small@main"])
@pytest.mark.parametrize("command", ["info", "export"])
def test_offline_hub_name_says_how_to_pass_a_local_copy(hub_cache, tmp_path, name, command):
    if name.startswith("timm/"):
        pytest.importorskip("timm")
    extra = ["-o", tmp_path / "out"] if command == "export" else []
    res = run_cli(command, name, *extra)
    assert_exit(res, 1)
    repo = name.split(":", 1)[-1].split("@")[0]
    for words in (name, "Hugging Face Hub cannot be reached (HF_HUB_OFFLINE is set)",
                  f"{repo} is not in the local cache", str(hub_cache), f"hf download {repo}",
                  "edgevit export DIR -o OUTDIR"):
        assert words in res.stderr, f"{words!r} missing:\n{res.stderr}"
    assert not (tmp_path / "out").exists()

    as_json = run_cli(command, name, *extra, "--json")
    assert_exit(as_json, 1)
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["type"] == "CheckpointError" and "cannot be reached" in data["message"], data


def test_offline_timm_name_names_the_options_the_weights_cannot_tell(hub_cache):
    """A quick-GELU CLIP shares its repository with the GELU one: the message names --act."""
    pytest.importorskip("timm")
    with pytest.raises(CheckpointError) as err:
        edgevit.load_model("timm/vit_base_patch16_clip_quickgelu_224.openai")
    text = str(err.value)
    assert "timm/vit_base_patch16_clip_224.openai is not in the local cache" in text and text.endswith(
        "edgevit export DIR -o OUTDIR --act quick_gelu"), text


@pytest.mark.parametrize("name, words", [
    ("hf-hub:dinov2-small", "not a Hub repository name"),
    ("timm/no_such_model.tag", "timm knows no pretrained weights named 'no_such_model.tag'"),
])
def test_malformed_hub_names_are_messages(hub_cache, name, words):
    if name.startswith("timm/"):
        pytest.importorskip("timm")
    res = run_cli("info", name)
    assert_exit(res, 1)
    assert words in res.stderr, res.stderr


def test_unknown_name_lists_the_hub_syntax(tmp_path):
    res = run_cli("info", tmp_path / "missing.pth")
    assert_exit(res, 1)
    assert "timm/NAME.TAG, hf-hub:ORG/REPO" in res.stderr, res.stderr


# ----------------------------------------------------------------- names that are in the cache
def _cache_timm(hub_cache, arch: str):
    """timm's ``arch`` with random weights in the cache, as ``timm/{arch}.r160_in1k`` downloads it
    (model.safetensors + timm's config.json), and the timm model."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    net = timm.create_model(arch).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    snapshot = _cached_repo(hub_cache, f"timm/{arch}.r160_in1k")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(snapshot / "model.safetensors"))
    pretrained = timm.models.get_pretrained_cfg(f"{arch}.r160_in1k").to_dict()
    (snapshot / "config.json").write_text(json.dumps({"architecture": arch, "num_classes": 1000,
                                                      "pretrained_cfg": pretrained}))
    return net, snapshot


@pytest.fixture
def cached_timm(hub_cache):
    """timm's test_vit (dim 64, 2 heads of 32: the dim/64 guess would say 1)."""
    return _cache_timm(hub_cache, "test_vit")


@requires_timm
@pytest.mark.parametrize("how", ["timm/test_vit.r160_in1k", "hf-hub:timm/test_vit.r160_in1k", "directory"])
def test_cached_timm_weights_load_with_timms_heads_and_preprocessing(cached_timm, how):
    net, snapshot = cached_timm
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeVitWarning)  # nothing guessed
        model = edgevit.load_model(snapshot if how == "directory" else how)
    assert model.config.num_heads == 2 and model.guessed == {}, (model.config, model.guessed)
    pre = model.preprocessing
    assert (pre.mean, pre.crop_pct, pre.input_size) == ((0.5, 0.5, 0.5), 0.95, (3, 160, 160)), pre
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        diff = (model(x) - net(x)).abs().max().item()
    assert diff <= 1e-5, f"edgevit vs timm: max abs {diff:.2e} > 1e-5"


@requires_timm
def test_cached_timm_global_pool_model_with_registers_and_layerscale(hub_cache):
    """test_vit2: no class token, one register token, LayerScale, mean pooling with fc_norm."""
    net, _ = _cache_timm(hub_cache, "test_vit2")
    model = edgevit.load_model("timm/test_vit2.r160_in1k")
    c = model.config
    assert (c.class_token, c.reg_tokens, c.pool, c.fc_norm, c.num_heads) == (False, 1, "mean", True, 2), c
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        diff = (model(x) - net(x)).abs().max().item()
    assert diff <= 1e-5, f"edgevit vs timm: max abs {diff:.2e} > 1e-5"


@requires_timm
def test_timm_pooling_over_prefix_tokens_is_read_from_timm(hub_cache, tmp_path):
    """test_vit3 attention-pools its register token too (pool_include_prefix): its bare weights cannot
    say so and are refused naming the option; timm's name says so and loads exactly."""
    net, snapshot = _cache_timm(hub_cache, "test_vit3")
    res = run_cli("info", str(snapshot / "model.safetensors"), "--num-heads", "3")
    assert_exit(res, 1)
    assert "--pool-include-prefix or --pool-patches-only" in res.stderr, res.stderr
    model = edgevit.load_model("timm/test_vit3.r160_in1k")
    assert model.config.pool_include_prefix and model.config.pool == "map", model.config
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        diff = (model(x) - net(x)).abs().max().item()
    assert diff <= 1e-5, f"edgevit vs timm test_vit3: max abs {diff:.2e} > 1e-5"


@requires_timm
def test_cached_timm_name_from_the_cli(cached_timm):
    res = run_cli("info", "timm/test_vit.r160_in1k", "--json")
    assert_exit(res, 0)
    info = json.loads(res.stdout)
    assert (info["heads"], info["tokens"], info["guessed"]) == (2, 101, {}), info
    assert "warning" not in res.stderr, res.stderr


@requires_timm
def test_cached_weights_file_missing_is_offline_message(cached_timm):
    """A cached config without its weights file: still the offline message, not a load error."""
    _, snapshot = cached_timm
    (snapshot / "model.safetensors").unlink()
    res = run_cli("info", "hf-hub:timm/test_vit.r160_in1k")
    assert_exit(res, 1)
    assert "cannot be reached" in res.stderr, res.stderr


@requires_transformers
def test_cached_hugging_face_repo_loads_as_its_directory(hub_cache):
    from transformers import ViTConfig as HFConfig
    from transformers import ViTForImageClassification

    hf = ViTForImageClassification(HFConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=64, num_labels=3)).eval()
    snapshot = _cached_repo(hub_cache, "someone/tiny-vit")
    hf.save_pretrained(snapshot)
    model = edgevit.load_model("hf-hub:someone/tiny-vit")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        diff = (model(x) - hf(pixel_values=x).logits).abs().max().item()
    assert model.config.num_heads == 2 and diff <= 1e-5, (model.config, diff)



@requires_timm
def test_hub_name_through_export_verify_and_bench(cached_timm, tmp_path):
    """The manifest records the hub name as the source: verify takes it as REFERENCE, and bench
    reloads the reference from it (through the cache)."""
    out = tmp_path / "out"
    assert_exit(run_cli("export", "timm/test_vit.r160_in1k", "-o", out), 0)
    assert json.loads((out / "edgevit.json").read_text())["model"]["source"] == "timm/test_vit.r160_in1k"
    res = run_cli("verify", "timm/test_vit.r160_in1k", out, "--samples", "4", "--json")
    assert_exit(res, 0)
    assert json.loads(res.stdout)["ok"] is True
    bench = run_cli("bench", out, "--iterations", "2", "--samples", "4", "--warmup-s", "0", "--no-report", "--json")
    assert_exit(bench, 0)
    report = json.loads(bench.stdout)
    assert report["reference"]["source"] == "timm/test_vit.r160_in1k", report["reference"]
    assert all(r["status"] == "ok" for r in report["rows"]), report["rows"]
