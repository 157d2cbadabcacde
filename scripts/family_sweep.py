#!/usr/bin/env python
"""Which ViT-like checkpoints does edgevit load exactly, refuse cleanly, load silently WRONG, or crash on?

A reproducible sweep over timm architectures and Hugging Face transformers vision classes:
each is built tiny (depth 2, small width), given random weights (fixed seed), saved the way a user
would have it (timm ``state_dict()`` via torch.save; HF ``save_pretrained``), loaded with
``edgevit.load_model`` and run on the same random batch as the reference.

Outcomes per attempt:
  exact               loads, and max|reference(x) - edgevit(x)| <= 1e-4
  refused             raises edgevit.errors.CheckpointError (the clean refusal)
  refused-valueerror  raises ValueError (ViTConfig's check of a field)
  WRONG               loads but the outputs differ (max abs diff, or the shapes differ)
  crash               any other exception
  ref-error           the reference model itself could not be built or run (not edgevit's fault)
  skipped             too large to build cheaply (> 300M parameters at depth 2)

timm filter (documented in the output too): every name in ``timm.list_models()`` whose module is one
of the ViT modules (vision_transformer, vision_transformer_hybrid, deit, eva, beit,
vision_transformer_sam, vision_transformer_relpos, naflexvit), plus the names of any other timm
module whose source mentions ``self.blocks`` and ``patch_embed`` and whose built model (first name of
the module) has a ``patch_embed`` and a flat ``blocks`` stack (nn.Sequential / nn.ModuleList) whose
first block holds an ``attn`` module (on the model or a direct child such as ``encoder``), and whose
first and last blocks hold tensors of the same shapes - a patch embedding followed by a plain stack
of attention blocks of one width (hierarchical models such as Hiera / SAM2's HieraDet, whose width
changes between stages, are excluded).

Layouts: a name is built at depth 2 with a small width; names are grouped by (model class, block
class, the state-dict keys with their shapes, and the behaviour signature: every module's class name
with its ``extra_repr`` - activation kind, norm eps, ... - plus global_pool / no_embed_class /
prefix-token count). The first name of each group is its representative.

Usage:
  .venv/bin/python scripts/family_sweep.py [--only timm|hf] [--filter SUB] [--out PATH] [--limit N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import importlib
import inspect
import io
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import edgevit  # noqa: E402
from edgevit.errors import CheckpointError, EdgeVitWarning  # noqa: E402

TOL = 1e-4
SEED = 0
MAX_PARAMS = 300_000_000
SMALL = dict(embed_dim=128, num_heads=2)

TIMM_VIT_MODULES = (
    "vision_transformer", "vision_transformer_hybrid", "deit", "eva", "beit",
    "vision_transformer_sam", "vision_transformer_relpos", "naflexvit",
)

# (class name, config overrides beyond the common tiny ones)
HF_CLASSES = [
    "ViTModel", "ViTForImageClassification", "DeiTModel", "DeiTForImageClassification",
    "DeiTForImageClassificationWithTeacher", "Dinov2Model", "Dinov2ForImageClassification",
    "Dinov2WithRegistersModel", "Dinov2WithRegistersForImageClassification", "DINOv3ViTModel",
    "CLIPVisionModel", "SiglipVisionModel", "SiglipForImageClassification", "Siglip2VisionModel",
    "Siglip2ForImageClassification", "BeitModel", "BeitForImageClassification", "Data2VecVisionModel",
    "Data2VecVisionForImageClassification", "OwlViTVisionModel", "Owlv2VisionModel", "ViTMSNModel",
    "ViTMSNForImageClassification", "ViTMAEModel", "IJepaModel", "IJepaForImageClassification",
    "SamVisionModel", "AltCLIPVisionModel", "ChineseCLIPVisionModel", "CLIPSegVisionModel", "GitVisionModel",
    "MetaClip2VisionModel", "Aimv2VisionModel", "PixtralVisionModel", "HieraModel",
]
HF_TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=320,
               image_size=64, patch_size=16)
HF_EXTRA = {  # per-class config fields needed to make the tiny build valid / deterministic
    "ViTMAEModel": dict(mask_ratio=0.0),
    "SamVisionModel": dict(global_attn_indexes=[1], window_size=2, output_channels=32, mlp_dim=320),
    "DINOv3ViTModel": dict(num_register_tokens=4),
    "HieraModel": dict(embed_dim=32, depths=[1, 1], num_heads=[1, 2], image_size=[64, 64], patch_size=[7, 7],
                       patch_stride=[4, 4], patch_padding=[3, 3], masked_unit_size=[2, 2], query_stride=[2, 2],
                       embed_dim_multiplier=2.0, num_query_pool=1),
    "PixtralVisionModel": dict(head_dim=64),
    # the released BEiT / Data2Vec-vision fine-tunes use per-layer relative position bias (the config
    # default has no position information at all)
    **{c: dict(use_relative_position_bias=True) for c in (
        "BeitModel", "BeitForImageClassification", "Data2VecVisionModel", "Data2VecVisionForImageClassification")},
    "Siglip2VisionModel": dict(num_patches=16),  # 4 x 4 patches: no resize of the position table
    "Siglip2ForImageClassification": dict(num_patches=16),
}
MEAN_REFERENCE = ("IJepaModel",)  # no class token, no pooler: [:, 0] would be a patch token; use the token mean
SPATIAL_MEAN_REFERENCE = ("SamVisionModel",)  # the neck's (B, 256, H, W) image embedding: its mean over H, W
PATCHIFIED = ("Siglip2VisionModel", "Siglip2ForImageClassification")  # take flattened patches, not images


# ----------------------------------------------------------------------------------------- helpers
TMP_ROOT = tempfile.gettempdir()


def short(text, n=160) -> str:
    text = " ".join(str(text).split())
    text = re.sub(re.escape(TMP_ROOT) + r"/family_sweep_[a-z]+_[^\s:,;]*", "<file>", text)
    text = text[len("<file>: "):] if text.startswith("<file>: ") else text  # the message's own path prefix
    return text if len(text) <= n else text[: n - 1] + "…"


def randomize(model: nn.Module, seed: int = SEED) -> None:
    """Norm weights 1+0.2*randn, other 1-D params 0.2*randn, the rest 0.05*randn (parameters only)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            is_norm = "norm" in type(mod).__name__.lower()
            for pname, p in mod.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype)
                if p.ndim == 1 and is_norm and pname == "weight":
                    p.copy_(1 + 0.2 * noise)
                elif p.ndim <= 1:
                    p.copy_(0.2 * noise)
                else:
                    p.copy_(0.05 * noise)
    model.eval()


def to_tensor(out):
    """The reference tensor from a model's output (timm: a tensor; HF: logits / pooler / CLS token)."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "pooler_output"):
        value = getattr(out, key, None)
        if value is None and isinstance(out, dict):
            value = out.get(key)
        if isinstance(value, torch.Tensor):
            return value
    value = getattr(out, "last_hidden_state", None)
    if isinstance(value, torch.Tensor):
        return value[:, 0]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"no tensor in output of type {type(out).__name__}")


def attempt_load(source, ref: torch.Tensor, x: torch.Tensor, **hints) -> tuple[str, str]:
    """Load ``source`` with edgevit and classify against the reference output ``ref`` on ``x``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stage = "load"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                model = edgevit.load_model(source, **hints)
                model.eval()
                stage = "forward"  # the model loaded: what fails now fails on the reference input
                with torch.no_grad():
                    got = model(x)
                got = to_tensor(got)
        except CheckpointError as exc:
            return "refused", short(exc if stage == "load" else f"at forward: {exc}")
        except ValueError as exc:
            return "refused-valueerror", short(exc if stage == "load" else f"loaded, then at forward: {exc}")
        except Exception as exc:  # noqa: BLE001 - a crash is what we record
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            return "crash", short(f"{type(exc).__name__} at {where} ({stage}): {exc}", 240)
    warned = [w for w in caught if issubclass(w.category, EdgeVitWarning)]
    wtxt = f"warned: {short(warned[0].message, 100)}" if warned else "no EdgeVitWarning"
    if tuple(got.shape) != tuple(ref.shape):
        return "WRONG", f"output shape {tuple(got.shape)} vs reference {tuple(ref.shape)}; {wtxt}"
    diff = (got.float() - ref.float()).abs().max().item()
    if not diff <= TOL:  # NaN counts as wrong
        return "WRONG", f"max abs diff {diff:.3g}; {wtxt}"
    return "exact", f"max abs diff {diff:.1e}; {wtxt if warned else 'no warning'}"


def act_hint(act_module) -> str:
    name = type(act_module).__name__ if act_module is not None else ""
    if name == "GELUTanh" or (isinstance(act_module, nn.GELU) and act_module.approximate == "tanh"):
        return "gelu_tanh"
    if name == "QuickGELU":
        return "quick_gelu"
    return "gelu"


# -------------------------------------------------------------------------------------------- timm
def timm_candidates(name_filter: str | None) -> tuple[list[str], dict]:
    import timm
    from timm.models import _registry

    names = timm.list_models()
    if name_filter:
        names = [n for n in names if name_filter.lower() in n.lower()]
    module_of = {n: _registry._model_to_module.get(n, "") for n in names}
    by_module: dict[str, list[str]] = {}
    for n in names:
        by_module.setdefault(module_of[n], []).append(n)
    keep, notes = [], {}
    for mod, mod_names in sorted(by_module.items()):
        if mod in TIMM_VIT_MODULES:
            keep += mod_names
            notes[mod] = f"ViT module ({len(mod_names)} names)"
            continue
        try:
            src = inspect.getsource(importlib.import_module(f"timm.models.{mod}"))
        except Exception:  # noqa: BLE001
            continue
        if "self.blocks" not in src or "patch_embed" not in src:
            continue
        model, _, err = build_timm(mod_names[0])
        if model is None:
            notes[mod] = f"could not build {mod_names[0]} to check: {short(err, 80)}"
            continue
        if is_flat_attention_stack(model):
            keep += mod_names
            notes[mod] = f"flat attention blocks ({len(mod_names)} names)"
        else:
            notes[mod] = ("excluded: no flat `blocks` stack of attention blocks of one width after a patch_embed "
                          f"(checked on {mod_names[0]})")
        del model
    return keep, notes


def trunk(model: nn.Module) -> nn.Module:
    """The module holding ``patch_embed`` and ``blocks``: the model, or a direct child (timm's LLM vision
    towers - Qwen3, Gemma4, DeepSeek - wrap theirs in ``encoder``)."""
    for mod in (model, *model.children()):
        if hasattr(mod, "patch_embed") and hasattr(mod, "blocks"):
            return mod
    return model


def is_flat_attention_stack(model: nn.Module) -> bool:
    model = trunk(model)
    blocks = getattr(model, "blocks", None)
    if not hasattr(model, "patch_embed") or not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or not len(blocks):
        return False
    if not isinstance(getattr(blocks[0], "attn", None), nn.Module):
        return False
    # plain, not hierarchical: the first and the last block hold tensors of the same shapes (one width)
    first = {k: tuple(v.shape) for k, v in blocks[0].state_dict().items()}
    last = {k: tuple(v.shape) for k, v in blocks[-1].state_dict().items()}
    return all(last.get(k, shape) == shape for k, shape in first.items())


TIMM_TRIES = [
    dict(depth=2, img_size=64, num_classes=5, **SMALL),
    dict(depth=2, img_size=64, num_classes=5, **SMALL, num_kv_heads=1),  # per-block GQA tuples (Sapiens2)
    dict(depth=2, img_size=64, num_classes=5),
    dict(depth=2, num_classes=5, **SMALL),
    dict(depth=2, num_classes=5),
    dict(img_size=64, num_classes=5, **SMALL),
    dict(num_classes=5, **SMALL),
    dict(img_size=64, num_classes=5),
    dict(num_classes=5),
    dict(depth=2),
    dict(),
]


def _create(name: str, kw: dict, device: str):
    import timm

    torch.manual_seed(SEED)
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        return timm.create_model(name, pretrained=False, **kw)


def build_timm(name: str, kw: dict | None = None, device: str = "meta"):
    """(model, kwargs used, error). Without ``kw``, tries the tiny kwargs first and falls back to fewer
    (on the meta device by default: no memory, no init cost - for the layout signature and the size)."""
    if kw is not None:
        try:
            return _create(name, kw, device).eval(), kw, None
        except Exception as exc:  # noqa: BLE001
            return None, kw, f"{type(exc).__name__}: {exc}"
    err = None
    for kw in TIMM_TRIES:
        try:
            model = _create(name, kw, device)
        except Exception as exc:  # noqa: BLE001
            err = f"{type(exc).__name__}: {exc}"
            continue
        if "img_size" in kw:  # respect the patch size: 64 for patch 8/16/32, 4 * patch otherwise (56 for 14)
            patch = patch_size_of(model)
            if patch and 64 % patch:
                kw = {**kw, "img_size": 4 * patch}
                try:
                    model = _create(name, kw, device)
                except Exception as exc:  # noqa: BLE001
                    err = f"{type(exc).__name__}: {exc}"
                    continue
        return model.eval(), kw, None
    if device == "meta":  # some constructors compute on their tensors at init: try for real
        return build_timm(name, None, device="cpu")
    return None, None, err


def patch_size_of(model: nn.Module) -> int | None:
    pe = getattr(trunk(model), "patch_embed", None)
    p = getattr(pe, "patch_size", None)
    if p is None:
        proj = getattr(pe, "proj", None)
        p = getattr(proj, "kernel_size", None)
    if isinstance(p, (tuple, list)):
        p = p[0]
    return int(p) if isinstance(p, int) else None


def img_size_of(model: nn.Module, kw: dict) -> int:
    if "img_size" in kw:
        return kw["img_size"]
    pe = getattr(trunk(model), "patch_embed", None)
    s = getattr(pe, "img_size", None)
    if isinstance(s, (tuple, list)):
        s = s[0]
    if isinstance(s, int):
        return s
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return int(cfg.get("input_size", (3, 224, 224))[-1])


def timm_signature(model: nn.Module) -> tuple:
    keys = tuple(sorted((k, tuple(v.shape)) for k, v in model.state_dict().items()))
    blocks = getattr(trunk(model), "blocks", None)
    block_cls = type(blocks[0]).__name__ if blocks is not None and len(blocks) else "-"
    behaviour = sorted({f"{type(m).__name__}({m.extra_repr()})" for m in model.modules()
                        if not isinstance(m, (nn.Linear, nn.Conv2d))})
    attrs = tuple(str(getattr(model, a, None)) for a in ("global_pool", "no_embed_class", "num_prefix_tokens",
                                                          "dynamic_img_size", "pool_type"))
    return (type(model).__name__, block_cls, keys, tuple(behaviour), attrs)


def timm_hints(model: nn.Module, img_size: int) -> dict:
    hints = {"img_size": img_size}
    blocks = getattr(trunk(model), "blocks", None)
    heads = None
    if blocks is not None and len(blocks):
        heads = getattr(getattr(blocks[0], "attn", None), "num_heads", None)
        mlp = getattr(blocks[0], "mlp", None)
        act = getattr(mlp, "act", None) if mlp is not None else None
        hints["act"] = act_hint(act)
    if isinstance(heads, int):
        hints["num_heads"] = heads
    return hints


def timm_reference(name: str, kw: dict, x_cache: dict):
    """Build ``name`` for real with ``kw``, randomise it and run it on a random batch of 2.

    Without an img_size kwarg a small input is tried before the model's own size; a model that refuses
    the small img_size it was built with (a pooling kernel, a window) is rebuilt at the next sizes.
    Returns (model, reference output, input, kwargs, None) or (None, None, None, kw, (stage, error))."""
    builds = [kw] + ([{**kw, "img_size": s} for s in (96, 112, 128, 192, 224)] if "img_size" in kw else [])
    err = ("build", "no build tried")
    for kw_try in builds:
        model, _, build_err = build_timm(name, kw_try, device="cpu")
        if model is None:
            err = ("build", build_err)
            continue
        randomize(model)
        sizes = [img_size_of(model, kw_try)]
        if "img_size" not in kw_try:  # no img_size kwarg: a small input first where the model takes it
            patch = patch_size_of(model) or 16
            sizes.insert(0, 64 if 64 % patch == 0 else 4 * patch)
        for size in sizes:
            if size not in x_cache:
                x_cache[size] = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
            x = x_cache[size]
            try:
                with torch.no_grad():
                    ref = to_tensor(model(x))
            except Exception as exc:  # noqa: BLE001
                err = ("reference", f"{type(exc).__name__}: {exc}")
                continue
            return model, ref, x, ({**kw_try, "input": size} if "img_size" not in kw_try else kw_try), None
        del model
    return None, None, None, kw, err


def run_timm(args, rows: list, layouts_out: list, notes_out: dict) -> None:
    from tqdm import tqdm

    names, notes = timm_candidates(args.filter)
    notes_out.update(notes)
    groups: dict[tuple, list[str]] = {}
    build_fail: list[tuple[str, str]] = []
    too_big: dict[tuple, int] = {}
    kwargs: dict[str, dict] = {}
    for name in tqdm(names, desc="timm: layouts", file=sys.stderr, leave=False):
        model, kw, err = build_timm(name)
        kwargs[name] = kw
        if model is None:
            build_fail.append((name, err))
            continue
        try:
            sig = timm_signature(model)
        except Exception as exc:  # noqa: BLE001
            build_fail.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        groups.setdefault(sig, []).append(name)
        too_big[sig] = sum(p.numel() for p in model.parameters())
        del model
    for name, err in build_fail:
        rows.append(("timm", name, 1, "build", "ref-error", short(err)))
    reps = list(groups.items())
    if args.limit:
        reps = reps[: args.limit]
    x_cache: dict[int, torch.Tensor] = {}
    with tempfile.TemporaryDirectory(prefix="family_sweep_timm_") as tmp:
        bar = tqdm(reps, desc="timm: load", file=sys.stderr, leave=False)
        for i, (sig, members) in enumerate(bar):
            rep = members[0]
            bar.set_postfix_str(rep)
            t0 = time.time()
            layouts_out.append(("timm", rep, sig[0], sig[1], members))
            n = len(members)
            if too_big[sig] > MAX_PARAMS:
                rows.append(("timm", rep, n, "-", "skipped", f"{too_big[sig] / 1e6:.0f}M parameters at depth 2"))
                continue
            try:
                model, ref, x, kw, err = timm_reference(rep, kwargs[rep], x_cache)
            except Exception as exc:  # noqa: BLE001 - never stop the sweep on one model
                model, err = None, ("reference", f"{type(exc).__name__}: {exc}")
            if model is None:
                rows.append(("timm", rep, n, err[0], "ref-error", short(err[1])))
                continue
            try:
                size = x.shape[-1]
                path = Path(tmp) / f"{i}_{rep}.pth"
                torch.save(model.state_dict(), path)
                hints = timm_hints(model, size)
            except Exception as exc:  # noqa: BLE001
                rows.append(("timm", rep, n, "reference", "ref-error", short(f"{type(exc).__name__}: {exc}")))
                continue
            built = ", ".join(f"{k}={v}" for k, v in kw.items())
            outcome, detail = attempt_load(path, ref, x)
            rows.append(("timm", rep, n, f"state dict ({built})", outcome, detail))
            outcome, detail = attempt_load(path, ref, x, **hints)
            hint_txt = ", ".join(f"{k}={v}" for k, v in hints.items())
            rows.append(("timm", rep, n, f"+ hints ({hint_txt})", outcome, detail))
            path.unlink(missing_ok=True)
            if time.time() - t0 > 5:
                tqdm.write(f"slow: {rep} took {time.time() - t0:.1f} s ({built})", file=sys.stderr)
            del model
            gc.collect()


# ---------------------------------------------------------------------------------------------- HF
def build_hf(cls_name: str):
    import transformers

    cls = getattr(transformers, cls_name, None)
    if cls is None:
        return None, "not in this transformers"
    cfg_cls = cls.config_class
    extra = HF_EXTRA.get(cls_name, {})
    errors = []
    # composite configs (SiglipConfig, ...) get the tiny fields in vision_config
    composite = "vision_config" in inspect.signature(cfg_cls.__init__).parameters
    fields = {**HF_TINY, **extra}
    vcls = getattr(cfg_cls, "sub_configs", {}).get("vision_config", cfg_cls) if composite else cfg_cls
    accepted = inspect.signature(vcls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()) or "hidden_size" in accepted:
        # a field the config does not define would be written to config.json as an extra key (Dinov2 has
        # mlp_ratio, not intermediate_size): keep the fields the config's __init__ names
        named = {k: v for k, v in fields.items() if k in accepted}
        fields = named if named else fields
    for fields in (fields, {k: v for k, v in fields.items() if k != "intermediate_size"}):
        try:
            if composite:
                text = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128)
                cfg = cfg_cls(vision_config=fields, text_config=text, num_labels=5)
            else:
                cfg = cfg_cls(**fields, num_labels=5)
            torch.manual_seed(SEED)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = cls(cfg)
            return model.eval(), None
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
    return None, errors[-1]


def hf_reference(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if type(model).__name__ in PATCHIFIED:
            # what Siglip2's image processor feeds: (B, patches, p*p*C) row-major, a full mask, the grid
            cfg = getattr(model.config, "vision_config", model.config)
            b, c, h, w = x.shape
            p = cfg.patch_size
            patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
            mask = torch.ones(b, patches.shape[1], dtype=torch.long)
            shapes = torch.tensor([[h // p, w // p]] * b)
            return to_tensor(model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes))
        out = model(pixel_values=x)
        if type(model).__name__ in MEAN_REFERENCE and getattr(out, "pooler_output", None) is None:
            return out.last_hidden_state.mean(1)
        if type(model).__name__ in SPATIAL_MEAN_REFERENCE:  # (B, C, H, W): edgevit's features are its mean
            return out.last_hidden_state.mean((2, 3))
        return to_tensor(out)


def hf_act(model) -> str:
    cfg = model.config
    cfg = getattr(cfg, "vision_config", cfg)
    act = str(getattr(cfg, "hidden_act", "gelu"))
    if act in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast", "gelu_python_tanh"):
        return "gelu_tanh"
    if act == "quick_gelu":
        return "quick_gelu"
    return "gelu"


def run_hf(args, rows: list) -> None:
    from tqdm import tqdm

    with contextlib.suppress(Exception):
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()

    classes = [c for c in HF_CLASSES if not args.filter or args.filter.lower() in c.lower()]
    if args.limit:
        classes = classes[: args.limit]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory(prefix="family_sweep_hf_") as tmp:
        for cls_name in tqdm(classes, desc="hf", file=sys.stderr, leave=False):
            model, err = build_hf(cls_name)
            if model is None:
                rows.append(("hf", cls_name, 1, "build", "ref-error", short(err)))
                continue
            try:
                randomize(model)
                ref = hf_reference(model, x)
                d = Path(tmp) / cls_name
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    model.save_pretrained(d)
                bare = Path(tmp) / f"{cls_name}_bare"
                bare.mkdir()
                shutil.copy(d / "model.safetensors", bare / "model.safetensors")
            except Exception as exc:  # noqa: BLE001
                rows.append(("hf", cls_name, 1, "reference", "ref-error", short(f"{type(exc).__name__}: {exc}")))
                continue
            outcome, detail = attempt_load(d, ref, x)
            rows.append(("hf", cls_name, 1, "save_pretrained directory", outcome, detail))
            outcome, detail = attempt_load(bare / "model.safetensors", ref, x)
            rows.append(("hf", cls_name, 1, "bare model.safetensors", outcome, detail))
            vc = getattr(model.config, "vision_config", model.config)
            hints = {"num_heads": getattr(vc, "num_attention_heads", 2), "act": hf_act(model), "img_size": 64}
            outcome, detail = attempt_load(bare / "model.safetensors", ref, x, **hints)
            hint_txt = ", ".join(f"{k}={v}" for k, v in hints.items())
            rows.append(("hf", cls_name, 1, f"bare file + hints ({hint_txt})", outcome, detail))
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(bare, ignore_errors=True)
            del model
            gc.collect()


# ------------------------------------------------------------------------------------------ report
OUTCOMES = ("exact", "refused", "refused-valueerror", "WRONG", "crash", "ref-error", "skipped")


def md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_report(path: Path, rows, layouts, notes, command: str, elapsed: float) -> str:
    import timm
    import transformers

    counts = {o: sum(1 for r in rows if r[4] == o) for o in OUTCOMES}
    summary = ", ".join(f"{o}: {c}" for o, c in counts.items() if c)
    lines = [
        "# ViT-family load sweep",
        "",
        f"Written by `scripts/family_sweep.py` on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"in {elapsed:.0f} s (torch {torch.__version__}, timm {timm.__version__}, transformers "
        f"{transformers.__version__}, edgevit {edgevit.__version__}).",
        "",
        f"Command: `{command}`",
        "",
        "## Summary (attempts per outcome)",
        "",
        "| source | " + " | ".join(OUTCOMES) + " |",
        "|---|" + "---|" * len(OUTCOMES),
    ]
    for src in ("timm", "hf", "all"):
        sel = [r for r in rows if src == "all" or r[0] == src]
        if sel:
            lines.append(f"| {src} | " + " | ".join(str(sum(1 for r in sel if r[4] == o)) for o in OUTCOMES) + " |")
    lines += [
        "",
        "Outcomes: **exact** loads and max|reference - edgevit| <= 1e-4 on a random batch of 2; **refused** "
        "edgevit.errors.CheckpointError; **refused-valueerror** ValueError (ViTConfig); **WRONG** loads but the "
        "output differs (or has another shape) - whether an EdgeVitWarning was emitted is noted; **crash** any other "
        "exception; **ref-error** the reference model could not be built or run; **skipped** > 300M parameters. "
        "Details quote the first 160 characters of the message, without its leading checkpoint path (a temporary "
        "file; shown as `<file>` elsewhere).",
        "",
        "How: timm models built with `pretrained=False, depth=2, img_size=64` (4 x patch where 64 is not a multiple "
        "of the patch, e.g. 56 for patch 14), `embed_dim=128, num_heads=2, num_classes=5` where accepted (fewer "
        "kwargs otherwise); HF models from tiny configs (hidden 128, 2 layers, 2 heads, intermediate 320, image 64, "
        "patch 16, 5 labels; per-class extras in HF_EXTRA, e.g. relative position bias for BEiT / Data2Vec). "
        "Parameters randomised (norm weights 1+0.2*randn, other 1-D 0.2*randn, the rest 0.05*randn, seed 0; "
        "buffers such as RoPE tables kept). HF attempts: the save_pretrained directory, its model.safetensors "
        "alone, and that file with the hints. References: timm `model(x)`; HF `logits`, else `pooler_output`, else "
        "`last_hidden_state[:, 0]` (IJepaModel, which has neither class token nor pooler: the token mean; "
        "SamVisionModel: the mean of its (B, C, H, W) image embedding over H and W; Siglip2 "
        "gets the flattened patches, full mask and grid its image processor makes); edgevit `model(x)`. A "
        "ValueError raised by edgevit's model on the reference input (after a load) is listed as "
        "refused-valueerror with 'at forward'. Hints are what a user could know: timm's head count, the "
        "MLP activation (gelu / gelu_tanh / quick_gelu) and the image size. Note: with embed_dim 128 and 2 heads the "
        "head width is 64, as in most released ViTs, so a head-count guess of embed_dim / 64 is right here; an "
        "unhinted load of a checkpoint with another head width is not exercised.",
        "",
        "timm filter: the ViT modules (" + ", ".join(TIMM_VIT_MODULES) + ") plus any timm module whose "
        "source mentions `self.blocks` and `patch_embed` and whose first model has a `patch_embed` and a flat "
        "`blocks` stack (on the model or a direct child such as `encoder`) whose first block has an `attn` and "
        "whose first and last blocks have the same tensor shapes (one width: hierarchical Hiera / HieraDet are "
        "excluded). Layouts group names by model class, block class, "
        "state-dict keys with shapes at the tiny size, and a behaviour signature (each module's class and "
        "`extra_repr`, global_pool, no_embed_class, prefix tokens); the first name is the representative.",
        "",
        "## Results",
        "",
        "| source | name/class | layout group size | attempt | outcome | detail |",
        "|---|---|---|---|---|---|",
    ]
    order = {o: i for i, o in enumerate(("WRONG", "crash", "refused-valueerror", "refused", "exact", "ref-error",
                                         "skipped"))}
    for r in rows:
        lines.append("| " + " | ".join(md(c) for c in r) + " |")
    lines += ["", "## WRONG and crash rows", ""]
    bad = sorted((r for r in rows if r[4] in ("WRONG", "crash")), key=lambda r: (order[r[4]], r[0], r[1]))
    lines += [f"- **{r[4]}** {r[0]} `{r[1]}` ({md(r[3])}): {md(r[5])}" for r in bad] or ["(none)"]
    if notes:
        lines += ["", "## timm modules considered", ""]
        lines += [f"- `{m}`: {n}" for m, n in sorted(notes.items())]
    if layouts:
        lines += ["", "## timm layouts (representative: members)", ""]
        for _, rep, cls, block, members in layouts:
            lines.append(f"- `{rep}` ({cls} / {block}, {len(members)}): {', '.join(members)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("timm", "hf"))
    ap.add_argument("--filter", help="keep timm names / HF class names containing this substring "
                    "(case-insensitive)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "family_sweep.md"))
    ap.add_argument("--limit", type=int, default=0, help="at most N layouts (timm) / classes (hf)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    warnings.filterwarnings("ignore", category=FutureWarning)
    start = time.time()
    rows, layouts, notes = [], [], {}
    if args.only in (None, "timm"):
        run_timm(args, rows, layouts, notes)
    if args.only in (None, "hf"):
        run_hf(args, rows)
    elapsed = time.time() - start
    command = "python scripts/family_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv)
    summary = write_report(Path(args.out), rows, layouts, notes, command.strip(), elapsed)
    print(f"summary: {summary}")
    for r in rows:
        if r[4] in ("WRONG", "crash"):
            print(f"  {r[4]}: {r[0]} {r[1]} [{r[3]}] {r[5]}")
    print(f"wrote {args.out}; elapsed {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
