"""Run one edgevit command in a child process with hooks that line two writers of one OUTDIR up at
the moment they race (used by tests/export/test_concurrent_writers.py; not a test).

    python -m tests.export._race ROLE SYNC_DIR -- edgevit CLI arguments...

Both roles stop after building what they write, until the other has built too (``built-ROLE``
files in SYNC_DIR), so that they reach OUTDIR together. For export, the roles are further ordered
to give the interleaving that mixes two runs: ``first`` installs its graph and then waits a little
for ``second`` to install and save; ``second`` waits a little for ``first`` to install before it
does. Without a lock that is install(first), install(second), save(second), save(first): one run's
manifest over the other's graph. With OUTDIR's lock whichever holds it first waits out its short
wait alone, and the other goes on only after it has saved.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROLES = ("first", "second")
BARRIER_S = 120.0  # both sides reach it in seconds; this only bounds a broken run
SHORT_S = 4.0      # the ordering waits (with the lock they run out)


def _touch(sync: Path, name: str) -> None:
    (sync / name).write_text("")


def _wait(sync: Path, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not (sync / name).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _hooks(role: str, sync: Path) -> None:
    import edgevit.export.onnx as export_module
    import edgevit.precision.pipeline as pipeline
    from edgevit.manifest import Manifest

    other = ROLES[1 - ROLES.index(role)]

    def barrier() -> None:
        _touch(sync, f"built-{role}")
        if not _wait(sync, f"built-{other}", BARRIER_S):
            raise SystemExit(f"_race: {other} never got as far as {role}")

    real_add, real_install, real_save, real_one = (Manifest.add_artifact, export_module.install, Manifest.save,
                                                   pipeline._one_precision)
    state = {"barrier": False}

    def add_artifact(self, *args, **kwargs):  # export: the graph is verified and about to be installed
        art = real_add(self, *args, **kwargs)
        if not state["barrier"] and "export" in sys.argv:
            state["barrier"] = True
            barrier()
        return art

    def one_precision(*args, **kwargs):  # quantize: the graph is built and about to be installed
        out = real_one(*args, **kwargs)
        barrier()
        return out

    def install(*args, **kwargs):
        if role == "second":
            _wait(sync, "installed-first", SHORT_S)
        real_install(*args, **kwargs)
        if role == "first":
            _touch(sync, "installed-first")
            _wait(sync, "saved-second", SHORT_S)

    def save(self, *args, **kwargs):
        path = real_save(self, *args, **kwargs)
        _touch(sync, f"saved-{role}")
        return path

    Manifest.add_artifact, Manifest.save = add_artifact, save
    export_module.install, pipeline._one_precision = install, one_precision


def main(argv: list[str]) -> None:
    role, sync, sep, *args = argv
    assert role in ROLES and sep == "--", argv
    _hooks(role, Path(sync))
    from edgevit.cli import main as cli

    cli.main(args, prog_name="edgevit")


if __name__ == "__main__":
    main(sys.argv[1:])
