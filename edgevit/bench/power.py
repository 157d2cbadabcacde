"""On a Jetson: the board's RAM and VDD_IN power while a row's throughput is measured, from tegrastats.

``tegrastats --interval MS`` runs beside the throughput measurement; its lines are parsed by
:func:`edgevit.tensorrt.jetson.summarize_tegrastats` into the row's ``tegrastats`` (RAM peak, mean VDD_IN,
mJ per image = mean VDD_IN / img/s). Elsewhere (no ``tegrastats`` on PATH) nothing runs and the row's
``tegrastats`` stays None. tegrastats samples at most every ``interval_ms``, so a measurement shorter than a
few intervals gets few or no samples (``samples`` says how many).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading

INTERVAL_MS = 100


@contextlib.contextmanager
def tegrastats_lines(interval_ms: int = INTERVAL_MS, command: str = "tegrastats"):
    """Yield a list that fills with tegrastats lines while the ``with`` body runs (stays empty off a Jetson)."""
    lines: list[str] = []
    exe = shutil.which(command)
    if exe is None:
        yield lines
        return
    try:
        proc = subprocess.Popen([exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError:
        yield lines
        return

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=2)


__all__ = ["INTERVAL_MS", "tegrastats_lines"]
