"""``edgevit models`` and ``edgevit info``: the model registry and what a model is."""

from __future__ import annotations

import click

from .._deps import require_export
from ._errors import handle_errors
from ._options import json_option, model_override_options
from ._render import emit_json, table


@click.command("models")
@json_option
@handle_errors
def models_cmd(as_json: bool) -> None:
    """List the named model variants."""
    require_export("listing the model variants (they are PyTorch models)")
    from ..models import get_variant, list_variants, macs_per_image
    from ..models.info import model_family, output_kind

    rows = []
    for name in list_variants():
        v = get_variant(name)
        c = v.config
        rows.append({"name": name, "family": model_family(c), "img_size": c.img_size, "patch_size": c.patch_size,
                     "embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads, "tokens": c.num_tokens,
                     "num_classes": c.num_classes, "output": output_kind(c),
                     "gmacs": round(macs_per_image(c) / 1e9, 4), "description": v.description})
    if as_json:
        emit_json(rows)
        return
    table("edgevit model variants (tokens: patches + class/distillation/register tokens)",
          ["name", "family", "img", "patch", "dim", "depth", "heads", "tokens", "classes", "output", "GMACs"],
          [[r["name"], r["family"], r["img_size"], r["patch_size"], r["embed_dim"], r["depth"], r["num_heads"],
            r["tokens"], r["num_classes"], r["output"], r["gmacs"]] for r in rows])


@click.command("info")
@click.argument("source", required=False)
@click.option("--arch", help="Variant name for a timm state dict (inferred from shapes otherwise).")
@model_override_options
@json_option
@handle_errors
def info_cmd(source: str | None, arch: str | None, as_json: bool, model_overrides: dict) -> None:
    """Family, output (logits or features), parameters, GMACs, tokens, heads, input spec and TensorRT
    fused-MHA eligibility of SOURCE (a checkpoint, variant or hub name); always, the TensorRT and
    cuda-python installed here and whether edgevit has checked each version (without SOURCE: only
    those, no PyTorch needed)."""
    from ..tensorrt._bindings import version_report

    info = {}
    if source is not None:
        require_export("reading a checkpoint, variant or hub model")
        from ..models.info import model_info

        info = model_info(source, arch=arch, model_overrides=model_overrides)
    info = {**info, **version_report()}
    if as_json:
        emit_json(info)
        return
    table(f"edgevit info: {source or 'TensorRT and cuda-python'}", ["field", "value"], info_rows(info))


def info_rows(info: dict, prefix: str = "") -> list[list]:
    """(field, value) rows of :func:`model_info`'s dict: nested dicts (the input spec, fused-MHA
    eligibility, guessed settings) as ``parent.key``, sequences as comma-separated values."""
    rows = []
    for k, v in info.items():
        if isinstance(v, dict):
            rows += info_rows(v, f"{prefix}{k}.")
        else:
            rows.append([f"{prefix}{k}", ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v])
    return rows
