"""What a deserialized TensorRT engine says it needs in device memory, beyond its weights.

``ICudaEngine.device_memory_size_v2`` (a property) and ``get_device_memory_size_for_profile_v2(profile_index)``
are the device memory an execution context needs for activations and scratch, the most over all profiles
and for one profile; the first-generation ``device_memory_size`` / ``get_device_memory_size_for_profile``
are bound beside them, marked "Deprecated in TensorRT 10.1. Superseded by ..._v2" (so 10.0 has only
those, and 10.3 on JetPack 6 has both). Source: NVIDIA/TensorRT ``python/src/infer/pyCore.cpp``, the
``ICudaEngine`` bindings, as stored at commit 768d994b7305b69eb5db2397337ae96e36586b41 (a 10.x release
branch); the tags themselves were not re-read. edgevit builds one profile (index 0), so the per-profile
size is the one reported. Checked against that source and on the stand-ins of tests/tensorrt only, never
on a real TensorRT.
"""

from __future__ import annotations

import contextlib

from ..errors import TensorRTError

# (method taking the profile index, property): newest first
_DEVICE_MEMORY = (("get_device_memory_size_for_profile_v2", "device_memory_size_v2"),
                  ("get_device_memory_size_for_profile", "device_memory_size"))


def engine_device_memory(engine, profile: int = 0) -> int | None:
    """Bytes of device memory ``engine`` needs for ``profile`` (activations and scratch; its weights are the
    plan's size), by the newest API the engine has; None where it has none (or it raised)."""
    for per_profile, overall in _DEVICE_MEMORY:
        fn = getattr(engine, per_profile, None)
        if callable(fn):
            with contextlib.suppress(Exception):
                return int(fn(profile))
        value = getattr(engine, overall, None)
        if value is not None and not callable(value):
            with contextlib.suppress(Exception):
                return int(value)
    return None


def check_memory_budget(plan_bytes: int, device_memory_bytes: int | None, budget_mb: float | None) -> dict | None:
    """Refuse an engine that does not fit ``budget_mb`` (``build --memory-budget``, 10^6 bytes): what it needs
    on the device is its plan (the weights TensorRT keeps resident once deserialized) plus the device memory of
    its profile (an execution context's activations and scratch); I/O buffers come on top. Returns the figures
    (None without a budget); a ``note`` says when the device memory is unknown and only the plan was counted.

    Raises:
        TensorRTError: The engine needs more than the budget; the message names both and what lowers them.
    """
    if budget_mb is None:
        return None
    need = plan_bytes + (device_memory_bytes or 0)
    out = {"budget_mb": budget_mb, "plan_mb": round(plan_bytes / 1e6, 3),
           "device_memory_mb": None if device_memory_bytes is None else round(device_memory_bytes / 1e6, 3),
           "needed_mb": round(need / 1e6, 3), "fits": need <= budget_mb * 1e6}
    if device_memory_bytes is None:
        out["note"] = "this TensorRT does not report the engine's device memory: only the plan was counted"
    if not out["fits"]:
        raise TensorRTError(
            f"the engine needs {need / 1e6:.1f} MB on the device (plan {plan_bytes / 1e6:.1f} MB + device memory "
            f"for its profile {(device_memory_bytes or 0) / 1e6:.1f} MB, I/O buffers not counted), over "
            f"--memory-budget {budget_mb:g} MB; nothing was written. Lower the profile's max batch (--batch), build "
            "a lower precision (an fp16 or int8 export), or raise --memory-budget")
    return out


__all__ = ["check_memory_budget", "engine_device_memory"]
