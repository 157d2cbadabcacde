"""Precision facts live on edgevit.formats.PRECISION_TABLE: no other module names a precision in a string
literal (it reads the row, or a named constant of formats such as BASE_PRECISION)."""

from __future__ import annotations

import ast
from pathlib import Path

import edgevit
from edgevit.formats import PRECISIONS

PACKAGE = Path(edgevit.__file__).parent
TABLE = PACKAGE / "formats.py"


def precision_literals(path: Path) -> list[str]:
    """``file:line: 'name'`` for each str constant in ``path`` that is a precision name."""
    names = set(PRECISIONS)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]


def test_no_precision_name_is_written_outside_the_table():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != TABLE for hit in precision_literals(path)]
    assert not found, ("precision names written as literals outside edgevit/formats.py; read the row "
                       "(edgevit.formats.precision(name)) or a named constant of formats instead:\n" + "\n".join(found))


def test_the_scan_sees_the_table_itself():
    assert len(precision_literals(TABLE)) >= len(PRECISIONS)
