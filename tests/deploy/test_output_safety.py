"""What a deploy target may replace and how it leaves its output: --force never deletes the export it reads,
the current directory or a directory edgevit deploy did not write; outputs get the mode mkdir would give; a
damaged graph or a bf16 graph gets a clear answer, never a traceback (found by trying the commands as a
hostile user would)."""

from __future__ import annotations

import json
import os

import pytest

from edgevit.deploy import common
from edgevit.formats import BF16
from edgevit.manifest import Manifest
from tests._fixtures import assert_exit, run_cli

TARGETS = {"triton": lambda export, out: ["deploy", "triton", export, "-o", out.parent, "--name", out.name],
           "deepstream": lambda export, out: ["deploy", "deepstream", export, "-o", out]}


def _files(directory) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_force_never_replaces_the_export_it_reads(digits_like_copy, target):
    export = digits_like_copy
    before = _files(export)
    res = run_cli(*TARGETS[target](export, export), "--force", "--samples", "8")
    assert_exit(res, 1)
    assert "export" in res.output and "choose a directory of its own" in res.output, res.output
    assert _files(export) == before, sorted(_files(export) ^ before)
    assert Manifest.load(export).artifacts, "the manifest survives"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_force_replaces_only_a_directory_edgevit_deploy_wrote(digits_like_copy, tmp_path, target):
    export, mine = digits_like_copy, tmp_path / "project"
    (mine / "sub").mkdir(parents=True)
    (mine / "important.txt").write_text("keep me")
    res = run_cli(*TARGETS[target](export, mine), "--force", "--samples", "8")
    assert_exit(res, 1)
    assert common.DEPLOY_MARKER in res.output, res.output
    assert (mine / "important.txt").read_text() == "keep me" and (mine / "sub").is_dir()
    out = tmp_path / "fresh"
    assert_exit(run_cli(*TARGETS[target](export, out), "--samples", "8"), 0)
    assert (out / common.DEPLOY_MARKER).is_file()
    assert_exit(run_cli(*TARGETS[target](export, out), "--force", "--samples", "8"), 0)  # its own output: replaced


def test_the_current_directory_is_refused(digits_like_copy, tmp_path, monkeypatch):
    work = tmp_path / "here"
    work.mkdir()
    monkeypatch.chdir(work)
    res = run_cli("deploy", "deepstream", digits_like_copy, "-o", ".", "--force", "--samples", "8")
    assert_exit(res, 1)
    assert "current directory" in res.output and not any(p.name.startswith(".") for p in tmp_path.iterdir()), \
        (res.output, list(tmp_path.iterdir()))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_outputs_get_the_mode_mkdir_gives(digits_like_copy, tmp_path, target):
    """A temporary directory starts 0700; a server running as another user must read the output."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert_exit(run_cli(*TARGETS[target](digits_like_copy, out), "--samples", "8"), 0)
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777)
             for p in (out, *out.rglob("*")) if p.is_dir()}
    assert set(modes.values()) == {oct(0o755)}, modes


def test_a_bf16_graph_is_checked_like_the_others(digits_like_copy, tmp_path):
    """bf16 graphs run through edgevit's own ONNX Runtime runner (which emulates what the CPU lacks)."""
    export = digits_like_copy
    assert_exit(run_cli("quantize", export, "--precision", BF16, "--calib-samples", "16"), 0)
    res = run_cli("deploy", "triton", export, "-o", tmp_path / "repo", "--precision", BF16, "--samples", "16",
                  "--json")
    assert_exit(res, 0)
    cert = json.loads(res.stdout)["certificate"]
    assert cert["verdict"] == "passed" and cert["max_abs"] <= cert["atol"], cert


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_damaged_graph_is_named_not_a_traceback(digits_like_copy, tmp_path, target):
    export = digits_like_copy
    graph = export / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    res = run_cli(*TARGETS[target](export, tmp_path / "out"), "--no-verify-hash", "--samples", "8", "--json")
    assert_exit(res, 1)
    error = json.loads(res.stdout)
    assert error["ok"] is False and "model.onnx" in error["message"], error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, needle", [(["--gpus", "-1"], "0 or more"), (["--kind", "cpu", "--gpus", "0"], "take no GPUs"),
                                           (["--compute-capability", "8.7"], "ONNX graph")])
def test_triton_options_that_cannot_apply_are_refused(digits_like_copy, tmp_path, extra, needle):
    res = run_cli("deploy", "triton", digits_like_copy, "-o", tmp_path / "repo", *extra)
    assert_exit(res, 1)
    assert needle in res.output and not (tmp_path / "repo").exists(), res.output
