"""Import a downloaded GLB with Blender's own glTF importer into the job's collection."""

from __future__ import annotations

from collections.abc import Sequence

import bpy
from mathutils import Vector


class GltfImportError(Exception):
    """The file could not be imported; the scene was left as it was."""


def import_glb(
    path: str, collection: bpy.types.Collection, location: Sequence[float]
) -> list[bpy.types.Object]:
    """Import `path`, move what it created into `collection` and its roots to `location`.

    New objects are found by difference, not selection: the importer's target collection and
    selection rules differ between Blender versions.
    """
    before = set(bpy.data.objects)
    try:
        result = bpy.ops.import_scene.gltf(filepath=path)
    except RuntimeError as exc:  # the importer reports bad files as operator errors
        _remove(set(bpy.data.objects) - before)
        raise GltfImportError(_first_line(str(exc))) from None
    created = [obj for obj in bpy.data.objects if obj not in before]
    if result != {"FINISHED"} or not created:
        _remove(set(created))
        raise GltfImportError("the glTF importer produced no objects")
    offset = Vector(location)
    for obj in created:
        for coll in list(obj.users_collection):
            coll.objects.unlink(obj)
        collection.objects.link(obj)
        if obj.parent is None:
            obj.location += offset
    return created


def _remove(objects: set[bpy.types.Object]) -> None:
    for obj in objects:
        bpy.data.objects.remove(obj, do_unlink=True)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown glTF import error"
