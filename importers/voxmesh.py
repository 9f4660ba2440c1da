"""Voxel geometry with numpy only: which voxels show, and the exposed faces of a solid.

No bpy: the Blender builder (vox.py) only copies these arrays into meshes. Everything works
on a dense occupancy grid of the voxels' bounding box (padded by one cell), so each step is
a handful of whole-array operations, never a Python loop per voxel or per face.

Three surfaces:
- `unit_faces`: one quad per exposed voxel face (`exposed_faces` with colours);
- `greedy_faces`: coplanar exposed faces of one colour merged into rectangles;
- `watertight_polygons`: the greedy rectangles with every vertex that lies on one of their
  edges inserted into that edge, so no T-junction is left (same faces, more corners).
`shared_polygons` and `watertight_polygons` return `Polygons`: faces over shared vertices,
the shape of Blender's mesh arrays.

The greedy mesher is the classic one (widest run first, then as far down as it goes), which
needs to know which cells earlier rectangles cover: it sweeps the rows of all planes, colours
and directions together, one loop step per row (at most the model's extent, 256 for one
MagicaVoxel model), each step a few whole-array operations. Merging identical runs across
rows, which needs no sweep, leaves about 1% more faces (1,360 instead of 1,342 on the
monu1.vox fixture).
"""

from __future__ import annotations

from dataclasses import dataclass

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

# The two in-plane axes (u, v) of a face along each axis, cyclic so that u x v = +axis.
_PLANE_AXES = np.array([[1, 2], [2, 0], [0, 1]], dtype=np.int64)

# Rectangle corners as (u, v) picks from ((u0, u1), (v0, v1)), counter-clockwise seen from
# outside: facing +axis u then v; facing -axis v then u (the same order as _QUADS).
_RECT_U = np.array([[0, 0, 1, 1], [0, 1, 1, 0]], dtype=np.int64)  # by (direction % 2)
_RECT_V = np.array([[0, 1, 1, 0], [0, 0, 1, 1]], dtype=np.int64)


@dataclass(frozen=True)
class _Grid:
    """Voxel cells of the padded bounding box, flattened; lin[i] is voxel i's cell.

    `local` holds the voxels' coordinates in the grid (world = local + origin); every local
    coordinate is at least 1 and at most shape - 2, so stepping one cell never leaves it.
    """

    shape: tuple[int, int, int]
    lin: np.ndarray
    strides: tuple[int, int, int]
    local: np.ndarray
    origin: np.ndarray

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def neighbour(self, cells: np.ndarray, direction: int) -> np.ndarray:
        dx, dy, dz = DIRECTIONS[direction]
        sx, sy, sz = self.strides
        return cells + (dx * sx + dy * sy + dz * sz)


def _grid(xyz: np.ndarray) -> _Grid:
    lo = xyz.min(axis=0).astype(np.int64)
    local = xyz.astype(np.int64) - lo + 1
    shape = tuple(int(v) + 2 for v in local.max(axis=0))
    sx, sy, sz = shape[1] * shape[2], shape[2], 1
    lin = local[:, 0] * sx + local[:, 1] * sy + local[:, 2]
    # mypy sees tuple[int, ...]: xyz has three columns, so shape has three sizes.
    return _Grid(shape, lin, (sx, sy, sz), local, lo - 1)  # type: ignore[arg-type]


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
    owner = np.full(grid.size, -1, dtype=np.int64)
    np.maximum.at(owner, grid.lin, np.arange(n, dtype=np.int64))
    return owner[grid.lin] == np.arange(n)


# --------------------------------------------------------------------------- rectangles


@dataclass(frozen=True)
class Rectangles:
    """Axis-aligned faces, 4 corners each, counter-clockwise seen from outside."""

    corners: np.ndarray  # (F*4, 3) int64 lattice points, in voxel units
    color: np.ndarray  # (F,) int64 palette index of every voxel face the rectangle covers
    direction: np.ndarray  # (F,) int64 index into DIRECTIONS
    voxel_count: int  # voxels that show at least one face

    def areas(self) -> np.ndarray:
        """(F,) int64 area of each rectangle in voxel faces."""
        corners = self.corners.reshape(-1, 4, 3)
        extent = np.abs(corners[:, 2] - corners[:, 0])  # the diagonal: 0 across the plane
        return np.prod(np.where(extent == 0, 1, extent), axis=1)


def _empty_rectangles() -> Rectangles:
    empty = np.zeros(0, dtype=np.int64)
    return Rectangles(np.zeros((0, 3), np.int64), empty, empty, 0)


def unit_faces(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray) -> Rectangles:
    """One unit square per exposed voxel face (`exposed_faces`), carrying its voxel's colour.

    Where voxels share a cell, the last one listed counts (`last_in_cell`).
    """
    keep = last_in_cell(xyz)
    xyz, color, opaque = xyz[keep], np.asarray(color, np.int64)[keep], opaque[keep]
    if len(xyz) == 0:
        return _empty_rectangles()
    voxel, direction = _exposed(_grid(xyz), opaque)
    corners = xyz[voxel].astype(np.int64)[:, None, :] + _QUADS[direction].astype(np.int64)
    return Rectangles(
        corners.reshape(-1, 3), color[voxel], direction, _count_voxels(voxel, len(xyz))
    )


def _count_voxels(voxel: np.ndarray, n: int) -> int:
    seen = np.zeros(n, dtype=bool)
    seen[voxel] = True
    return int(np.count_nonzero(seen))


@dataclass(frozen=True)
class _Cells:
    """Exposed unit faces in plane coordinates, grouped by (direction, plane, colour).

    Faces only merge within a group; `group` is a dense id, and the group_* arrays give each
    group's direction, plane coordinate (grid-local, along the direction's axis) and colour.
    """

    group: np.ndarray
    u: np.ndarray
    v: np.ndarray
    group_direction: np.ndarray
    group_plane: np.ndarray
    group_color: np.ndarray


def _cells(grid: _Grid, voxel: np.ndarray, direction: np.ndarray, color: np.ndarray) -> _Cells:
    axis = direction // 2
    local = grid.local[voxel]
    rows = np.arange(len(voxel))
    plane = local[rows, axis] + direction % 2
    u = local[rows, _PLANE_AXES[axis, 0]]
    v = local[rows, _PLANE_AXES[axis, 1]]
    face_color = color[voxel]
    span = max(grid.shape) + 1
    key = (direction * 256 + face_color) * span + plane
    keys, group = np.unique(key, return_inverse=True)
    return _Cells(group.ravel(), u, v, keys // span // 256, keys % span, keys // span % 256)


def _sweep(group: np.ndarray, run: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, ...]:
    """Greedy rectangles of every group at once: rows along `step`, runs along `run`.

    The classic greedy mesher, per group: visit rows in increasing `step`; in each row the
    cells not yet covered form runs (consecutive `run`), each the top of a new rectangle
    that goes down for as long as every cell under it is in the group. Covered cells are
    known per column (group, run) as the row where its current rectangle ends, so each row
    is a handful of whole-array operations over all groups, directions and colours: the one
    Python loop is over rows (at most the model's extent), never over voxels or faces.
    Returns (group, run0, run1, step0, step1) per rectangle, ends exclusive.
    """
    n = len(group)
    column, reach = _columns(group, run, step)
    order = np.lexsort((run, group, step))
    g, r, s = group[order], run[order], step[order]
    column, reach = column[order], reach[order]
    bounds = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [n]])
    covered_until = np.full(int(column.max()) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    out: list[tuple[np.ndarray, ...]] = []
    for lo, hi in zip(starts.tolist(), stops.tolist(), strict=True):
        row = int(s[lo])
        free = lo + np.flatnonzero(covered_until[column[lo:hi]] <= row)
        if len(free) == 0:
            continue
        rg, rr = g[free], r[free]
        head = np.ones(len(free), dtype=bool)
        head[1:] = (rg[1:] != rg[:-1]) | (rr[1:] != rr[:-1] + 1)
        heads = np.flatnonzero(head)
        length = np.diff(np.append(heads, len(free)))
        height = np.minimum.reduceat(reach[free], heads)
        covered_until[column[free]] = row + np.repeat(height, length)
        top = np.full(len(heads), row, dtype=np.int64)
        out.append((rg[heads], rr[heads], rr[heads] + length, top, top + height))
    return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))


def _columns(group: np.ndarray, run: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: a dense id of its column (group, run), and how many cells from it on, itself
    included, follow without a gap along `step` in that column."""
    n = len(group)
    order = np.lexsort((step, run, group))
    g, r, s = group[order], run[order], step[order]
    new_column = np.ones(n, dtype=bool)
    new_column[1:] = (g[1:] != g[:-1]) | (r[1:] != r[:-1])
    new_streak = new_column.copy()
    new_streak[1:] |= s[1:] != s[:-1] + 1
    streak_end = np.append(np.flatnonzero(new_streak)[1:], n)
    reach = streak_end[np.cumsum(new_streak) - 1] - np.arange(n)
    column = np.empty(n, dtype=np.int64)
    column[order] = np.cumsum(new_column) - 1
    out = np.empty(n, dtype=np.int64)
    out[order] = reach
    return column, out


def greedy_faces(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray) -> Rectangles:
    """Exposed faces (the rules of `exposed_faces`) merged into rectangles.

    Faces merge when they face the same way, lie in one plane and have the same palette index
    (`color`, 0..255, one per voxel). Each plane and colour is meshed greedily twice
    (`_sweep`), with rows along either in-plane axis, and keeps whichever gives fewer
    rectangles. Where voxels share a cell, the last one listed counts (`last_in_cell`).
    Rectangles of one plane never overlap, and their areas per colour and direction add up
    to the exposed voxel faces.
    """
    keep = last_in_cell(xyz)
    xyz, color, opaque = xyz[keep], np.asarray(color, np.int64)[keep], opaque[keep]
    if len(xyz) == 0:
        return _empty_rectangles()
    grid = _grid(xyz)
    voxel, direction = _exposed(grid, opaque)
    if len(voxel) == 0:
        return _empty_rectangles()
    cells = _cells(grid, voxel, direction, color)
    group, u0, u1, v0, v1 = _best_rectangles(cells)
    corners = _rectangle_corners(
        cells.group_direction[group], cells.group_plane[group], u0, u1, v0, v1
    )
    return Rectangles(
        corners + grid.origin,
        cells.group_color[group],
        cells.group_direction[group],
        _count_voxels(voxel, len(xyz)),
    )


def _best_rectangles(cells: _Cells) -> tuple[np.ndarray, ...]:
    """Both row orientations of `_sweep`, and per group the one with fewer rectangles."""
    by_u = _sweep(cells.group, cells.u, cells.v)  # (group, u0, u1, v0, v1)
    g, v0, v1, u0, u1 = _sweep(cells.group, cells.v, cells.u)
    by_v = (g, u0, u1, v0, v1)
    groups = len(cells.group_direction)
    use_u = np.bincount(by_u[0], minlength=groups) <= np.bincount(by_v[0], minlength=groups)
    pick_u, pick_v = use_u[by_u[0]], ~use_u[by_v[0]]
    return tuple(np.concatenate([a[pick_u], b[pick_v]]) for a, b in zip(by_u, by_v, strict=True))


def _rectangle_corners(
    direction: np.ndarray,
    plane: np.ndarray,
    u0: np.ndarray,
    u1: np.ndarray,
    v0: np.ndarray,
    v1: np.ndarray,
) -> np.ndarray:
    """(F*4, 3) corners of rectangles given in plane coordinates, wound like _QUADS."""
    axis = direction // 2
    facing = direction % 2
    us = np.stack([u0, u1], axis=1)[np.arange(len(u0))[:, None], _RECT_U[facing]]
    vs = np.stack([v0, v1], axis=1)[np.arange(len(v0))[:, None], _RECT_V[facing]]
    corners = np.empty((len(axis), 4, 3), dtype=np.int64)
    rows, corner = np.arange(len(axis))[:, None], np.arange(4)[None, :]
    corners[rows, corner, axis[:, None]] = plane[:, None]
    corners[rows, corner, _PLANE_AXES[axis, 0][:, None]] = us
    corners[rows, corner, _PLANE_AXES[axis, 1][:, None]] = vs
    return corners.reshape(-1, 3)


# ----------------------------------------------------------------------------- polygons


@dataclass(frozen=True)
class Polygons:
    """Faces over shared vertices, in the layout of Blender's mesh arrays.

    Face i uses loops[starts[i]:starts[i + 1]] (vertex indices, counter-clockwise seen from
    outside); coincident corners are one vertex.
    """

    vertices: np.ndarray  # (V, 3) int64 lattice points, in voxel units
    loops: np.ndarray  # (L,) int64 vertex index of every face corner, face after face
    starts: np.ndarray  # (F,) int64 first loop of each face
    color: np.ndarray  # (F,) int64 palette index
    direction: np.ndarray  # (F,) int64 index into DIRECTIONS
    voxel_count: int  # voxels that show at least one face

    @property
    def sizes(self) -> np.ndarray:
        """(F,) corners per face."""
        return np.diff(np.append(self.starts, len(self.loops)))


def _lattice_keys(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points shifted to start at 0, the extent per axis, and one int64 key per point."""
    local = points - points.min(axis=0)
    dims = local.max(axis=0) + 1
    return local, dims, (local[:, 0] * dims[1] + local[:, 1]) * dims[2] + local[:, 2]


def shared_polygons(rects: Rectangles) -> Polygons:
    """The rectangles as quads whose coincident corners share one vertex."""
    if len(rects.color) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Polygons(np.zeros((0, 3), np.int64), empty, empty, empty, empty, 0)
    _, _, keys = _lattice_keys(rects.corners)
    _, first, loops = np.unique(keys, return_index=True, return_inverse=True)
    starts = np.arange(0, len(keys), 4, dtype=np.int64)
    return Polygons(
        rects.corners[first],
        loops.ravel(),
        starts,
        rects.color,
        rects.direction,
        rects.voxel_count,
    )


def watertight_polygons(rects: Rectangles) -> Polygons:
    """The rectangles with no T-junction: every vertex lying inside one of a rectangle's
    edges becomes a corner of that rectangle too (an n-gon with collinear corners).

    Where two faces meet along a line, both then have the same vertices along it, so once
    coincident vertices are shared the mesh is manifold wherever the voxel shape is: every
    edge has exactly two faces. Shapes that are not manifold stay so: voxels touching only
    along an edge (four faces on one edge), or glass resting on a solid (the solid's face
    runs on under the glass, whose sides end on it). The faces keep their areas.
    """
    base = shared_polygons(rects)
    if len(base.color) == 0:
        return base
    local, dims, _ = _lattice_keys(base.vertices)
    # Edge k of a quad runs from its corner k to corner k + 1; each edge becomes its first
    # corner followed by the vertices inside it, walked in the edge's direction.
    first = base.loops
    second = base.loops.reshape(-1, 4)[:, [1, 2, 3, 0]].ravel()
    on_line, lo, hi = _points_inside_edges(local, dims, local[first], local[second])
    edge_loops = 1 + hi - lo
    edge = np.repeat(np.arange(len(first)), edge_loops)
    step = np.arange(len(edge)) - np.repeat(np.cumsum(edge_loops) - edge_loops, edge_loops)
    forward = (local[second] - local[first]).sum(axis=1)[edge] > 0
    inner = np.where(forward, lo[edge] + step - 1, hi[edge] - step)
    inner = on_line[np.clip(inner, 0, len(on_line) - 1)]  # step 0 picks the corner below
    loops = np.where(step == 0, first[edge], inner)
    face_loops = edge_loops.reshape(-1, 4).sum(axis=1)
    starts = np.cumsum(face_loops) - face_loops
    return Polygons(base.vertices, loops, starts, base.color, base.direction, base.voxel_count)


def _points_inside_edges(
    points: np.ndarray, dims: np.ndarray, first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points lying strictly inside each axis-aligned edge (first, second).

    Returns `on_line`, point indices sorted by the line they lie on (per axis: the two other
    coordinates) and then along it, and per edge the range [lo, hi) of `on_line` holding the
    points inside that edge, in increasing order along the edge's axis. One sort per axis
    and two binary searches per edge.
    """
    axis = np.argmax(first != second, axis=1)
    lo = np.zeros(len(first), dtype=np.int64)
    hi = np.zeros(len(first), dtype=np.int64)
    orders, offset = [], 0
    for a in range(3):
        keys = _line_keys(points, points[:, a], a, dims)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        edges = np.flatnonzero(axis == a)
        p, q = first[edges], second[edges]
        start = _line_keys(p, np.minimum(p[:, a], q[:, a]), a, dims)
        stop = _line_keys(p, np.maximum(p[:, a], q[:, a]), a, dims)
        lo[edges] = offset + np.searchsorted(sorted_keys, start, side="right")
        hi[edges] = offset + np.searchsorted(sorted_keys, stop, side="left")
        orders.append(order)
        offset += len(order)
    return np.concatenate(orders), lo, hi


def _line_keys(points: np.ndarray, along: np.ndarray, axis: int, dims: np.ndarray) -> np.ndarray:
    """Sort keys for points on lines parallel to `axis`: the line first, then `along` it."""
    b, c = (axis + 1) % 3, (axis + 2) % 3
    return (points[:, b] * dims[c] + points[:, c]) * dims[axis] + along


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Palette bytes are sRGB; Blender's colour attributes are scene-linear."""
    c = rgb.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
