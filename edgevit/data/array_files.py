"""``.npy`` / ``.npz`` files read safely: every array header checked before NumPy allocates what it claims.

NumPy's reader allocates the array a header describes before it reads the data, so a 640-byte file
whose header claims 6.4e12 float32 values asks for 23 TiB (a MemoryError, or swap). :func:`check_headers`
compares each header's shape x itemsize with the bytes that can follow it: the rest of a ``.npy`` file;
for a member of an ``.npz`` (a zip), its size in the zip, and for a deflated member at most
:data:`DEFLATE_MAX_RATIO` times its compressed size. :func:`read_member` reads an ``.npz`` member,
naming the file and the member when it cannot be read.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
DEFLATE_MAX_RATIO = 1032  # deflate's largest compression ratio (zlib's technical details: 1032:1)
READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def _claimed(fp) -> tuple[tuple, np.dtype, int, int]:
    """(shape, dtype, bytes of data, bytes of header) the ``.npy`` header at the start of ``fp`` states."""
    major, _ = np.lib.format.read_magic(fp)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fp)
    return shape, dtype, math.prod(shape) * dtype.itemsize, fp.tell()


def _check(where: str, fp, room: int) -> None:
    """DataError when the header at ``fp`` claims more data than the ``room`` bytes (header included) hold."""
    try:
        shape, dtype, claimed, header = _claimed(fp)
    except READ_ERRORS as exc:
        raise DataError(f"{where}: not a readable .npy array header ({exc}); re-save it with numpy.save / "
                        "numpy.savez") from exc
    if not dtype.hasobject and claimed > room - header:  # object arrays hold pickles: np.load refuses them
        raise DataError(
            f"{where}: the header claims a {dtype} array of shape {shape} ({claimed:,} bytes) but only "
            f"{max(room - header, 0):,} bytes of data follow it: the file is truncated or damaged; re-save it "
            "with numpy.save / numpy.savez")


def check_headers(path: str | os.PathLike) -> None:
    """DataError when a ``.npy`` file, or a ``.npy`` member of an ``.npz``, states more data than the
    file can hold or has an unreadable header (see the module docstring); other files are left to
    ``np.load``, and a damaged zip raises ``zipfile.BadZipFile`` as ``np.load`` would."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(len(NPY_MAGIC))
        fh.seek(0)
        if magic == NPY_MAGIC:
            _check(str(path), fh, os.fstat(fh.fileno()).st_size)
            return
        if not magic.startswith(ZIP_MAGIC):
            return
        with zipfile.ZipFile(fh) as archive:  # a damaged zip: BadZipFile, for the caller to report
            for info in archive.infolist():
                with archive.open(info) as member:
                    if member.read(len(NPY_MAGIC)) != NPY_MAGIC:
                        continue
                room = info.file_size
                if info.compress_type == zipfile.ZIP_STORED:
                    room = min(room, info.compress_size)
                elif info.compress_type == zipfile.ZIP_DEFLATED:
                    room = min(room, info.compress_size * DEFLATE_MAX_RATIO)
                with archive.open(info) as member:
                    _check(f"{path}: array {info.filename.removesuffix('.npy')!r}", member, room)


def read_member(npz, key: str, path: str | os.PathLike) -> np.ndarray:
    """``npz[key]`` of an open ``np.load`` .npz; DataError naming the file and the member when it cannot be read."""
    try:
        return npz[key]
    except READ_ERRORS as exc:
        raise DataError(f"{path}: array {key!r} cannot be read ({exc}); re-save the file with numpy.savez") from exc


__all__ = ["DEFLATE_MAX_RATIO", "check_headers", "read_member"]
