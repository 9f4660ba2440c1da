"""Confine a downloaded glTF/GLB to its job folder before Blender's importer sees it.

A served file names its buffers and images by URI, and Blender's importer opens whatever path
a URI spells (absolute, `../..`, through symlinks). A hostile service could so pull any local
file into the user's scene (and from there into a saved or shared .blend). This module reads
the file with bounds checks, resolves every URI exactly as the importer will, and allows only
embedded `data:` URIs and existing files inside the job folder. No bpy: it runs anywhere and
is tested without Blender.

- An image that is not allowed becomes a 1x1 white PNG (the material still imports; the
  texture is reported as left out).
- A buffer that is not allowed is an error: without it there is no geometry to import.
- The rewritten file is written beside the original so its allowed relative URIs still work;
  a GLB keeps every chunk after the JSON byte for byte.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import zlib
from typing import Any
from urllib.parse import unquote

from . import archive

_GLB_MAGIC = b"glTF"
_GLB_HEADER = struct.Struct("<4sII")  # magic, version, total length
_CHUNK_HEADER = struct.Struct("<I4s")  # chunk length, chunk type
_JSON_CHUNK = b"JSON"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")  # also catches Windows drives (C:)
_MAX_SHOWN = 120  # characters of a URI quoted in a message


class GltfCheckError(ValueError):
    """The file is not a readable glTF, or it needs a file it may not have; one line."""


def _png_1x1() -> bytes:
    """A valid 1x1 opaque white PNG: neutral when multiplied with a base colour factor."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    pixels = zlib.compress(b"\x00\xff\xff\xff\xff")  # filter byte + one RGBA pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PLACEHOLDER_PNG_URI = "data:image/png;base64," + base64.b64encode(_png_1x1()).decode("ascii")


def confine(path: str, allowed_root: str) -> tuple[str, list[str]]:
    """The file to import and the warnings for what was left out.

    Returns `(path, [])` when every URI is allowed; otherwise writes `<stem>.confined<ext>`
    beside `path` with the disallowed image URIs replaced and returns that path. Raises
    GltfCheckError for a malformed file, a model outside `allowed_root` or a disallowed buffer.
    """
    root = os.path.realpath(allowed_root)
    if not _inside(os.path.realpath(path), root):
        raise GltfCheckError(f"the model file {_show(path)} is outside the job folder")
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as exc:
        raise GltfCheckError(f"cannot read {_show(path)}: {exc.strerror or exc}") from None
    is_glb = content[:4] == _GLB_MAGIC  # the importer decides by content, not by name
    if is_glb:
        json_bytes, rest = _split_glb(content)
    else:
        json_bytes, rest = content, b""
    doc = _parse_json(json_bytes)
    base = os.path.dirname(path)

    for index, buffer in _entries(doc, "buffers"):
        uri = _uri(buffer, "buffers", index)
        reason = _refusal(uri, base, root) if uri else None  # no URI: the GLB's BIN chunk
        if reason:
            raise GltfCheckError(f"buffer {_show(uri or '')} {reason}; cannot import the model")

    warnings: list[str] = []
    for index, image in _entries(doc, "images"):
        uri = _uri(image, "images", index)
        reason = None if uri is None else _refusal(uri, base, root)
        if reason:
            image["uri"] = PLACEHOLDER_PNG_URI
            image["mimeType"] = "image/png"
            warnings.append(f"texture {_show(uri or '')} {reason}; left out")
    if not warnings:
        return path, []

    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    data = _join_glb(text, rest) if is_glb else text
    stem, ext = os.path.splitext(path)
    return archive.write_atomically(f"{stem}.confined{ext}", data), warnings


# ------------------------------------------------------------------------------ GLB container


def _split_glb(content: bytes) -> tuple[bytes, bytes]:
    """The JSON chunk's bytes and everything after that chunk (BIN and any others), checked."""
    if len(content) < _GLB_HEADER.size + _CHUNK_HEADER.size:
        raise GltfCheckError("bad GLB: the file is too short for a header")
    _, version, total = _GLB_HEADER.unpack_from(content, 0)
    if version != 2:
        raise GltfCheckError(f"bad GLB: version {version}, only version 2 is supported")
    if total != len(content):
        raise GltfCheckError(f"bad GLB: header says {total} bytes, the file has {len(content)}")
    length, kind = _CHUNK_HEADER.unpack_from(content, _GLB_HEADER.size)
    if kind != _JSON_CHUNK:
        raise GltfCheckError("bad GLB: the first chunk is not JSON")
    start = _GLB_HEADER.size + _CHUNK_HEADER.size
    end = start + length
    if end > len(content):
        raise GltfCheckError("bad GLB: the JSON chunk runs past the end of the file")
    offset = end
    while offset < len(content):  # every later chunk must fit too (the importer slices BIN)
        if offset + _CHUNK_HEADER.size > len(content):
            raise GltfCheckError("bad GLB: a chunk header runs past the end of the file")
        chunk_length, _ = _CHUNK_HEADER.unpack_from(content, offset)
        offset += _CHUNK_HEADER.size + chunk_length
        if offset > len(content):
            raise GltfCheckError("bad GLB: a chunk runs past the end of the file")
    return content[start:end], content[end:]


def _join_glb(json_bytes: bytes, rest: bytes) -> bytes:
    """A GLB with a new JSON chunk (space-padded to 4 bytes, as the spec asks) and `rest`."""
    padded = json_bytes + b" " * (-len(json_bytes) % 4)
    total = _GLB_HEADER.size + _CHUNK_HEADER.size + len(padded) + len(rest)
    return (
        _GLB_HEADER.pack(_GLB_MAGIC, 2, total)
        + _CHUNK_HEADER.pack(len(padded), _JSON_CHUNK)
        + padded
        + rest
    )


# ------------------------------------------------------------------------------------- JSON


def _parse_json(data: bytes) -> dict[str, Any]:
    def no_constants(value: str) -> Any:
        raise ValueError(f"{value} is not JSON")

    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise GltfCheckError(f"bad glTF JSON: {_first_line(str(exc))}") from None
    except RecursionError:
        raise GltfCheckError("bad glTF JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise GltfCheckError("bad glTF JSON: the top level is not an object")
    return doc


def _entries(doc: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise GltfCheckError(f"bad glTF JSON: '{key}' is not a list of objects")
    return list(enumerate(items))


def _uri(entry: dict[str, Any], key: str, index: int) -> str | None:
    uri = entry.get("uri")
    if uri is not None and not isinstance(uri, str):
        raise GltfCheckError(f"bad glTF JSON: {key}[{index}].uri is not text")
    return uri


# -------------------------------------------------------------------------------------- URIs


def _refusal(uri: str, base: str, root: str) -> str | None:
    """Why `uri` may not be loaded, or None. Mirrors how Blender's importer opens a URI."""
    if uri.startswith("data:"):
        # Without ";base64," the importer treats the whole string as a relative path.
        return None if ";base64," in uri else "is not a base64 data URI"
    relative = unquote(uri.replace("\\", "/"))  # the importer's order: separators, unquote
    if _SCHEME.match(uri) or _SCHEME.match(relative) or relative.startswith("/"):
        return "is outside the job folder"  # file: and http: URLs, drives, absolute paths
    if "\0" in relative:
        return "is not a valid file name"
    target = os.path.realpath(os.path.join(base, os.path.normpath(relative)))
    if not _inside(target, root):
        return "is outside the job folder"
    if not os.path.isfile(target):
        return "is missing from the job folder"
    return None


def _inside(path: str, root: str) -> bool:
    """`path` is `root` or below it; both already real paths (symlinks resolved)."""
    path, root = os.path.normcase(path), os.path.normcase(root)
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def _show(uri: str) -> str:
    """A URI quoted for a one-line message: control characters replaced, long ones shortened."""
    clean = "".join(c if c.isprintable() else "?" for c in uri)
    if len(clean) > _MAX_SHOWN:
        clean = clean[: _MAX_SHOWN - 1] + "…"
    return f"'{clean}'"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "invalid")
