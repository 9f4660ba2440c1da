"""Import a downloaded OBJ (+ MTL + textures) with Blender's own importer into a collection.

Before Blender reads anything, mtl.prepare_obj makes the job folder safe and complete: zips
(a texture bundle, a zipped model) extracted with archive.extract_zip, the OBJ's `mtllib`
pointed at material files that really are in the job folder (the engine names downloads by
their bytes, `material.mtl`, so the OBJ's own `mtllib cube.mtl` often names nothing), each
MTL's texture paths confined to the job folder (the `<obj name>.mtl` Blender reads beside the
OBJ, named or not, included). After the import every image the new materials use is checked
to lie inside `allowed_root` and to decode, then packed, so the .blend never depends on the
job folder. All or nothing: a failure removes every data-block the import made
(scene.snapshot/rollback) and raises a one-line ObjImportError.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import bpy

from . import archive, mtl
from .gltf import ImportResult
from .scene import Snapshot, all_or_nothing, created, move_into, one_line, remove, snapshot

# Arguments that exist with the same meaning on 4.2, 4.5, 5.0 and 5.2, passed explicitly so
# the result never depends on a default that may change. OBJ is Y-up, -Z forward.
_OPTIONS = {
    "forward_axis": "NEGATIVE_Z",
    "up_axis": "Y",
    "global_scale": 1.0,
    "clamp_size": 0.0,
    "use_split_objects": True,
    "use_split_groups": False,
    "import_vertex_groups": False,
    "validate_meshes": True,  # a served file may index vertices that do not exist
}


class ObjImportError(Exception):
    """The OBJ could not be imported; the scene was left as it was. One line."""


def import_obj(
    path: str,
    collection: bpy.types.Collection,
    location: Sequence[float],
    allowed_root: str,
) -> ImportResult:
    """Import `path` (an .obj, or a zip holding one) into `collection`, offset by `location`.

    Its MTL and textures are looked for in the OBJ's job folder (the folder of `path`) and
    must lie inside `allowed_root`; what had to be left out comes back as warnings.
    """
    root = os.path.realpath(allowed_root)
    try:
        model, warnings = mtl.prepare_obj(path, root)
    except (archive.ArchiveError, mtl.MtlError) as exc:
        raise ObjImportError(one_line(str(exc), "unknown OBJ import error")) from None
    except OSError as exc:
        raise ObjImportError(f"cannot prepare {os.path.basename(path)}: {exc.strerror}") from None
    before = snapshot()
    with all_or_nothing(before, collection, ObjImportError, "OBJ"):
        _run_importer(model)
        objects = created(before, "objects")
        if not objects:
            raise ObjImportError("the OBJ file holds no objects")
        if not any(isinstance(o.data, bpy.types.Mesh) and o.data.vertices for o in objects):
            raise ObjImportError("the OBJ file holds no geometry")
        move_into(objects, collection, location)
        warnings += _settle_images(before, root)
        for kind in ("collections", "scenes"):  # none expected; never leave one behind
            remove(kind, [b for b in created(before, kind) if b != collection])
    return ImportResult(objects, list(dict.fromkeys(warnings)))


# ------------------------------------------------------------------------------ Blender


def _run_importer(path: str) -> None:
    try:
        result = bpy.ops.wm.obj_import(filepath=path, **_OPTIONS)
    except RuntimeError as exc:  # the importer reports bad files as operator errors
        raise ObjImportError(one_line(str(exc), "unknown OBJ import error")) from None
    if result != {"FINISHED"}:
        raise ObjImportError(f"the OBJ importer stopped ({', '.join(sorted(result))})")


def _settle_images(before: Snapshot, root: str) -> list[str]:
    """Keep only readable images from inside `root`, packed; the rest is left out, named."""
    made = {image.session_uid for image in created(before, "images")}
    used: dict[int, bpy.types.Image] = {i.session_uid: i for i in created(before, "images")}
    for material in created(before, "materials"):
        tree = material.node_tree
        for node in tree.nodes if tree is not None else ():
            if node.type == "TEX_IMAGE" and node.image is not None:
                used.setdefault(node.image.session_uid, node.image)
    warnings: list[str] = []
    for image in used.values():
        if image.packed_file is not None and image.session_uid not in made:
            continue  # an earlier import's, already checked and packed
        reason = _image_problem(image, root)
        if reason is None:
            # The checked path, spelled plainly (the importer writes `<mtl dir>/../x.png`);
            # packed, so the .blend keeps the pixels once the job folder is cleaned up.
            image.filepath = os.path.realpath(bpy.path.abspath(image.filepath))
            image.pack()
            continue
        warnings.append(f"texture {os.path.basename(image.filepath)!r} {reason}; left out")
        if image.session_uid in made:
            bpy.data.images.remove(image)
        else:  # someone else's image that happens to share the path: only unhook ours
            _unhook(image, created(before, "materials"))
    return warnings


def _image_problem(image: bpy.types.Image, root: str) -> str | None:
    if image.source != "FILE" or not image.filepath:
        return "is not a file"  # e.g. Blender's placeholder for a missing file
    path = os.path.realpath(bpy.path.abspath(image.filepath, library=image.library))
    if not _inside(path, root):
        return "is outside the job folder"
    if not os.path.isfile(path):
        return "is missing"
    if image.size[0] == 0 or image.size[1] == 0:  # reading the size loads the file
        return "could not be read as an image"
    return None


def _unhook(image: bpy.types.Image, materials: list[bpy.types.Material]) -> None:
    for material in materials:
        tree = material.node_tree
        for node in tree.nodes if tree is not None else ():
            if node.type == "TEX_IMAGE" and node.image == image:
                node.image = None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
