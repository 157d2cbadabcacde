"""Jetson facts: the L4T / JetPack release, the board, the power mode and the clocks.

Pure parsers of what the board prints (``/etc/nv_tegra_release``, ``/proc/device-tree/model``,
``nvpmodel -q``, ``jetson_clocks --show``), tested on CPU with recorded text, plus
:func:`jetson_info` that reads them on a Jetson (None elsewhere). ``edgevit build`` records the
release in the engine's manifest entry; ``edgevit bench`` warns when the board is not at MAXN or
its clocks are not at maximum.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

TEGRA_RELEASE = "/etc/nv_tegra_release"
MODEL_FILES = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")

# L4T (Jetson Linux) release -> JetPack, from NVIDIA's JetPack archive
# (https://developer.nvidia.com/embedded/jetpack-archive, archive-7.0 and archive-7.1 pages):
# exact releases first, then prefixes; the longest match wins.
L4T_TO_JETPACK = {
    "38.4": "7.1", "38.2": "7.0",
    "36.5": "6.2.2", "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4": "6.1", "36.3": "6.0",
    "35.6.1": "5.1.5", "35.6": "5.1.4", "35.5": "5.1.3", "35.4": "5.1.2", "35.3": "5.1.1", "35.2": "5.1",
    "35.1": "5.0.2",
}
# the CUDA each JetPack major ships (JetPack 6: 12.6; JetPack 7: 13.x)
JETPACK_CUDA_MAJOR = {"5": 11, "6": 12, "7": 13}


def jetpack_for_l4t(l4t: str) -> str | None:
    """``"36.4.4"`` -> ``"6.2.1"``; None for a release the table does not know."""
    for prefix in sorted(L4T_TO_JETPACK, key=len, reverse=True):
        if l4t == prefix or l4t.startswith(prefix + "."):
            return L4T_TO_JETPACK[prefix]
    return None


def parse_tegra_release(text: str) -> dict | None:
    """``/etc/nv_tegra_release`` text -> ``{"l4t": "36.4.4", "jetpack": "6.2.1", "board": ...}``; None if not L4T.

    The file's first line reads ``# R36 (release), REVISION: 4.4, GCID: ..., BOARD: generic, ...``.
    """
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if not m:
        return None
    l4t = f"{m.group(1)}.{m.group(2).rstrip('.')}"
    if l4t.count(".") == 1:
        l4t += ".0"
    board = re.search(r"BOARD:\s*([^,\s]+)", text)
    return {"l4t": l4t, "jetpack": jetpack_for_l4t(l4t), "board": board.group(1) if board else None}


def read_tegra_release(path: str = TEGRA_RELEASE) -> dict | None:
    """:func:`parse_tegra_release` of the file, or None when it does not exist (not a Jetson)."""
    try:
        with open(path) as fh:
            return parse_tegra_release(fh.read())
    except OSError:
        return None


def read_model() -> str | None:
    """The device-tree model string (``"NVIDIA Jetson AGX Orin Developer Kit"``), None off ARM boards."""
    for path in MODEL_FILES:
        with contextlib.suppress(OSError):
            return Path(path).read_text(errors="ignore").strip("\x00 \n") or None
    return None


def is_agx_orin(model: str | None) -> bool:
    """Whether a device-tree model names a Jetson AGX Orin (not Orin NX / Orin Nano)."""
    return bool(model) and re.search(r"\bAGX\s+Orin\b", model, re.I) is not None


# ------------------------------------------------------------------ power mode and clocks
def parse_nvpmodel(text: str) -> dict:
    """``nvpmodel -q`` output -> {"mode_name": "MAXN", "mode_id": 0} (None where absent)."""
    name = None
    mode_id = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"NV Power Mode\s*:\s*(.+)", line, re.IGNORECASE)
        if m:
            name = m.group(1).strip()
        elif re.fullmatch(r"\d+", line) and mode_id is None:
            mode_id = int(line)
    return {"mode_name": name, "mode_id": mode_id}


def parse_jetson_clocks(text: str) -> dict:
    """``jetson_clocks --show`` output -> per-clock MinFreq/MaxFreq/CurrentFreq and ``at_max``.

    ``at_max`` is True when every clock listed runs at its maximum (what jetson_clocks sets),
    None when the text lists no clocks.
    """
    clocks = []
    for line in text.splitlines():
        m_min = re.search(r"MinFreq=(\d+)", line)
        m_max = re.search(r"MaxFreq=(\d+)", line)
        m_cur = re.search(r"CurrentFreq=(\d+)", line)
        if not (m_max and m_cur):
            continue
        head = line.split("MinFreq")[0].split("MaxFreq")[0].strip().rstrip(":")
        name = head.split(":")[0].split()[0] if head else "clock"
        online = re.search(r"Online=(\d)", line)
        if online and online.group(1) == "0":
            continue
        clocks.append({"name": name, "min": int(m_min.group(1)) if m_min else None, "max": int(m_max.group(1)),
                       "current": int(m_cur.group(1))})
    at_max = all(c["current"] >= c["max"] for c in clocks) if clocks else None
    power = parse_nvpmodel(text)["mode_name"]
    return {"at_max": at_max, "clocks": clocks, "power_mode": power}


def jetson_warnings(nvpmodel: dict | None, clocks: dict | None) -> list[str]:
    """Warnings when a Jetson is not in a MAXN power mode or its clocks are not at maximum."""
    out = []
    mode = (nvpmodel or {}).get("mode_name")
    if mode is None:
        out.append("nvpmodel mode unknown (nvpmodel -q failed); results may not reflect max performance")
    elif "MAXN" not in mode.upper():
        out.append(f"power mode is {mode!r}, not MAXN: latency is not the board's best; "
                   "set it with sudo nvpmodel -m 0 (mode ids differ per board)")
    if clocks is None or clocks.get("at_max") is None:
        out.append("jetson_clocks state unknown (jetson_clocks --show needs root); run sudo jetson_clocks first")
    elif not clocks["at_max"]:
        slow = [c["name"] for c in clocks["clocks"] if c["current"] < c["max"]]
        out.append(f"clocks not at maximum ({', '.join(slow[:6])}): run sudo jetson_clocks before benchmarking")
    return out


# tegrastats (Jetson Linux Developer Guide, "tegrastats Utility"): "RAM X/YMB (lfb NxZMB)" is RAM in use / RAM
# available to applications; each power rail prints "NAME CURmW/AVGmW" (current / average since start), older
# releases "NAME CUR/AVG" (mW). VDD_IN is the module's input power (Orin Nano and NX: the INA3221 channel
# labelled VDD_IN beside VDD_CPU_GPU_CV and VDD_SOC); AGX Orin boards print other rail names and no VDD_IN.
_TEGRA_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_TEGRA_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
TOTAL_RAIL = "VDD_IN"


def parse_tegrastats(line: str) -> dict | None:
    """One tegrastats line: {"ram_used_mb", "ram_total_mb", "rails_mw": {name: current mW}, "vdd_in_mw"
    (None where the board prints no VDD_IN)}; None for a line without a RAM field."""
    ram = _TEGRA_RAM.search(line)
    if ram is None:
        return None
    rails = {name: int(cur) for name, cur, _avg in _TEGRA_RAIL.findall(line[ram.end():])
             if name not in ("RAM", "SWAP", "IRAM")}
    return {"ram_used_mb": int(ram.group(1)), "ram_total_mb": int(ram.group(2)), "rails_mw": rails,
            "vdd_in_mw": rails.get(TOTAL_RAIL)}


def summarize_tegrastats(lines, img_per_s: float | None = None) -> dict | None:
    """Samples of tegrastats lines taken while a measurement ran: {"samples", "ram_peak_mb" (the board's RAM in
    use, MB as tegrastats prints it), "vdd_in_mw" (mean VDD_IN), "mj_per_image" (mean VDD_IN / img/s: the
    module's energy per image, idle draw included)}; None without a parsable line."""
    parsed = [p for p in (parse_tegrastats(line) for line in lines) if p is not None]
    if not parsed:
        return None
    power = [p["vdd_in_mw"] for p in parsed if p["vdd_in_mw"] is not None]
    mean = sum(power) / len(power) if power else None
    return {"samples": len(parsed), "ram_peak_mb": max(p["ram_used_mb"] for p in parsed),
            "ram_total_mb": parsed[-1]["ram_total_mb"], "vdd_in_mw": None if mean is None else round(mean, 1),
            "mj_per_image": (round(mean / img_per_s, 3) if mean is not None and img_per_s else None)}


def command_output(cmd: list[str]) -> str | None:
    """stdout of ``cmd`` when it exists and succeeds within 10 s; None otherwise."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def jetson_info() -> dict | None:
    """Model, release, power mode, clocks and their warnings on a Jetson; None elsewhere."""
    model = read_model()
    release = read_tegra_release()
    if not (release or (model and "jetson" in model.lower())):
        return None
    nv_text = command_output(["nvpmodel", "-q"])
    nv = parse_nvpmodel(nv_text) if nv_text else None
    jc_text = command_output(["jetson_clocks", "--show"])
    jc = parse_jetson_clocks(jc_text) if jc_text else None
    return {"model": model, "release": release, "nvpmodel": nv, "jetson_clocks": jc,
            "warnings": jetson_warnings(nv, jc)}
