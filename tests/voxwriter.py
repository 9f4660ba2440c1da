"""Write .vox files from plain values, for tests and benchmarks (never shipped).

One function per chunk type the reader handles (SIZE, XYZI, RGBA, MATL, MATT, PACK, nTRN,
nGRP, nSHP, LAYR) plus `chunk()` for anything else (unknown ids, NOTE, IMAP, rOBJ, ...).
Nothing here validates: tests also use it to write broken files on purpose.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def chunk(cid: bytes, content: bytes = b"", children: bytes = b"") -> bytes:
    return struct.pack("<4sii", cid, len(content), len(children)) + content + children


def string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<i", len(raw)) + raw


def vdict(items: Mapping[str, object]) -> bytes:
    out = struct.pack("<i", len(items))
    for key, value in items.items():
        out += string(key) + string(str(value))
    return out


def size(x: int, y: int, z: int) -> bytes:
    return chunk(b"SIZE", struct.pack("<3i", x, y, z))


def xyzi(voxels: Iterable[Sequence[int]] | np.ndarray) -> bytes:
    arr = np.asarray(voxels if isinstance(voxels, np.ndarray) else list(voxels), np.uint8)
    arr = arr.reshape(-1, 4)
    return chunk(b"XYZI", struct.pack("<i", len(arr)) + arr.tobytes())


def model(dims: Sequence[int], voxels: Iterable[Sequence[int]] | np.ndarray) -> bytes:
    return size(*dims) + xyzi(voxels)


def rgba(colors: np.ndarray) -> bytes:
    """`colors` is (256, 4) uint8 in file order: entry k becomes palette index k + 1."""
    return chunk(b"RGBA", np.asarray(colors, dtype=np.uint8).tobytes())


def pack(count: int) -> bytes:
    return chunk(b"PACK", struct.pack("<i", count))


def matl(index: int, props: Mapping[str, object]) -> bytes:
    return chunk(b"MATL", struct.pack("<i", index) + vdict(props))


def matt(index: int, kind: int, weight: float, props: Mapping[int, float]) -> bytes:
    """Legacy material: `props` maps property bit (0..6) to its normalised value."""
    bits = sum(1 << b for b in props)
    values = b"".join(struct.pack("<f", props[b]) for b in sorted(props))
    return chunk(b"MATT", struct.pack("<iifi", index, kind, weight, bits) + values)


def ntrn(
    node: int,
    child: int,
    *,
    frames: Sequence[Mapping[str, object]] = ({},),
    attrs: Mapping[str, object] | None = None,
    layer: int = -1,
) -> bytes:
    """Transform node; each frame dict may hold _t ("x y z"), _r (rotation byte), _f."""
    head = struct.pack("<i", node) + vdict(attrs or {})
    body = head + struct.pack("<iiii", child, -1, layer, len(frames))
    return chunk(b"nTRN", body + b"".join(vdict(f) for f in frames))


def ngrp(node: int, children: Sequence[int], attrs: Mapping[str, object] | None = None) -> bytes:
    body = struct.pack("<i", node) + vdict(attrs or {}) + struct.pack("<i", len(children))
    return chunk(b"nGRP", body + b"".join(struct.pack("<i", c) for c in children))


def nshp(
    node: int, models: Sequence[int | tuple[int, int]], attrs: Mapping[str, object] | None = None
) -> bytes:
    """Shape node: `models` holds model ids, or (model id, frame) pairs for animated shapes."""
    body = struct.pack("<i", node) + vdict(attrs or {}) + struct.pack("<i", len(models))
    for entry in models:
        mid, frame = entry if isinstance(entry, tuple) else (entry, None)
        body += struct.pack("<i", mid) + vdict({} if frame is None else {"_f": frame})
    return chunk(b"nSHP", body)


def layr(layer: int, name: str, hidden: bool = False) -> bytes:
    attrs = {"_name": name, **({"_hidden": 1} if hidden else {})}
    return chunk(b"LAYR", struct.pack("<i", layer) + vdict(attrs) + struct.pack("<i", -1))


def note(names: Sequence[str]) -> bytes:
    return chunk(b"NOTE", struct.pack("<i", len(names)) + b"".join(string(n) for n in names))


def imap(order: Sequence[int] = tuple(range(256))) -> bytes:
    return chunk(b"IMAP", bytes(order))


def vox_file(*chunks: bytes, version: int = 150) -> bytes:
    return b"VOX " + struct.pack("<i", version) + chunk(b"MAIN", b"", b"".join(chunks))


def simple_scene(dims: Sequence[int], voxels: Iterable[Sequence[int]], frame: Mapping) -> bytes:
    """One model under root nTRN 0 -> nGRP 1 -> nTRN 2 (with `frame`) -> nSHP 3."""
    return vox_file(
        model(dims, voxels),
        ntrn(0, 1),
        ngrp(1, [2]),
        ntrn(2, 3, frames=[frame], layer=0),
        nshp(3, [0]),
    )


def solid_cube(n: int) -> bytes:
    """One n^3 model (n <= 256) with every voxel filled, coloured by height."""
    grid = np.indices((n, n, n)).reshape(3, -1).T.astype(np.uint8)
    colors = (grid[:, 2].astype(np.int64) % 255 + 1).astype(np.uint8)
    return vox_file(model((n, n, n), np.column_stack([grid, colors])))


def rotation_byte(m: np.ndarray) -> int:
    """Encode a signed permutation matrix the way the format stores `_r`."""
    cols = [int(np.flatnonzero(row)[0]) for row in m]
    signs = [int(m[r, c] < 0) for r, c in enumerate(cols)]
    return cols[0] | (cols[1] << 2) | (signs[0] << 4) | (signs[1] << 5) | (signs[2] << 6)


def signed_permutations() -> list[np.ndarray]:
    """All 48 axis-aligned orientations: 24 rotations and their 24 mirror images."""
    out = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        for signs in range(8):
            m = np.zeros((3, 3), dtype=np.int64)
            for row, col in enumerate(perm):
                m[row, col] = -1 if signs >> row & 1 else 1
            out.append(m)
    return out
