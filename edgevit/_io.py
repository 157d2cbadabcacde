"""Artifacts are written under a temporary name and renamed, never half-written in place.

Temporaries have names no user file has by accident: ``.NAME.edgevit-tmp-PID`` files
(:func:`atomic_path`) and ``.STEM-RANDOM.edgevit-tmp-PID`` work directories holding an
``.edgevit-tmp`` marker (:func:`temporary_dir`); :func:`remove_stale_temporaries` removes only
those, and only when process PID is gone. Every writer of an output directory's ``edgevit.json``
holds that directory's lock (:func:`outdir_lock`, the file ``.edgevit.lock``) while it installs its
files and merges its entries into the manifest it re-reads there.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from .errors import ArtifactExistsError, EdgeVitWarning, OutputBusyError, OutputPathError


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
    tmp = temporary_name(path)
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


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give a written file the mode ``open()`` would (0666 less the umask): some writers, such
    as safetensors, create 0600 files that a service user cannot read."""
    if os.path.isfile(path):
        os.chmod(path, 0o666 & ~_umask())


def follow_umask_tree(directory: str | os.PathLike) -> None:
    """Give ``directory`` and the directories under it the mode ``mkdir`` would (0777 less the umask): a
    temporary directory starts 0700, which a server running as another user could not read."""
    mask = _umask()
    for d in (Path(directory), *(p for p in Path(directory).rglob("*") if p.is_dir() and not p.is_symlink())):
        d.chmod(0o777 & ~mask)


def write_text_atomic(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text)
    return Path(path)


def to_jsonable(obj):
    """``json.dumps``'s ``default`` for edgevit's objects: a record's :meth:`to_dict`, an array's
    ``tolist()``, a path's string; TypeError for anything else."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


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


# ---------------------------------------------------------------------------- temporaries
_TEMP_TAG = ".edgevit-tmp-"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.edgevit-tmp-(?P<pid>[1-9][0-9]{0,9})$")
TEMP_DIR_MARKER = ".edgevit-tmp"  # inside a temporary directory: its creator's PID


def temporary_name(path: str | os.PathLike) -> Path:
    """The temporary sibling ``path`` is written under: ``.NAME.edgevit-tmp-PID``."""
    path = Path(path)
    return path.with_name(f".{path.name}{_TEMP_TAG}{os.getpid()}")


def temporary_dir(directory: str | os.PathLike, stem: str) -> Path:
    """A new work directory in ``directory`` (``.STEM-RANDOM.edgevit-tmp-PID``) with the marker
    file that tells :func:`remove_stale_temporaries` edgevit made it; the caller removes it."""
    work = Path(tempfile.mkdtemp(prefix=f".{stem}-", suffix=f"{_TEMP_TAG}{os.getpid()}", dir=directory))
    (work / TEMP_DIR_MARKER).write_text(f"{os.getpid()}\n")
    return work


def is_edgevit_internal(name: str) -> bool:
    """Whether a file name is edgevit's own bookkeeping (the lock, a temporary), never an artifact
    and never a user's file to report."""
    return name == LOCK_NAME or _TEMPORARY.match(name) is not None


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed edgevit processes left in ``directory``, when process
    PID is gone: ``.NAME.edgevit-tmp-PID`` regular files, and ``.STEM.edgevit-tmp-PID`` directories
    whose marker (:func:`temporary_dir`) names that PID and that hold regular files only (their
    files, then the directory; never recursively). Anything else stays, whatever its name."""
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or _process_alive(int(match["pid"])):
            continue
        try:
            if entry.is_symlink():
                continue
            if entry.is_file():
                entry.unlink()
            elif entry.is_dir():
                if not _remove_work_dir(entry, match["pid"]):
                    continue
            else:
                continue
        except OSError:
            continue
        removed.append(entry)
    return removed


def _remove_work_dir(path: Path, pid: str) -> bool:
    """Remove a dead process's work directory if edgevit made it: its marker names ``pid`` and
    nothing in it is a directory (a user's directory of that name keeps everything)."""
    marker = path / TEMP_DIR_MARKER
    if marker.is_symlink() or not marker.is_file() or marker.read_text(errors="replace").strip() != pid:
        return False
    children = list(path.iterdir())
    if any(c.is_dir() and not c.is_symlink() for c in children):
        return False
    for child in children:
        if child != marker:
            child.unlink()
    marker.unlink()
    path.rmdir()
    return True


def artifact_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a file of an output directory (None when it can): it must be relative,
    without ``..``, name a file (not ``.`` or a directory), and not be edgevit's lock or a temporary.
    The manifest checks its entries with it, and :func:`remove_inside` deletes nothing else."""
    rel = Path(name)
    if (not isinstance(name, str) or not rel.parts or rel.name in ("", ".") or name.endswith(("/", "\\"))
            or rel.is_absolute() or rel.drive or ".." in rel.parts):
        return ("must be a file name relative to the manifest's directory, inside it (no absolute path, "
                "no '..'); re-export, or fix the entry")
    if is_edgevit_internal(rel.name):
        return "is edgevit's lock or temporary file, not an artifact"
    return None


def remove_inside(directory: str | os.PathLike, name: str) -> bool:
    """Delete the regular file ``directory/name`` when it lies inside ``directory``: ``name`` is
    relative without ``..``, the file is no symlink, no symlinked directory on the way leads out, and
    it is not edgevit's lock or a temporary. False (nothing deleted) otherwise, or when it is missing
    or cannot be removed. Every removal of a listed artifact goes through here."""
    if artifact_name_problem(name):
        return False
    target = Path(directory) / name
    try:
        if target.is_symlink() or not target.is_file():
            return False
        if not target.resolve().is_relative_to(Path(directory).resolve()):
            return False
        target.unlink()
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------- the writer lock
LOCK_NAME = ".edgevit.lock"
LOCK_TIMEOUT_S = 120.0
_held = threading.local()


@contextmanager
def outdir_lock(directory: str | os.PathLike, timeout: float | None = None) -> Iterator[Path]:
    """Hold the writer lock of output directory ``directory`` (``flock`` on ``directory/.edgevit.lock``).

    Every writer of a directory's ``edgevit.json`` (export, quantize, build) does its slow work
    first, then takes this lock, re-reads the manifest, checks that what it built from is still
    there, installs its files and saves the merged manifest, and lets go. A second writer waits
    up to ``timeout`` seconds (default :data:`LOCK_TIMEOUT_S`: the lock is held only for those
    renames and the manifest, seconds at most), then gets OutputBusyError naming the directory and
    the holder's PID and command. The lock dies with its process (no stale lock to clear), the
    file is deleted on release, and the lock is re-entrant within a thread.
    """
    directory = Path(directory)
    key = os.path.realpath(directory)
    held = _held.__dict__.setdefault("dirs", {})
    if key in held:
        held[key] += 1
        try:
            yield directory
        finally:
            held[key] -= 1
        return
    path = directory / LOCK_NAME
    fd = _acquire(path, LOCK_TIMEOUT_S if timeout is None else timeout)
    held[key] = 1
    try:
        yield directory
    finally:
        del held[key]
        _release(path, fd)


def _acquire(path: Path, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = _try_lock(fd)
        except OSError as exc:  # a file system without locks (some network mounts): go on unlocked
            os.close(fd)
            warnings.warn(f"{path.parent}: cannot lock {path.name} ({exc}); another edgevit writing this "
                          "directory at the same time would not be held off", EdgeVitWarning, stacklevel=4)
            return None
        if locked:
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except OSError:
                same = False
            if same:  # not unlinked by the holder that released it after we opened it
                holder = {"pid": os.getpid(), "command": _command_line(),
                          "since": datetime.now().isoformat(timespec="seconds")}
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, (json.dumps(holder) + "\n").encode())
                except OSError:  # a full disk: let go rather than hold the lock until this process exits
                    _release(path, fd)
                    raise
                return fd
        os.close(fd)
        if locked:
            continue
        if time.monotonic() >= deadline:
            raise OutputBusyError(
                f"{path.parent} is being written by another edgevit process ({_holder(path)}); waited "
                f"{timeout:g} s for it to finish. Run this again when it is done, or write to another directory")
        time.sleep(0.05)


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _release(path: Path, fd: int | None) -> None:
    if fd is None:
        return
    try:
        if os.name == "posix" and os.path.samestat(os.fstat(fd), os.stat(path)):
            os.unlink(path)  # while still locked: a waiter that opened it sees it gone and retries
    except OSError:
        pass
    os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {int(info['pid'])}: {info.get('command') or '?'}, since {info.get('since') or '?'}"
    except (OSError, ValueError, KeyError, TypeError):
        return "process unknown"


def _command_line() -> str:
    args = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = " ".join(args)
    return text if len(text) <= 200 else text[:197] + "..."


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
