"""Citations in the code point at sections that exist: ``docs/design.md §N.M`` and
``benchmarks/README.md, "Heading"`` (a heading's text up to its parenthesis; a ``design.md`` outside docs/ is not in the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESIGN_CITE = re.compile(r"(?:docs/)?design\.md(?:'s)?(?: §(\d+(?:\.\d+)?))?")
BENCH_CITE = re.compile(r'benchmarks/README\.md, "([^"]+)"')


def _sources(root: Path) -> list[Path]:
    files = [p for d in ("edgevit", "benchmarks", "tests") for p in (root / d).rglob("*.py")]
    files += [p for p in (root / "benchmarks").rglob("*.sh")] + [root / "README.md", root / "benchmarks" / "README.md"]
    return sorted(p for p in files if p.is_file() and p.name != "test_docs.py")


def _headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]


def bad_citations(root: Path) -> list[str]:
    design = {m.group(1) for h in _headings(root / "docs" / "design.md") if (m := re.match(r"(\d+(?:\.\d+)?)\.? ", h))}
    bench = set(_headings(root / "benchmarks" / "README.md"))
    bad = []
    for path in _sources(root):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(root)}:{n}"
            for m in DESIGN_CITE.finditer(line):
                if not m.group(0).startswith("docs/"):
                    bad.append(f"{where}: cites {m.group(0)!r}: write docs/design.md §N (the file in the repository)")
                elif m.group(1) and m.group(1) not in design:
                    bad.append(f"{where}: docs/design.md §{m.group(1)} does not exist (sections: {sorted(design)})")
            for m in BENCH_CITE.finditer(line):
                if not any(h == m.group(1) or h.startswith(m.group(1) + " (") for h in bench):
                    bad.append(f"{where}: benchmarks/README.md has no heading {m.group(1)!r}")
    return bad


def test_citations_name_sections_that_exist():
    bad = bad_citations(ROOT)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("text, expected", [
    ("# see design.md §3\n", "cites 'design.md §3'"),
    ("# see docs/design.md §9.9\n", "docs/design.md §9.9 does not exist"),
    ('# see benchmarks/README.md, "Nope"\n', "has no heading 'Nope'"),
    ("# see docs/design.md §1\n", None),
])
def test_the_check_fails_on_a_missing_section(tmp_path, text, expected):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "design.md").write_text("# t\n## 1. The pipeline\n", encoding="utf-8")
    for d in ("edgevit", "benchmarks", "tests"):
        (tmp_path / d).mkdir()
    (tmp_path / "README.md").write_text("", encoding="utf-8")
    (tmp_path / "benchmarks" / "README.md").write_text("## Results\n", encoding="utf-8")
    (tmp_path / "edgevit" / "m.py").write_text(text, encoding="utf-8")
    bad = bad_citations(tmp_path)
    assert (bad == []) if expected is None else (len(bad) == 1 and expected in bad[0]), bad
