"""What ``edgevit lint`` reports: a :class:`Finding` (severity, stable code, message with the
numbers, the nodes involved) and the :class:`LintReport` of one graph. The checks that make them
are in :mod:`edgevit.export.lint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    message: str
    nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {self.severity!r}")

    def to_dict(self) -> dict:
        return {"severity": self.severity, "code": self.code, "message": self.message, "nodes": list(self.nodes)}


@dataclass
class LintReport:
    path: str | None
    tensorrt_version: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def by_severity(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        return self.by_severity("error")

    @property
    def warnings(self) -> list[Finding]:
        return self.by_severity("warning")

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings and infos allowed)."""
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "tensorrt_version": self.tensorrt_version,
            "ok": self.ok,
            "counts": {s: len(self.by_severity(s)) for s in SEVERITIES},
            "findings": [f.to_dict() for f in self.findings],
            "stats": self.stats,
        }


__all__ = ["Finding", "LintReport", "SEVERITIES"]


def grouped(findings: dict, severity: str, code: str) -> Iterable[Finding]:
    """Turn {message: [node names]} into findings."""
    for message, nodes in findings.items():
        yield Finding(severity, code, message, tuple(dict.fromkeys(nodes)))


def listed(nodes: list[str], limit: int = 4) -> str:
    """The first ``limit`` node names, and how many more."""
    more = f" (+{len(nodes) - limit} more)" if len(nodes) > limit else ""
    return ", ".join(nodes[:limit]) + more
