"""Artifacts are written under a temporary name and renamed, never half-written in place."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import ArtifactExistsError


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing artifact unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise ArtifactExistsError(
            f"{path} already exists; pass --force (force=True) to overwrite it, or choose another output"
        )
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds."""
    path = check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
