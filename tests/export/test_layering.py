"""Export and precision are below verification: nothing under edgevit/export or edgevit/precision
imports the verification harness (edgevit.verify); what they need lives lower (edgevit.runtime.batching, edgevit.tolerances)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgevit

PACKAGE = Path(edgevit.__file__).parent
ROOT = PACKAGE.parent


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, function-level ones included."""
    package = "edgevit." + ".".join(path.relative_to(PACKAGE).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rstrip(".").split(".")
            base = base[:len(base) - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_export_modules_do_not_import_the_verification_harness():
    bad = [f"{file.relative_to(ROOT)}:{line} imports {name}"
           for folder in ("export", "precision") for file in sorted((PACKAGE / folder).rglob("*.py"))
           for line, name in _imported_modules(file) if name == "edgevit.verify" or name.startswith("edgevit.verify.")]
    assert not bad, "export and precision must not import edgevit.verify:\n" + "\n".join(bad)


def test_quantize_gate_runs_without_loading_verify():
    """The gate's verdict takes min_agreement from edgevit.tolerances, the same table verify re-exports."""
    code = ("import sys\n"
            "from edgevit.precision.gate import judge\n"
            "r = judge({'drop_points': 0.0, 'agreement': 0.5}, 'int8', 1.0)\n"
            "loaded = sorted(m for m in sys.modules if m == 'edgevit.verify')\n"
            "assert not loaded, f'the gate loaded {loaded}'\n"
            "print(r['verdict'], r['min_agreement'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from edgevit.tolerances import TOLERANCES
    from edgevit.verify import TOLERANCES as via_verify

    assert via_verify is TOLERANCES, "edgevit.verify must re-export the one table, not a copy"
    assert proc.stdout.split() == ["failed", str(TOLERANCES["int8"].min_agreement)], proc.stdout
