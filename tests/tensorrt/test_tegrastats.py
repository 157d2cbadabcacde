"""A Jetson's RAM and VDD_IN power from tegrastats lines, and mJ per image (issue 19 item 11).

The lines are in the shape Jetson Linux prints (Developer Guide, "tegrastats Utility": "RAM X/YMB (lfb NxZMB)",
rails as "NAME CURmW/AVGmW"; Orin Nano/NX rails VDD_IN, VDD_CPU_GPU_CV, VDD_SOC, the INA3221 labels of their
device tree; AGX Orin prints other rails and no VDD_IN). They were written in that shape here, not captured on a
board: no Jetson ran these tests."""

import os
import stat

import numpy as np

from edgevit.bench import BenchConfig, BenchRow
from edgevit.bench.plan import Plan
from edgevit.bench.report import BOARD_COLUMNS, BenchReport
from edgevit.bench.run import _bench_one
from edgevit.bench.targets import Target
from edgevit.tensorrt.jetson import parse_tegrastats, summarize_tegrastats

ORIN_NANO = [  # JetPack 6 (L4T 36.x), Orin Nano 8 GB, shape of `tegrastats --interval 100`
    "12-05-2026 18:00:00 RAM 3012/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@1510,9%@1510,"
    "3%@1510,4%@1510,off,off] EMC_FREQ 21%@2133 GR3D_FREQ 87%@[624] NVENC off NVDEC off NVJPG off NVJPG1 off "
    "VIC off OFA off APE 200 cpu@52.1C soc2@50.3C soc0@51.2C gpu@53.5C tj@53.5C soc1@50.8C "
    "VDD_IN 7020mW/6810mW VDD_CPU_GPU_CV 2520mW/2390mW VDD_SOC 1640mW/1600mW",
    "12-05-2026 18:00:00 RAM 3090/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [14%@1510,8%@1510,"
    "2%@1510,4%@1510,off,off] EMC_FREQ 23%@2133 GR3D_FREQ 91%@[624] cpu@52.3C gpu@53.9C tj@53.9C "
    "VDD_IN 7180mW/6850mW VDD_CPU_GPU_CV 2610mW/2420mW VDD_SOC 1660mW/1610mW",
]
AGX_ORIN = ("RAM 9120/30697MB (lfb 15x4MB) SWAP 0/15348MB (cached 0MB) CPU [3%@2201,1%@2201] GR3D_FREQ 0%@[1300,1300] "
            "cpu@49.4C gpu@46.1C VDD_GPU_SOC 4789mW/4789mW VDD_CPU_CV 798mW/798mW VIN_SYS_5V0 3426mW/3426mW")
OLD_UNITS = "RAM 2100/3964MB (lfb 25x4MB) CPU [5%@1479,2%@1479] GR3D_FREQ 0%@921 POM_5V_IN 2950/2950 POM_5V_GPU 0/0"


def test_parse_tegrastats_orin_nano():
    got = parse_tegrastats(ORIN_NANO[0])
    assert (got["ram_used_mb"], got["ram_total_mb"], got["vdd_in_mw"]) == (3012, 7620, 7020), got
    assert got["rails_mw"] == {"VDD_IN": 7020, "VDD_CPU_GPU_CV": 2520, "VDD_SOC": 1640}, got["rails_mw"]


def test_parse_tegrastats_without_vdd_in_and_without_units():
    agx = parse_tegrastats(AGX_ORIN)
    assert agx["vdd_in_mw"] is None and agx["rails_mw"]["VIN_SYS_5V0"] == 3426 and agx["ram_used_mb"] == 9120, agx
    old = parse_tegrastats(OLD_UNITS)
    assert old["rails_mw"] == {"POM_5V_IN": 2950, "POM_5V_GPU": 0} and old["vdd_in_mw"] is None, old
    assert parse_tegrastats("") is None and parse_tegrastats("tegrastats: command not found") is None


def test_mj_per_image_is_mean_vdd_in_over_throughput():
    got = summarize_tegrastats(ORIN_NANO, img_per_s=500.0)
    mean = (7020 + 7180) / 2
    assert got["vdd_in_mw"] == mean and got["mj_per_image"] == round(mean / 500.0, 3), (got, mean / 500)
    assert got["ram_peak_mb"] == 3090 and got["samples"] == 2, got
    assert summarize_tegrastats([AGX_ORIN], 500.0)["mj_per_image"] is None, "no VDD_IN: no energy claimed"
    assert summarize_tegrastats(["no RAM field"], 500.0) is None


class _Busy(Target):
    def infer(self, images, batch_size):
        return np.zeros((len(images), 2), np.float32)

    def timed_call(self, images):
        import time

        return lambda: time.sleep(0.05)


def test_bench_row_reads_tegrastats_while_the_throughput_runs(tmp_path, monkeypatch):
    """A stand-in ``tegrastats`` on PATH printing the Orin Nano lines: the row gets the board's RAM and mJ/img."""
    exe = tmp_path / "tegrastats"
    exe.write_text("#!/bin/sh\nwhile true; do\n" + "".join(f"echo '{line}'\n" for line in ORIN_NANO)
                   + "sleep 0.05\ndone\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    plan = Plan(BenchRow(name="stand-in", backend="tensorrt", device="cuda", format="tensorrt", precision="fp16"),
                make=_Busy)
    row, _, _ = _bench_one(plan, np.zeros((2, 1, 8, 8), np.float32), BenchConfig(iterations=8, warmup_s=0.0), 2, ())
    board = row.tegrastats
    assert board is not None and board["samples"] >= 1, (row.status, row.reason, board)
    assert board["ram_peak_mb"] in (3012, 3090) and 7020 <= board["vdd_in_mw"] <= 7180, board
    assert abs(board["mj_per_image"] - board["vdd_in_mw"] / row.throughput.img_per_s) < 0.01, board
    cols, cells = BenchReport(rows=[row]).table_rows()
    assert all(c in cols for c in BOARD_COLUMNS), cols
    assert cells[0][cols.index("mJ/img")] == f"{board['mj_per_image']:.2f}", cells
