"""Exported files get the mode the umask gives (as `open()` would), whatever mode the writer used:
onnx.save, or a writer that creates 0600 files like safetensors does."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.export import onnx as export_onnx_module


@pytest.fixture
def private_writer(monkeypatch):
    """ONNX files written 0600 in the work directory, as a writer that ignores the umask would."""
    real = export_onnx_module._save

    def save(proto, work, threshold):
        path, external = real(proto, work, threshold)
        for f in work.iterdir():
            if f.is_file():
                f.chmod(0o600)
        return path, external

    monkeypatch.setattr(export_onnx_module, "_save", save)


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_exported_graph_follows_the_umask(tmp_path, umask, private_writer):
    old = os.umask(umask)
    try:
        res = CliRunner().invoke(main, ["export", "digits-tiny", "-o", str(tmp_path / "out"), "--json"])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    want = 0o666 & ~umask
    assert modes == {"model.onnx": want, "edgevit.json": want}, \
        f"umask {umask:o}: modes {({k: oct(v) for k, v in modes.items()})}, want {oct(want)}"


def test_external_data_file_follows_the_umask(tmp_path, private_writer):
    from edgevit.export.onnx import ExportConfig, export_onnx

    old = os.umask(0o022)
    try:
        export_onnx("digits-tiny", tmp_path / "out", ExportConfig(external_data_threshold=0, verify=False, lint=False))
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").iterdir()}
    assert modes == {"model.onnx": "0o644", "model.onnx.data": "0o644", "edgevit.json": "0o644"}, modes
