"""Voxel geometry with numpy only: which voxels show, and the exposed faces of a solid.

No bpy: the Blender builder (vox.py) only copies these arrays into meshes. Everything works
on a dense occupancy grid of the voxels' bounding box (padded by one cell), so each step is
a handful of whole-array operations, never a Python loop per voxel.
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


@dataclass(frozen=True)
class _Grid:
    """Voxel cells of the padded bounding box, flattened; lin[i] is voxel i's cell."""

    shape: tuple[int, int, int]
    lin: np.ndarray
    strides: tuple[int, int, int]

    def neighbour(self, cells: np.ndarray, direction: int) -> np.ndarray:
        dx, dy, dz = DIRECTIONS[direction]
        sx, sy, sz = self.strides
        return cells + (dx * sx + dy * sy + dz * sz)


def _grid(xyz: np.ndarray) -> _Grid:
    lo = xyz.min(axis=0)
    local = (xyz - lo + 1).astype(np.int64)
    shape = tuple(int(v) + 2 for v in local.max(axis=0))
    sx, sy, sz = shape[1] * shape[2], shape[2], 1
    lin = local[:, 0] * sx + local[:, 1] * sy + local[:, 2]
    return _Grid(shape, lin, (sx, sy, sz))  # type: ignore[arg-type]


def visible_mask(xyz: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """True for voxels with at least one 6-neighbour that is empty or see-through.

    `opaque[i]` is False for glass-like voxels: they never hide their neighbours.
    """
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=bool)
    grid = _grid(xyz)
    solid = np.zeros(int(np.prod(grid.shape)), dtype=bool)
    solid[grid.lin[opaque]] = True
    hidden = np.ones(n, dtype=bool)
    for direction in range(6):
        hidden &= solid[grid.neighbour(grid.lin, direction)]
    return ~hidden


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
    grid = _grid(xyz)
    size = int(np.prod(grid.shape))
    occupied = np.zeros(size, dtype=bool)
    occupied[grid.lin] = True
    solid = np.zeros(size, dtype=bool)
    solid[grid.lin[opaque]] = True
    voxels, dirs = [], []
    for direction in range(6):
        cells = grid.neighbour(grid.lin, direction)
        # Opaque voxels show a face unless an opaque neighbour hides it; glass shows one
        # only where nothing at all is next to it, so glass blocks have no inner walls.
        show = np.where(opaque, ~solid[cells], ~occupied[cells])
        idx = np.flatnonzero(show)
        voxels.append(idx)
        dirs.append(np.full(len(idx), direction, dtype=np.int64))
    voxel = np.concatenate(voxels)
    direction = np.concatenate(dirs)
    corners = xyz[voxel].astype(np.float32)[:, None, :] + _QUADS[direction]
    return FaceMesh(corners.reshape(-1, 3), voxel, direction)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Palette bytes are sRGB; Blender's colour attributes are scene-linear."""
    c = rgb.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
