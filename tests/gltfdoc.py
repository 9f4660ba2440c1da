"""glTF and PNG bytes written by hand for the glTF tests, independent of the code under test."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG of one colour (written here, independent of the code under test)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def glb(doc: dict[str, Any], binary: bytes | None) -> bytes:
    return glb_raw(json.dumps(doc).encode(), binary)


def glb_raw(text: bytes, binary: bytes | None) -> bytes:
    text += b" " * (-len(text) % 4)
    out = struct.pack("<I4s", len(text), b"JSON") + text
    if binary is not None:
        binary += b"\x00" * (-len(binary) % 4)
        out += struct.pack("<I4s", len(binary), b"BIN\x00") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(out)) + out


def parse_glb(data: bytes) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """JSON and the later chunks, checking the container on the way."""
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    chunks = []
    offset = 12
    while offset < len(data):
        length, kind = struct.unpack_from("<I4s", data, offset)
        assert offset % 4 == 0 and length % 4 == 0
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 8 + length
    assert offset == len(data)
    assert chunks[0][0] == b"JSON"
    return json.loads(chunks[0][1]), chunks[1:]


# Ways to break a GLB container, each keeping the rest of it as it was.


def truncated(data: bytes) -> bytes:
    return data[:-7]


def json_length_too_big(data: bytes) -> bytes:
    return data[:12] + struct.pack("<I", 1 << 30) + data[16:]


def bin_length_too_big(data: bytes) -> bytes:
    json_length = struct.unpack_from("<I", data, 12)[0]
    at = 20 + json_length
    return data[:at] + struct.pack("<I", 1 << 20) + data[at + 4 :]


def total_wrong(data: bytes) -> bytes:
    return data[:8] + struct.pack("<I", len(data) + 4) + data[12:]


def version_1(data: bytes) -> bytes:
    return data[:4] + struct.pack("<I", 1) + data[8:]


def first_chunk_bin(data: bytes) -> bytes:
    return data[:16] + b"BIN\x00" + data[20:]


def bad_json(data: bytes) -> bytes:
    return data[:20] + b"[" + data[21:]


def json_not_object(data: bytes) -> bytes:
    return glb_raw(b"[1, 2]", data[-16:])


def json_nested_deeply(data: bytes) -> bytes:
    return glb_raw(b"[" * 200_000 + b"]" * 200_000, None)
