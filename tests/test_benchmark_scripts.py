"""benchmarks/verify_attention_gpu.sh picks a Python that has torch, or stops with a message before any
work: run on a copy of the script in a scratch repository, with fake interpreters (no GPU needed)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "verify_attention_gpu.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def _fake_python(path: Path, log: Path) -> Path:
    """An interpreter without torch: records that it ran, fails as Python does on `import torch`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$0" >> "{log}"\n'
                    'echo "Traceback (most recent call last):" >&2\n'
                    "echo \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _run(repo: Path, tmp_path: Path, env_extra: dict | None = None):
    """The script copied into repo/benchmarks, run from tmp_path with PATH = a fake python3 first."""
    (repo / "benchmarks").mkdir(parents=True, exist_ok=True)
    shutil.copy(SCRIPT, repo / "benchmarks" / SCRIPT.name)
    log = tmp_path / "ran.log"
    fake_bin = _fake_python(tmp_path / "bin" / "python3", log).parent
    env = {"PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}", "OUT": str(tmp_path / "out"),
           "HOME": str(tmp_path), **(env_extra or {})}
    res = subprocess.run([BASH, str(repo / "benchmarks" / SCRIPT.name)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    ran = log.read_text().split() if log.exists() else []
    return res, ran


def test_without_a_venv_a_python3_lacking_torch_is_refused(tmp_path):
    res, ran = _run(tmp_path / "repo", tmp_path)
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "cannot import torch" in res.stderr and "make setup" in res.stderr and "PY=" in res.stderr, res.stderr
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert len(ran) == 1 and ran[0].endswith("bin/python3"), ran  # the check ran once, nothing after it
    assert not (tmp_path / "out").exists(), "the refused run created its OUT directory"


def test_the_projects_venv_is_the_default_python(tmp_path):
    repo = tmp_path / "repo"
    venv_python = _fake_python(repo / ".venv" / "bin" / "python", tmp_path / "ran.log")
    res, ran = _run(repo, tmp_path)
    assert ran == [str(venv_python)], ran  # not the python3 first on PATH
    assert res.returncode == 1 and str(venv_python) in res.stderr, res.stderr


def test_py_overrides_the_default(tmp_path):
    repo = tmp_path / "repo"
    _fake_python(repo / ".venv" / "bin" / "python", tmp_path / "ran.log")
    chosen = _fake_python(tmp_path / "other" / "python", tmp_path / "ran.log")
    res, ran = _run(repo, tmp_path, {"PY": str(chosen)})
    assert ran == [str(chosen)] and res.returncode == 1, (ran, res.stderr)
