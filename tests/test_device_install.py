"""A device installs edgevit without PyTorch (issue 18 §5): the core dependencies are the deploy side.

``pip install edgevit`` must not pull torch (on a Jetson it would fight JetPack's own build); export,
training and quantization come with the ``export`` extra. Checked three ways:

* pyproject.toml's core dependencies name no torch-family package, and their closure (the installed
  versions' own requirements, followed here without the network) reaches none either;
* a fresh virtual environment holding edgevit (a wheel built from this checkout, installed with pip)
  and only that closure, no torch: ``edgevit predict`` on the digits model's ONNX export and
  ``edgevit deploy triton`` run there, torch is not importable, and ``edgevit export`` fails with the
  install message and exit 1, no traceback (``bench`` of the export and ``deploy deepstream`` run too). The closure's packages are the ones this interpreter
  has installed, linked read-only into the fresh environment, so the test needs no network;
* with the network: pip resolves the core dependencies from the package index to a set without torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the TOML reader pip itself vendors
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# What only export, training and the model zoo need; none may come with the core.
TORCH_FAMILY = {"torch", "torchvision", "torchaudio", "timm", "transformers", "onnxscript", "onnxslim",
                "safetensors", "accelerate", "triton", "nvidia-cudnn-cu12", "nvidia-cublas-cu12"}


def core_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(text) for text in project["dependencies"]]


def closure(requirements: list[Requirement]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (markers evaluated here, no extras)."""
    env = default_environment()
    found: dict[str, metadata.Distribution] = {}
    todo = [r for r in requirements if r.marker is None or r.marker.evaluate({**env, "extra": ""})]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} (needed by the core dependencies) is not installed here; run `make setup`")
        found[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or sub.marker.evaluate({**env, "extra": ""}):
                todo.append(sub)
    return found


def test_core_dependencies_name_no_torch():
    names = {canonicalize_name(r.name) for r in core_requirements()}
    bad = sorted(names & TORCH_FAMILY)
    assert not bad, f"pyproject.toml's core dependencies name {bad}: they belong in the `export` extra"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert "torch" in {canonicalize_name(Requirement(r).name) for r in extras["export"]}, extras["export"]


def test_core_dependency_closure_reaches_no_torch():
    """The requirements of the installed versions of the core dependencies, followed to the end."""
    found = closure(core_requirements())
    bad = sorted(set(found) & TORCH_FAMILY)
    assert not bad, f"the core dependencies pull {bad} (closure: {sorted(found)})"


def test_a_command_missing_the_extra_exits_1_with_the_install_line():
    """A lazy ``import torch`` deep in a command, on a machine without the extra: the install line, exit 1."""
    import click
    from click.testing import CliRunner

    from edgevit._deps import missing_dependency
    from edgevit.cli._errors import handle_errors
    from edgevit.cli._options import json_option

    @click.command()
    @json_option
    @handle_errors
    def cmd(as_json):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    res = CliRunner().invoke(cmd, [])
    assert res.exit_code == 1 and "pip install 'edgevit[export]'" in res.output, (res.exit_code, res.output)
    assert "Traceback" not in res.output, res.output
    res = CliRunner().invoke(cmd, ["--json"])
    answer = json.loads(res.output.splitlines()[0])
    assert res.exit_code == 1 and answer["type"] == "MissingDependencyError", answer
    assert missing_dependency(ModuleNotFoundError("No module named 'some_typo'", name="some_typo")) is None


# --- a fresh environment without the extra -----------------------------------------------------------


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The site-packages entries (packages, modules, .libs folders, the .dist-info) a distribution installed."""
    entries = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first not in ("..", "__pycache__") and not first.endswith(".pth"):
            entries.add(first)
    return entries


def _fresh_env(base: Path) -> Path:
    """A virtual environment with edgevit installed from a wheel of this checkout and, linked from this
    interpreter's site-packages, only the core dependencies' closure. Returns its bin/ folder."""
    env = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    py = env / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for dist in closure(core_requirements()).values():
        origin = Path(dist.locate_file(""))
        for entry in _top_level_entries(dist):
            target = site / entry
            if (origin / entry).exists() and not target.exists():
                target.symlink_to(origin / entry)
    # The project, copied (a build writes build/ and *.egg-info beside the sources), built and installed by pip.
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "edgevit", src / "edgevit", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    # The build backend (setuptools) from this interpreter when it has one, else fetched by pip's isolated build.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    built = _pip(pip + ["wheel", "--no-deps", *isolation, "-w", str(base / "wheel"), str(src)])
    if built.returncode != 0 and not isolation and not _index_reachable():
        pytest.skip("needs setuptools here or the network (pip fetches the build backend from https://pypi.org)")
    assert built.returncode == 0, f"building the wheel failed:\n{built.stderr[-3000:]}"
    wheel = next((base / "wheel").glob("edgevit-*.whl"))
    installed = _pip(pip + ["--python", str(py), "install", "--no-deps", "--no-index", str(wheel)])
    assert installed.returncode == 0, f"installing {wheel.name} failed:\n{installed.stderr[-3000:]}"
    check = _pip(pip + ["--python", str(py), "check"])
    assert check.returncode == 0, f"the fresh environment misses a requirement:\n{check.stdout}{check.stderr}"
    return env / "bin"


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def _clean_environ(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp), EDGEVIT_CACHE=str(tmp / "cache"), NO_COLOR="1", COLUMNS="200")
    return env


def _run(bindir: Path, args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(bindir / "edgevit"), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


@pytest.mark.slow
def test_fresh_install_without_the_extra_runs_the_deploy_side(tmp_path, digits_like_copy):
    """No torch, no onnxscript/onnxslim: predict and deploy triton work; export asks for the extra."""
    if os.name != "posix":
        pytest.skip("the fresh environment is built with POSIX paths (bin/)")
    pip_version = tuple(int(x) for x in metadata.version("pip").split(".")[:2])
    if pip_version < (22, 3):
        pytest.skip(f"installs into the fresh environment with `pip --python` (pip >= 22.3; pip {pip_version} here)")
    bindir = _fresh_env(tmp_path)
    env, cwd = _clean_environ(tmp_path), tmp_path  # not the checkout: its edgevit/ must not shadow the install
    py = str(bindir / "python")

    probe = ("import importlib.util as u, json, edgevit; "
             "print(json.dumps({'file': edgevit.__file__, "
             "'missing': [m for m in ('torch', 'torchvision', 'onnxscript', 'onnxslim', 'safetensors', 'tqdm') "
             "if u.find_spec(m) is None]}))")
    seen = json.loads(subprocess.run([py, "-c", probe], capture_output=True, text=True, env=env, cwd=cwd,
                                     check=True).stdout)
    assert str(tmp_path / "venv") in seen["file"], f"edgevit was imported from {seen['file']}, not the fresh install"
    assert set(seen["missing"]) == {"torch", "torchvision", "onnxscript", "onnxslim", "safetensors", "tqdm"}, seen

    import numpy as np
    from sklearn.datasets import load_digits

    digits = tmp_path / "digits.npy"
    np.save(digits, load_digits().images[:2])  # two raw 8x8 digits, 0..16 (the model's pixel_max)
    onnx = digits_like_copy / "model.onnx"
    res = _run(bindir, ["predict", str(onnx), str(digits), "--json"], env, cwd)
    assert res.returncode == 0, f"edgevit predict failed without the extra:\n{res.stderr[-3000:]}"
    answer = json.loads(res.stdout)
    assert answer["ok"] and len(answer["predictions"]) == 2, answer
    res = _run(bindir, ["predict", str(onnx), str(digits)], env, cwd)  # the table a person reads
    assert res.returncode == 0 and "digits.npy[1]" in res.stdout, res.stdout + res.stderr[-3000:]

    # bench of an existing export: the PyTorch row is skipped with the install hint, the ONNX row runs
    res = _run(bindir, ["bench", str(digits_like_copy), "--iterations", "2", "--samples", "16", "--no-report",
                        "--json"], env, cwd)
    assert res.returncode == 0, f"edgevit bench failed without the extra:\n{res.stderr[-3000:]}"
    assert "edgevit[export]" in res.stdout, res.stdout[-3000:]

    res = _run(bindir, ["build", "--help"], env, cwd)
    assert res.returncode == 0 and "MODEL.onnx|OUTDIR" in res.stdout, res.stderr[-3000:]

    # the deploy writers, their checks (certificates in the manifest) included
    repo = tmp_path / "repo"
    res = _run(bindir, ["deploy", "triton", str(digits_like_copy), "-o", str(repo), "--json"], env, cwd)
    assert res.returncode == 0, f"edgevit deploy triton failed without the extra:\n{res.stderr[-3000:]}"
    assert list(repo.glob("*/config.pbtxt")) and list(repo.glob("*/1/model.onnx")), sorted(map(str, repo.rglob("*")))
    ds = tmp_path / "deepstream"
    res = _run(bindir, ["deploy", "deepstream", str(digits_like_copy), "-o", str(ds), "--json"], env, cwd)
    assert res.returncode == 0, f"edgevit deploy deepstream failed without the extra:\n{res.stderr[-3000:]}"
    assert list(ds.glob("*.txt")), sorted(map(str, ds.rglob("*")))

    res = _run(bindir, ["export", "digits-tiny", "-o", str(tmp_path / "out")], env, cwd)
    assert res.returncode == 1, f"export without torch exited {res.returncode}:\n{res.stdout}{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "pip install 'edgevit[export]'" in res.stderr, res.stderr[-3000:]
    assert not (tmp_path / "out").exists(), "a refused export must write nothing"
    res = _run(bindir, ["export", "digits-tiny", "-o", str(tmp_path / "out"), "--json"], env, cwd)
    answer = json.loads(res.stdout)
    assert res.returncode == 1 and not answer["ok"] and "edgevit[export]" in answer["message"], answer


# --- with the network: what pip resolves from the index -----------------------------------------------


def _index_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_pip_resolves_the_core_from_the_index_without_torch(tmp_path):
    """``pip install edgevit``'s dependencies, resolved against PyPI for this Python (a dry run)."""
    if not _index_reachable():
        pytest.skip("needs the network: resolves the core dependencies against https://pypi.org (offline here)")
    reqs = tmp_path / "core.txt"
    reqs.write_text("\n".join(str(r) for r in core_requirements()) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    res = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "install",
                          "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), "-r", str(reqs)],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0 and ("Could not fetch" in res.stderr or "NewConnectionError" in res.stderr):
        pytest.skip(f"needs the network: pip could not reach the index ({res.stderr.strip()[-300:]})")
    assert res.returncode == 0, res.stderr[-3000:]
    names = {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    bad = sorted(names & TORCH_FAMILY)
    assert not bad, f"pip install edgevit would pull {bad} (resolved: {sorted(names)})"
    assert {"onnxruntime", "numpy", "onnx"} <= names, sorted(names)
