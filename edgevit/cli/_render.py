"""Output of every command: JSON (``--json``), rich tables, and :func:`finish`, which prints a
report and exits 1 with its failures listed when it did not pass."""

from __future__ import annotations

import json
import sys

import click

from .._io import to_jsonable


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=to_jsonable))


def finish(data, as_json: bool, render, ok: bool, failure: str, lines: list[str]) -> None:
    """Print ``data`` as JSON or ``render()`` it; when not ``ok``, list ``lines`` on stderr and exit 1."""
    if as_json:
        emit_json(data)
    else:
        render()
    if not ok:
        click.secho(f"edgevit: {failure}", fg="red", err=True)
        for line in lines:
            click.secho(f"  {line}", fg="red", err=True)
        sys.exit(1)


def console():
    """A rich console; piped output gets 200 columns, so tables are not squeezed into 80 and cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 200))


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """Render a terminal table (rich). Cells are text, not markup: a shape such as ``[batch, 128]`` or a
    path with brackets prints as it is."""
    from rich.markup import escape
    from rich.table import Table

    tbl = Table(title=escape(title))
    for col in columns:
        tbl.add_column(escape(col))
    for row in rows:
        tbl.add_row(*[escape(str(v)) for v in row])
    console().print(tbl)


def render_certificates(records: list[dict]) -> None:
    """One table of preprocessing certificates as reports carry them
    (:meth:`edgevit.manifest.Manifest.certificate_records`); nothing when there are none."""
    from ..certificates import CERTIFICATE_COLUMNS, Certificate

    if records:
        table("preprocessing certificates (each consumer checked against the reference)", CERTIFICATE_COLUMNS,
              [Certificate.from_dict(r).row(r.get("current", True)) for r in records])
