"""Artifact-format and output-kind facts live on their rows (edgevit.formats.ARTIFACT_FORMATS,
edgevit.output_kinds.OutputKind): no other module decides by comparing with a format's or an output
kind's name written as a literal (``fmt == "onnx"``, ``output in ("features", "tokens")``); it reads the
row's fact (``artifact_format(name).graph``, ``OutputKind(name).classes``) instead. Names written as
values (``add_artifact(format="onnx")``) are not decisions and stay."""

from __future__ import annotations

import ast
from pathlib import Path

import edgevit
from edgevit.formats import ARTIFACT_FORMATS
from edgevit.output_kinds import OUTPUT_KINDS

PACKAGE = Path(edgevit.__file__).parent
TABLES = (PACKAGE / "formats.py", PACKAGE / "output_kinds.py")


def _strings(node: ast.AST) -> list[str]:
    """The str constants of ``node``: itself, or the elements of a tuple, list or set display."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for element in node.elts for s in _strings(element)]
    return []


def compared_names(source: str, where: str = "<source>") -> list[str]:
    """``where:line: 'name'`` for each format or output-kind name a comparison in ``source`` holds as a literal."""
    names = set(ARTIFACT_FORMATS) | set(OUTPUT_KINDS)
    return [f"{where}:{node.lineno}: {s!r}" for node in ast.walk(ast.parse(source, filename=where))
            if isinstance(node, ast.Compare)
            for side in (node.left, *node.comparators) for s in _strings(side) if s in names]


def test_no_format_or_output_kind_name_decides_outside_its_table():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path not in TABLES
             for hit in compared_names(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))]
    assert not found, ("format or output-kind names compared as literals outside edgevit/formats.py and "
                       "edgevit/output_kinds.py; read the row's fact (edgevit.formats.artifact_format(name), "
                       "edgevit.output_kinds.OutputKind(name)) instead:\n" + "\n".join(found))


def test_the_scan_sees_comparisons_and_leaves_values():
    source = ('if fmt == "onnx": pass\n'
              'if output not in ("features", "tokens"): pass\n'
              'add_artifact("model.onnx", format="onnx")\n')
    assert compared_names(source) == ["<source>:1: 'onnx'", "<source>:2: 'features'", "<source>:2: 'tokens'"]
