"""What a TensorRT engine's manifest entry records: :class:`EngineRecord`, the one typed view of the
fields :func:`edgevit.tensorrt.build.build_engine` writes beside the standard artifact keys.

``build_engine`` writes the entry from one (:meth:`EngineRecord.to_fields`); ``edgevit build``'s table,
:class:`edgevit.runtime.Engine` and the TensorRT runner read it back (:meth:`EngineRecord.from_artifact`).
No tensorrt import; bottom layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..manifest import Artifact


@dataclass(frozen=True)
class EngineRecord:
    """The build facts of one engine entry. Every field is optional on reading (an entry written by hand
    or by an older edgevit may lack some); ``to_fields`` writes them all, in this order.

    ``profile``: (min, opt, max) batch of the optimization profile. ``device_memory_bytes``: the device
    memory an execution context needs for that profile (activations and scratch; the weights are the plan's
    size), as the built engine reported it (:func:`edgevit.tensorrt.memory.engine_device_memory`). ``build_mode``: the build mode
    (:func:`edgevit.tensorrt.rules.build_mode`: ``strongly_typed``, ``flags``). ``onnx``: the graph it was
    built from (``path``, ``sha256``). ``build_options``: the :class:`EngineBuildConfig` fields but
    precision and batch.
    """

    tensorrt_version: str | None = None
    tensorrt_cuda_major: int | None = None
    cuda_driver_version: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None
    jetson: dict | None = None
    profile: tuple[int, int, int] | None = None
    device_memory_bytes: int | None = None  # for the profile, beyond the weights (tensorrt/memory.py)
    build_mode: dict | None = None
    onnx: dict | None = None
    version_compatible: bool | None = None
    hardware_compatibility_level: str | None = None
    platform: str | None = None  # OS and CPU architecture it was built on (rules.host_platform): "linux-aarch64"
    dla_core: int | None = None
    dla_fallback_layers: int | None = None
    fused_attention_blocks: list = field(default_factory=list)
    unfused_attention_blocks: list = field(default_factory=list)
    unknown_attention_blocks: list = field(default_factory=list)
    fusion_report: str | None = None
    build_options: dict = field(default_factory=dict)

    @property
    def weakly_typed(self) -> bool | None:
        """Whether TensorRT chose the layer precisions (``--weakly-typed``, or a DLA build on TensorRT 10:
        ``build_mode["dla"]``); None where no build mode is recorded."""
        return None if self.build_mode is None else not self.build_mode["strongly_typed"]

    @property
    def onnx_path(self) -> str | None:
        """The ONNX graph the engine was built from, relative to its manifest, or None."""
        return (self.onnx or {}).get("path")

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> "EngineRecord":
        """The record of an entry's fields (the standard artifact keys and unknown ones are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        prof = values.get("profile")
        if prof is not None:
            values["profile"] = (int(prof["min"]), int(prof["opt"]), int(prof["max"]))
        return cls(**values)

    @classmethod
    def from_artifact(cls, art: Artifact) -> "EngineRecord":
        """The record of an engine's manifest entry."""
        return cls.from_fields(art.extra)

    def to_fields(self) -> dict[str, Any]:
        """The entry's fields as ``edgevit.json`` holds them (``weakly_typed`` after ``build_mode``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "profile" and value is not None:
                value = dict(zip(("min", "opt", "max"), value))
            out[f.name] = value
            if f.name == "build_mode":
                out["weakly_typed"] = self.weakly_typed
        return out


__all__ = ["EngineRecord"]
