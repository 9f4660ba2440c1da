"""A zip's list of members is checked before it is read (issue #20, finding 12): the end
record's member count and directory size, zip64 included, are refused over their limits
before zipfile reads every entry into memory."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from conjure_src.importers import archive
from conjure_src.importers.archive import ArchiveError


def _zip(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for i in range(count):
            z.writestr(f"t{i}.png", b"x")
    return buffer.getvalue()


def _as_zip64(data: bytes) -> bytes:
    """The same zip with its counts moved to a zip64 end record, as big archives have them."""
    end = data.rindex(b"PK\x05\x06")
    count, size, offset = struct.unpack_from("<HLL", data, end + 10)
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    tail = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:end] + record + locator + tail


def _unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on zipfile must not even open an archive: it would read the whole list first."""

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("zipfile read the member list")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)


def _write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    return str(path)


def test_too_many_members_are_refused_before_the_list_is_read(tmp_path, monkeypatch) -> None:
    path = _write(tmp_path, _zip(2001))
    _unread(monkeypatch)
    with pytest.raises(ArchiveError, match="the zip has 2001 members, more than the 2000"):
        archive.extract_zip(path, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_zip64_count_is_read_from_its_own_record(tmp_path, monkeypatch) -> None:
    data = _as_zip64(_zip(11))
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 11  # a zip zipfile reads
    assert len(archive.extract_zip(_write(tmp_path, data), str(tmp_path / "ok"))) == 11
    _unread(monkeypatch)
    with pytest.raises(ArchiveError, match="11 members, more than the 10"):
        archive.extract_zip(_write(tmp_path, data), str(tmp_path / "out"), max_members=10)


def test_a_member_list_over_its_size_limit_is_refused_unread(tmp_path, monkeypatch) -> None:
    data = bytearray(_zip(3))
    end = data.rindex(b"PK\x05\x06")
    data[end + 12 : end + 16] = struct.pack("<L", 16 * 1024 * 1024 + 1)
    _unread(monkeypatch)
    with pytest.raises(ArchiveError, match="list of members is 16777217 bytes, over the"):
        archive.extract_zip(_write(tmp_path, bytes(data)), str(tmp_path / "out"))


def test_a_zip_within_its_limits_still_extracts(tmp_path) -> None:
    files = archive.extract_zip(_write(tmp_path, _zip(2000)), str(tmp_path / "out"))
    assert len(files) == 2000
