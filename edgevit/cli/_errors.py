"""The CLI's error table: which exception exits with which status and message (usage errors 2,
failures 1), :func:`handle_errors` that applies it to a command, and the one-line printing of
edgevit's own warnings. Nothing a user can type prints a traceback."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import warnings

import click

from .._deps import missing_dependency
from ..errors import EdgeVitError, EdgeVitWarning

# (exception, exit status, label[, how to fix]); PIL's errors are named by string, so that
# importing the CLI does not import that library.
_EXIT_CODES: list[tuple] = [
    (EdgeVitError, 1, "error"),
    (ValueError, 2, "invalid value"),
    (FileNotFoundError, 1, "file not found", "check the path"),
    (PermissionError, 1, "permission denied", "check the path's permissions, or use another path"),
    (NotADirectoryError, 1, "not a directory", "a part of the path is a file; use another path"),
    (IsADirectoryError, 1, "is a directory", "give a file, not a directory"),
    ("PIL.UnidentifiedImageError", 1, "not a readable image",  # an OSError: before OSError
     "give a PNG, JPEG, BMP, ... image or a .npy array"),
    ("PIL.Image.DecompressionBombError", 1, "image too large", "downscale the image first"),
    (MemoryError, 1, "out of memory", "give less data at once (fewer images, a smaller --batch or --img-size), or "
     "use a machine with more memory"),
    ("torch.OutOfMemoryError", 1, "out of memory", "use a smaller --batch or --img-size, or a GPU with more memory"),
    (OSError, 1, "system error", "check the path, its permissions and the free disk space"),
]


def _exit_entry(exc: BaseException) -> tuple | None:
    """The first ``_EXIT_CODES`` entry that matches ``exc``, or None."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    for entry in _EXIT_CODES:
        kind = entry[0]
        if kind in names if isinstance(kind, str) else isinstance(exc, kind):
            return entry
    return None


def _error_message(exc: BaseException, hint: str | None) -> str:
    """``exc`` as one line: for an OSError the path and the system's reason, the option that gave
    the path, and how to fix it."""
    if not isinstance(exc, OSError) or exc.filename is None:
        text = str(exc) or type(exc).__name__
    else:
        path = os.fsdecode(exc.filename)
        text = f"{path}{f' -> {os.fsdecode(exc.filename2)}' if exc.filename2 else ''}: {exc.strerror or exc}"
        option = _option_of(path)
        if option:
            text += f" (from {option})"
    return f"{text.rstrip('.')}; {hint}" if hint else text


def _option_of(path: str) -> str | None:
    """The current command's option or argument whose value is ``path`` or a folder above it."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    for param in ctx.command.params:
        values = ctx.params.get(param.name)
        for value in values if isinstance(values, (tuple, list)) else (values,):
            if isinstance(value, str) and value and (path == value or path.startswith(value.rstrip(os.sep) + os.sep)):
                return param.opts[-1] if isinstance(param, click.Option) else (param.metavar or param.name.upper())
    return None


def _echo_failure(label: str, exc: BaseException, message: str) -> None:
    """The ``--json`` answer of a command that failed, on stdout: ``{"ok": false, "error", "type", "message"}``."""
    click.echo(json.dumps({"ok": False, "error": label, "type": type(exc).__name__, "message": message}))


def _asks_json(args) -> bool:
    """Whether the words typed hold ``--json`` (before a ``--``): a usage error stops click before the
    command's options are parsed, so the flag is read from the command line itself."""
    args = [str(a) for a in args]
    return "--json" in (args[: args.index("--")] if "--" in args else args)


_JSON_KEY = "edgevit.as_json"
INTERRUPTED = 130  # 128 + SIGINT, a shell's status for a command stopped by Ctrl-C


class JsonErrorsGroup(click.Group):
    """The ``edgevit`` group. With ``--json`` on the command line, what click itself reports also
    prints the ``{"ok": false, ...}`` object on stdout: a usage error (an unknown option, a bad value;
    exit 2) and Ctrl-C (exit 130). The human message on stderr stays click's."""

    def make_context(self, info_name, args, parent=None, **extra):
        as_json = _asks_json(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            if as_json:
                _echo_click_failure(exc)
            raise
        ctx.meta[_JSON_KEY] = as_json
        return ctx

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # a subcommand's usage error, or one raised by a command
            if ctx.meta.get(_JSON_KEY):
                _echo_click_failure(exc)
            raise
        except KeyboardInterrupt as exc:
            if ctx.meta.get(_JSON_KEY):
                _echo_failure("interrupted", exc, "stopped by Ctrl-C (SIGINT) before it finished; run it again")
            click.echo(file=sys.stderr)  # click's own answer to Ctrl-C, with the shell's status
            click.echo("Aborted!", file=sys.stderr)
            raise click.exceptions.Exit(INTERRUPTED) from None


def _echo_click_failure(exc: click.ClickException) -> None:
    """The ``--json`` answer to an error click reports (usage errors exit 2, others 1)."""
    usage = isinstance(exc, click.UsageError)
    message = exc.format_message()
    if usage and exc.ctx is not None:
        message = f"{message.rstrip('.')}; see `{exc.ctx.command_path} --help`"
    _echo_failure("usage error" if usage else "error", exc, message)


def handle_errors(fn):
    """Turn library errors into one clear message on stderr and the table's exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            exc = missing_dependency(exc) or exc  # an optional dependency a device install leaves out
            entry = _exit_entry(exc)
            if entry is None:  # not in the table: a bug, keep its traceback
                raise
            _, code, label, *hint = entry
            message = _error_message(exc, hint[0] if hint else None)
            ctx = click.get_current_context(silent=True)
            if ctx is not None and ctx.params.get("as_json"):
                _echo_failure(label, exc, message)
            click.secho(f"edgevit: {label}: {message}", fg="red", err=True)
            sys.exit(code)

    return wrapper


@contextlib.contextmanager
def print_edgevit_warnings():
    """Print edgevit's own warnings (EdgeVitWarning) as one ``edgevit: warning:`` line on stderr;
    other warnings keep Python's format."""
    with warnings.catch_warnings():
        python_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, EdgeVitWarning):
                click.secho(f"edgevit: warning: {message}", fg="yellow", err=True)
            else:
                python_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("default", EdgeVitWarning)
        yield
