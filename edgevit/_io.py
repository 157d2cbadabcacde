"""Artifacts are written under a temporary name and renamed, never half-written in place."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import ArtifactExistsError, OutputPathError


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing artifact unless ``force``, and a directory where the file
    must go even with ``force`` (it would not be overwritten, and a rename onto it fails)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path} is a directory, but the artifact file must be written there; "
                              "choose another output, or move the directory away")
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
        install_file(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def install_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put a finished temporary file in place: the mode ``open()`` would give it (:func:`follow_umask`),
    then a durable rename onto ``path`` (:func:`replace_durably`). Every artifact goes through here."""
    follow_umask(tmp)
    replace_durably(tmp, path)


def follow_umask(path: str | os.PathLike) -> None:
    """Give a written file the mode ``open()`` would (0666 less the umask): some writers, such
    as safetensors, create 0600 files that a service user cannot read."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    if os.path.isfile(path):
        os.chmod(path, 0o666 & ~mask)


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


def replace_durably(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` onto ``dst`` so that a power cut leaves the old or the new file, never an empty
    one: ``src``'s data is fsynced before the rename, the directory (the rename itself) after."""
    _fsync(src)
    os.replace(src, dst)
    _fsync(Path(dst).parent, directory=True)


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:  # a platform that cannot open directories (Windows) has nothing to sync
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems refuse fsync on a directory; the file's own sync is what matters
            raise
    finally:
        os.close(fd)


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Refuse, before any slow work, an output directory that cannot be created or written to:
    a file standing where it or one of its parents must be, or a directory without write permission."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputPathError(f"{path} cannot be a directory: {existing} is a file; choose another {option} "
                              f"or move {existing} away")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path} cannot be written: {existing} is not writable (permission denied); "
                              f"choose another {option} or make {existing} writable")
    return path


_TEMPORARY = re.compile(r"^\.(?:edgevit-export-(\d+)-.+|.+\.tmp-(\d+))$")


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed edgevit processes left in ``directory``: ``.NAME.tmp-PID``
    files (:func:`atomic_path`) and ``.edgevit-export-PID-*`` directories, only when process PID is gone."""
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or _process_alive(int(match.group(1) or match.group(2))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if os.name != "posix" or pid <= 0 or pid == os.getpid():
        return True  # os.kill(pid, 0) would terminate the process on Windows: keep everything there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True
