"""MagicaVoxel .vox reader: bytes in, numpy arrays out. No bpy.

Covers the whole format as documented in shared/reference: RIFF-style chunks under MAIN
(unknown ones skipped), PACK, SIZE/XYZI models, RGBA (palette[i] = rgba[i - 1]) or the default
palette, MATL and legacy MATT materials, the nTRN/nGRP/nSHP scene graph with translations and
rotations composed down the tree, LAYR and `_hidden`, and animation frames (`_f`, PACK).
Features are decided by the chunks present, never by the version number.

Every length, count and id is checked against what is left of the input; anything wrong
raises VoxFormatError with a one-line message, and nothing grows without bound (instance and
voxel totals are capped), so hostile bytes cannot hang or exhaust the importer.

Placement: inside the scene graph a model is centred on its transform. Voxel centres are
rotated about the model's true centre (in doubled integer coordinates, so odd and even sizes
both stay exact) and floored back onto the lattice, which keeps a rotated model's bounding box
where MagicaVoxel draws it. Files without a scene graph keep raw model coordinates (the model
stands on the ground at the origin, as MagicaVoxel shows it).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

MAX_DIM = 2048
MAX_NODES = 1_000_000
MAX_INSTANCES = 65_536
MAX_TOTAL_VOXELS = 64 * 1024 * 1024
MAX_DEPTH = 512
MAX_STRING = 1 << 16


class VoxFormatError(ValueError):
    """The bytes are not a readable MagicaVoxel file; the message says where and why."""


_DEFAULT_ABGR = (
    "00000000 ffffffff ffccffff ff99ffff ff66ffff ff33ffff ff00ffff ffffccff ffccccff ff99ccff "
    "ff66ccff ff33ccff ff00ccff ffff99ff ffcc99ff ff9999ff ff6699ff ff3399ff ff0099ff ffff66ff "
    "ffcc66ff ff9966ff ff6666ff ff3366ff ff0066ff ffff33ff ffcc33ff ff9933ff ff6633ff ff3333ff "
    "ff0033ff ffff00ff ffcc00ff ff9900ff ff6600ff ff3300ff ff0000ff ffffffcc ffccffcc ff99ffcc "
    "ff66ffcc ff33ffcc ff00ffcc ffffcccc ffcccccc ff99cccc ff66cccc ff33cccc ff00cccc ffff99cc "
    "ffcc99cc ff9999cc ff6699cc ff3399cc ff0099cc ffff66cc ffcc66cc ff9966cc ff6666cc ff3366cc "
    "ff0066cc ffff33cc ffcc33cc ff9933cc ff6633cc ff3333cc ff0033cc ffff00cc ffcc00cc ff9900cc "
    "ff6600cc ff3300cc ff0000cc ffffff99 ffccff99 ff99ff99 ff66ff99 ff33ff99 ff00ff99 ffffcc99 "
    "ffcccc99 ff99cc99 ff66cc99 ff33cc99 ff00cc99 ffff9999 ffcc9999 ff999999 ff669999 ff339999 "
    "ff009999 ffff6699 ffcc6699 ff996699 ff666699 ff336699 ff006699 ffff3399 ffcc3399 ff993399 "
    "ff663399 ff333399 ff003399 ffff0099 ffcc0099 ff990099 ff660099 ff330099 ff000099 ffffff66 "
    "ffccff66 ff99ff66 ff66ff66 ff33ff66 ff00ff66 ffffcc66 ffcccc66 ff99cc66 ff66cc66 ff33cc66 "
    "ff00cc66 ffff9966 ffcc9966 ff999966 ff669966 ff339966 ff009966 ffff6666 ffcc6666 ff996666 "
    "ff666666 ff336666 ff006666 ffff3366 ffcc3366 ff993366 ff663366 ff333366 ff003366 ffff0066 "
    "ffcc0066 ff990066 ff660066 ff330066 ff000066 ffffff33 ffccff33 ff99ff33 ff66ff33 ff33ff33 "
    "ff00ff33 ffffcc33 ffcccc33 ff99cc33 ff66cc33 ff33cc33 ff00cc33 ffff9933 ffcc9933 ff999933 "
    "ff669933 ff339933 ff009933 ffff6633 ffcc6633 ff996633 ff666633 ff336633 ff006633 ffff3333 "
    "ffcc3333 ff993333 ff663333 ff333333 ff003333 ffff0033 ffcc0033 ff990033 ff660033 ff330033 "
    "ff000033 ffffff00 ffccff00 ff99ff00 ff66ff00 ff33ff00 ff00ff00 ffffcc00 ffcccc00 ff99cc00 "
    "ff66cc00 ff33cc00 ff00cc00 ffff9900 ffcc9900 ff999900 ff669900 ff339900 ff009900 ffff6600 "
    "ffcc6600 ff996600 ff666600 ff336600 ff006600 ffff3300 ffcc3300 ff993300 ff663300 ff333300 "
    "ff003300 ffff0000 ffcc0000 ff990000 ff660000 ff330000 ff0000ee ff0000dd ff0000bb ff0000aa "
    "ff000088 ff000077 ff000055 ff000044 ff000022 ff000011 ff00ee00 ff00dd00 ff00bb00 ff00aa00 "
    "ff008800 ff007700 ff005500 ff004400 ff002200 ff001100 ffee0000 ffdd0000 ffbb0000 ffaa0000 "
    "ff880000 ff770000 ff550000 ff440000 ff220000 ff110000 ffeeeeee ffdddddd ffbbbbbb ffaaaaaa "
    "ff888888 ff777777 ff555555 ff444444 ff222222 ff111111"
)
# The reference lists 0xAABBGGRR words; stored little-endian they are R, G, B, A bytes.
_WORDS = [int(w, 16) for w in _DEFAULT_ABGR.split()]
DEFAULT_PALETTE: np.ndarray = np.array(_WORDS, dtype="<u4").view(np.uint8).reshape(256, 4)
DEFAULT_PALETTE.setflags(write=False)

_MATT_KINDS = {0: "diffuse", 1: "metal", 2: "glass", 3: "emit"}
# MATT property bits 0..6 each carry one float, in this order; bit 7 has no value.
_MATT_PROPS = ("plastic", "rough", "spec", "ior", "att", "flux", "glow")


@dataclass
class VoxModel:
    size: tuple[int, int, int]
    xyzi: np.ndarray  # (N, 4) uint8: x, y, z, colour index; only in-bounds, non-zero colours


@dataclass
class VoxMaterial:
    kind: str = "diffuse"  # diffuse metal glass emit plastic blend media cloud
    weight: float = 1.0
    rough: float = 0.5
    metal: float = 0.0
    ior: float = 1.5
    emit: float = 0.0
    flux: float = 0.0
    trans: float = 0.0
    raw: dict[str, str] = field(default_factory=dict)


@dataclass
class VoxLayer:
    layer_id: int
    name: str
    hidden: bool


@dataclass
class VoxInstance:
    name: str
    model_index: int
    xyz: np.ndarray  # (N, 3) int32 world voxel coordinates, Z up
    color_index: np.ndarray  # (N,) uint8, 1..255
    hidden: bool
    layer: int
    rotation: np.ndarray  # (3, 3) int
    translation: np.ndarray  # (3,) int


@dataclass
class VoxFile:
    version: int
    models: list[VoxModel]
    instances: list[VoxInstance]
    palette: np.ndarray  # (256, 4) uint8 indexed by colour index; [0] unused
    materials: dict[int, VoxMaterial]
    layers: list[VoxLayer]
    has_palette_chunk: bool
    frame_count: int

    def palette_float(self) -> np.ndarray:
        return self.palette.astype(np.float32) / 255.0


# ------------------------------------------------------------------------------ low level


class _Reader:
    """Bounds-checked little-endian cursor over one chunk's content."""

    def __init__(self, data: bytes, start: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, start, end, what

    def need(self, n: int) -> int:
        if n < 0 or self.pos + n > self.end:
            raise VoxFormatError(
                f"{self.what} at byte {self.pos} needs {n} bytes but only "
                f"{max(self.end - self.pos, 0)} remain"
            )
        at = self.pos
        self.pos += n
        return at

    def int32(self) -> int:
        return struct.unpack_from("<i", self.data, self.need(4))[0]

    def count(self, item_bytes: int, what: str) -> int:
        n = self.int32()
        if n < 0 or n * item_bytes > self.end - self.pos:
            raise VoxFormatError(f"{self.what}: {what} count {n} does not fit the chunk")
        return n

    def string(self) -> str:
        n = self.int32()
        if n < 0 or n > MAX_STRING:
            raise VoxFormatError(f"{self.what}: string length {n} is invalid")
        return bytes(self.data[self.need(n) : self.pos]).decode("utf-8", "replace")

    def dict(self) -> dict[str, str]:
        pairs = self.count(8, "dictionary entry")
        return {self.string(): self.string() for _ in range(pairs)}


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _float(text: str | None, default: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if np.isfinite(value) else default


def rotation_from_byte(r: int) -> np.ndarray:
    """Decode the ROTATION byte: per row, the column of its ±1 and its sign."""
    first, second = r & 3, (r >> 2) & 3
    if first > 2 or second > 2 or first == second:
        raise VoxFormatError(f"rotation byte {r} does not encode a rotation")
    third = 3 - first - second
    m = np.zeros((3, 3), dtype=np.int64)
    for row, col in enumerate((first, second, third)):
        m[row, col] = -1 if (r >> (4 + row)) & 1 else 1
    return m


def _translation(text: str | None) -> np.ndarray:
    parts = (text or "").split()
    if len(parts) != 3:
        return np.zeros(3, dtype=np.int64)
    return np.array([_int(p) for p in parts], dtype=np.int64)


# ------------------------------------------------------------------------------ chunks


@dataclass
class _Node:
    kind: str  # nTRN nGRP nSHP
    attrs: dict[str, str]
    children: list[int]
    frames: list[dict[str, str]]  # nTRN frames, or nSHP model attributes
    models: list[int]  # nSHP model ids
    layer: int = -1


@dataclass
class _Parsed:
    version: int
    models: list[VoxModel] = field(default_factory=list)
    rgba: np.ndarray | None = None
    materials: dict[int, VoxMaterial] = field(default_factory=dict)
    nodes: dict[int, _Node] = field(default_factory=dict)
    layers: dict[int, VoxLayer] = field(default_factory=dict)
    pack: int | None = None


def _read_chunks(data: bytes) -> _Parsed:
    if len(data) < 8 or data[:4] != b"VOX ":
        raise VoxFormatError("not a MagicaVoxel file (missing 'VOX ' header)")
    parsed = _Parsed(version=struct.unpack_from("<i", data, 4)[0])
    top = _Reader(data, 8, len(data), "file")
    cid = bytes(data[top.need(4) : top.pos])
    content, children = top.int32(), top.int32()
    if cid != b"MAIN":
        raise VoxFormatError(f"first chunk is {cid!r}, expected MAIN")
    top.need(content)
    main = _Reader(data, top.pos, top.pos + children, "MAIN")
    top.need(children)
    pending_size: tuple[int, int, int] | None = None
    while main.pos < main.end:
        if main.end - main.pos < 12:
            raise VoxFormatError(f"truncated chunk header at byte {main.pos}")
        at = main.need(4)
        cid = bytes(data[at : at + 4])
        n, m = main.int32(), main.int32()
        name = cid.decode("latin-1")
        if n < 0 or m < 0:
            raise VoxFormatError(f"chunk {name!r} at byte {at} has a negative length")
        body = _Reader(data, main.pos, main.pos + n, f"chunk {name} at byte {at}")
        main.need(n)
        main.need(m)  # children of non-MAIN chunks are not used by the format; skip them
        if cid == b"SIZE":
            pending_size = _size(body)
        elif cid == b"XYZI":
            if pending_size is None:
                raise VoxFormatError(f"XYZI at byte {at} has no SIZE before it")
            parsed.models.append(_xyzi(body, pending_size))
            pending_size = None
        else:
            _read_other(cid, body, parsed)
    return parsed


def _size(body: _Reader) -> tuple[int, int, int]:
    size = (body.int32(), body.int32(), body.int32())
    if not all(1 <= v <= MAX_DIM for v in size):
        raise VoxFormatError(f"{body.what}: model size {size} is out of range")
    return size


def _xyzi(body: _Reader, size: tuple[int, int, int]) -> VoxModel:
    n = body.count(4, "voxel")
    raw = np.frombuffer(body.data, dtype=np.uint8, count=n * 4, offset=body.need(n * 4))
    xyzi = raw.reshape(n, 4)
    keep = (
        (xyzi[:, 0] < size[0]) & (xyzi[:, 1] < size[1]) & (xyzi[:, 2] < size[2]) & (xyzi[:, 3] > 0)
    )
    return VoxModel(size, xyzi[keep] if not keep.all() else xyzi.copy())


def _read_other(cid: bytes, body: _Reader, parsed: _Parsed) -> None:
    if cid == b"PACK":
        parsed.pack = body.int32()
    elif cid == b"RGBA":
        at = body.need(1024)
        parsed.rgba = np.frombuffer(body.data, np.uint8, 1024, at).reshape(256, 4)
    elif cid == b"MATL":
        index = body.int32()
        if 0 < index < 256:
            parsed.materials[index] = _matl(body.dict())
    elif cid == b"MATT":
        index, mat = _matt(body)
        if 0 < index < 256:
            parsed.materials.setdefault(index, mat)
    elif cid in (b"nTRN", b"nGRP", b"nSHP"):
        if len(parsed.nodes) >= MAX_NODES:
            raise VoxFormatError("scene graph has too many nodes")
        node_id, node = _node(cid.decode(), body)
        if node_id in parsed.nodes:
            raise VoxFormatError(f"{body.what}: node id {node_id} is used twice")
        parsed.nodes[node_id] = node
    elif cid == b"LAYR":
        layer_id, attrs = body.int32(), body.dict()
        parsed.layers[layer_id] = VoxLayer(
            layer_id, attrs.get("_name", f"Layer {layer_id}"), attrs.get("_hidden") == "1"
        )
    # NOTE, IMAP, rOBJ, rCAM, rLIT, POST and anything newer: not needed to build geometry.


def _matl(attrs: dict[str, str]) -> VoxMaterial:
    kind = attrs.get("_type", "_diffuse").lstrip("_") or "diffuse"
    weight = _float(attrs.get("_weight"), 1.0)

    def amount(key: str, kinds: tuple[str, ...]) -> float:
        # Older MATL chunks carry a type's strength in _weight; newer ones have own keys.
        return _float(attrs.get(key), weight if kind in kinds else 0.0)

    return VoxMaterial(
        kind=kind,
        weight=weight,
        rough=_float(attrs.get("_rough"), 0.5),
        metal=amount("_metal", ("metal",)),
        # MagicaVoxel stores the index of refraction minus one.
        ior=1.0 + _float(attrs.get("_ior"), 0.5),
        emit=amount("_emit", ("emit",)),
        flux=_float(attrs.get("_flux"), 0.0),
        trans=amount("_trans", ("glass", "media", "cloud")),
        raw=dict(attrs),
    )


def _matt(body: _Reader) -> tuple[int, VoxMaterial]:
    index, kind = body.int32(), body.int32()
    weight = struct.unpack_from("<f", body.data, body.need(4))[0]
    bits = body.int32()
    values: dict[str, float] = {}
    for bit, name in enumerate(_MATT_PROPS):
        if bits & (1 << bit):
            values[name] = struct.unpack_from("<f", body.data, body.need(4))[0]
    kind_name = _MATT_KINDS.get(kind, "diffuse")
    weight = float(weight) if np.isfinite(weight) else 1.0
    return index, VoxMaterial(
        kind=kind_name,
        weight=weight,
        rough=values.get("rough", 0.5),
        metal=weight if kind_name == "metal" else 0.0,
        ior=1.0 + values.get("ior", 0.5),
        emit=weight if kind_name == "emit" else 0.0,
        flux=values.get("flux", 0.0),
        trans=weight if kind_name == "glass" else 0.0,
        raw={k: str(v) for k, v in values.items()},
    )


def _node(kind: str, body: _Reader) -> tuple[int, _Node]:
    node_id, attrs = body.int32(), body.dict()
    if kind == "nTRN":
        child, _reserved, layer = body.int32(), body.int32(), body.int32()
        frames = [body.dict() for _ in range(body.count(4, "frame"))]
        if not frames:
            raise VoxFormatError(f"{body.what}: transform node {node_id} has no frames")
        return node_id, _Node(kind, attrs, [child], frames, [], layer)
    if kind == "nGRP":
        children = [body.int32() for _ in range(body.count(4, "child"))]
        return node_id, _Node(kind, attrs, children, [], [])
    models, frames = [], []
    for _ in range(body.count(8, "model")):
        models.append(body.int32())
        frames.append(body.dict())
    if not models:
        raise VoxFormatError(f"{body.what}: shape node {node_id} has no model")
    return node_id, _Node(kind, attrs, [], frames, models)


# ------------------------------------------------------------------------------ scene graph


def _pick(frames: list[dict[str, str]], frame: int) -> int:
    """Index of the keyframe in effect at `frame`: the last with _f <= frame, else the first."""
    best, best_f = 0, None
    for i, attrs in enumerate(frames):
        f = _int(attrs.get("_f"), 0)
        if f <= frame and (best_f is None or f >= best_f):
            best, best_f = i, f
    return best


def _place(model: VoxModel, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    size = np.array(model.size, dtype=np.int64)
    doubled = 2 * model.xyzi[:, :3].astype(np.int64) + 1 - size
    return ((doubled @ rotation.T) // 2 + translation).astype(np.int32)


@dataclass
class _Walk:
    parsed: _Parsed
    frame: int
    instances: list[VoxInstance] = field(default_factory=list)
    voxels: int = 0
    visits: int = 0

    def visit(
        self,
        node_id: int,
        rot: np.ndarray,
        trans: np.ndarray,
        hidden: bool,
        layer: int,
        name: str,
        path: tuple[int, ...],
    ) -> None:
        node = self.parsed.nodes.get(node_id)
        if node is None:
            raise VoxFormatError(f"scene graph refers to missing node {node_id}")
        if node_id in path or len(path) > MAX_DEPTH:
            raise VoxFormatError(f"scene graph loops or nests too deep at node {node_id}")
        self.visits += 1
        if self.visits > MAX_NODES:
            raise VoxFormatError("scene graph expands to too many nodes")
        path = (*path, node_id)
        if node.kind == "nTRN":
            keyframe = node.frames[_pick(node.frames, self.frame)]
            local_r = rotation_from_byte(_int(keyframe.get("_r"), 4))  # 4 = identity
            trans = rot @ _translation(keyframe.get("_t")) + trans
            rot = rot @ local_r
            lay = self.parsed.layers.get(node.layer)
            hidden = hidden or node.attrs.get("_hidden") == "1" or bool(lay and lay.hidden)
            name = node.attrs.get("_name", name)
            self.visit(node.children[0], rot, trans, hidden, node.layer, name, path)
        elif node.kind == "nGRP":
            for child in node.children:
                self.visit(child, rot, trans, hidden, layer, name, path)
        else:
            model_id = node.models[_pick(node.frames, self.frame)]
            self.add(model_id, rot, trans, hidden, layer, name, placed=True)

    def add(
        self,
        model_id: int,
        rot: np.ndarray,
        trans: np.ndarray,
        hidden: bool,
        layer: int,
        name: str,
        *,
        placed: bool,
    ) -> None:
        models = self.parsed.models
        if not 0 <= model_id < len(models):
            raise VoxFormatError(f"scene graph uses model {model_id} of {len(models)}")
        if len(self.instances) >= MAX_INSTANCES:
            raise VoxFormatError("scene graph has too many model instances")
        model = models[model_id]
        self.voxels += len(model.xyzi)
        if self.voxels > MAX_TOTAL_VOXELS:
            raise VoxFormatError("scene expands to more voxels than can be imported")
        xyz = _place(model, rot, trans) if placed else model.xyzi[:, :3].astype(np.int32)
        self.instances.append(
            VoxInstance(
                name or f"model {model_id}",
                model_id,
                xyz,
                model.xyzi[:, 3].copy(),
                hidden,
                layer,
                rot.copy(),
                trans.copy(),
            )
        )


def _frame_count(parsed: _Parsed) -> int:
    if not parsed.nodes:
        return max(len(parsed.models), 1)
    keys = [_int(f.get("_f"), 0) for n in parsed.nodes.values() for f in n.frames]
    return max(keys, default=0) + 1


# ------------------------------------------------------------------------------ public


def read(data: bytes, *, frame: int = 0) -> VoxFile:
    """Parse a whole .vox file; `frame` picks the animation frame (0 = first)."""
    parsed = _read_chunks(bytes(data))
    if not parsed.models:
        raise VoxFormatError("the file contains no models")
    walk = _Walk(parsed, max(frame, 0))
    identity, origin = np.eye(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    if parsed.nodes:
        if 0 not in parsed.nodes:
            raise VoxFormatError("scene graph has no root node 0")
        walk.visit(0, identity, origin, False, -1, "", ())
    else:  # no scene graph: several models are animation frames (PACK or not)
        index = min(max(frame, 0), len(parsed.models) - 1)
        walk.add(index, identity, origin, False, -1, "", placed=False)
    palette = np.zeros((256, 4), dtype=np.uint8)
    if parsed.rgba is not None:
        palette[1:] = parsed.rgba[:255]
    else:
        palette[:] = DEFAULT_PALETTE
    return VoxFile(
        version=parsed.version,
        models=parsed.models,
        instances=walk.instances,
        palette=palette,
        materials=parsed.materials,
        layers=sorted(parsed.layers.values(), key=lambda layer: layer.layer_id),
        has_palette_chunk=parsed.rgba is not None,
        frame_count=_frame_count(parsed),
    )


def read_file(path: str | os.PathLike[str], *, frame: int = 0) -> VoxFile:
    with open(path, "rb") as f:
        return read(f.read(), frame=frame)
