"""What a path names: :class:`Resolved`, the one answer of :meth:`edgevit.manifest.Manifest.resolve`
for a file a manifest lists and one it does not alike.

Imports nothing of edgevit above the bottom layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .formats import BASE_PRECISION, ArtifactFormat, artifact_format

if TYPE_CHECKING:
    from .manifest import Artifact, Manifest
    from .tensorrt.record import EngineRecord


@dataclass(frozen=True)
class Resolved:
    """Which artifact a path names (:meth:`Manifest.resolve`), for a file a manifest lists and one it
    does not alike.

    ``path``: the file. ``manifest``: the manifest of its directory, or None where none sits beside it.
    ``entry``: the manifest's record of the file, or None for a file it does not list. ``format``: the
    entry's, else the one its suffix names (:func:`edgevit.formats.format_of`). ``hash_checked``: the file's
    sha256 matched the entry's (someone vouched for it: a version-compatible TensorRT plan may then run its
    host code).
    """

    path: Path
    format: str
    manifest: Manifest | None = None
    entry: Artifact | None = None
    hash_checked: bool = False

    @property
    def plan_options(self) -> dict | None:
        """The TensorRT runner's option that forbids a version-compatible plan's host code where nobody vouched
        for the file: a listed file whose sha256 was not checked (``--no-verify-hash``); else None."""
        return {"vouched": False} if self.listed and not self.hash_checked else None

    @property
    def listed(self) -> bool:
        """Whether a manifest records the file (its sha256, precision and build facts)."""
        return self.entry is not None

    @property
    def artifact_format(self) -> ArtifactFormat:
        """The row of :data:`edgevit.formats.ARTIFACT_FORMATS`: the runner that executes the file."""
        return artifact_format(self.format)

    @cached_property
    def precision(self) -> str | None:
        """The entry's precision; for an unlisted ONNX graph, read off the graph (fp32 where it cannot be
        read: its runner reports that); None for an unlisted engine (nothing records it)."""
        if self.entry is not None:
            return self.entry.precision
        if not self.artifact_format.graph:
            return None
        from .onnx_graph import graph_facts

        facts = graph_facts(self.path)
        return facts["precision"] if facts is not None else BASE_PRECISION

    @property
    def files(self) -> list[Path]:
        """The file and, for a listed graph, its external data files."""
        extra = self.entry.external_data if self.entry is not None and self.manifest is not None else []
        return [self.path, *(self.manifest.root / name for name in extra)]

    @property
    def record(self) -> EngineRecord | None:
        """A listed engine's build record (its runner checks it against this machine), or None: a graph's
        entry, or a file no manifest lists."""
        if self.entry is None or self.artifact_format.graph:
            return None
        from .tensorrt.record import EngineRecord

        return EngineRecord.from_artifact(self.entry)


__all__ = ["Resolved"]
