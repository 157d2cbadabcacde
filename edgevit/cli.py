"""The ``edgevit`` command line. Thin: each command parses, calls one library function, renders.

Errors map to messages in one table (``_EXIT_CODES``): usage errors exit 2, failures exit 1.
Every command takes ``--json`` for machine-readable output.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from .errors import EdgeVitError

# exception type -> (exit status, label). The first matching entry wins.
_EXIT_CODES: list[tuple[type[BaseException], int, str]] = [
    (EdgeVitError, 1, "error"),
    (ValueError, 2, "invalid value"),
    (FileNotFoundError, 1, "file not found"),
]


def _to_jsonable(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=_to_jsonable))


def handle_errors(fn):
    """Turn library errors into one clear message on stderr and the table's exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except tuple(exc for exc, _, _ in _EXIT_CODES) as exc:
            for exc_type, code, label in _EXIT_CODES:
                if isinstance(exc, exc_type):
                    ctx = click.get_current_context(silent=True)
                    if ctx is not None and ctx.params.get("as_json"):
                        click.echo(json.dumps({"ok": False, "error": label, "type": type(exc).__name__,
                                               "message": str(exc)}))
                    click.secho(f"edgevit: {label}: {exc}", fg="red", err=True)
                    sys.exit(code)
            raise

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgevit")
def main() -> None:
    """edgevit: train or load a ViT, export it through ONNX to TensorRT, and prove nothing broke."""


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """Render a terminal table (rich)."""
    from rich.console import Console
    from rich.table import Table

    tbl = Table(title=title)
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*[str(v) for v in row])
    Console().print(tbl)


# ---------------------------------------------------------------- models, info
@main.command("models")
@json_option
@handle_errors
def models_cmd(as_json: bool) -> None:
    """List the named model variants."""
    from .models import count_params, get_variant, list_variants, macs_per_image
    from .models.vit import VisionTransformer

    rows = []
    for name in list_variants():
        v = get_variant(name)
        c = v.config
        rows.append({"name": name, "img_size": c.img_size, "patch_size": c.patch_size, "embed_dim": c.embed_dim,
                     "depth": c.depth, "num_heads": c.num_heads, "num_classes": c.num_classes,
                     "gmacs": round(macs_per_image(c) / 1e9, 4), "description": v.description})
    if as_json:
        emit_json(rows)
        return
    table("edgevit model variants", ["name", "img", "patch", "dim", "depth", "heads", "classes", "GMACs"],
          [[r["name"], r["img_size"], r["patch_size"], r["embed_dim"], r["depth"], r["num_heads"],
            r["num_classes"], r["gmacs"]] for r in rows])


@main.command("info")
@click.argument("source")
@click.option("--arch", help="Variant name for a timm state dict (inferred from shapes otherwise).")
@json_option
@handle_errors
def info_cmd(source: str, arch: str | None, as_json: bool) -> None:
    """Parameters, GMACs, tokens, heads, input spec and TensorRT fused-MHA eligibility of SOURCE."""
    from .models.info import model_info

    info = model_info(source, arch=arch)
    if as_json:
        emit_json(info)
        return
    rows = [[k, v] for k, v in info.items() if not isinstance(v, dict)]
    for k, v in info["fused_mha"].items():
        rows.append([f"fused_mha.{k}", v])
    table(f"edgevit info: {source}", ["field", "value"], rows)


# ---------------------------------------------------------------- train, eval
# (added below)
