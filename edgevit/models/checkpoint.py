"""Load and save models: our safetensors format, timm state dicts, Hugging Face ViT directories.

Loading never executes code from a checkpoint: pickle-based files go through
``torch.load(..., weights_only=True)``; the format we write is safetensors.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .._io import atomic_path
from ..data.preprocess import Preprocessing
from ..errors import CheckpointError, EdgeVitWarning
from . import convert, families, hf_convert, hub, relpos
from .families import sam
from .families.common import timm_block_names
from .registry import get_variant, list_variants
from .vit import ViTConfig, VisionTransformer

FORMAT = "edgevit"
FORMAT_VERSION = "1"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
MAX_LISTED = 5


def create_model(name: str, **overrides) -> VisionTransformer:
    """A freshly initialised model of a registered variant; ``overrides`` change config fields."""
    variant = get_variant(name)
    cfg = variant.config.replace(**overrides) if overrides else variant.config
    model = VisionTransformer(cfg)
    pre = variant.preprocessing
    if cfg.img_size != pre.image_size or cfg.in_chans != pre.channels:
        pre = Preprocessing(**{**pre.to_dict(), "input_size": (cfg.in_chans, cfg.img_size, cfg.img_size)})
    model.preprocessing = pre
    model.labels = [str(i) for i in range(cfg.num_classes)] if name == "digits-tiny" else None
    return model


def save_model(model: VisionTransformer, path: str | os.PathLike, force: bool = False) -> Path:
    """Write weights (safetensors) with config, labels and preprocessing in its metadata, atomically.

    ``path`` must end in ``.safetensors`` (how :func:`load_model` recognises the format); any other
    name is refused with ValueError rather than written as a file that cannot be loaded back.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(
            f"{path}: save_model writes safetensors, which load_model recognises by the .safetensors "
            f"suffix; name the file {path.with_suffix('.safetensors').name}"
        )
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "labels": json.dumps(model.labels),
        "preprocessing": json.dumps(model.preprocessing.to_dict() if model.preprocessing else None),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path, force=force) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_model(source: str | os.PathLike, arch: str | None = None, **overrides) -> VisionTransformer:
    """Load a model in eval mode, with ``.preprocessing`` and ``.labels`` attached.

    A checkpoint's config (edgevit metadata, ``config.json``, ``arch``) is checked against its
    tensor shapes before any model is built. What a state dict cannot tell (the head count without
    ``arch``) is guessed, warned about (EdgeVitWarning) and listed in ``model.guessed``.

    Args:
        source: a registered variant name (fresh weights, :func:`list_variants`), one of our
            ``.safetensors`` files, a timm state dict (.pth/.pt/.bin/.safetensors, possibly nested
            or DDP-prefixed), a Hugging Face directory (ViT, DeiT, Dinov2, CLIPVision,
            SiglipVision), or a hub name (``timm/NAME.TAG``, ``hf-hub:ORG/REPO``).
        arch: the registered variant a timm state dict belongs to (CLI ``--arch``); inferred from
            the tensor shapes when None.
        **overrides: config fields to change, e.g. ``img_size=384`` (resamples a learned
            ``pos_embed``), ``num_heads=6``, ``act="quick_gelu"``, ``attn_impl="math"``.

    Returns:
        VisionTransformer: in eval mode, with ``.preprocessing``, ``.labels`` and ``.guessed``.

    Raises:
        CheckpointError: no such file, variant or hub name; an unknown format; a config that
            contradicts the tensor shapes; a tensor no part of the model takes.
        ValueError: an invalid config field in ``overrides``.
    """
    text = str(source)
    if hub.handles(text):  # timm/NAME.TAG, hf-hub:ORG/REPO, a directory timm wrote
        return hub.load(text, arch, overrides).eval()
    path = Path(source)
    if not path.exists():
        if text in list_variants():
            return create_model(text, **overrides).eval()
        raise CheckpointError(
            f"{text}: no such file or directory, and not a model variant. Give a checkpoint path, a hub name "
            f"(timm/NAME.TAG, hf-hub:ORG/REPO) or one of: {', '.join(list_variants())}"
        )
    if path.is_dir():
        model = _load_dir(path, arch, overrides)
    elif path.suffix == ".safetensors":
        model = _load_safetensors(path, arch, overrides)
    elif path.suffix in PICKLE_SUFFIXES:
        model = _load_state_dict(path, _read_pickle(path), arch, overrides)
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {path.suffix!r}. Supported: .safetensors, "
            f"{', '.join(PICKLE_SUFFIXES)}, or a Hugging Face ViT directory with config.json"
        )
    return model.eval()


def _load_dir(path: Path, arch, overrides) -> VisionTransformer:
    if (path / "config.json").exists():
        return _load_hf(path, overrides)
    for name in ("model.safetensors", "best.safetensors"):
        if (path / name).exists():
            return _load_safetensors(path / name, arch, overrides)
    raise CheckpointError(
        f"{path}: directory holds neither a Hugging Face config.json nor model.safetensors; "
        "point at the checkpoint file itself"
    )


def _read_safetensors(path: Path):
    from safetensors import SafetensorError, safe_open

    _check_not_empty(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({exc}); it may be truncated or corrupt: "
            "re-download or re-save it"
        ) from exc
    return tensors, metadata


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a checkpoint; it was not written "
                              "completely: re-download or re-save it")


def _read_pickle(path: Path) -> dict:
    _check_not_empty(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, disallowed globals...
        raise CheckpointError(
            f"{path}: could not be read as a weights-only PyTorch checkpoint ({type(exc).__name__}: "
            f"{(str(exc).splitlines() or ['no message'])[0][:200]}). The file may be truncated, or hold pickled code, "
            "which edgevit refuses to execute: re-save it as a plain state dict or safetensors"
        ) from exc
    return obj


def _load_safetensors(path: Path, arch, overrides) -> VisionTransformer:
    tensors, metadata = _read_safetensors(path)
    if metadata.get("format") != FORMAT:
        return _load_state_dict(path, tensors, arch, overrides)
    try:
        cfg = ViTConfig.from_dict(json.loads(metadata["config"]))
        labels = json.loads(metadata.get("labels", "null"))
        pre = json.loads(metadata.get("preprocessing", "null"))
        pre = Preprocessing.from_dict(pre) if pre else None  # a damaged value is the file's error
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: edgevit metadata is damaged ({exc}); re-save the model") from exc
    conflicts = convert.shape_conflicts(cfg, _shape_fields(path, tensors))
    if conflicts:
        raise CheckpointError(f"{path}: the config in its edgevit metadata contradicts its weights: "
                              f"{'; '.join(conflicts)}. The file is damaged: re-save the model")
    _check_arch(path, tensors, arch, skip=("num_classes", *overrides))
    _check_labels(path, labels, cfg.num_classes)
    labels = labels if cfg.num_classes else None  # a headless model has no classes to name
    if overrides:
        labels = labels if overrides.get("num_classes", cfg.num_classes) == cfg.num_classes else None  # a new head
        cfg = _apply_overrides(path, cfg, overrides)
        tensors = convert.adapt_timm_state_dict(tensors, cfg)
    model = _build(path, cfg, tensors)
    model.labels = labels
    model.preprocessing = fit_preprocessing(pre, cfg)
    return model


def _check_labels(path: Path, labels, num_classes: int) -> None:
    """CheckpointError when the class names in ``path``'s metadata cannot name its classes (not a list of
    strings, another count than ``num_classes``, duplicates: eval would merge classes)."""
    from ..manifest import label_problem

    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise CheckpointError(f"{path}: the labels in its edgevit metadata are not a list of strings; re-save the "
                              "model with model.labels = [one name per class] (or None)")
    problem = label_problem(labels, num_classes)
    if problem:
        raise CheckpointError(f"{path}: the labels in its edgevit metadata: {problem}; re-save the model with "
                              "model.labels = [one distinct name per class] (or None)")


def _load_state_dict(path: Path, obj, arch, overrides) -> VisionTransformer:
    try:
        state = convert.unwrap_state_dict(obj)
    except TypeError as exc:
        raise CheckpointError(f"{path}: unknown checkpoint format: {exc}") from None
    family, family_fields = families.recognise(state), {}
    if family is None:
        _check_foreign(path, state)
    hf_layout = family is None and hf_convert.is_hf_state_dict(state)
    conventions = hf_convert.hf_conventions(state) if hf_layout else None
    family_open = families.undecided(family, state)
    if family is not None:
        state, family_fields = _family_to_edgevit(path, family, state)
    elif hf_layout:
        state = _drop_pooler(path, _hf_to_timm(path, state))
    eva_layout = family is None and convert.is_eva_layout(state)
    state = _check_supported(path, timm_block_names(convert.timm_layout(state)), eva_layout)
    base = get_variant(arch).config if arch else None
    _check_arch(path, state, arch, skip=("num_classes", *overrides))
    asked = _check_decided(path, state, {**family_fields, **overrides}, eva_layout, family_open) if base is None else {}
    try:
        cfg, guessed = convert.config_from_timm_state_dict(state, base, hf_layout=hf_layout, conventions=conventions)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}; is this a ViT checkpoint?") from None
    guessed = {k: v for k, v in guessed.items() if k not in overrides and k not in family_fields}
    if family_fields or overrides:
        cfg = _apply_overrides(path, cfg.replace(**family_fields), overrides, asked, family_fields,
                               f"the {getattr(family, 'NAME', '')} layout of these weights")
    model = _build(path, cfg, convert.adapt_timm_state_dict(state, cfg))
    pre = get_variant(arch).preprocessing if arch else None
    model.preprocessing = fit_preprocessing(pre, cfg, families.preprocessing(family))
    model.guessed = guessed
    if guessed:
        warnings.warn(_guess_message(path, cfg, guessed), EdgeVitWarning, stacklevel=3)
    return model


def _check_decided(path: Path, state: dict, given: dict, eva_layout: bool, family_open: dict) -> dict:
    """Refuse what the tensors leave open between two real layouts (:func:`convert.undecided`, and the
    family's ``family_open``) unless ``given`` (the overrides, the family's fields) decides it, naming the
    option that does. Returns the questions asked, ``{field: why}``."""
    fields = _shape_fields(path, state)
    asked = {**convert.undecided(fields, eva_layout), **family_open}
    open_ = {k: why for k, why in asked.items() if k not in given}
    if open_:
        raise CheckpointError(
            f"{path}: the weights cannot tell which layout they are: " + "; ".join(open_.values())
            + ". Loading either could give wrong outputs without an error, so edgevit does not guess: pass "
            + " and ".join(_DECIDERS[k] for k in open_) + " as the model was trained")
    return asked


def _apply_overrides(path: Path, cfg: ViTConfig, overrides: dict, asked: dict | None = None,
                     fixed: dict | None = None, fixed_by: str = "") -> ViTConfig:
    """``cfg`` with the caller's ``overrides``. An option that answers a layout question (:data:`_DECIDERS`:
    post-norm blocks, pooling over the prefix tokens, RoPE) where the weights, the family or a config.json
    leave none open (``asked``: the questions this load asked) would change the model the file defines, so it
    is refused unless it repeats what the file says; an override the config refuses is a ValueError naming
    ``path``. ``fixed``: the fields ``fixed_by`` (the weights' family, a config.json) settles, which an option
    may repeat but not change (the image size and the class count excepted: those are resampled and reset)."""
    settled = {k: v for k, v in (fixed or {}).items() if k in overrides and k not in _CHANGEABLE and overrides[k] != v}
    if settled:
        said = ", ".join(f"{k}={v!r}" for k, v in settled.items())
        given = ", ".join(f"{k}={overrides[k]!r}" for k in settled)
        raise CheckpointError(f"{path}: {given} contradicts {fixed_by}, which fixes {said}; loading it otherwise would "
                              "give another model than the weights are: drop the option")
    contradicts = {k: v for k, v in overrides.items() if k in _LAYOUT_ANSWERS and k not in (asked or {})
                   and getattr(cfg, k) != v}
    if contradicts:
        said = ", ".join(f"{k}={getattr(cfg, k)!r}" for k in contradicts)
        given = ", ".join(f"{k}={v!r}" for k, v in contradicts.items())
        raise CheckpointError(f"{path}: {given} answers a question these weights do not leave open: they define "
                              f"{said}, which would change the model they are; drop the option (it applies only "
                              "where the load asks for it)")
    try:
        return cfg.replace(**overrides)
    except ValueError as exc:
        raise ValueError(f"{path}: the options given do not fit these weights: {exc}") from None


# Options that may change what a family or a config.json fixes: the image size (the position table is resampled)
# and the class count (a new head).
_CHANGEABLE = ("img_size", "num_classes")
_HF_FIXED = ("act", "num_heads", "norm_eps")

# Options that answer a question the loader asks (:func:`_check_decided`), not settings to change at will.
_LAYOUT_ANSWERS = ("post_norm", "pool_include_prefix", "rope")


# The options that settle :func:`convert.undecided`'s questions, on the command line and in Python.
_DECIDERS = {
    "post_norm": "--post-norm or --no-post-norm (load_model(..., post_norm=True or False))",
    "pool_include_prefix": "--pool-include-prefix or --pool-patches-only "
                           "(load_model(..., pool_include_prefix=True or False))",
    "pool": "--pool mean or --pool cls (load_model(..., pool='mean' or 'cls'))",
    "rope": "--rope none for an EVA-01 layout (load_model(..., rope='none')); EVA-02 and DINOv3 load as themselves, "
            "timm's vit_*_rope_* are not implemented",
}

_GUESSES = {
    "act": lambda cfg: (f"act={cfg.act!r} (a CLIP tower: OpenAI's own and transformers' use quick-GELU, OpenCLIP's "
                        "GELU)" if cfg.pre_norm else
                        f"act={cfg.act!r} (a SigLIP tower: timm's SigLIP uses the exact GELU; SigLIP2 (.v2_webli) "
                        "and transformers' SigLIP use the tanh approximation, gelu_tanh)"),
    "num_heads": lambda cfg: f"num_heads={cfg.num_heads} (embed_dim {cfg.embed_dim} / 64, timm's convention)",
    "img_size": lambda cfg: f"img_size={cfg.img_size} (no learned pos_embed to read it from)",
    "norm_eps": lambda cfg: (f"norm_eps={cfg.norm_eps:g} (transformers' ViT / DeiT default; the config.json saved with "
                             "the weights says it: load their directory)"),
}


def _guess_message(path: Path, cfg: ViTConfig, guessed: dict) -> str:
    return (f"{path}: a state dict does not record {' or '.join(guessed)}; guessed "
            + ", ".join(_GUESSES[k](cfg) for k in guessed)
            + ". A wrong guess loads without error but gives wrong outputs (a wrong head count predicts near chance): "
            + "pass " + "".join(_FIXES[k] for k in guessed if k in _FIXES)
            + "or --arch with the variant it was trained as (edgevit models lists them)")


_FIXES = {"num_heads": "--num-heads N (load_model(..., num_heads=N)), ",
          "img_size": "--img-size PX (load_model(..., img_size=PX)), ",
          "act": "--act gelu, gelu_tanh or quick_gelu (load_model(..., act='gelu_tanh')), "}


def _shape_fields(path: Path, state: dict) -> dict:
    try:
        return convert.fields_from_state_dict(state)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}; is this a ViT checkpoint?") from None


def _check_arch(path: Path, state: dict, arch: str | None, skip=()) -> None:
    """Refuse an ``arch`` whose architecture the tensor shapes contradict (the class count may
    differ: a fine-tuned head; ``skip`` holds it and the fields the caller overrides)."""
    if arch is None:
        return
    fields = {k: v for k, v in _shape_fields(path, state).items() if k not in skip}
    conflicts = convert.shape_conflicts(get_variant(arch).config, fields)
    if conflicts:
        raise CheckpointError(
            f"{path}: does not fit --arch {arch}: {'; '.join(conflicts)}. Drop --arch to read the "
            "architecture from the tensor shapes, or pass the variant it was trained as (edgevit models lists them)"
        )


def _load_hf(path: Path, overrides) -> VisionTransformer:
    config = path / "config.json"
    try:
        hf = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{config}: not valid JSON ({exc})") from exc
    if not isinstance(hf, dict):
        raise CheckpointError(f"{config}: holds {type(hf).__name__}, not a JSON object of config fields")
    try:
        hf = hf_convert.hf_tower_classifier(hf)
    except ValueError as exc:
        raise CheckpointError(f"{config}: {exc}") from None
    own = families.by_model_type(hf.get("model_type"))  # a family module's own config.json reading
    try:
        family = own.NAME if own is not None else hf_convert.hf_family(hf.get("model_type"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        cfg = own.config_from_hf(hf) if own is not None else hf_convert.config_from_hf(hf)
        labels = hf_convert.labels_from_hf(hf)
    except ValueError as exc:
        raise CheckpointError(f"{config}: {exc}; fix config.json, or use the one saved with these weights") from None
    if (path / "model.safetensors").exists():
        weights = path / "model.safetensors"
        state, _ = _read_safetensors(weights)
    elif (path / "pytorch_model.bin").exists():
        weights = path / "pytorch_model.bin"
        state = convert.unwrap_state_dict(_read_pickle(weights))
    else:
        raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin beside config.json")
    state, read = _family_to_edgevit(weights, own, state) if own is not None else (_hf_to_timm(weights, state), {})
    names = getattr(own, "SHAPE_FIELDS", {})  # what the family reads from the tensors: config.json must agree
    conflicts = [f"{names[k]} {getattr(cfg, k)!r} (weights: {v!r})" for k, v in read.items()
                 if k in names and getattr(cfg, k) != v]
    if conflicts:
        raise CheckpointError(f"{config}: contradicts the weights in {weights.name}: {'; '.join(conflicts)}. "
                              "Use the config.json saved with these weights")
    state = _drop_pooler(weights, _check_supported(weights, state))
    fields = _shape_fields(weights, state)
    if not labels or not fields["num_classes"]:  # no id2label, or no classifier (ViTModel): the weights decide
        cfg = cfg.replace(num_classes=fields["num_classes"])
    checked = {k: v for k, v in fields.items() if k in hf_convert.HF_NAMES}
    conflicts = convert.shape_conflicts(cfg, checked, hf_convert.HF_NAMES)
    if conflicts:  # before anything is built: a config.json can ask for any size
        raise CheckpointError(f"{config}: contradicts the weights in {weights.name}: {'; '.join(conflicts)}. "
                              "Use the config.json saved with these weights")
    # the prefix tokens, LayerScale, norms, pooling and projection: what the weights hold
    cfg = cfg.replace(**{k: v for k, v in fields.items() if k not in checked and k != "no_embed_class"})
    pre_file = path / "preprocessor_config.json"
    try:
        pre = json.loads(pre_file.read_text()) if pre_file.exists() else None
    except ValueError as exc:
        raise CheckpointError(f"{pre_file}: not valid JSON ({exc})") from None
    crop = hf_convert.hf_crop_size(pre if isinstance(pre, dict) else None)
    if family.startswith("dinov2") and crop and crop % cfg.patch_size == 0:
        # DINOv2 runs at its processor's crop (224), its position table (518) interpolated to it
        cfg = cfg.replace(img_size=crop)
    if overrides:  # what config.json says of the activation, heads and eps is what the weights were trained with
        cfg = _apply_overrides(config, cfg, overrides, fixed={k: getattr(cfg, k) for k in _HF_FIXED},
                               fixed_by="config.json")
    # resample the position table as transformers interpolates it at run time
    antialias = family == "dinov2_with_registers"
    model = _build(weights, cfg, convert.adapt_timm_state_dict(state, cfg, antialias=antialias))
    model.labels = labels if cfg.num_classes else None  # a headless model's id2label is the LABEL_0/1 default
    if model.labels and not overrides.get("num_classes"):
        _check_labels(config, model.labels, cfg.num_classes)  # id2label of another head than the weights'
    try:
        own_pre = families.preprocessing(own) if pre is None else None  # SAM's save_pretrained writes no processor
        model.preprocessing = (fit_preprocessing(None, cfg, own_pre) if own_pre
                               else hf_convert.preprocessing_from_hf(pre, cfg))
    except (ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{pre_file}: not a valid preprocessor config ({exc})") from None
    return model


def _check_foreign(path: Path, state: dict) -> None:
    """Refuse a state dict in the names of a family edgevit does not load (:data:`convert.FOREIGN_LAYOUTS`),
    naming the family, the key that shows it and what is missing."""
    foreign = convert.foreign_layout(state)
    if foreign:
        family, key, missing = foreign
        raise CheckpointError(f"{path}: recognised {family} (key {key!r}); edgevit's ViT does not implement "
                              f"{missing}, so it does not load it. edgevit loads: {convert.SUPPORTED_FAMILIES}")


def _check_supported(path: Path, state: dict, eva_layout: bool = False) -> dict:
    """Refuse a state dict (timm names) of a ViT family edgevit does not implement, naming it
    (``eva_layout``: its keys were timm's Eva block names, :func:`convert.is_eva_layout`)."""
    feature = convert.unsupported_family(state, eva_layout)
    if feature:
        raise CheckpointError(f"{path}: holds {feature}, which edgevit's ViT does not implement. "
                              f"edgevit loads: {convert.SUPPORTED_FAMILIES}")
    return state


def _family_to_edgevit(path: Path, family, state: dict) -> tuple[dict, dict]:
    """``family.to_edgevit(state)``, its refusals naming ``path``."""
    try:
        return family.to_edgevit(state)
    except (CheckpointError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: {exc.args[0] if exc.args else exc}") from None


def _hf_to_timm(path: Path, state: dict) -> dict:
    """:func:`hf_convert.hf_to_timm_state_dict`, its refusals as CheckpointError naming ``path``; says so
    where SiglipForImageClassification's unused attention-pool head was dropped."""
    try:
        state = hf_convert.hf_to_timm_state_dict(state)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    if state.pop(hf_convert.HF_UNUSED_MAP_HEAD, None) is not None:
        warnings.warn(f"{path}: a SiglipForImageClassification: its classifier reads the mean of the final-normed "
                      "tokens, so the attention-pool head it also holds (vision_model.head.*) is not deployed",
                      EdgeVitWarning, stacklevel=4)
    return state


def _drop_pooler(path: Path, state: dict) -> dict:
    """HF ViTModel / DeiTModel carry a tanh ``pooler`` that neither their classifiers nor timm read:
    drop it, and say so: the features are the final-normed class token (last_hidden_state[:, 0])."""
    pooler = [k for k in state if hf_convert.HF_POOLER.match(k)]
    if pooler:
        warnings.warn(f"{path}: the Hugging Face pooler ({', '.join(pooler)}, pooler_output = tanh(dense(...))) is not "
                      "deployed; the model's features are the final-normed class token, last_hidden_state[:, 0], "
                      "as timm's and the ImageClassification heads read it", EdgeVitWarning, stacklevel=4)
    return {k: v for k, v in state.items() if k not in pooler}


def fit_preprocessing(pre: Preprocessing | None, cfg: ViTConfig, defaults: dict | None = None) -> Preprocessing:
    """The checkpoint's preprocessing, at the config's input size (else ``defaults``, a family's, else
    ImageNet's defaults)."""
    base = pre.to_dict() if pre else dict(defaults or {})
    base["input_size"] = (cfg.in_chans, cfg.img_size, cfg.img_size)
    if len(base.get("mean", ())) != cfg.in_chans:
        base.pop("mean", None), base.pop("std", None)
        if cfg.in_chans != 3:
            base["mean"], base["std"] = (0.5,) * cfg.in_chans, (0.5,) * cfg.in_chans
    return Preprocessing.from_dict(base)


def _build(path: Path, cfg: ViTConfig, state: dict) -> VisionTransformer:
    """Instantiate and load strictly; report the first few problems in one error."""
    try:
        relpos.check_grid(state, cfg.grid_size, cfg.patch_size)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    state = sam.fit_tables(state, cfg) if cfg.rel_pos_bias == "decomposed" else state
    model = VisionTransformer(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{title}: {', '.join(items[:MAX_LISTED])}{more}")
    if problems:
        raise CheckpointError(
            f"{path}: does not fit a ViT with {_describe(cfg)}; " + "; ".join(problems)
            + f". Check --arch; edgevit loads: {convert.SUPPORTED_FAMILIES}"
        )
    model.load_state_dict(state, strict=True)
    return model


def _describe(cfg: ViTConfig) -> str:
    return (f"img {cfg.img_size}, patch {cfg.patch_size}, dim {cfg.embed_dim}, depth {cfg.depth}, "
            f"heads {cfg.num_heads}, classes {cfg.num_classes}")
