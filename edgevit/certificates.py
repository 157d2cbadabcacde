"""Preprocessing certificates: for each consumer edgevit writes for (its own runtime, a raw-pixel graph,
a Triton model repository, a DeepStream nvinfer config, ``examples/load_plan.cpp``), how that consumer's
preprocessing was checked against the PyTorch reference and what was measured.

The manifest keeps them in its ``certificates`` list (:meth:`edgevit.manifest.Manifest.add_certificate`);
``edgevit verify`` and ``bench`` show them. A consumer that applies its own preprocessing (DeepStream's
``y = net-scale-factor * (x - offsets)``, a Triton client feeding raw pixels) is checked by applying that
consumer's rule, with the numbers edgevit wrote, to real images and running the written graph on ONNX
Runtime; ``max_abs`` is then the largest difference to the reference's outputs. Where nothing could be run
(a C++ example that needs a GPU), ``max_abs`` is None and ``method`` says what was compared instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

from .errors import ManifestError
from .tolerances import Verdict


_FIELD_TYPES = {"consumer": (str,), "artifact": (str,), "method": (str,), "max_abs": (int, float, type(None)),
                "top1_agreement": (int, float, type(None)), "samples": (int,), "atol": (int, float, type(None)),
                "location": (str,), "artifact_sha256": (str, type(None)), "files": (dict,), "details": (dict,),
                "checked": (str,)}
"""The JSON type of each field, checked on construction (a hand-edited manifest is refused on load)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Certificate:
    """One consumer's preprocessing, checked.

    ``consumer``: who runs the artifact ("edgevit runtime", "raw-pixel graph", "triton", "deepstream",
    "load_plan.cpp"). ``artifact``: the manifest artifact it runs (path relative to the manifest).
    ``location``: where its files were written (a directory, "" for the export directory itself).
    ``method``: how the consumer's preprocessing was applied and compared, in words. ``max_abs`` /
    ``top1_agreement``: measured against the reference on ``samples`` real images (None: not run).
    ``artifact_sha256``: the checked artifact's sha256 (a certificate of a since-replaced file is stale).
    ``atol``: the bound ``max_abs`` was held to. ``verdict``: PASSED, FAILED or NOT_RUN. ``files``: what
    was written for the consumer, file -> sha256. ``details``: consumer facts (the nvinfer scale and
    offsets, the folded std, the Triton ``max_batch_size``...). ``extra``: keys this edgevit does not know.
    """

    consumer: str
    artifact: str
    method: str
    verdict: Verdict
    max_abs: float | None = None
    top1_agreement: float | None = None
    samples: int = 0
    atol: float | None = None
    location: str = ""
    artifact_sha256: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    checked: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        for name, types in _FIELD_TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
                raise ValueError(f"{name} must be {' or '.join(t.__name__ for t in types)}, got {value!r:.40}")

    def files_present(self) -> bool:
        """Whether the files written for the consumer are still at ``location`` (an absolute directory; no
        files, or "" for the export directory itself: nothing to look for). Their sha256 is not recomputed."""
        if not self.files or not self.location or not Path(self.location).is_absolute():
            return True
        return all((Path(self.location) / name).is_file() for name in self.files)

    @property
    def key(self) -> tuple[str, str, str]:
        """What a newer certificate replaces: the same consumer of the same artifact at the same place."""
        return self.consumer, self.artifact, self.location

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASSED

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["verdict"] = self.verdict.value
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, key: str = "certificates[]") -> "Certificate":
        """The certificate of a manifest entry; ManifestError naming ``key`` for one that is none."""
        if not isinstance(data, dict):
            raise ManifestError(f'"{key}" must be an object, got {type(data).__name__}')
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = [k for k in ("consumer", "artifact", "method", "verdict") if k not in data]
        if missing:
            raise ManifestError(f'"{key}" lacks {missing}')
        try:
            return cls(**{k: v for k, v in data.items() if k in known},
                       extra={k: v for k, v in data.items() if k not in known})
        except (TypeError, ValueError) as exc:
            raise ManifestError(f'"{key}" is not a valid certificate ({exc})') from None

    def row(self, current: bool = True) -> list[str]:
        """The row ``verify``/``bench``/``demo`` tables show: consumer, artifact, where, method, max |diff|,
        top-1 agreement, verdict (marked stale when the artifact was replaced since: not ``current``)."""
        def num(v, fmt):
            return "-" if v is None else format(v, fmt)
        verdict = self.verdict.value if current else f"{self.verdict.value} (stale: the artifact or its files changed since)"
        return [self.consumer, self.artifact, self.location or ".", self.method, num(self.max_abs, ".2e"),
                num(self.top1_agreement, ".4f"), verdict]


CERTIFICATE_COLUMNS = ["consumer", "artifact", "written to", "how its preprocessing was checked", "max |diff|",
                       "agreement", "verdict"]

__all__ = ["CERTIFICATE_COLUMNS", "Certificate"]
