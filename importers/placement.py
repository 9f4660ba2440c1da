"""Where an imported asset ends up: on the 3D cursor, origin at its bottom centre, a chosen
height, side by side when comparing services, and optionally an asset in the Asset Browser.

Applied after an importer has made the objects and before the import is committed, so a
failure here rolls back like any other import failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix, Vector

CATALOG_NAMESPACE = uuid.UUID("6f1c1a52-3c39-4c55-9a8e-1d1b8f9f3c01")  # Conjure's catalogs
CATALOG_FILE = "blender_assets.cats.txt"
PREVIEW_SIZE = 256


@dataclass(frozen=True)
class Placement:
    target: Vector  # where the bottom centre goes (the 3D cursor, plus a compare offset)
    origin_bottom: bool = False  # move the origin there (else the importer's origin stays)
    height: float = 0.0  # scale to this height; 0 keeps the service's size
    pad: float = 0.0  # half a voxel: instanced cubes reach past their points' bounds


def world_bounds(objects: Sequence[bpy.types.Object], pad: float) -> tuple[Vector, Vector]:
    """Lowest and highest corner of the objects' bounding boxes, in world space."""
    corners = [
        obj.matrix_world @ Vector(corner)
        for obj in objects
        if obj.type in {"MESH", "CURVE", "SURFACE", "META", "FONT", "POINTCLOUD"}
        for corner in obj.bound_box
    ]
    if not corners:
        origin = objects[0].matrix_world.translation if objects else Vector()
        return origin.copy(), origin.copy()
    low = Vector(min(c[i] for c in corners) - pad for i in range(3))
    high = Vector(max(c[i] for c in corners) + pad for i in range(3))
    return low, high


def place(
    objects: list[bpy.types.Object], collection: bpy.types.Collection, placement: Placement
) -> list[bpy.types.Object]:
    """Move (and scale) the asset onto `placement.target`; returns `objects`, plus the empty
    that became the asset's origin when it had several top-level objects."""
    if not objects:
        return objects
    bpy.context.view_layer.update()  # importers leave matrix_world to the next evaluation
    low, high = world_bounds(objects, placement.pad)
    size = high.z - low.z
    scale = placement.height / size if placement.height > 0 and size > 1e-9 else 1.0
    bottom = Vector(((low.x + high.x) / 2, (low.y + high.y) / 2, low.z))
    move = (
        Matrix.Translation(placement.target) @ Matrix.Scale(scale, 4) @ Matrix.Translation(-bottom)
    )
    members = set(objects)
    roots = [o for o in objects if o.parent not in members]
    for root in roots:
        root.matrix_world = move @ root.matrix_world
    if placement.origin_bottom:
        bpy.context.view_layer.update()
        objects = _origin_to(roots, objects, collection, placement.target)
    return objects


def _origin_to(roots, objects, collection, point: Vector) -> list[bpy.types.Object]:
    """Make `point` the asset's origin: the one root's own, or a new empty's above them all."""
    root = roots[0] if len(roots) == 1 else None
    if root is not None and root.type == "MESH" and not root.children and root.data.users == 1:
        local = root.matrix_world.inverted() @ point
        root.data.transform(Matrix.Translation(-local))
        root.matrix_world = root.matrix_world @ Matrix.Translation(local)
        return objects
    if root is not None and root.type == "EMPTY":
        shift = Matrix.Translation(root.matrix_world.inverted() @ point)
        root.matrix_world = root.matrix_world @ shift
        for child in root.children:  # children stay where they are
            child.matrix_parent_inverse = shift.inverted() @ child.matrix_parent_inverse
        return objects
    origin = bpy.data.objects.new(collection.name, None)
    origin.empty_display_type = "PLAIN_AXES"
    collection.objects.link(origin)
    origin.matrix_world = Matrix.Translation(point)
    for top in roots:
        top.parent = origin
        top.matrix_parent_inverse = origin.matrix_world.inverted()
    return [origin, *objects]


def add_label(collection: bpy.types.Collection, text: str, at: Vector, size: float):
    """A text object naming a compared result, lying in front of it."""
    curve = bpy.data.curves.new(f"{text} Label", "FONT")
    curve.body = text
    curve.size = size
    curve.align_x = "CENTER"
    label = bpy.data.objects.new(curve.name, curve)
    collection.objects.link(label)
    label.location = at
    return label


def catalog_id(service: str) -> str:
    """The same catalog for a service in every file: Conjure/<service>."""
    return str(uuid.uuid5(CATALOG_NAMESPACE, f"conjure/{service}"))


def mark_asset(
    collection: bpy.types.Collection,
    *,
    service: str,
    prompt: str,
    preview: str,
) -> list[str]:
    """The collection becomes an asset: prompt as description, service as author and tag,
    filed under Conjure/<service>, with `preview` (an image file) as its thumbnail. Returns
    warnings (a preview that cannot be read is left out, the asset stays)."""
    collection.asset_mark()
    data = collection.asset_data
    data.description = prompt
    data.author = f"Conjure · {service}"
    for tag in ("Conjure", service):
        if tag not in data.tags:
            data.tags.new(tag)
    data.catalog_id = catalog_id(service)
    warnings = []
    try:
        _declare_catalog(service)
    except OSError as exc:
        warnings.append(f"catalog Conjure/{service} not written beside the file: {exc}")
    if preview:
        try:
            _set_preview(collection, preview)
        except RuntimeError:
            warnings.append("asset preview left out: the image could not be read")
    return warnings


def _declare_catalog(service: str) -> None:
    """Name the catalog in the catalog file beside a saved .blend (where Blender looks for the
    current file's catalogs); an unsaved file keeps the catalog id alone."""
    if not bpy.data.filepath:
        return
    path = os.path.join(os.path.dirname(bpy.data.filepath), CATALOG_FILE)
    line = f"{catalog_id(service)}:Conjure/{service}:Conjure-{service}"
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    if catalog_id(service) in text:
        return
    if not text:
        text = "# Asset catalogs; Conjure adds one per service.\n\nVERSION 1\n\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.rstrip("\n") + "\n" + line + "\n")


def _set_preview(target: bpy.types.ID, path: str) -> None:
    """The image at `path`, scaled to a preview, as `target`'s thumbnail (no image kept)."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
        if width == 0 or height == 0:
            return
        image.scale(PREVIEW_SIZE, PREVIEW_SIZE)
        pixels = np.empty(PREVIEW_SIZE * PREVIEW_SIZE * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        preview = target.preview_ensure()
        preview.image_size = (PREVIEW_SIZE, PREVIEW_SIZE)
        preview.image_pixels_float.foreach_set(pixels)
    finally:
        bpy.data.images.remove(image)
