"""Voxel geometry with numpy only: which voxels show, and the exposed faces of a solid.

No bpy: the Blender builder (vox.py) only copies these arrays into meshes. Everything works
on a dense grid of the voxels' bounding box (padded by one cell), so each step is a handful
of whole-array operations, never a Python loop per voxel or per face.

Three surfaces:
- `unit_faces`: one quad per exposed voxel face (`exposed_faces` with colours);
- `greedy_faces`: coplanar exposed faces of one colour merged into rectangles;
- `watertight_polygons`: the greedy rectangles with every vertex that lies on one of their
  edges inserted into that edge, so no T-junction is left (same faces, more corners).
Rectangles are boxes of voxels (lowest voxel and size; corners only when asked for).
`shared_polygons` and `watertight_polygons` return `Polygons`: faces over shared vertices,
the shape of Blender's mesh arrays.

Time grows linearly with voxels and exposed faces (about 120 ns per voxel on a noisy
843k-voxel model with 373k exposed faces: 0.1 s; `tools/bench_vox.py`), because nothing
sorts by comparison:
- The grid holds each cell's kind (empty, glass, opaque) and colour; a face shows where a
  voxel's kind is greater than its neighbour's. Read off the grid in cell order, faces come
  sorted by (x, y, z); `_stable_order` (radix passes on 16-bit keys, which numpy sorts in
  linear time) gives every other order needed.
- The greedy mesher is the classic one (widest run first, then as far down as it goes), in
  both row orientations, keeping per plane and colour the one with fewer rectangles. It
  needs to know which cells earlier rectangles cover, so `_sweep` walks rows: all planes,
  colours, directions and both orientations together, one loop step per row number (at
  most the model's extent, 256 for one MagicaVoxel model), each a dozen whole-array
  operations on that row's cells. Colour is data, not a group: runs and rectangles stop
  where it changes, which gives the rectangles of meshing each colour alone.
- Shared vertices are numbered by marking a table of lattice keys; the vertices inside an
  edge are those between its two corners in a per-axis order of the vertices, and each
  step along that order is one edge of the watertight mesh (Blender need not find them).
The previous sweep grouped faces with np.unique and sorted them with lexsort on int64 keys
four times (O(F log F), 0.45 s on that model) for the same rectangles. Fresh large arrays
are costly too (page faults), hence int32 and uint8 arrays and in-place steps where they
fit. Merging identical runs across rows, which needs no sweep, would leave about 1% more
faces (1,360 instead of 1,342 on the monu1.vox fixture).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# The six axis directions, in the order faces are emitted: -X +X -Y +Y -Z +Z.
DIRECTIONS = np.array(
    [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=np.int64
)

# Corner offsets (unit cube, 0..1) of the quad facing each direction, counter-clockwise seen
# from outside so normals point away from the voxel.
_QUADS = np.array(
    [
        [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]],  # -X
        [[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 1]],  # +X
        [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]],  # -Y
        [[0, 1, 0], [0, 1, 1], [1, 1, 1], [1, 1, 0]],  # +Y
        [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]],  # -Z
        [[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],  # +Z
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class _Grid:
    """Voxel cells of the padded bounding box, flattened; lin[i] is voxel i's cell.

    A cell's grid coordinates are its world coordinates minus `origin`; every voxel's are at
    least 1 and at most shape - 2, so stepping one cell never leaves the grid.
    """

    shape: tuple[int, int, int]
    lin: np.ndarray
    strides: tuple[int, int, int]
    origin: np.ndarray

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def neighbour(self, cells: np.ndarray, direction: int) -> np.ndarray:
        dx, dy, dz = DIRECTIONS[direction]
        sx, sy, sz = self.strides
        return cells + (dx * sx + dy * sy + dz * sz)


def _bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per axis, the least and greatest coordinate of (N, 3) points, as int64.

    Column by column: numpy reduces an array whose last axis has three items along its
    first axis ten times slower."""
    columns = [points[:, a] for a in range(3)]
    low = np.array([c.min() for c in columns], dtype=np.int64)
    return low, np.array([c.max() for c in columns], dtype=np.int64)


def _grid(xyz: np.ndarray) -> _Grid:
    low, high = _bounds(xyz)
    origin = low - 1
    nx, ny, nz = (int(v) + 2 for v in high - origin)
    # Column by column and in place (see `_bounds`); every fresh large array also costs
    # page faults.
    lin = xyz[:, 0].astype(np.int64)
    lin *= ny
    lin += xyz[:, 1]
    lin *= nz
    lin += xyz[:, 2]
    lin -= int(origin @ np.array([ny * nz, nz, 1]))
    return _Grid((nx, ny, nz), lin, (ny * nz, nz, 1), origin)


def visible_mask(xyz: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """True for voxels with at least one 6-neighbour that is empty or see-through.

    `opaque[i]` is False for glass-like voxels: they never hide their neighbours.
    """
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=bool)
    grid = _grid(xyz)
    solid = np.zeros(grid.size, dtype=bool)
    solid[grid.lin[opaque]] = True
    hidden = np.ones(n, dtype=bool)
    for direction in range(6):
        hidden &= solid[grid.neighbour(grid.lin, direction)]
    return ~hidden


def _exposed(grid: _Grid, opaque: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(voxel, direction) of every face between a voxel and an empty or see-through cell.

    Opaque voxels show a face unless an opaque neighbour hides it; glass shows one only where
    nothing at all is next to it, so glass blocks have no inner walls.
    """
    occupied = np.zeros(grid.size, dtype=bool)
    occupied[grid.lin] = True
    solid = np.zeros(grid.size, dtype=bool)
    solid[grid.lin[opaque]] = True
    voxels, dirs = [], []
    for direction in range(6):
        cells = grid.neighbour(grid.lin, direction)
        show = np.where(opaque, ~solid[cells], ~occupied[cells])
        idx = np.flatnonzero(show)
        voxels.append(idx)
        dirs.append(np.full(len(idx), direction, dtype=np.int64))
    return np.concatenate(voxels), np.concatenate(dirs)


@dataclass(frozen=True)
class FaceMesh:
    """Quads of exposed faces: 4 corners each, plus the voxel each face belongs to."""

    corners: np.ndarray  # (F*4, 3) float32, in voxel units
    voxel: np.ndarray  # (F,) int64 index into the input voxels
    direction: np.ndarray  # (F,) int64 index into DIRECTIONS


def exposed_faces(xyz: np.ndarray, opaque: np.ndarray) -> FaceMesh:
    """Faces between a voxel and an empty cell (or a glass cell, seen from a solid voxel)."""
    if len(xyz) == 0:
        return FaceMesh(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    voxel, direction = _exposed(_grid(xyz), opaque)
    corners = xyz[voxel].astype(np.float32)[:, None, :] + _QUADS[direction]
    return FaceMesh(corners.reshape(-1, 3), voxel, direction)


def last_in_cell(xyz: np.ndarray) -> np.ndarray:
    """True for one voxel per occupied cell: where several share a cell, the last one listed.

    Overlapping models (several instances merged into one mesh) would otherwise give two
    faces in one place; the meshers below need every cell at most once.
    """
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=bool)
    grid = _grid(xyz)
    occupied = np.zeros(grid.size, dtype=bool)
    occupied[grid.lin] = True
    if np.count_nonzero(occupied) == n:  # the usual case: nothing overlaps
        return np.ones(n, dtype=bool)
    return _last_in_cell(grid)


def _last_in_cell(grid: _Grid) -> np.ndarray:
    n = len(grid.lin)
    owner = np.full(grid.size, -1, dtype=np.int64)
    np.maximum.at(owner, grid.lin, np.arange(n, dtype=np.int64))
    return owner[grid.lin] == np.arange(n)


# --------------------------------------------------------------------------- rectangles


@dataclass(frozen=True)
class Rectangles:
    """Axis-aligned faces: each the side towards `direction` of a box of voxels, which
    starts at voxel `low` and spans `size` voxels per axis (1 along the face's own axis).

    `corners` (computed when first asked for: meshes are built from the boxes directly)
    gives each face's four corners, counter-clockwise seen from outside.
    """

    low: np.ndarray  # (F, 3) int64 lowest voxel of each box, in voxel units
    size: np.ndarray  # (F, 3) int64 voxels along each axis
    color: np.ndarray  # (F,) int64 palette index of every voxel face the rectangle covers
    direction: np.ndarray  # (F,) int64 index into DIRECTIONS
    voxel_count: int  # voxels that show at least one face

    @cached_property
    def corners(self) -> np.ndarray:
        """(F*4, 3) int64 lattice points: the quad of `_QUADS` scaled by the box."""
        quads = _QUADS.astype(np.int64)
        # One coordinate of one corner at a time into (4, 3, F), then laid out (F, 4, 3)
        # in a single copy (see `_bounds`).
        corners = np.empty((4, 3, len(self.direction)), dtype=np.int64)
        for k, a in itertools.product(range(4), range(3)):
            np.multiply(quads[:, k, a].take(self.direction), self.size[:, a], out=corners[k, a])
            corners[k, a] += self.low[:, a]
        out = np.empty((len(self.direction), 4, 3), dtype=np.int64)
        out[...] = corners.transpose(2, 0, 1)
        return out.reshape(-1, 3)

    def areas(self) -> np.ndarray:
        """(F,) int64 area of each rectangle in voxel faces."""
        return self.size[:, 0] * self.size[:, 1] * self.size[:, 2]


def _empty_rectangles() -> Rectangles:
    empty = np.zeros(0, dtype=np.int64)
    return Rectangles(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64), empty, empty, 0)


def unit_faces(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray) -> Rectangles:
    """One unit square per exposed voxel face (`exposed_faces`), carrying its voxel's colour
    (a palette index, 0..255). Where voxels share a cell, the last one listed counts
    (`last_in_cell`).
    """
    faces = _sorted_faces(xyz, color, opaque)
    if faces is None:
        return _empty_rectangles()
    return _rectangles(faces, np.arange(len(faces.plane)), 1, 1)


def greedy_faces(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray) -> Rectangles:
    """Exposed faces (the rules of `exposed_faces`) merged into rectangles.

    Faces merge when they face the same way, lie in one plane and have the same palette index
    (`color`, 0..255, one per voxel). Each plane and colour is meshed greedily twice
    (`_sweep`), with rows along either in-plane axis, and keeps whichever gives fewer
    rectangles. Where voxels share a cell, the last one listed counts (`last_in_cell`).
    Rectangles of one plane never overlap, and their areas per colour and direction add up
    to the exposed voxel faces.
    """
    faces = _sorted_faces(xyz, color, opaque)
    if faces is None:
        return _empty_rectangles()
    flip, face, width, height = _sweep(faces)
    kept = np.flatnonzero(_fewer_rectangles(faces, flip, face))
    flip, face, width, height = (a.take(kept) for a in (flip, face, width, height))
    return _rectangles(faces, face, np.where(flip, width, height), np.where(flip, height, width))


def _rectangles(
    faces: _Faces, face: np.ndarray, along_u: np.ndarray | int, along_v: np.ndarray | int
) -> Rectangles:
    """Rectangles from their first cell `face` and their length in cells along u and v."""
    plane = faces.plane.take(face)
    direction = plane // faces.extent
    axis = direction // 2
    # The boxes in plane coordinates (p, u, v), then per world axis.
    p, u, v = plane - direction * faces.extent, faces.u.take(face), faces.v.take(face)
    low = np.empty((len(face), 3), dtype=np.int64)
    size = np.empty((len(face), 3), dtype=np.int64)
    for a, (coordinate, extent) in enumerate(
        zip(_world(axis, p, u, v), _world(axis, 1, along_u, along_v), strict=True)
    ):
        low[:, a] = coordinate + faces.origin[a]
        size[:, a] = extent
    return Rectangles(
        low,
        size,
        faces.color.take(face).astype(np.int64),
        direction.astype(np.int64),
        faces.voxel_count,
    )


def _world(
    axis: np.ndarray, p: np.ndarray | int, u: np.ndarray | int, v: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plane coordinates (p, u, v) of faces along `axis` as (x, y, z) (see `_IN_PLANE`)."""
    is_x, is_y = axis == 0, axis == 1
    return (
        np.where(is_x, p, u),
        np.where(is_y, p, np.where(is_x, u, v)),
        np.where(is_x | is_y, v, p),
    )


# ------------------------------------------------------------------------- greedy sweep


def _stable_order(key: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of integers in [0, bound), in time linear in their number.

    numpy sorts 16-bit integers by radix when asked for a stable sort; wider keys take one
    such pass per 16 bits, least significant first. A comparison sort of a million int64
    keys costs five to ten times more (numpy 1.26), and that is where the mesher's time went.
    """
    if bound <= 1 << 16:
        return np.argsort(key.astype(np.uint16), kind="stable")
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    return order[_stable_order(key[order] >> 16, ((bound - 1) >> 16) + 1)]


# The in-plane axes (u, v) of a face along each axis, in grid order: sorting cells by
# (x, y, z) sorts any one plane's faces by (u, v).
_IN_PLANE = np.array([[1, 2], [0, 2], [0, 1]], dtype=np.int64)


@dataclass(frozen=True)
class _Faces:
    """Exposed unit faces in plane coordinates, sorted by (plane, u, v).

    `plane` is direction * extent + p, where p is the grid coordinate along the face's axis
    of the voxel it belongs to; u and v are the other two (`_IN_PLANE`). All int32 but
    `color` (uint8, the voxel's palette index).
    """

    plane: np.ndarray
    u: np.ndarray
    v: np.ndarray
    color: np.ndarray
    extent: int  # every grid coordinate is below this
    origin: np.ndarray  # world = grid + origin
    voxel_count: int  # voxels that show at least one face


def _sorted_faces(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray) -> _Faces | None:
    """The exposed faces (rules of `_exposed`) in `_Faces` order, None if there are none;
    where voxels share a cell, the last one listed counts (`last_in_cell`).

    The grid holds each cell's kind (0 empty, 1 glass, 2 opaque): a face shows where the
    voxel's kind is greater than its neighbour's. Read off the grid in cell order, each
    direction's faces come sorted by (x, y, z) with no sort; one radix pass on the plane
    coordinate then sorts the Y and Z faces by (plane, u, v).
    """
    color = np.asarray(color)
    if len(color) and (color.min() < 0 or color.max() > 255):
        raise ValueError("voxel colours are palette indices, 0..255")
    if len(xyz) == 0:
        return None
    grid = _grid(xyz)
    lin, color8 = grid.lin, color.astype(np.uint8)
    state = np.zeros(grid.size, dtype=np.uint8)
    kind = opaque.astype(np.uint8) + np.uint8(1)
    state[lin] = kind
    if np.count_nonzero(state) < len(lin):  # shared cells: write the voxel that counts last
        keep = _last_in_cell(grid)
        lin, color8 = lin[keep], color8[keep]
        state[lin] = kind[keep]
    paint = np.zeros(grid.size, dtype=np.uint8)
    paint[lin] = color8
    shown = _ShownFaces(state, len(lin))
    _, ny, nz = grid.shape
    extent = max(grid.shape)
    seen = np.zeros(grid.size, dtype=bool)
    parts: list[tuple[np.ndarray, ...]] = []
    for direction in range(6):
        axis = direction // 2
        face = shown.cells(grid.strides[axis] * (1 if direction % 2 else -1))
        seen[face] = True
        if axis:  # sort by the plane coordinate (y or z), keeping (x, y, z) order within
            p = face // nz % ny if axis == 1 else face % nz
            face = face.take(_stable_order(p, extent))
        x = face // (ny * nz)
        y = face // nz - x * ny
        xyz_face = (x, y, face - (x * ny + y) * nz)
        u, v = (xyz_face[a] for a in _IN_PLANE[axis])
        parts.append((xyz_face[axis] + direction * extent, u, v, paint.take(face)))
    if sum(len(part[0]) for part in parts) == 0:
        return None
    plane, u, v = (np.concatenate([part[i] for part in parts], dtype=np.int32) for i in range(3))
    face_color = np.concatenate([part[3] for part in parts])
    return _Faces(plane, u, v, face_color, extent, grid.origin, int(np.count_nonzero(seen)))


class _ShownFaces:
    """Cells whose face towards a neighbour shows (their kind is greater than its kind).

    Compares the whole grid with itself shifted when voxels fill much of it (a few fast
    passes, no lookups); looks each voxel's neighbour up when they are few in a big box.
    """

    def __init__(self, state: np.ndarray, voxels: int) -> None:
        self.state = state
        self.dense = len(state) <= 16 * voxels
        self.show = np.empty(len(state) if self.dense else 0, dtype=bool)
        self.voxels = np.zeros(0, dtype=np.int64) if self.dense else np.flatnonzero(state)
        self.kind = state.take(self.voxels)

    def cells(self, step: int) -> np.ndarray:
        """Sorted cells shown towards the cell `step` further on in the flat grid."""
        state, show, s = self.state, self.show, abs(step)
        if not self.dense:
            return self.voxels[state.take(self.voxels + step) < self.kind]
        if step > 0:  # cell i against cell i + s
            np.greater(state[:-s], state[s:], out=show[:-s])
            show[-s:] = False
        else:  # cell i against cell i - s
            np.greater(state[s:], state[:-s], out=show[s:])
            show[:s] = False
        return np.flatnonzero(show)


def _columns(
    plane: np.ndarray, run: np.ndarray, row: np.ndarray, color: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For cells grouped by column (plane, run), each column's in row order: a dense id of
    each cell's column, and its reach: how many cells from it on, itself included, follow it
    in its column with no gap and the same colour. Both int32."""
    n = len(plane)
    new_column = np.empty(n, dtype=bool)
    new_column[0] = True
    np.not_equal(plane[1:], plane[:-1], out=new_column[1:])
    new_column[1:] |= run[1:] != run[:-1]
    new_streak = new_column.copy()
    new_streak[1:] |= row[1:] != row[:-1] + 1
    new_streak[1:] |= color[1:] != color[:-1]
    starts = np.flatnonzero(new_streak)
    lengths = np.diff(starts, append=n)
    reach = np.repeat((starts + lengths).astype(np.int32), lengths)
    reach -= np.arange(n, dtype=np.int32)
    column = np.cumsum(new_column, dtype=np.int32)
    column -= 1
    return column, reach


def _sweep(faces: _Faces) -> tuple[np.ndarray, ...]:
    """Greedy rectangles of every plane, colour and direction, in both row orientations at once.

    The classic greedy mesher: visit a plane's rows in increasing order; in each row the
    cells not yet covered form runs (consecutive cells of one colour), each the top of a new
    rectangle that goes down for as long as every cell under it has that colour. A cell's
    reach down its column (`_columns`) says how far that is, and per column the row where its
    current rectangle ends says which cells are covered. Orientation 0 has rows along u
    and runs along v, orientation 1 the reverse; both are swept together, over the rows of
    every plane at once, so the one Python loop is over row numbers (at most the model's
    extent), each step a dozen whole-array operations over that row's cells.

    The cells must be grouped by column (for the reach) and sorted by row, then plane and
    run (for the sweep): `_Faces` order (plane, u, v) groups orientation 1's columns, one
    radix pass by v orientation 0's, and one more over both sorts them by row.
    Returns (orientation, face, width, height) per rectangle: `face` is its first cell (at
    its lowest u and v), width counts cells along the run, height rows; so orientation 0's
    rectangles span height cells along u and width along v, orientation 1's the reverse.
    """
    n, extent = len(faces.plane), faces.extent
    plane, u, v, color = faces.plane, faces.u, faces.v, faces.color
    # Per cell, orientation 0's first, then orientation 1's: its column and reach.
    column, reach = np.empty(2 * n, dtype=np.int32), np.empty(2 * n, dtype=np.int32)
    # Orientation 0's columns (plane, v): sorted stably by v, the cells are in (v, plane, u)
    # order, so each column's cells are together and in row order.
    by_v = _stable_order(v, extent)
    column[by_v], reach[by_v] = _columns(*(a.take(by_v) for a in (plane, v, u, color)))
    column[n:], reach[n:] = _columns(plane, u, v, color)
    column[n:] += column[by_v[-1]] + 1
    # Neighbours in a run have keys exactly 256 apart: same orientation, plane and colour,
    # next cell along the run. int32 where they fit (half the memory to move).
    wide = 12 * extent * extent * 256 >= 1 << 31
    key: np.ndarray = np.empty(2 * n, dtype=np.int64 if wide else np.int32)
    for half, run in ((key[:n], v), (key[n:], u)):
        np.multiply(plane, extent, out=half, dtype=key.dtype)
        half += run
        half *= 256
        half += color
    key[n:] += 6 * extent * extent * 256
    # Both orientations' cells, stably sorted by row: each row's cells stay sorted by
    # (orientation, plane, run).
    row = np.concatenate([u, v])
    order = _stable_order(row, extent)
    column, reach, key = column.take(order), reach.take(order), key.take(order)
    ends = np.cumsum(np.bincount(row, minlength=extent))
    covered_until = np.zeros(2 * n, dtype=np.int32)  # per column, the row its rectangle ends
    heads, widths, heights = [], [], []
    for r in np.flatnonzero(np.diff(ends, prepend=0)).tolist():
        lo, hi = int(ends[r - 1]) if r else 0, int(ends[r])
        col = column[lo:hi]
        free = np.flatnonzero(covered_until.take(col) <= r)
        if len(free) == 0:
            continue
        k = key[lo:hi].take(free)
        head = np.empty(len(free), dtype=bool)
        head[0] = True
        np.not_equal(k[1:], k[:-1] + 256, out=head[1:])
        first = np.flatnonzero(head)
        width = np.empty_like(first)  # np.diff(first, append=len(free)), but cheaper
        np.subtract(first[1:], first[:-1], out=width[:-1])
        width[-1] = len(free) - first[-1]
        height = np.minimum.reduceat(reach[lo:hi].take(free), first)
        covered_until[col.take(free)] = np.repeat(height + r, width)
        heads.append(free.take(first) + lo)
        widths.append(width)
        heights.append(height)
    source = order.take(np.concatenate(heads))
    flip = source >= n
    return flip, source - n * flip, np.concatenate(widths), np.concatenate(heights)


# Per axis, the orientation of `_sweep` kept when both give as many rectangles: runs along
# the face's first in-plane axis of the cyclic (y, z), (z, x), (x, y).
_TIE = np.array([True, False, True])


def _fewer_rectangles(faces: _Faces, flip: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Which rectangles to keep: per plane and colour, those of the orientation that made
    fewer of them there."""
    planes, plane_id = _unique_keys(faces.plane.take(face), 6 * faces.extent)
    colors, color_id = _unique_keys(faces.color.take(face), 256)
    group = plane_id * len(colors) + color_id
    counts = np.bincount(group * 2 + flip, minlength=2 * len(planes) * len(colors)).reshape(-1, 2)
    tie = _TIE[np.repeat(planes // faces.extent // 2, len(colors))]
    keep_1 = np.where(tie, counts[:, 1] <= counts[:, 0], counts[:, 1] < counts[:, 0])
    return keep_1.take(group) == flip


# ----------------------------------------------------------------------------- polygons


@dataclass(frozen=True)
class Polygons:
    """Faces over shared vertices, in the layout of Blender's mesh arrays.

    Face i uses loops[starts[i]:starts[i + 1]] (vertex indices, counter-clockwise seen from
    outside); coincident corners are one vertex. Where the mesher knows the edges (the
    watertight one does), it gives them too, and Blender need not search for them.
    """

    vertices: np.ndarray  # (V, 3) int64 lattice points, in voxel units
    loops: np.ndarray  # (L,) int32 vertex index of every face corner, face after face
    starts: np.ndarray  # (F,) int64 first loop of each face
    color: np.ndarray  # (F,) int64 palette index
    direction: np.ndarray  # (F,) int64 index into DIRECTIONS
    voxel_count: int  # voxels that show at least one face
    edges: np.ndarray | None = None  # (E, 2) int32 the two vertices of each edge
    corner_edges: np.ndarray | None = None  # (L,) int32 the edge from each loop to the next

    @property
    def sizes(self) -> np.ndarray:
        """(F,) corners per face."""
        return np.diff(np.append(self.starts, len(self.loops)))


def shared_polygons(rects: Rectangles) -> Polygons:
    """The rectangles as quads whose coincident corners share one vertex.

    Vertices come sorted by (x, y, z): one key per corner, numbered in order of the keys
    that occur (`_unique_keys`), no comparison sort.
    """
    if len(rects.color) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Polygons(np.zeros((0, 3), np.int64), empty, empty, empty, empty, 0)
    # Corner k of a box's face is low + _QUADS[direction][k] * size: its key is the key of
    # low plus, per axis, 0 or size * stride.
    low, size, direction = rects.low, rects.size, rects.direction
    least, _ = _bounds(low)
    _, most = _bounds(low + size)
    dims = [int(v) + 1 for v in most - least]
    strides = (dims[1] * dims[2], dims[2], 1)
    base = sum((low[:, a] - least[a]) * strides[a] for a in range(3))
    steps = [size[:, a] * strides[a] for a in range(3)]
    keys = np.empty((len(direction), 4), dtype=np.int64)
    quads = _QUADS.astype(np.int64)
    for k in range(4):
        keys[:, k] = base
        for a in range(3):
            keys[:, k] += quads[:, k, a].take(direction) * steps[a]
    unique, loops = _unique_keys(keys.reshape(-1), dims[0] * dims[1] * dims[2])
    vertices = np.empty((len(unique), 3), dtype=np.int64)
    vertices[:, 0], rest = np.divmod(unique, strides[0])
    vertices[:, 1], vertices[:, 2] = np.divmod(rest, strides[1])
    for a in range(3):
        vertices[:, a] += least[a]
    return Polygons(
        vertices,
        loops,
        np.arange(0, len(loops), 4, dtype=np.int64),
        rects.color,
        rects.direction,
        rects.voxel_count,
    )


def _unique_keys(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys in [0, bound), sorted, and each key's index among them (int32).

    Marks a table of all possible keys when that is not much larger than the keys
    themselves (a few linear passes); otherwise sorts them by radix (`_stable_order`).
    """
    if bound <= 4 * len(keys):
        seen = np.zeros(bound, dtype=bool)
        seen[keys] = True
        index = np.cumsum(seen, dtype=np.int32)  # one past each key's index
        index -= 1
        return np.flatnonzero(seen), index.take(keys)
    order = _stable_order(keys, bound)
    ordered = keys.take(order)
    new = np.empty(len(keys), dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(len(keys), dtype=np.int32)
    inverse[order] = np.cumsum(new, dtype=np.int32) - 1
    return ordered[new], inverse


def _edge_axes() -> np.ndarray:
    """(6, 4) axis of the edge from corner k to corner k + 1 of the quads facing each way."""
    step = np.roll(_QUADS, -1, axis=1) - _QUADS
    return np.argmax(step != 0, axis=2)


_EDGE_AXIS = _edge_axes()


def watertight_polygons(rects: Rectangles) -> Polygons:
    """The rectangles with no T-junction: every vertex lying inside one of a rectangle's
    edges becomes a corner of that rectangle too (an n-gon with collinear corners).

    Where two faces meet along a line, both then have the same vertices along it, so once
    coincident vertices are shared the mesh is manifold wherever the voxel shape is: every
    edge has exactly two faces. Shapes that are not manifold stay so: voxels touching only
    along an edge (four faces on one edge), or glass resting on a solid (the solid's face
    runs on under the glass, whose sides end on it). The faces keep their areas.

    Per axis, the vertices are ordered by the line parallel to it that they lie on and then
    along it (two radix passes in all, from the (x, y, z) order of `shared_polygons`). An
    edge's two corners are vertices on its line, so the vertices inside it are exactly
    those between its corners in that order: no search, and the walk from one corner to
    the next steps through that order one vertex at a time, up or down. Each such step is
    one edge of the mesh, named by the position of its lower end in that order; the names
    in use, counted, number the mesh's edges (Blender's own edge search took longer).
    """
    base = shared_polygons(rects)
    if len(base.color) == 0:
        return base
    vertices, first = base.vertices, base.loops
    n = len(vertices)
    # Orders along z (lines by x, y), y (lines by z, x) and x (lines by y, z).
    along_z = np.arange(n, dtype=np.int64)
    along_y = _stable_order(vertices[:, 2] - vertices[:, 2].min(), _span(vertices[:, 2]))
    y = vertices[:, 1].take(along_y)
    along_x = along_y.take(_stable_order(y - y.min(), _span(y)))
    # Axis a's order at a * n, and each vertex's place in it. int32 from here on: what
    # Blender's mesh holds, and half the memory to move.
    lines = np.concatenate([along_x, along_y, along_z], dtype=np.int32)
    position = np.empty(3 * n, dtype=np.int32)
    for a, order in enumerate((along_x, along_y, along_z)):
        position[order + a * n] = np.arange(a * n, (a + 1) * n, dtype=np.int32)
    # Each edge runs from its corner to the next corner of its quad, along one axis.
    quads = first.reshape(-1, 4)
    second = np.empty_like(quads)
    second[:, :3], second[:, 3] = quads[:, 1:], quads[:, 0]
    offset = (_EDGE_AXIS * n).astype(np.int32).take(rects.direction, axis=0).ravel()
    start = position.take(first + offset)
    steps = position.take(second.ravel() + offset) - start  # +-(1 + vertices inside)
    edge_loops, down = np.abs(steps), steps < 0
    # Each edge's loops: its first corner, then the i-th vertex inside it (i = 1, 2, ...)
    # at line position start + i * sign. The mesh edge from the loop at line position q to
    # the next loop is named q going up, q - 1 going down: the position of its lower end.
    begin = np.cumsum(edge_loops) - edge_loops
    size = int(begin[-1] + edge_loops[-1])
    loops, name = np.empty(size, dtype=np.int32), np.empty(size, dtype=np.int32)
    loops[begin] = first
    name[begin] = start - down
    inside = np.flatnonzero(edge_loops > 1)
    more = edge_loops.take(inside) - 1
    edge = np.repeat(inside, more)
    i = np.arange(1, len(edge) + 1) - np.repeat(np.cumsum(more) - more, more)
    at, slot = start.take(edge) + i * np.sign(steps.take(edge)), begin.take(edge) + i
    loops[slot] = lines.take(at)
    name[slot] = at - down.take(edge)
    lower, corner_edges = _unique_keys(name, 3 * n)
    face_loops = edge_loops[0::4] + edge_loops[1::4] + edge_loops[2::4] + edge_loops[3::4]
    starts = np.cumsum(face_loops) - face_loops
    return Polygons(
        vertices,
        loops,
        starts,
        base.color,
        base.direction,
        base.voxel_count,
        edges=lines.take(np.stack([lower, lower + 1], axis=1)),
        corner_edges=corner_edges,
    )


def _span(values: np.ndarray) -> int:
    return int(values.max() - values.min()) + 1


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Palette bytes are sRGB; Blender's colour attributes are scene-linear."""
    c = rgb.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
