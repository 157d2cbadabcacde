"""Hub names: ``timm/NAME[.TAG]`` and ``hf-hub:ORG/REPO[@REVISION]`` (also ``hf_hub:``).

Both resolve through huggingface_hub's own download and cache (``~/.cache/huggingface/hub``,
``HF_HUB_CACHE``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` work as usual); the files are then loaded
as the local checkpoint they are:

* ``timm/NAME.TAG``: timm's pretrained config of ``NAME.TAG`` names the Hub repository and the
  weights file; the weights load as a timm state dict, with what a state dict cannot tell (the
  head count, quick-GELU) read from timm's architecture ``NAME`` and the preprocessing (mean, std,
  crop) from the pretrained config.
* ``hf-hub:ORG/REPO``: ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin``) +
  ``preprocessor_config.json``: a Hugging Face directory, or a timm one (its ``config.json``
  names an ``architecture``), loaded as :func:`edgevit.load_model` loads the same directory.

A local directory written by timm (``config.json`` with ``architecture``, as ``hf download
timm/NAME`` leaves it) loads the same way. Offline, a name that is not in the cache raises
CheckpointError saying how to download it elsewhere and pass the local copy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._deps import require
from ..errors import CheckpointError, MissingDependencyError

TIMM_PREFIX = "timm/"
HF_PREFIXES = ("hf-hub:", "hf_hub:")
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# timm's activation classes -> edgevit's ``act`` (the weights cannot tell them apart)
_TIMM_ACTS = {"GELU": "gelu", "QuickGELU": "quick_gelu", "GELUTanh": "gelu_tanh", "ReLU": "relu"}


def is_hub_name(source) -> bool:
    """True for ``timm/...`` and ``hf-hub:...`` / ``hf_hub:...`` names that are not local paths."""
    text = str(source)
    return text.startswith(HF_PREFIXES) or (text.startswith(TIMM_PREFIX) and not Path(text).exists())


def handles(source) -> bool:
    """Whether :func:`load` loads ``source``: a hub name, or a local directory timm wrote."""
    return is_hub_name(source) or _timm_dir_config(Path(source)) is not None


def load(source, arch: str | None, overrides: dict):
    """The model ``source`` names (see the module docstring); ``arch`` and ``overrides`` as in
    :func:`edgevit.load_model`, where given they win over what timm says."""
    text = str(source)
    if text.startswith(HF_PREFIXES):
        repo, revision = _split_revision(text.split(":", 1)[1], text)
        directory = _download(text, repo, revision)
        if _timm_dir_config(directory) is None:
            from .checkpoint import load_model

            return load_model(directory, arch=arch, **overrides)
        return _load_timm_dir(directory, arch, overrides)
    if text.startswith(TIMM_PREFIX) and not Path(text).exists():
        return _load_timm_name(text, text[len(TIMM_PREFIX):], arch, overrides)
    return _load_timm_dir(Path(text), arch, overrides)


# ---------------------------------------------------------------------------- timm
def _load_timm_name(text: str, name: str, arch, overrides):
    timm = require("timm", purpose=f"resolving the timm name {text}")
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(name) if name else None
    if pretrained is None:
        raise CheckpointError(
            f"{text}: timm knows no pretrained weights named {name!r}; timm.list_pretrained('vit_*') lists "
            "them (NAME.TAG, e.g. timm/vit_small_patch14_reg4_dinov2.lvd142m), or use hf-hub:ORG/REPO")
    pretrained = pretrained.to_dict()
    architecture = pretrained.get("architecture") or name.split(".")[0]
    repo = pretrained.get("hf_hub_id")
    if not repo:
        raise CheckpointError(
            f"{text}: timm's weights for {name} are not on the Hugging Face Hub (url: {pretrained.get('url') or '-'}); "
            "download them from there and pass the file: edgevit export FILE --arch ... (or load_model(FILE))")
    repo, revision = _split_revision(repo, text)
    fields, hint = _timm_fields(timm, architecture)
    directory = _download(text, repo, revision, weights=pretrained.get("hf_hub_filename"), hint=hint)
    return _load_timm_weights(directory, architecture, pretrained, fields, arch, overrides)


def _load_timm_dir(path: Path, arch, overrides):
    config = _timm_dir_config(path) or {}
    architecture = config["architecture"]
    try:
        timm = require("timm", purpose=f"reading the timm architecture {architecture} of {path}")
    except MissingDependencyError:  # without timm: the shapes (and a warned guess) decide, as for a state dict
        timm = None
    fields = _timm_fields(timm, architecture)[0] if timm is not None else {}
    return _load_timm_weights(path, architecture, config.get("pretrained_cfg") or {}, fields, arch, overrides)


def _load_timm_weights(directory: Path, architecture: str, pretrained: dict, fields: dict, arch, overrides):
    from .checkpoint import fit_preprocessing, load_model
    from ..data.preprocess import Preprocessing
    from .registry import list_variants

    name = pretrained.get("hf_hub_filename")
    weights = next((directory / f for f in ((name,) if name else WEIGHTS) if (directory / f).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{directory}: holds none of {', '.join((name,) if name else WEIGHTS)} beside {CONFIG}; "
                              "download the weights file too, or pass the weights file itself")
    variant = arch or (architecture if architecture in list_variants() else None)
    model = load_model(weights, arch=variant, **{**fields, **overrides})
    if arch is None and pretrained.get("mean"):
        try:
            pre = Preprocessing.from_dict({k: v for k, v in pretrained.items() if k in
                                           ("input_size", "mean", "std", "interpolation", "crop_pct")})
        except (ValueError, TypeError):
            pre = None  # a config we cannot read: the loader's defaults stay
        if pre is not None:
            model.preprocessing = fit_preprocessing(pre, model.config)
    return model


def _timm_fields(timm, architecture: str) -> tuple[dict, dict]:
    """What timm's ``architecture`` says that its weights cannot: the head count, a quick-GELU /
    tanh-GELU activation, mean pooling, pooling over the prefix tokens and a res-post-norm block
    (read from the model built on the meta device: no memory), and the part a user must pass as
    options for the bare weights file (``--act``, and ``--num-heads`` where it is not the
    embed_dim / 64 guess). A pooling edgevit cannot reproduce is refused."""
    import torch

    if not timm.is_model(architecture):
        return {}, {}
    try:
        with torch.device("meta"):
            net = timm.create_model(architecture, pretrained=False)
        block = net.blocks[0]
    except Exception:  # an architecture timm builds differently: the weights' shapes decide
        return {}, {}
    pool = getattr(net, "global_pool", None)
    if pool not in (None, "", "token", "avg", "map"):
        raise CheckpointError(f"timm's {architecture} pools its tokens with {pool!r}; edgevit supports the class "
                              "token, the patch mean (avg) and attention pooling (map)")
    fields = {"pool": "mean"} if pool == "avg" else {}  # with a class token, the weights alone say "cls"
    if pool in ("avg", "map"):
        fields["pool_include_prefix"] = bool(getattr(net, "pool_include_prefix", False))
    fields["post_norm"] = type(block).__name__ == "ResPostBlock"
    heads = getattr(getattr(block, "attn", None), "num_heads", None)
    if isinstance(heads, int):
        fields["num_heads"] = heads
    module = getattr(getattr(block, "mlp", None), "act", None)
    act = _TIMM_ACTS.get(type(module).__name__)
    if act:
        fields["act"] = "gelu_tanh" if getattr(module, "approximate", None) == "tanh" else act
    # what the bare weights file needs as options: a head count other than the embed_dim / 64 guess, an
    # activation other than GELU
    hint = {k: v for k, v in fields.items()
            if (k == "act" and v != "gelu") or (k == "num_heads" and v != net.embed_dim // 64)
            or (k in ("post_norm", "pool_include_prefix") and v)}
    return fields, hint


def _timm_dir_config(path: Path) -> dict | None:
    """A directory's ``config.json`` when timm wrote it (it names an ``architecture``), else None."""
    file = path / CONFIG
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError):
        return None  # the Hugging Face loader reports an unreadable config.json
    if isinstance(config, dict) and isinstance(config.get("architecture"), str) and "model_type" not in config:
        return config
    return None


# ---------------------------------------------------------------------------- download
def _split_revision(repo: str, text: str) -> tuple[str, str | None]:
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise CheckpointError(f"{text}: not a Hub repository name; write hf-hub:ORG/REPO[@REVISION] "
                              "(e.g. hf-hub:facebook/dinov2-small) or timm/NAME.TAG")
    return repo, revision or None


def _huggingface_hub():
    """huggingface_hub with its ``errors`` and ``constants`` modules loaded."""
    hub = require("huggingface_hub", "hf", "downloading models from the Hugging Face Hub")
    import huggingface_hub.constants  # noqa: F401  (submodules the package loads lazily)
    import huggingface_hub.errors  # noqa: F401

    return hub


def _offline(hub) -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().upper() in ("1", "ON", "YES", "TRUE") or bool(hub.constants.HF_HUB_OFFLINE)


def _download(text: str, repo: str, revision: str | None, weights: str | None = None, hint: dict | None = None) -> Path:
    """The local snapshot of ``repo``: config files and one weights file (``weights``, else
    model.safetensors, else pytorch_model.bin), from the cache or the Hub."""
    hub = _huggingface_hub()
    errors = hub.errors
    offline = _offline(hub)
    kwargs = {"revision": revision, "local_files_only": offline}
    try:
        directory = Path(hub.snapshot_download(repo, allow_patterns=[CONFIG, PREPROCESSOR, weights or WEIGHTS[0]],
                                               **kwargs))
        if weights is None and not (directory / WEIGHTS[0]).is_file():
            directory = Path(hub.hf_hub_download(repo, WEIGHTS[1], **kwargs)).parent
    except errors.LocalEntryNotFoundError:
        raise CheckpointError(_unreachable(text, repo, revision, offline, hub, hint)) from None
    except errors.GatedRepoError:
        raise CheckpointError(f"{text}: {repo} is gated on the Hugging Face Hub: accept its terms on "
                              f"https://huggingface.co/{repo} and log in (hf auth login, or set HF_TOKEN)") from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(f"{text}: no repository {repo} on the Hugging Face Hub (or it is private: log in "
                              "with hf auth login, or set HF_TOKEN); check the name") from None
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"{text}: {repo} has no revision {revision!r}; give a branch, tag or commit "
                              "that exists (or drop @REVISION)") from None
    except errors.EntryNotFoundError:
        raise CheckpointError(f"{text}: {repo} holds neither {' nor '.join(WEIGHTS)}; edgevit loads those "
                              "(a timm or Hugging Face ViT checkpoint)") from None
    except (errors.HFValidationError, ValueError) as exc:
        raise CheckpointError(f"{text}: not a valid Hub repository name ({exc})") from None
    except OSError as exc:  # HTTP errors, a full disk...
        raise CheckpointError(f"{text}: downloading {repo} from the Hugging Face Hub failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); try again, or download it "
                              "elsewhere and pass the local directory") from None
    return directory


def _unreachable(text: str, repo: str, revision: str | None, offline: bool, hub, hint: dict | None) -> str:
    why = "HF_HUB_OFFLINE is set" if offline else "could not connect"
    command = f"hf download {repo}" + (f" --revision {revision}" if revision else "") + " --local-dir DIR"
    flags = "".join(f" --{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in (hint or {}).items())
    return (f"{text}: the Hugging Face Hub cannot be reached ({why}) and {repo} is not in the local cache "
            f"({hub.constants.HF_HUB_CACHE}). Download it on a machine with network access ({command}), copy DIR "
            f"here and pass the local directory (or its weights file) instead of the hub name: "
            f"edgevit export DIR -o OUTDIR{flags}")
