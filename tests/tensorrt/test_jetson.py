"""Jetson facts from the text the board prints (moved here from tests/test_bench.py and the rules tests)."""

import pytest

from edgevit.tensorrt.jetson import (
    is_agx_orin,
    jetpack_for_l4t,
    jetson_warnings,
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegra_release,
)


def test_parse_tegra_release():
    # the first line of /etc/nv_tegra_release on JetPack 6.0 (L4T 36.3) as NVIDIA ships it
    text = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n"
    assert parse_tegra_release(text) == {"l4t": "36.3.0", "jetpack": "6.0", "board": "generic"}
    r35 = parse_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: ...")
    assert r35 == {"l4t": "35.4.1", "jetpack": "5.1.2", "board": "t186ref"}, r35
    assert parse_tegra_release("Ubuntu 22.04") is None
    assert parse_tegra_release("") is None


@pytest.mark.parametrize("l4t, jetpack", [
    ("36.4.4", "6.2.1"),   # before: 36.4.4 fell through to the "36.4" prefix and read JetPack 6.1
    ("36.4.3", "6.2"), ("36.4.0", "6.1"), ("36.3.0", "6.0"), ("36.5.0", "6.2.2"),
    ("38.2.0", "7.0"), ("38.2.1", "7.0"), ("38.4.0", "7.1"),   # R38 (JetPack 7): absent before
    ("35.6.1", "5.1.5"), ("35.6.0", "5.1.4"), ("35.1.0", "5.0.2"), ("34.1.0", None),
])
def test_l4t_to_jetpack(l4t, jetpack):
    assert jetpack_for_l4t(l4t) == jetpack, f"L4T {l4t} -> {jetpack_for_l4t(l4t)}, expected {jetpack}"


def test_r38_release_line():
    # the line's layout as on L4T 36 above; GCID and DATE are left out (not copied from a real board)
    line = "# R38 (release), REVISION: 2.0, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
    assert parse_tegra_release(line) == {"l4t": "38.2.0", "jetpack": "7.0", "board": "generic"}


@pytest.mark.parametrize("model, agx", [
    ("NVIDIA Jetson AGX Orin Developer Kit", True), ("Jetson AGX Orin", True),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", False),
    ("NVIDIA Jetson Orin Nano Developer Kit", False), ("NVIDIA Jetson AGX Xavier", False), (None, False),
])
def test_is_agx_orin(model, agx):
    assert is_agx_orin(model) is agx, model


NVPMODEL_MAXN = "NV Power Mode: MAXN\n0\n"
NVPMODEL_15W = "NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n"
CLOCKS_MAX = """SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
NV Power Mode: MAXN
"""
CLOCKS_IDLE = CLOCKS_MAX.replace("CurrentFreq=1300500000", "CurrentFreq=306000000").replace(
    "cpu1: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600",
    "cpu1: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=729600")


def test_parse_nvpmodel():
    assert parse_nvpmodel(NVPMODEL_MAXN) == {"mode_name": "MAXN", "mode_id": 0}
    assert parse_nvpmodel(NVPMODEL_15W) == {"mode_name": "15W", "mode_id": 2}
    assert parse_nvpmodel("") == {"mode_name": None, "mode_id": None}


def test_parse_jetson_clocks_and_warnings():
    at_max = parse_jetson_clocks(CLOCKS_MAX)
    assert at_max["at_max"] is True and at_max["power_mode"] == "MAXN", at_max
    assert [c["name"] for c in at_max["clocks"]] == ["cpu0", "cpu1", "GPU", "EMC"], at_max["clocks"]
    idle = parse_jetson_clocks(CLOCKS_IDLE)
    assert idle["at_max"] is False, idle
    assert jetson_warnings(parse_nvpmodel(NVPMODEL_MAXN), at_max) == []
    warns = jetson_warnings(parse_nvpmodel(NVPMODEL_15W), idle)
    assert len(warns) == 2 and "15W" in warns[0] and "cpu1" in warns[1] and "GPU" in warns[1], warns
    assert parse_jetson_clocks("no clocks here")["at_max"] is None
    assert any("unknown" in w for w in jetson_warnings(None, None))


def test_bench_uses_these_parsers():
    import edgevit.bench as bench
    import edgevit.tensorrt.jetson as jetson

    assert bench.parse_nvpmodel is jetson.parse_nvpmodel and bench.jetson_info is jetson.jetson_info
