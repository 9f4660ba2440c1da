"""Import a downloaded glTF/GLB with Blender's own importer into the job's collection.

The file is first confined to the job folder (gltfcheck), so a served file cannot pull other
local files into the scene. The import is all or nothing: every data-block the importer made
is found by difference against a snapshot taken just before it, and on any failure all of
them are removed again, so a failed job never leaves meshes, materials or images behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import bpy

from . import gltfcheck
from .scene import Snapshot, all_or_nothing, created, move_into, one_line, remove, snapshot

# The importer's own helper collection for bone shapes; never exported, never wanted here.
_NOT_EXPORTED = "glTF_not_exported"

# Options that exist (same meaning) on every supported Blender, 4.2 to 5.2. Passed explicitly
# so the result never depends on a default. `disable_bone_shape`: no Icosphere custom shape
# and no `glTF_not_exported` collection; bones show as plain octahedral bones.
# `import_pack_images`: textures are packed into the .blend, which so never refers to the job
# folder (it may be cleaned up later).
_OPTIONS = {"disable_bone_shape": True, "import_pack_images": True}
# The importer's logger (the same on 4.2 to 5.2): it logs three INFO progress lines per file
# to stdout, which a 200-row batch would print 600 times over. Its warnings still show.
_IMPORTER_LOG = "glTFImporter"


class GltfImportError(Exception):
    """The file could not be imported; the scene was left as it was. One line."""


@dataclass
class ImportResult:
    """What an import made, and what it had to leave out (one line each, for the user)."""

    objects: list[bpy.types.Object]
    warnings: list[str]  # what was left out, e.g. textures outside the job folder


def import_gltf(
    path: str,
    collection: bpy.types.Collection,
    location: Sequence[float],
    allowed_root: str,
) -> ImportResult:
    """Import `path` (may reference only files under `allowed_root`) into `collection`.

    Every new object (of all the file's glTF scenes, as 4.2 imports them) is moved into
    `collection` (owned by the caller, never removed here) and its root offset by `location`;
    collections and scenes the importer made for them are removed. New data-blocks are found
    by difference, not selection: the importer's target collection and selection rules
    differ between Blender versions. Raises GltfImportError (one line) with nothing left.
    """
    try:
        model, warnings = gltfcheck.confine(path, allowed_root)
    except (gltfcheck.GltfCheckError, OSError) as exc:
        raise GltfImportError(one_line(str(exc), "unknown glTF import error")) from None
    before = snapshot()
    with all_or_nothing(before, collection, GltfImportError, "glTF"):
        _run_importer(model)
        _drop_leftovers(before)
        objects = created(before, "objects")
        if not objects:
            raise GltfImportError("the glTF importer produced no objects")
        move_into(objects, collection, location)
        for kind in ("collections", "scenes"):  # the importer's own, empty by now
            remove(kind, created(before, kind))
    return ImportResult(objects, warnings)


def _run_importer(path: str) -> None:
    log = logging.getLogger(_IMPORTER_LOG)
    log.addFilter(_not_progress)  # only while Conjure imports: the user's own imports still log
    try:
        result = bpy.ops.import_scene.gltf(filepath=path, **_OPTIONS)
    except RuntimeError as exc:  # the importer reports bad files as operator errors
        raise GltfImportError(one_line(str(exc), "unknown glTF import error")) from None
    finally:
        log.removeFilter(_not_progress)
    if result != {"FINISHED"}:
        raise GltfImportError(f"the glTF importer stopped ({', '.join(sorted(result))})")


def _not_progress(record: logging.LogRecord) -> bool:
    return record.levelno != logging.INFO


def _drop_leftovers(before: Snapshot) -> None:
    """Remove a bone-shape collection and its objects should the importer still make them."""
    helper = bpy.data.collections.get(_NOT_EXPORTED)
    if helper is None or helper.session_uid in before["collections"]:
        return
    made = {obj.session_uid for obj in created(before, "objects")}
    shapes = [obj for obj in helper.objects if obj.session_uid in made]
    meshes = [obj.data for obj in shapes if isinstance(obj.data, bpy.types.Mesh)]
    remove("objects", shapes)  # pose bones using them as custom shapes show plain bones
    remove("meshes", [mesh for mesh in meshes if mesh.users == 0])
    bpy.data.collections.remove(helper)
