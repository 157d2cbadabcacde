"""Artifacts reach the disk before they are renamed into place, and the rename reaches it after:
a power cut right after a build leaves the old or the new file, never an empty one."""

from __future__ import annotations

import os
import stat

from click.testing import CliRunner

from edgevit._io import atomic_path
from edgevit.cli import main


def _record(monkeypatch) -> list[tuple]:
    """os.fsync and os.replace calls, in order: ("fsync", inode, is_dir) and ("replace", destination name)."""
    calls: list[tuple] = []
    real_replace = os.replace

    def fsync(fd):
        st = os.fstat(fd)
        calls.append(("fsync", st.st_ino, stat.S_ISDIR(st.st_mode)))

    def replace(src, dst, **kwargs):
        real_replace(src, dst, **kwargs)
        calls.append(("replace", os.path.basename(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def _durably_renamed(calls: list[tuple], path) -> None:
    """``path``'s data was fsynced, then it was renamed into place, then its directory was fsynced."""
    file_sync = ("fsync", path.stat().st_ino, False)  # a rename keeps the inode
    assert file_sync in calls, f"{path.name}: its data was never fsynced: {calls}"
    after = calls[calls.index(file_sync) + 1:]
    assert ("replace", path.name) in after, f"{path.name}: not renamed after its fsync: {calls}"
    after = after[after.index(("replace", path.name)) + 1:]
    assert ("fsync", path.parent.stat().st_ino, True) in after, \
        f"{path.name}: its directory was not fsynced after the rename: {calls}"


def test_atomic_path_syncs_the_file_then_renames_then_syncs_the_directory(tmp_path, monkeypatch):
    calls = _record(monkeypatch)
    target = tmp_path / "artifact.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"weights")
        assert calls == [], "nothing may be synced or renamed before the block succeeds"
    assert calls == [("fsync", target.stat().st_ino, False), ("replace", target.name),
                     ("fsync", tmp_path.stat().st_ino, True)], calls
    assert target.read_bytes() == b"weights"


def test_export_and_quantize_make_every_artifact_durable(tmp_path, monkeypatch):
    calls = _record(monkeypatch)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["export", "digits-tiny", "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["quantize", str(out), "--precision", "fp16", "--no-gate"])
    assert res.exit_code == 0, res.output
    for name in ("model.onnx", "model.fp16.onnx", "edgevit.json"):
        _durably_renamed(calls, out / name)
