""".npy / .npz files are checked before NumPy allocates what their headers claim: a header that
states more data than the file holds, an unreadable header and an unreadable .npz member are a
DataError naming the file (and the member), exit 1 in the CLI; an allocation failure is a message."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from edgevit.data import load_dataset
from edgevit.data.sources import read_array_file
from edgevit.errors import DataError
from edgevit.models import get_variant
from tests._fixtures import assert_exit, must_not_run, run_cli

DIGITS_PRE = get_variant("digits-tiny").preprocessing
CLAIMED = (100_000, 1, 8_000, 8_000)  # 6.4e12 float32 values: 25.6 TB


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _claiming(shape, data_bytes: int = 512) -> bytes:
    """A .npy whose header states ``shape`` (float32) followed by only ``data_bytes`` bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * data_bytes


def _npz(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return path


@pytest.fixture
def no_allocation(monkeypatch):
    """NumPy's array reader must not run: the file is refused on its header alone."""
    monkeypatch.setattr(np.lib.format, "read_array", must_not_run("np.lib.format.read_array"))


@pytest.mark.parametrize("kind", ["npy", "npz", "npz-deflated"])
def test_a_header_claiming_more_than_the_file_holds_is_refused_before_allocation(tmp_path, no_allocation, kind):
    data = _claiming(CLAIMED)
    if kind == "npy":
        path = tmp_path / "huge.npy"
        path.write_bytes(data)
    else:
        path = _npz(tmp_path / "huge.npz", {"images": data},
                    zipfile.ZIP_DEFLATED if kind == "npz-deflated" else zipfile.ZIP_STORED)
    with pytest.raises(DataError) as info:
        read_array_file(path)
    message = str(info.value)
    claimed = int(np.prod(CLAIMED)) * 4
    assert str(path) in message and f"{claimed:,} bytes" in message and "512 bytes" in message, message
    if kind != "npy":
        assert "'images'" in message, message


def test_a_truncated_array_is_refused_on_its_header(tmp_path, no_allocation):
    whole = _npy_bytes(np.zeros((4, 1, 8, 8), np.float32))
    path = tmp_path / "cut.npy"
    path.write_bytes(whole[:-4])  # 4 bytes short: one float32 missing
    with pytest.raises(DataError, match="bytes of data follow it"):
        read_array_file(path)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_valid_arrays_still_load_exactly(tmp_path, compression):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 16, (5, 1, 8, 8)).astype(np.float32)
    labels = np.arange(5, dtype=np.int64)
    np.save(tmp_path / "a.npy", images)
    _npz(tmp_path / "a.npz", {"images": _npy_bytes(images), "labels": _npy_bytes(labels)}, compression)
    got, _, _ = read_array_file(tmp_path / "a.npy")
    assert np.array_equal(got, images)
    got, got_labels, _ = read_array_file(tmp_path / "a.npz")
    assert np.array_equal(got, images) and np.array_equal(got_labels, labels)
    assert len(load_dataset(tmp_path / "a.npz", DIGITS_PRE, "all")) == 5


def test_unreadable_npz_members_are_data_errors_naming_file_and_member(tmp_path):
    good = _npy_bytes(np.zeros((2, 1, 8, 8), np.float32))
    bad_descr = good.replace(b"'descr': '<f4'", b"'descr': 'XXX'")
    path = _npz(tmp_path / "bad.npz", {"images": bad_descr})
    with pytest.raises(DataError) as info:
        read_array_file(path)
    assert str(path) in str(info.value) and "'images'" in str(info.value), info.value
    objects = io.BytesIO()
    np.save(objects, np.array([1, "a"], dtype=object), allow_pickle=True)
    path = _npz(tmp_path / "objects.npz", {"images": good, "labels": objects.getvalue()})
    with pytest.raises(DataError) as info:
        read_array_file(path)
    assert str(path) in str(info.value) and "'labels'" in str(info.value), info.value


@pytest.mark.parametrize("case", ["huge.npy", "huge.npz", "bad-header.npz", "object-member.npz"])
def test_cli_exits_1_naming_the_file_not_2_or_a_traceback(tmp_path, case):
    """eval --data reads arrays through the same reader as predict, embed, quantize and verify."""
    path = tmp_path / case
    good = _npy_bytes(np.zeros((2, 1, 8, 8), np.float32))
    if case == "huge.npy":
        path.write_bytes(_claiming(CLAIMED))
    elif case == "huge.npz":
        _npz(path, {"images": _claiming(CLAIMED)})
    elif case == "bad-header.npz":
        _npz(path, {"images": good.replace(b"'descr': '<f4'", b"'descr': 'XXX'")})
    else:
        objects = io.BytesIO()
        np.save(objects, np.array([1, "a"], dtype=object), allow_pickle=True)
        _npz(path, {"images": objects.getvalue()})
    res = run_cli("eval", "digits-tiny", "--data", path, "--split", "all")
    assert_exit(res, 1)
    assert str(path) in res.stderr and "invalid value" not in res.stderr, res.output
    res = run_cli("eval", "digits-tiny", "--data", path, "--split", "all", "--json")
    assert_exit(res, 1)
    answer = json.loads(res.stdout)
    assert answer["ok"] is False and answer["type"] == "DataError" and str(path) in answer["message"], answer


def test_an_allocation_failure_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    """A file whose header is honest but larger than this machine's memory: MemoryError -> exit 1."""
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((2, 1, 8, 8), np.float32))

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 23.3 TiB for an array")

    monkeypatch.setattr(np.lib.format, "read_array", no_memory)
    res = run_cli("eval", "digits-tiny", "--data", path, "--split", "all", "--json")
    assert_exit(res, 1)
    answer = json.loads(res.stdout)
    assert answer == {"ok": False, "error": "out of memory", "type": "MemoryError",
                      "message": answer["message"]} and "23.3 TiB" in answer["message"], answer
    assert "edgevit: out of memory:" in res.stderr, res.output
