"""MagicaVoxel .vox bytes → chunks → plain records (models, palette, materials, layers,
scene-graph nodes). No bpy. `voxfile.read` is the public reader; this is its first half.

The format (shared/reference/MagicaVoxel-file-format-vox*.txt) is RIFF-like: a `VOX ` header,
then one MAIN chunk whose children are read in order. Features are decided by which chunks are
present, never by the version number; unknown chunk ids (rOBJ, rCAM, NOTE, IMAP, rLIT, ...) and
the children of every chunk but MAIN are skipped.

Hostile input: every length, count, id and attribute that decides geometry is checked, and the
only exception bad bytes raise is VoxFormatError with a one-line message. Work and memory are
bounded by the input size and the limits below.

- Voxels outside their model's SIZE and voxels with colour index 0 are dropped (counted in
  `VoxModel.dropped`), never an error: MagicaVoxel cannot show them either.
- Geometry attributes (`_r`, `_t`, `_f`) that are present but malformed raise; material values
  that are malformed fall back to defaults (they only change looks).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

MAX_DIM = 2048  # per SIZE axis; MagicaVoxel itself stops at 256
MAX_NODES = 1 << 18  # scene graph chunks
MAX_DEPTH = 256  # nodes on one root-to-shape path
MAX_VISITS = 1 << 18  # node visits while expanding shared subtrees
MAX_INSTANCES = 1 << 16
MAX_VOXELS = 1 << 24  # over all instances (a full 256^3 model): ~200 MB of int32 xyz
MAX_TRANSLATION = 1 << 20  # per nTRN axis; keeps composed coordinates inside int32
MAX_FRAME = 1 << 16

_HEADER = struct.Struct("<4sii")
_INT = struct.Struct("<i")
_FLOAT = struct.Struct("<f")


class VoxFormatError(ValueError):
    """The bytes are not a readable MagicaVoxel file; the message says where and why."""


# The reference lists 0xAABBGGRR words; written little-endian they are R, G, B, A bytes.
_DEFAULT_WORDS = (
    "00000000 ffffffff ffccffff ff99ffff ff66ffff ff33ffff ff00ffff ffffccff ffccccff "
    "ff99ccff ff66ccff ff33ccff ff00ccff ffff99ff ffcc99ff ff9999ff ff6699ff ff3399ff "
    "ff0099ff ffff66ff ffcc66ff ff9966ff ff6666ff ff3366ff ff0066ff ffff33ff ffcc33ff "
    "ff9933ff ff6633ff ff3333ff ff0033ff ffff00ff ffcc00ff ff9900ff ff6600ff ff3300ff "
    "ff0000ff ffffffcc ffccffcc ff99ffcc ff66ffcc ff33ffcc ff00ffcc ffffcccc ffcccccc "
    "ff99cccc ff66cccc ff33cccc ff00cccc ffff99cc ffcc99cc ff9999cc ff6699cc ff3399cc "
    "ff0099cc ffff66cc ffcc66cc ff9966cc ff6666cc ff3366cc ff0066cc ffff33cc ffcc33cc "
    "ff9933cc ff6633cc ff3333cc ff0033cc ffff00cc ffcc00cc ff9900cc ff6600cc ff3300cc "
    "ff0000cc ffffff99 ffccff99 ff99ff99 ff66ff99 ff33ff99 ff00ff99 ffffcc99 ffcccc99 "
    "ff99cc99 ff66cc99 ff33cc99 ff00cc99 ffff9999 ffcc9999 ff999999 ff669999 ff339999 "
    "ff009999 ffff6699 ffcc6699 ff996699 ff666699 ff336699 ff006699 ffff3399 ffcc3399 "
    "ff993399 ff663399 ff333399 ff003399 ffff0099 ffcc0099 ff990099 ff660099 ff330099 "
    "ff000099 ffffff66 ffccff66 ff99ff66 ff66ff66 ff33ff66 ff00ff66 ffffcc66 ffcccc66 "
    "ff99cc66 ff66cc66 ff33cc66 ff00cc66 ffff9966 ffcc9966 ff999966 ff669966 ff339966 "
    "ff009966 ffff6666 ffcc6666 ff996666 ff666666 ff336666 ff006666 ffff3366 ffcc3366 "
    "ff993366 ff663366 ff333366 ff003366 ffff0066 ffcc0066 ff990066 ff660066 ff330066 "
    "ff000066 ffffff33 ffccff33 ff99ff33 ff66ff33 ff33ff33 ff00ff33 ffffcc33 ffcccc33 "
    "ff99cc33 ff66cc33 ff33cc33 ff00cc33 ffff9933 ffcc9933 ff999933 ff669933 ff339933 "
    "ff009933 ffff6633 ffcc6633 ff996633 ff666633 ff336633 ff006633 ffff3333 ffcc3333 "
    "ff993333 ff663333 ff333333 ff003333 ffff0033 ffcc0033 ff990033 ff660033 ff330033 "
    "ff000033 ffffff00 ffccff00 ff99ff00 ff66ff00 ff33ff00 ff00ff00 ffffcc00 ffcccc00 "
    "ff99cc00 ff66cc00 ff33cc00 ff00cc00 ffff9900 ffcc9900 ff999900 ff669900 ff339900 "
    "ff009900 ffff6600 ffcc6600 ff996600 ff666600 ff336600 ff006600 ffff3300 ffcc3300 "
    "ff993300 ff663300 ff333300 ff003300 ffff0000 ffcc0000 ff990000 ff660000 ff330000 "
    "ff0000ee ff0000dd ff0000bb ff0000aa ff000088 ff000077 ff000055 ff000044 ff000022 "
    "ff000011 ff00ee00 ff00dd00 ff00bb00 ff00aa00 ff008800 ff007700 ff005500 ff004400 "
    "ff002200 ff001100 ffee0000 ffdd0000 ffbb0000 ffaa0000 ff880000 ff770000 ff550000 "
    "ff440000 ff220000 ff110000 ffeeeeee ffdddddd ffbbbbbb ffaaaaaa ff888888 ff777777 "
    "ff555555 ff444444 ff222222 ff111111"
)
DEFAULT_PALETTE: np.ndarray = (
    np.array([int(w, 16) for w in _DEFAULT_WORDS.split()], dtype="<u4").view(np.uint8)
).reshape(256, 4)
DEFAULT_PALETTE.setflags(write=False)

MATERIAL_KINDS = ("diffuse", "metal", "glass", "emit", "plastic", "blend", "media", "cloud")
_MATT_KINDS = {0: "diffuse", 1: "metal", 2: "glass", 3: "emit"}
# MATT property bits 0..6 each store one float, in bit order; bit 7 (total power) has none.
_MATT_PROPS = ("plastic", "rough", "spec", "ior", "att", "flux", "glow")


# ----------------------------------------------------------------------------- results


@dataclass
class VoxModel:
    size: tuple[int, int, int]
    xyzi: np.ndarray  # (N, 4) uint8: local x, y, z, colour index (in bounds, index >= 1)
    dropped: int = 0  # voxels discarded: outside `size` or colour index 0


@dataclass
class VoxMaterial:
    """One palette entry's material; numbers are MagicaVoxel's, `raw` keeps every key."""

    kind: str = "diffuse"  # one of MATERIAL_KINDS
    weight: float = 1.0
    rough: float = 0.1
    metal: float = 0.0
    spec: float = 0.5
    ior: float = 1.3  # refractive index (MagicaVoxel stores `_ior` as index - 1)
    att: float = 0.0
    emit: float = 0.0
    flux: float = 0.0
    ldr: float = 0.0
    trans: float = 0.0
    raw: dict[str, str] = field(default_factory=dict)


@dataclass
class VoxLayer:
    layer_id: int
    name: str
    hidden: bool


@dataclass
class VoxInstance:
    name: str  # innermost `_name` on the path from the root, "" if none
    model_index: int
    xyz: np.ndarray  # (N, 3) int32 world voxel coordinates, Z up
    color_index: np.ndarray  # (N,) uint8, 1..255
    hidden: bool  # `_hidden` on any node above it, or a hidden layer
    layer: int  # layer id of the innermost nTRN that names one, -1 if none
    rotation: np.ndarray  # (3, 3) int64 signed permutation, parent @ child
    translation: np.ndarray  # (3,) int64


@dataclass
class VoxFile:
    version: int
    models: list[VoxModel]
    instances: list[VoxInstance]
    palette: np.ndarray  # (256, 4) uint8 indexed by colour index; palette[0] unused
    materials: dict[int, VoxMaterial]  # by colour index 1..255 (MATL wins over MATT)
    layers: list[VoxLayer]  # sorted by id
    has_palette_chunk: bool
    frame_count: int  # >= 1
    frame: int = 0  # the frame the instances show: the request clamped to 0..frame_count-1
    pack_count: int | None = None  # PACK's model count, informational only

    def palette_float(self) -> np.ndarray:
        """(256, 4) float32 in 0..1, still sRGB as stored, for images and colour attributes."""
        return self.palette.astype(np.float32) / np.float32(255.0)


# ----------------------------------------------------------------------------- byte cursor


def _chunk_name(cid: bytes) -> str:
    return cid.decode("latin-1") if cid.isascii() and cid.isalnum() else repr(cid)


class _Chunk(NamedTuple):
    cid: bytes
    at: int  # offset of the chunk header
    start: int  # content
    end: int


def _chunks(data: bytes, start: int, end: int) -> Iterator[_Chunk]:
    """The chunks laid out in data[start:end], checked to fit, children skipped."""
    pos = start
    while pos < end:
        if end - pos < _HEADER.size:
            raise VoxFormatError(
                f"truncated chunk header at byte {pos}: {end - pos} bytes left, 12 needed"
            )
        cid, content, children = _HEADER.unpack_from(data, pos)
        body = pos + _HEADER.size
        if content < 0 or children < 0:
            raise VoxFormatError(f"chunk {_chunk_name(cid)} at byte {pos} has a negative size")
        if content + children > end - body:
            raise VoxFormatError(
                f"chunk {_chunk_name(cid)} at byte {pos} claims {content + children} bytes "
                f"but only {end - body} remain"
            )
        yield _Chunk(cid, pos, body, body + content)
        pos = body + content + children


class _Cursor:
    """Bounds-checked little-endian reads inside one chunk's content."""

    __slots__ = ("at", "cid", "data", "end", "pos")

    def __init__(self, data: bytes, chunk: _Chunk) -> None:
        self.data, self.pos, self.end = data, chunk.start, chunk.end
        self.cid, self.at = chunk.cid, chunk.at

    @property
    def where(self) -> str:
        """Only built for error messages, so reading stays cheap."""
        return f"chunk {_chunk_name(self.cid)} at byte {self.at}"

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> int:
        if n < 0 or n > self.end - self.pos:
            raise VoxFormatError(
                f"{self.where}: {what} at byte {self.pos} needs {n} bytes "
                f"but only {self.left()} remain"
            )
        at = self.pos
        self.pos += n
        return at

    def i32(self, what: str) -> int:
        return _INT.unpack_from(self.data, self.take(4, what))[0]

    def f32(self, what: str) -> float:
        return _FLOAT.unpack_from(self.data, self.take(4, what))[0]

    def count(self, what: str, item_bytes: int) -> int:
        """A count whose items (each at least `item_bytes` long) must fit in the chunk."""
        n = self.i32(f"{what} count")
        if n < 0 or n * item_bytes > self.left():
            raise VoxFormatError(
                f"{self.where}: {what} count {n} does not fit in the {self.left()} bytes left"
            )
        return n

    def string(self, what: str) -> str:
        n = self.i32(f"{what} length")
        at = self.take(n, what)
        return self.data[at : at + n].decode("utf-8", "replace")

    def dict(self, what: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for _ in range(self.count(f"{what} entry", 8)):
            key = self.string(f"{what} key")
            out[key] = self.string(f"{what} value")
        return out


# ----------------------------------------------------------------------------- attributes


def _attr_int(attrs: dict[str, str], key: str, default: int, lo: int, hi: int, where: str) -> int:
    text = attrs.get(key)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise VoxFormatError(f"{where}: {key} = {text[:40]!r} is not an integer in {lo}..{hi}")
    return value


def _attr_float(attrs: dict[str, str], key: str, default: float, lo: float, hi: float) -> float:
    try:
        value = float(attrs.get(key, default))
    except ValueError:
        return default
    return min(max(value, lo), hi) if np.isfinite(value) else default


def _signed_permutations() -> dict[int, np.ndarray]:
    """All 48 valid ROTATION bytes (24 rotations, 24 mirrored) and their matrices."""
    table: dict[int, np.ndarray] = {}
    for byte in range(128):
        first, second = byte & 3, (byte >> 2) & 3
        if first > 2 or second > 2 or first == second:
            continue
        m = np.zeros((3, 3), dtype=np.int64)
        for row, col in enumerate((first, second, 3 - first - second)):
            m[row, col] = -1 if (byte >> (4 + row)) & 1 else 1
        m.setflags(write=False)
        table[byte] = m
    return table


ROTATIONS = _signed_permutations()
_IDENTITY_BYTE = 4  # rows pick columns 0, 1, (2); all signs positive


def rotation_from_byte(byte: int) -> np.ndarray:
    """Decode a `_r` ROTATION byte (row-major, one +-1 per row) into a (3, 3) int64 matrix."""
    try:
        return ROTATIONS[byte]
    except KeyError:
        raise VoxFormatError(f"rotation byte {byte} does not encode a rotation") from None


def _rotation(attrs: dict[str, str], where: str) -> int:
    byte = _attr_int(attrs, "_r", _IDENTITY_BYTE, 0, 255, where)
    if byte not in ROTATIONS:
        raise VoxFormatError(f"{where}: rotation byte {byte} does not encode a rotation")
    return byte


def _translation(attrs: dict[str, str], where: str) -> tuple[int, int, int]:
    text = attrs.get("_t")
    if text is None:
        return (0, 0, 0)
    try:
        x, y, z = (int(part) for part in text.split())
    except ValueError:  # not integers, or not exactly three
        x = y = z = MAX_TRANSLATION + 1
    if max(abs(x), abs(y), abs(z)) > MAX_TRANSLATION:
        raise VoxFormatError(f"{where}: _t = {text[:40]!r} is not three integers in range")
    return (x, y, z)


# ----------------------------------------------------------------------------- chunk contents


class _Key(NamedTuple):
    frame: int
    rotation: int  # ROTATION byte (validated)
    translation: tuple[int, int, int]


@dataclass
class Node:
    kind: bytes  # b"nTRN" b"nGRP" b"nSHP"
    attrs: dict[str, str]
    children: tuple[int, ...] = ()  # nTRN: one child; nGRP: its children
    keys: tuple[_Key, ...] = ()  # nTRN keyframes
    models: tuple[tuple[int, int], ...] = ()  # nSHP: (frame, model id)
    layer: int = -1


@dataclass
class Parsed:
    version: int
    models: list[VoxModel] = field(default_factory=list)
    rgba: np.ndarray | None = None
    matl: dict[int, VoxMaterial] = field(default_factory=dict)
    matt: dict[int, VoxMaterial] = field(default_factory=dict)
    nodes: dict[int, Node] = field(default_factory=dict)
    layers: dict[int, VoxLayer] = field(default_factory=dict)
    pack: int | None = None
    size: tuple[int, int, int] | None = None  # SIZE waiting for its XYZI


def _read_size(p: Parsed, c: _Cursor) -> None:
    size = (c.i32("size x"), c.i32("size y"), c.i32("size z"))
    if not all(1 <= v <= MAX_DIM for v in size):
        raise VoxFormatError(f"{c.where}: model size {size} is outside 1..{MAX_DIM}")
    p.size = size


def _read_xyzi(p: Parsed, c: _Cursor) -> None:
    if p.size is None:
        raise VoxFormatError(f"{c.where}: XYZI has no SIZE chunk before it")
    n = c.count("voxel", 4)
    raw = np.frombuffer(c.data, np.uint8, n * 4, c.take(n * 4, "voxels")).reshape(n, 4)
    sx, sy, sz = p.size
    keep = (raw[:, 0] < sx) & (raw[:, 1] < sy) & (raw[:, 2] < sz) & (raw[:, 3] != 0)
    kept = int(np.count_nonzero(keep))
    xyzi = raw.copy() if kept == n else raw[keep]  # always owned, writable, file-independent
    p.models.append(VoxModel(p.size, xyzi, n - kept))
    p.size = None


def _read_pack(p: Parsed, c: _Cursor) -> None:
    p.pack = c.i32("model count")


def _read_rgba(p: Parsed, c: _Cursor) -> None:
    at = c.take(1024, "palette")
    p.rgba = np.frombuffer(c.data, np.uint8, 1024, at).reshape(256, 4)


def _read_matl(p: Parsed, c: _Cursor) -> None:
    index, attrs = c.i32("material id"), c.dict("material")
    if 1 <= index <= 255:
        p.matl[index] = _material_from_matl(attrs)


def _material_from_matl(attrs: dict[str, str]) -> VoxMaterial:
    kind = attrs.get("_type", "_diffuse").removeprefix("_")
    kind = kind if kind in MATERIAL_KINDS else "diffuse"
    weight = _attr_float(attrs, "_weight", 1.0, 0.0, 1.0)

    def amount(key: str, kind_using_weight: str) -> float:
        # MATL before 0.99.5 put a type's strength in _weight; later ones have own keys.
        return _attr_float(attrs, key, weight if kind == kind_using_weight else 0.0, 0.0, 1.0)

    ior = _attr_float(attrs, "_ior", 0.3, 0.0, 2.0) + 1.0
    return VoxMaterial(
        kind=kind,
        weight=weight,
        rough=_attr_float(attrs, "_rough", 0.1, 0.0, 1.0),
        metal=amount("_metal", "metal"),
        spec=_attr_float(attrs, "_spec", 0.5, 0.0, 1.0),
        ior=_attr_float(attrs, "_ri", ior, 1.0, 3.0),
        att=_attr_float(attrs, "_att", 0.0, 0.0, 1.0),
        emit=amount("_emit", "emit"),
        flux=_attr_float(attrs, "_flux", 0.0, 0.0, 100.0),
        ldr=_attr_float(attrs, "_ldr", 0.0, 0.0, 1.0),
        trans=amount("_trans", "glass"),
        raw=dict(attrs),
    )


def _read_matt(p: Parsed, c: _Cursor) -> None:
    index, kind_id = c.i32("material id"), c.i32("material type")
    weight, bits = c.f32("material weight"), c.i32("property bits")
    values = {
        name: c.f32(f"MATT {name}") for bit, name in enumerate(_MATT_PROPS) if bits & (1 << bit)
    }
    if not 1 <= index <= 255:
        return
    attrs = {name: str(v) for name, v in values.items()}
    kind = _MATT_KINDS.get(kind_id, "diffuse")
    weight = min(max(weight, 0.0), 1.0) if np.isfinite(weight) else 1.0
    p.matt[index] = VoxMaterial(
        kind=kind,
        weight=weight,
        rough=_attr_float(attrs, "rough", 0.1, 0.0, 1.0),
        metal=weight if kind == "metal" else 0.0,
        spec=_attr_float(attrs, "spec", 0.5, 0.0, 1.0),
        # Normalised like MATL's _ior (index - 1); the old format never said otherwise.
        ior=_attr_float(attrs, "ior", 0.3, 0.0, 2.0) + 1.0,
        att=_attr_float(attrs, "att", 0.0, 0.0, 1.0),
        emit=weight if kind == "emit" else 0.0,
        flux=_attr_float(attrs, "flux", 0.0, 0.0, 100.0),
        trans=weight if kind == "glass" else 0.0,
        raw={"_matt_type": str(kind_id), "_weight": str(weight), **attrs},
    )


def _add_node(p: Parsed, c: _Cursor, node_id: int, node: Node) -> None:
    if len(p.nodes) >= MAX_NODES:
        raise VoxFormatError(f"{c.where}: scene graph has more than {MAX_NODES} nodes")
    if node_id in p.nodes:
        raise VoxFormatError(f"{c.where}: node id {node_id} is used twice")
    p.nodes[node_id] = node


def _read_ntrn(p: Parsed, c: _Cursor) -> None:
    node_id, attrs = c.i32("node id"), c.dict("node attributes")
    child, _reserved, layer = c.i32("child id"), c.i32("reserved id"), c.i32("layer id")
    keys = []
    for _ in range(c.count("frame", 4)):
        frame = c.dict("frame attributes")
        where = f"{c.where} (node {node_id})" if frame else ""  # no keys, nothing to report
        keys.append(
            _Key(
                _attr_int(frame, "_f", 0, 0, MAX_FRAME, where),
                _rotation(frame, where),
                _translation(frame, where),
            )
        )
    if not keys:
        raise VoxFormatError(f"{c.where}: transform node {node_id} has no frames")
    _add_node(p, c, node_id, Node(b"nTRN", attrs, (child,), tuple(keys), layer=layer))


def _read_ngrp(p: Parsed, c: _Cursor) -> None:
    node_id, attrs = c.i32("node id"), c.dict("node attributes")
    n = c.count("child", 4)
    children = struct.unpack_from(f"<{n}i", c.data, c.take(4 * n, "child ids"))
    _add_node(p, c, node_id, Node(b"nGRP", attrs, children))


def _read_nshp(p: Parsed, c: _Cursor) -> None:
    node_id, attrs = c.i32("node id"), c.dict("node attributes")
    models = []
    for _ in range(c.count("model", 8)):
        model_id = c.i32("model id")
        frame = c.dict("model attributes")
        where = f"{c.where} (node {node_id})" if frame else ""
        models.append((_attr_int(frame, "_f", 0, 0, MAX_FRAME, where), model_id))
    if not models:
        raise VoxFormatError(f"{c.where}: shape node {node_id} has no model")
    _add_node(p, c, node_id, Node(b"nSHP", attrs, models=tuple(models)))


def _read_layr(p: Parsed, c: _Cursor) -> None:
    layer_id, attrs = c.i32("layer id"), c.dict("layer attributes")
    name = attrs.get("_name", f"Layer {layer_id}")
    p.layers[layer_id] = VoxLayer(layer_id, name, attrs.get("_hidden", "0").strip() == "1")


_READERS: dict[bytes, Callable[[Parsed, _Cursor], None]] = {
    b"SIZE": _read_size,
    b"XYZI": _read_xyzi,
    b"PACK": _read_pack,
    b"RGBA": _read_rgba,
    b"MATL": _read_matl,
    b"MATT": _read_matt,
    b"nTRN": _read_ntrn,
    b"nGRP": _read_ngrp,
    b"nSHP": _read_nshp,
    b"LAYR": _read_layr,
}


def parse(data: bytes) -> Parsed:
    if data[:4] != b"VOX ":
        raise VoxFormatError("not a MagicaVoxel file (missing 'VOX ' header)")
    if len(data) < 8 + _HEADER.size:
        raise VoxFormatError(f"file ends at byte {len(data)}, before its MAIN chunk")
    parsed = Parsed(version=_INT.unpack_from(data, 4)[0])
    main = next(_chunks(data, 8, len(data)))
    if main.cid != b"MAIN":
        raise VoxFormatError(f"first chunk is {_chunk_name(main.cid)}, expected MAIN")
    children_end = main.end + _HEADER.unpack_from(data, 8)[2]
    for chunk in _chunks(data, main.end, children_end):
        reader = _READERS.get(chunk.cid)
        if reader is not None:
            reader(parsed, _Cursor(data, chunk))
    return parsed
