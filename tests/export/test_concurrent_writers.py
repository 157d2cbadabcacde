"""Two edgevit processes writing one OUTDIR at once (issue 16, item 2): the writers take OUTDIR's
lock (``edgevit._io.outdir_lock``) and re-read the manifest under it, so the directory ends with a
manifest that lists every graph written, each matching its sha256; a writer the lock holds off too
long is refused naming the directory and the other process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import edgevit
from edgevit import _io
from edgevit._io import sha256_file
from edgevit.cli import main
from edgevit.manifest import Manifest

REPO = Path(__file__).resolve().parents[2]
RACE_TIMEOUT_S = 240  # two exports of a tiny model on 2 busy cores take well under a minute


def _start(role: str, sync: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "tests.export._race", role, str(sync), "--", *map(str, args)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _race(tmp_path: Path, first: list, second: list) -> dict[str, tuple[int, str]]:
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = {"first": _start("first", sync, *first), "second": _start("second", sync, *second)}
    out = {}
    try:
        for role, proc in procs.items():
            text, _ = proc.communicate(timeout=RACE_TIMEOUT_S)
            out[role] = (proc.returncode, text)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def _consistent(outdir: Path, expected: set[str]) -> Manifest:
    """The manifest lists exactly ``expected``, every file matches its recorded sha256, no lock or
    temporary is left, and nothing unlisted of edgevit's lies beside it."""
    manifest = Manifest.load(outdir)
    listed = {a.path for a in manifest.artifacts}
    assert listed == expected, f"manifest lists {sorted(listed)}, want {sorted(expected)}; dir: {os.listdir(outdir)}"
    mismatched = {a.path: (a.sha256[:12], sha256_file(outdir / a.path)[:12]) for a in manifest.artifacts
                  if sha256_file(outdir / a.path) != a.sha256}
    assert not mismatched, f"recorded vs on-disk sha256 prefixes differ: {mismatched}"
    graphs = {p.name for p in outdir.glob("*.onnx")}
    assert graphs <= listed, f"graphs on disk that the manifest does not list: {sorted(graphs - listed)}"
    leftovers = [p.name for p in outdir.iterdir() if p.name == ".edgevit.lock" or "tmp-" in p.name]
    assert not leftovers, f"lock or temporaries left behind: {leftovers}"
    return manifest


def test_two_exports_into_one_new_directory_leave_one_consistent_export(tmp_path):
    """--force on both: without the lock the graph of one run ended under the manifest of the other,
    both exiting 0. (Without --force the second is refused under the lock: "already exists".)"""
    ckpts = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        ckpts.append(edgevit.save_model(edgevit.create_model("digits-tiny"), tmp_path / f"seed{seed}.safetensors"))
    out = tmp_path / "new"
    start = time.monotonic()
    res = _race(tmp_path, ["export", ckpts[0], "-o", out, "--force"], ["export", ckpts[1], "-o", out, "--force"])
    took = time.monotonic() - start
    assert all(code == 0 for code, _ in res.values()), res
    manifest = _consistent(out, {"model.onnx"})
    assert Path(manifest.model.source).name in {Path(c).name for c in ckpts}, manifest.model.source
    assert took < RACE_TIMEOUT_S, f"took {took:.0f} s"


def test_two_quantizes_with_different_precisions_both_stay_listed(digits_like_copy, tmp_path):
    out = digits_like_copy
    res = _race(tmp_path, ["quantize", out, "--precision", "fp16", "--no-gate"],
                ["quantize", out, "--precision", "bf16", "--no-gate"])
    assert all(code == 0 for code, _ in res.values()), res
    _consistent(out, {"model.onnx", "model.fp16.onnx", "model.bf16.onnx"})


# ------------------------------------------------------------------------------ the lock itself
def _holder(directory: Path) -> subprocess.Popen:
    """A real process holding ``directory``'s lock until killed (it prints "held" once it has it)."""
    code = ("import sys, time; from edgevit._io import outdir_lock\n"
            "with outdir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_waits_a_bounded_time_then_is_refused_naming_the_holder(digits_like_copy, monkeypatch):
    from edgevit._io import LOCK_NAME, outdir_lock
    from edgevit.errors import OutputBusyError

    out = digits_like_copy
    before = sorted(os.listdir(out))
    holder = _holder(out)
    try:
        start = time.monotonic()
        with pytest.raises(OutputBusyError) as info:
            with outdir_lock(out, timeout=0.5):
                pass
        waited = time.monotonic() - start
        assert 0.5 <= waited < 5, f"waited {waited:.2f} s with timeout 0.5 s"
        message = str(info.value)
        assert str(out) in message and f"pid {holder.pid}" in message, message
        monkeypatch.setattr(_io, "LOCK_TIMEOUT_S", 0.5)
        for as_json in ([], ["--json"]):
            res = CliRunner().invoke(main, ["quantize", str(out), "--precision", "fp16", "--no-gate", *as_json])
            assert res.exit_code == 1 and "Traceback" not in res.output, res.output
            assert str(out) in res.output and f"pid {holder.pid}" in res.output, res.output
        assert sorted(os.listdir(out)) == sorted(before + [LOCK_NAME]), "a refused writer changed OUTDIR"
    finally:
        holder.kill()
        holder.wait()
    # the lock died with its process: nothing stale to clear by hand
    with outdir_lock(out, timeout=5):
        assert (out / LOCK_NAME).exists()
    assert not (out / LOCK_NAME).exists(), "the lock file outlived its holder"
    assert sorted(os.listdir(out)) == before


def test_lock_is_reentrant_in_a_thread_and_excludes_another_thread(tmp_path):
    import threading

    from edgevit._io import outdir_lock

    order = []
    with outdir_lock(tmp_path):
        with outdir_lock(tmp_path, timeout=0.1):  # re-entrant: no deadlock with itself
            order.append("nested")

        def other():
            with outdir_lock(tmp_path, timeout=10):
                order.append("other")

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.3)
        order.append("released")
    thread.join(timeout=10)
    assert order == ["nested", "released", "other"], order
