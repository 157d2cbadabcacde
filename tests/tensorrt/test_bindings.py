"""Issue 19 items 1, 9, 10: cuda-python on a Jetson (major.minor, the JetPack pin), the table of what
edgevit has checked (one home, the extras bounded by it, ``edgevit info --json``), and the docs that
said otherwise. Pure functions and recording stand-ins only: nothing here runs a real TensorRT."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib
from packaging.requirements import Requirement

from edgevit.errors import TensorRTError
from edgevit.tensorrt import _bindings as bindings
from edgevit.tensorrt import rules
from edgevit.tensorrt import session as session_mod
from edgevit.tensorrt.rules import check_cuda_python

from .._fixtures import assert_exit, run_cli
from .test_calls import FakeCudart, fake_trt

ROOT = Path(__file__).resolve().parents[2]
TABLE = json.loads((Path(__file__).parent / "data" / "trt_python_api.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ item 1: cuda-python on a Jetson
def test_tegra_refuses_a_cuda_python_of_a_newer_minor_with_the_jetpack_pin():
    """JetPack 6.1/6.2 reports CUDA 12.6; cuda-python 12.9 relies on minor-version compatibility, which
    Jetson lacks (cudaErrorInsufficientDriver, NVlabs/FoundationStereo#209)."""
    with pytest.raises(TensorRTError, match=r"cuda-python 12\.9\.1 is CUDA 12\.9, newer than this Jetson's CUDA 12\.6") \
            as exc:
        check_cuda_python("12.9.1", "12.6", 12, tegra=True)
    assert "pip install 'cuda-python==12.6.*'" in str(exc.value), str(exc.value)
    check_cuda_python("12.6.2.post1", "12.6", 12, tegra=True)  # JetPack's minor: fine
    check_cuda_python("12.2.1", "12.6", None, tegra=True)      # an older runtime on a newer driver: fine
    check_cuda_python("12.9.1", "12.6", 12)                    # a desktop driver: minor-version compatible
    with pytest.raises(TensorRTError, match=r"needs a CUDA 13 driver") as exc:
        check_cuda_python("13.0.1", "12.2", None, tegra=True)  # JetPack 6.0's CUDA 12.2
    assert "cuda-python==12.2.*" in str(exc.value), str(exc.value)


def test_device_facts_on_a_jetson_refuse_cuda_python_12_9_before_the_first_device_call(monkeypatch):
    trt, _ = fake_trt()
    cudart = FakeCudart(driver=12060)
    monkeypatch.setattr(session_mod, "import_cudart", lambda: cudart)
    monkeypatch.setattr(session_mod, "read_tegra_release",
                        lambda: {"l4t": "36.4.4", "jetpack": "6.2.1", "board": "generic"})
    monkeypatch.setattr(session_mod, "cuda_python_version", lambda: "12.9.1")
    monkeypatch.setattr(session_mod, "tensorrt_cuda_major", lambda: None)  # JetPack's apt TensorRT
    with pytest.raises(TensorRTError, match=r"cuda-python==12\.6\.\*"):
        session_mod.device_facts(trt)
    assert cudart.calls == ["cudaDriverGetVersion"], f"refused before cudaGetDevice; calls: {cudart.calls}"


def test_the_install_advice_pins_jetpacks_cuda_minor_and_names_its_python():
    for text, where in ((bindings.INSTALL_ADVICE, "INSTALL_ADVICE"), (bindings.CUDA_PYTHON_ADVICE, "CUDA_PYTHON_ADVICE"),
                        ((ROOT / "README.md").read_text(encoding="utf-8"), "README.md")):
        assert "cuda-python==12.6.*" in text, f"{where} does not pin JetPack 6's CUDA minor"
        assert "cuda-python>=12.6,<13" not in text, f"{where} still allows a 12.9 wheel on JetPack 6"
    assert "Python 3.10" in bindings.INSTALL_ADVICE and "/usr/bin/python3 -m venv --system-site-packages" in \
        bindings.INSTALL_ADVICE, bindings.INSTALL_ADVICE


# ------------------------------------------------------------------ item 9: the checked table, one home
def test_the_checked_table_is_the_audits_versions():
    """CHECKED_TENSORRT / CHECKED_CUDA_PYTHON are the versions whose sources the names table was made from."""
    trt = sorted(TABLE["tensorrt"]["sources"], key=lambda v: tuple(map(int, v.split("."))))
    assert list(bindings.CHECKED_TENSORRT) == trt, (bindings.CHECKED_TENSORRT, trt)
    cuda = sorted({".".join(v.split(".")[:2]) for v in TABLE["cudart"]["sources"]},
                  key=lambda v: tuple(map(int, v.split("."))))
    assert list(bindings.CHECKED_CUDA_PYTHON) == cuda, (bindings.CHECKED_CUDA_PYTHON, cuda)


def test_the_tensorrt_extras_are_bounded_to_the_checked_majors():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    lo, hi = min(bindings.CHECKED_TENSORRT_MAJORS), max(bindings.CHECKED_TENSORRT_MAJORS)
    for extra, dist in (("trt-cu12", "tensorrt-cu12"), ("trt-cu13", "tensorrt-cu13")):
        req = next(Requirement(r) for r in extras[extra] if Requirement(r).name == dist)
        for version, ok in ((f"{lo}.0.1", True), (f"{hi}.1.0", True), (f"{hi}.99", True),
                            (f"{hi + 1}.0.0", False), (f"{lo - 1}.6.1", False)):
            assert req.specifier.contains(version) is ok, f"{extra}: {req} admits {version}: " \
                f"{req.specifier.contains(version)}, want {ok} (checked majors {bindings.CHECKED_TENSORRT_MAJORS})"


@pytest.mark.parametrize("trt, cuda, want", [
    ("10.3.0.30", "12.6.2.post1", (True, True)),    # JetPack 6
    ("11.1.0.7", "13.0.0", (True, True)),
    ("10.17.0.1", "12.8.0", (False, False)),        # newer than the audit / a minor it did not read
    ("12.0.0", "13.5.0", (False, False)),
])
def test_version_report_says_whether_each_version_is_in_the_checked_table(trt, cuda, want):
    report = bindings.version_report(trt, cuda)
    got = (report["tensorrt"]["checked"], report["cuda_python"]["checked"])
    assert got == want, f"{trt} / {cuda}: checked {got}, want {want}"
    assert (report["tensorrt"]["found"], report["cuda_python"]["found"]) == (trt, cuda), report


def test_info_json_prints_the_versions_found_without_a_source(monkeypatch):
    monkeypatch.setattr(bindings, "tensorrt_version", lambda: "10.3.0.30")
    monkeypatch.setattr(bindings, "cuda_python_version", lambda: "12.9.1")
    res = run_cli("info", "--json")
    assert_exit(res, 0)
    info = json.loads(res.stdout)
    assert info["tensorrt"]["found"] == "10.3.0.30" and info["tensorrt"]["checked"] is True, info
    assert info["cuda_python"]["found"] == "12.9.1" and info["cuda_python"]["checked"] is True, info
    assert info["tensorrt"]["checked_versions"] == list(bindings.CHECKED_TENSORRT), info
    monkeypatch.setattr(bindings, "tensorrt_version", lambda: None)
    info = json.loads(run_cli("info", "--json").stdout)
    assert info["tensorrt"] == {"found": None, "checked": None, "checked_versions": list(bindings.CHECKED_TENSORRT)}


# ------------------------------------------------------------------ item 10: docs
def test_xavier_is_not_listed_for_dla_on_tensorrt_10():
    """Xavier's last JetPack (5.1.x) ships TensorRT 8.5: it never runs TensorRT 10."""
    nano = {"gpu_name": "Orin Nano", "compute_capability": "8.7", "dla_cores": 0, "jetson": {"jetpack": "6.2.1"}}
    with pytest.raises(TensorRTError, match="no DLA cores") as exc:
        rules.check_dla("10.3.0", nano, 0, "fp16")
    assert "Xavier" not in str(exc.value), str(exc.value)
    assert "Xavier" not in (rules.dla_support.__doc__ or "").split("10.8")[0].replace(
        "Xavier never runs TensorRT 10", ""), rules.dla_support.__doc__
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = re.search(r"10\.0–10\.7 on boards with DLA cores\s*\(([^)]*)\)", readme)
    assert line and "AGX Orin" in line.group(1) and "Xavier" not in line.group(1).split(";")[0], \
        line and line.group(1)


def test_design_doc_says_tensorrt_10_builds_are_strongly_typed():
    """docs/design.md §4 says every build is strongly typed, not "builder flags on TensorRT 10"."""
    design = (ROOT / "docs/design.md").read_text(encoding="utf-8")
    assert "TensorRT 10 the builder flags are set to match" not in design
    assert "TensorRT 10 flags / TensorRT 11 strongly typed" not in design
    assert re.search(r"strongly typed by default", design), "docs/design.md §4 should say every build is strongly typed"
