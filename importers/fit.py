"""Fit an imported asset into a placeholder: the blockout box a user placed to say where the
generated object goes, how big it may be and which way round it stands.

Both sides are measured from real geometry (evaluated vertices, modifiers applied), never
from `bound_box` corners, which overstate rotated parts once brought into another frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix, Vector

GEOMETRY = {"MESH", "CURVE", "SURFACE", "FONT"}
FLAT = 1e-5  # a box side this small next to its largest side counts as none (a plane)

Bounds = tuple[np.ndarray, np.ndarray]  # lowest and highest corner, shape (3,) each


@dataclass(frozen=True)
class Box:
    """A placeholder's box: its frame (rotation + location, unscaled) and its extent in that
    frame."""

    frame: Matrix  # 4x4 world matrix: the placeholder's world location and rotation, no scale
    low: Vector  # min corner, in `frame` coordinates (the placeholder's world scale included)
    high: Vector  # max corner


def placeholder_box(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> Box | None:
    """The box `obj` marks out in its own unscaled frame; None when it has no extent at all
    (a light, a camera, a single point). An empty measures its children's geometry, or its
    display cube when it has none."""
    evaluated = obj.evaluated_get(depsgraph)
    frame = _frame(evaluated.matrix_world)
    to_frame = frame.inverted()
    bounds = _bounds([evaluated], to_frame)
    if bounds is None:
        parts = [child.evaluated_get(depsgraph) for child in obj.children_recursive]
        bounds = _bounds(parts, to_frame)
    if bounds is None and obj.type == "EMPTY":
        bounds = _display_cube(evaluated, to_frame)
    if bounds is None or not np.any(bounds[1] - bounds[0] > 0):
        return None
    return Box(frame, Vector(bounds[0]), Vector(bounds[1]))


def _frame(matrix: Matrix) -> Matrix:
    """The placeholder's world location and rotation, scale left out, its local Z still up:
    a mirrored placeholder (a negative scale) gives a right-handed frame with its x axis
    turned round, never an upside-down one, as `decompose()` would."""
    basis = matrix.to_3x3()
    columns = [basis.col[i].copy() for i in range(3)]
    if min(c.length for c in columns) < 1e-12:  # an axis scaled to nothing: no direction
        location, rotation, _scale = matrix.decompose()
        return Matrix.Translation(location) @ rotation.to_matrix().to_4x4()
    x, _y, z = (c.normalized() for c in columns)
    if basis.determinant() < 0:
        x = -x
    x = (x - z * x.dot(z)).normalized()  # square to Z (a sheared parent), Z kept
    rotation = Matrix((x, z.cross(x), z)).transposed()  # the three axes as columns
    return Matrix.Translation(matrix.translation) @ rotation.to_4x4()


def fit(objects: list[bpy.types.Object], box: Box, pad: float = 0.0) -> float:
    """Stand the asset in `box`: turned by the box frame's rotation, scaled uniformly as large
    as fits (a flat side of the box is left out), base on the box's bottom, centred on x/y.
    `pad` widens the asset's extent on each side (half a voxel for instanced cubes). Only the
    roots move, so children follow. Returns the scale applied."""
    box_size = np.array(box.high - box.low)
    largest = float(box_size.max())
    if not largest > 0:
        raise ValueError("the placeholder box has no size on any axis")
    if not objects:
        return 1.0
    bpy.context.view_layer.update()  # importers leave matrix_world to the next evaluation
    low, high = _asset_bounds(objects, pad)
    size = high - low
    usable = (box_size > largest * FLAT) & (size > 0)
    scale = float(np.min(box_size[usable] / size[usable])) if usable.any() else 1.0
    base = Vector(((low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]))
    bottom = Vector(((box.low.x + box.high.x) / 2, (box.low.y + box.high.y) / 2, box.low.z))
    move = (
        box.frame @ Matrix.Translation(bottom) @ Matrix.Scale(scale, 4) @ Matrix.Translation(-base)
    )
    members = set(objects)
    for root in [obj for obj in objects if obj.parent not in members]:
        root.matrix_world = move @ root.matrix_world
    return scale


def _asset_bounds(objects: list[bpy.types.Object], pad: float) -> Bounds:
    """World-space extent of the asset's evaluated vertices (its origins when it has none),
    widened by `pad` on each side."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    bounds = _bounds([obj.evaluated_get(depsgraph) for obj in objects], Matrix.Identity(4))
    if bounds is None:
        origins = np.array([obj.matrix_world.translation for obj in objects])
        bounds = origins.min(axis=0), origins.max(axis=0)
    return bounds[0] - pad, bounds[1] + pad


def _bounds(evaluated: Iterable[bpy.types.Object], to_frame: Matrix) -> Bounds | None:
    """Extent of the objects' evaluated vertices in `to_frame` coordinates; None if none."""
    lows, highs = [], []
    for obj in evaluated:
        if obj.type not in GEOMETRY:
            continue
        local = _vertices(obj)
        if len(local):
            points = _transform(to_frame @ obj.matrix_world, local)
            lows.append(points.min(axis=0))
            highs.append(points.max(axis=0))
    if not lows:
        return None
    return np.min(lows, axis=0), np.max(highs, axis=0)


def _display_cube(empty: bpy.types.Object, to_frame: Matrix) -> Bounds:
    """An empty's extent: a cube of half-size `empty_display_size` around its origin, whatever
    it is drawn as."""
    size = empty.empty_display_size
    corners = np.array(list(itertools.product((-size, size), repeat=3)))
    points = _transform(to_frame @ empty.matrix_world, corners)
    return points.min(axis=0), points.max(axis=0)


def _vertices(evaluated: bpy.types.Object) -> np.ndarray:
    """An evaluated object's vertices in its own coordinates, shape (n, 3); curves, text and
    surfaces through the mesh they evaluate to."""
    if evaluated.type == "MESH":
        return _coordinates(evaluated.data)
    mesh = evaluated.to_mesh()
    try:
        return _coordinates(mesh) if mesh is not None else np.empty((0, 3))
    finally:
        evaluated.to_mesh_clear()


def _coordinates(mesh: bpy.types.Mesh) -> np.ndarray:
    flat = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", flat)
    return flat.reshape(-1, 3)


def _transform(matrix: Matrix, points: np.ndarray) -> np.ndarray:
    m = np.array(matrix, dtype=np.float64)
    return points @ m[:3, :3].T + m[:3, 3]
