"""`edgevit demo -o`, `edgevit bench --report-dir` and `edgevit build -o` refuse an output that cannot
be written (a file where a directory must be, a directory without write permission) before any slow
work, with exit 1, the option's name and no traceback -- as export, train and quantize do
(tests/export/test_output_safety.py). A directory standing where an artifact file must go is refused
up front even with --force."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from click.testing import CliRunner

from edgevit.cli import main
from tests._fixtures import must_not_run


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(res, *words: str) -> None:
    assert isinstance(res.exception, SystemExit) and res.exit_code == 1, \
        f"exit {res.exit_code}, exception {res.exception!r}, want 1:\n{res.output}"
    assert "Traceback" not in res.output, res.output
    text = " ".join(res.output.split())
    missing = [w for w in words if w not in text]
    assert not missing, f"{missing} not in the message:\n{res.output}"



@pytest.fixture
def outdir(digits_like_copy):
    return digits_like_copy


@pytest.fixture
def no_slow_work(monkeypatch):
    monkeypatch.setattr("edgevit.train.train", must_not_run("the demo's training step"))
    monkeypatch.setattr("edgevit.bench.run_bench", must_not_run("benchmarking"))
    monkeypatch.setattr("edgevit.manifest.Manifest.resolve", must_not_run("reading the ONNX graph"))
    monkeypatch.setattr("edgevit.models.checkpoint.load_model", must_not_run("model loading"))


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A directory the user cannot write to. Tests run as root, where a read-only mode does not block
    writes: os.access says what a user would meet (as in tests/export/test_output_safety.py)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr("os.access", lambda p, mode, **kw: False if (mode & os.W_OK and Path(p) == ro)
                        else real_access(p, mode, **kw))
    return ro


def test_outputs_under_a_file_are_refused_up_front(outdir, tmp_path, no_slow_work):
    (tmp_path / "file").write_text("not a directory")
    under = tmp_path / "file" / "sub"
    _refused(_cli("demo", "-o", under), str(under), "is a file", "-o/--output")
    _refused(_cli("demo", "-o", tmp_path / "file"), "is a file", "-o/--output")
    _refused(_cli("bench", outdir, "--report-dir", under), str(under), "is a file", "--report-dir")
    _refused(_cli("build", outdir, "-o", under / "model.plan"), "is a file", "-o/--output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"], "a refused command wrote something"


def test_unwritable_outputs_are_refused_up_front(outdir, read_only, no_slow_work):
    _refused(_cli("demo", "-o", read_only), "not writable", "-o/--output")
    _refused(_cli("demo", "-o", read_only / "run"), "not writable", "-o/--output")
    _refused(_cli("bench", outdir, "--report-dir", read_only), "not writable", "--report-dir")
    _refused(_cli("build", outdir, "-o", read_only / "model.plan"), "not writable", "-o/--output")
    assert not any(read_only.iterdir()), "a refused command wrote into the read-only directory"


def test_json_refusal_names_the_option(outdir, tmp_path, no_slow_work):
    import json

    (tmp_path / "file").write_text("x")
    res = _cli("bench", outdir, "--report-dir", tmp_path / "file" / "r", "--json")
    _refused(res, "--report-dir")
    err = json.loads(res.output.splitlines()[0])
    assert err["ok"] is False and err["type"] == "OutputPathError" and "--report-dir" in err["message"], err


def test_a_directory_where_an_artifact_goes_is_refused_even_with_force(outdir, tmp_path, no_slow_work):
    (tmp_path / "out" / "model.onnx").mkdir(parents=True)
    _refused(_cli("export", "digits-tiny", "-o", tmp_path / "out", "--force"),
             str(tmp_path / "out" / "model.onnx"), "is a directory", "choose another output")
    (tmp_path / "reports" / "bench.json").mkdir(parents=True)
    _refused(_cli("bench", outdir, "--report-dir", tmp_path / "reports", "--force"),
             str(tmp_path / "reports" / "bench.json"), "is a directory")
    (tmp_path / "engines" / "model.plan.fusion.json").mkdir(parents=True)
    _refused(_cli("build", outdir, "-o", tmp_path / "engines" / "model.plan", "--force"),
             "model.plan.fusion.json", "is a directory")
