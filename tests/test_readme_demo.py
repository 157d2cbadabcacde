"""README.md's demo output has what ``edgevit demo`` prints: the same tables with the same columns,
the same bench rows (those on the CPU) and statuses, the same steps and step statuses, the same kinds
of lines around them. Measured numbers are not compared: they depend on the CPU and the checkpoint.

The demo here runs on the reduced budget of tests/test_demo.py (a checkpoint whose precision graphs
pass by construction, two timed iterations). When this fails after a change to the demo or bench
output, rerun the command README.md names and paste what it prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgevit.cli import main
from tests._fixtures import rich_table

README = Path(__file__).resolve().parent.parent / "README.md"
BOX_TOP, HEADER, BODY = "┏", "┃", "│"


def rich_header(output: str, first: str) -> list[str] | None:
    """Column headers of the first rich table in ``output`` whose first header is ``first`` (a header
    wrapped over several lines is joined per column); None when there is no such table."""
    lines = [line.strip() for line in output.splitlines()]
    for i, text in enumerate(lines):
        if not text.startswith(BOX_TOP):
            continue
        parts = []
        for row in lines[i + 1:]:
            if not row.startswith(HEADER):
                break
            parts.append([c.strip() for c in row.strip(HEADER).split(HEADER)])
        header = [" ".join(p for p in col if p) for col in zip(*parts)]
        if header and header[0] == first:
            return header
    return None


def _titles_and_lines(output: str) -> tuple[list[str], set[str]]:
    """Table titles (the line above each table, first two words) and the first word of every other
    line outside the tables, warnings aside (they depend on timing noise)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    titles, kinds = [], set()
    for i, text in enumerate(lines):
        if text[0] in "┏┃┡│└╇━":
            continue
        if i + 1 < len(lines) and lines[i + 1].startswith(BOX_TOP):
            titles.append(" ".join(text.split()[:2]))
        elif not text.startswith("warning:"):
            kinds.add(text.split()[0])
    return titles, kinds


def readme_demo_block() -> str:
    """The one fenced block of README.md that holds both the bench table and the step table."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    found = [b for b in blocks if rich_header(b, "row") and rich_header(b, "step")]
    assert len(found) == 1, (f"README.md has {len(found)} fenced blocks with the demo's bench table (first column "
                             "'row') and step table (first column 'step'), verbatim as edgevit demo prints them; want 1")
    return found[0]


@pytest.fixture(scope="module")
def demo_run(robust_digits, tmp_path_factory):
    run = tmp_path_factory.mktemp("readme-demo") / "run"
    res = CliRunner().invoke(main, ["demo", "-o", str(run), "--checkpoint", robust_digits, "--iterations", "2"])
    assert res.exit_code == 0, res.output[-3000:]
    return res.stdout, json.loads((run / "demo.json").read_text())


def test_readme_demo_tables_have_the_printed_columns(demo_run):
    printed, _ = demo_run
    block = readme_demo_block()
    for first in ("row", "step"):
        assert rich_header(block, first) == rich_header(printed, first), (
            first, rich_header(block, first), rich_header(printed, first))


def test_readme_demo_rows_and_steps_are_the_printed_ones(demo_run):
    printed, data = demo_run
    block = readme_demo_block()
    cpu = {r["name"] + (" (ref)" if r.get("reference") else "") for r in data["bench"]["rows"] if r["device"] == "cpu"}
    want = {row[0]: row[1] for row in rich_table(printed, "row") if row[0] in cpu}  # a GPU host adds other rows
    readme = {row[0]: row[1] for row in rich_table(block, "row") if row[0]}
    assert readme == want, (readme, want)
    want_steps = [(row[0], row[1]) for row in rich_table(printed, "step") if row[0]]
    readme_steps = [(row[0], row[1]) for row in rich_table(block, "step") if row[0]]
    assert [s for s, _ in readme_steps] == [s for s, _ in want_steps], (readme_steps, want_steps)
    engines_built = dict(want_steps)["engines"] == "ok"  # a host with TensorRT and a GPU builds them
    assert [st for st in readme_steps if not (engines_built and st[0] == "engines")] == [
        st for st in want_steps if not (engines_built and st[0] == "engines")], (readme_steps, want_steps)


def test_readme_demo_has_the_printed_titles_and_lines(demo_run):
    printed, _ = demo_run
    assert _titles_and_lines(readme_demo_block()) == _titles_and_lines(printed), (
        _titles_and_lines(readme_demo_block()), _titles_and_lines(printed))
