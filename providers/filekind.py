"""What a file is, told by its first bytes: services' URLs often have no (or a wrong)
extension, and a local image must really be one before it is sent. Plain Python, no I/O
beyond reading a file's first bytes.

A kind is a short name that is also the file's extension: "glb", "gltf", "vox", "obj", "zip",
"mtl", "png", "jpg", "webp".
"""

from __future__ import annotations

MODEL_KINDS = frozenset({"glb", "gltf", "vox", "obj", "zip"})
IMAGE_KINDS = frozenset({"png", "jpg", "webp"})  # what services take and the add-on shows
MIME_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
HEAD_BYTES = 512  # enough of a file to tell its kind
_SPELLINGS = {"jpeg": "jpg"}  # other extensions of a kind

_MAGIC = (
    (b"glTF", "glb"),
    (b"VOX ", "vox"),
    (b"PK\x03\x04", "zip"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
)
_OBJ_LINES = ("v ", "vt ", "vn ", "f ", "o ", "mtllib")


def kind_of(head: bytes) -> str | None:
    """The kind of a file that starts with `head` (best given HEAD_BYTES), else None."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    text = head[:HEAD_BYTES].decode("utf-8", "ignore")
    if text.lstrip().startswith("{") and '"asset"' in text:
        return "gltf"
    if "newmtl" in text:
        return "mtl"
    if any(line.startswith(_OBJ_LINES) for line in text.splitlines()):
        return "obj"
    return None


def kind_of_file(path: str) -> str | None:
    """The kind of the file at `path`; None for an unknown kind or an unreadable file."""
    try:
        with open(path, "rb") as f:
            return kind_of(f.read(HEAD_BYTES))
    except OSError:
        return None


def kind_of_name(name: str) -> str | None:
    """The kind a file name or URL path claims by its extension (not what the file is)."""
    _, dot, ext = name.rpartition(".")
    if not dot or "/" in ext:
        return None
    ext = ext.lower()
    ext = _SPELLINGS.get(ext, ext)
    return ext if ext in MODEL_KINDS | IMAGE_KINDS | {"mtl"} else None


def describe(head: bytes) -> str:
    """What a file we cannot use looks like, in a few words for a one-line error."""
    if not head:
        return "an empty file"
    text = head[:64].decode("utf-8", "replace").strip().lower()
    if text.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    if text.startswith(("{", "[")):
        return "JSON text"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "a GIF image"
    if all(32 <= b < 127 or b in b"\r\n\t" for b in head[:64]):
        return f"text starting {head[:24].decode('ascii')!r}"
    return f"unknown bytes {head[:8].hex(' ')}"
