"""A finished job, or a file from disk, into the scene: one table from file kind to importer.

Main thread only. All or nothing: whatever fails (a hostile file, an importer's error, a
placement step), every data-block made since the start is removed and `ImportFailedError` says
why in one line. Downloads are named by what their bytes are (see the engine), so a file's
suffix is its kind.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import bpy
from mathutils import Vector

from . import placeholders
from .importers import archive, gltf, meshprep, obj, placement, scene, vox, voxfile
from .jobs.model import Job, VoxMesh
from .jobs.session import parent_task
from .providers import SERVICES
from .providers.base import is_url

# What a bad file may raise: its own words are the one line the user reads.
IMPORT_ERRORS = (
    archive.ArchiveError,
    zipfile.BadZipFile,
    gltf.GltfImportError,
    obj.ObjImportError,
    voxfile.VoxFormatError,
    OSError,
    ValueError,
)
GLTF_SUFFIXES = (".glb", ".gltf")


class ImportFailedError(Exception):
    """Nothing was left in the scene; str() is one line."""


@dataclass(frozen=True)
class Target:
    """Where and how one file is built."""

    name: str  # of the top object (a .vox's root empty)
    collection: bpy.types.Collection
    location: Vector
    folder: str  # the only folder the file may pull other files from
    unpack_to: str  # where a zipped glTF is extracted (ours to write)
    vox: vox.VoxOptions = field(default_factory=vox.VoxOptions)


@dataclass
class Built:
    objects: list[bpy.types.Object]
    warnings: list[str]
    pad: float = 0.0  # how far the visible shape reaches past the objects' points
    notes: tuple[str, ...] = ()  # what was done to it, for the job's one-line summary
    covers: tuple[bpy.types.Object, ...] = ()  # hidden once the import has succeeded


def _vox(path: str, target: Target) -> Built:
    options = target.vox
    result = vox.build(
        voxfile.read_file(path), target.name, target.collection, options, target.location
    )
    pad = 0.0 if options.merge else options.voxel_size / 2  # cubes drawn around each point
    return Built([result.root, *result.objects], [], pad)


def _gltf(path: str, target: Target) -> Built:
    made = gltf.import_gltf(path, target.collection, target.location, target.folder)
    return Built(made.objects, made.warnings)


def _obj(path: str, target: Target) -> Built:
    made = obj.import_obj(path, target.collection, target.location, target.folder)
    return Built(made.objects, made.warnings)


def _bundle(path: str, target: Target) -> Built:
    """A zip: OBJ + MTL + textures (Blender's OBJ importer, via mtl.prepare_obj), or a glTF
    with its files, extracted safely into the folder."""
    with zipfile.ZipFile(path) as bundle:
        names = [n.lower() for n in bundle.namelist()]
    if any(n.endswith(".obj") for n in names) or not any(n.endswith(GLTF_SUFFIXES) for n in names):
        return _obj(path, target)
    files = archive.extract_zip(path, os.path.join(target.unpack_to, "model-files"))
    model = next(f for f in sorted(files) if f.lower().endswith(GLTF_SUFFIXES))
    return _gltf(model, replace(target, folder=target.unpack_to))


IMPORTERS: dict[str, Callable[[str, Target], Built]] = {
    ".vox": _vox,
    ".glb": _gltf,
    ".gltf": _gltf,
    ".obj": _obj,
    ".zip": _bundle,
}

Arrange = Callable[[Built, Target], Built]


def build(
    context: bpy.types.Context,
    path: str,
    names: tuple[str, str],
    folders: tuple[str, str],
    options: vox.VoxOptions | None = None,
    arrange: Arrange | None = None,
) -> tuple[Built, bpy.types.Collection]:
    """`path` into a new collection at the 3D cursor, then `arrange`d; all or nothing.
    `names`: the top object's and the collection's; `folders`: see `Target`."""
    importer = IMPORTERS.get(os.path.splitext(path)[1].lower())
    if importer is None:
        kind = os.path.splitext(path)[1] or "this file"
        raise ImportFailedError(f"cannot import {kind}: use {', '.join(IMPORTERS)}")
    location = context.scene.cursor.location.copy()
    before = scene.snapshot()
    with scene.all_or_nothing(before, None, ImportFailedError, "asset", IMPORT_ERRORS):
        # Linked into the scene only once it is filled: a scene change before an importer's
        # operator makes Blender rebuild its dependency graph once more (~25 ms each at 200
        # imported assets), and the importer must be followed by one anyway.
        collection = bpy.data.collections.new(names[1])
        target = Target(names[0], collection, location, *folders, options or vox.VoxOptions())
        built = importer(path, target)
        scene.link_under_active(context, collection)
        if arrange is not None:
            built = arrange(built, target)
    return built, collection


def import_file(context: bpy.types.Context, path: str, unpack_to: str) -> list[bpy.types.Object]:
    """A file from disk (`conjure import FILE`, `api.import_file`): a collection named after
    it at the 3D cursor. It may use files beside it; a zipped glTF unpacks into `unpack_to`."""
    name = os.path.splitext(os.path.basename(path))[0]
    folders = (os.path.dirname(path), os.path.join(unpack_to, name))
    built, _collection = build(context, path, (name, name), folders)
    return built.objects


@dataclass
class Landed:
    """What a job's import made: the objects' (or the image's) names, one-line warnings."""

    names: tuple[str, ...]
    warnings: list[str]
    summary: str


def import_job(context: bpy.types.Context, job: Job, folder: str) -> Landed:
    """A downloaded job into a new collection at the 3D cursor, placed as its plan says,
    with provenance, selected; a text→image result becomes an image kept in the file."""
    picture = next((f for f in job.files if os.path.basename(f).startswith("image.")), "")
    before = scene.snapshot()
    with scene.all_or_nothing(before, None, ImportFailedError, "asset", IMPORT_ERRORS):
        if picture:
            image = _load_image(picture, f"Conjure {job.label}")
            _tag(job, [image])
            return Landed((image.name,), [], f"Image {image.name}")
        built, collection = build(
            context,
            _model_file(job.files),
            (job.label, f"Conjure {job.label}"),
            (folder, folder),
            _vox_options(job),
            lambda built, target: _arrange(job, built, target),
        )
        _tag(job, [collection, *built.objects])
        roots = [o for o in built.objects if o.parent is None]
        scene.select_only(context, built.objects, roots[0] if roots else built.objects[0])
        for covered in built.covers:  # last: a failure before leaves them as they were
            placeholders.hide(covered)
    names = tuple(o.name for o in built.objects)
    summary = "; ".join((f"Imported {len(names)} object(s)", *built.notes))
    return Landed(names, built.warnings, summary)


def _model_file(files: Iterable[str]) -> str:
    for path in files:
        is_model = os.path.basename(path).startswith("model")  # named by role, see the engine
        if is_model and path.endswith(tuple(IMPORTERS)) and os.path.isfile(path):
            return path
    raise ImportFailedError("the service returned no model file this add-on can import")


def _vox_options(job: Job) -> vox.VoxOptions:
    """Instanced cubes, or a mesh, as the job's import choice says."""
    mesh = job.plan.vox_mesh
    return vox.VoxOptions(
        merge=mesh != VoxMesh.INSTANCES,
        greedy=mesh in (VoxMesh.GREEDY, VoxMesh.WATERTIGHT),
        watertight=mesh == VoxMesh.WATERTIGHT,
    )


def _arrange(job: Job, built: Built, target: Target) -> Built:
    """What the job's plan asks for (the sidebar's choices; scripts get the importer's own):
    the mesh clean-up, then the place: a placeholder's box, or bottom centre on the cursor,
    a height, a compare slot with a label; an asset."""
    built = _clean_up(job, built, target.collection)
    plan, objects, warnings = job.plan, built.objects, list(built.warnings)
    offset = (plan.compare_slot - (plan.compare_count - 1) / 2) * plan.compare_spacing
    spot = target.location + Vector((offset, 0.0, 0.0))
    holder, problem = placeholders.find(plan) if plan.placeholder else (None, "")
    if holder is not None:
        problem = placeholders.fit_into(holder, objects, target.collection, built.pad)
        holder = None if problem else holder
    if problem:
        warnings.append(f"{problem}: placed at the 3D cursor")
    placed = plan.origin_bottom or plan.target_height > 0 or plan.compare_count > 1
    if holder is None and placed:  # (else fitted into its placeholder, or as imported)
        where = placement.Placement(spot, plan.origin_bottom, plan.target_height, built.pad)
        objects = placement.place(objects, target.collection, where)
    name = SERVICES[job.provider].name
    if plan.compare_count > 1:
        front = spot + Vector((0.0, -0.35 * plan.compare_spacing, 0.0))
        label = placement.add_label(target.collection, name, front, 0.12 * plan.compare_spacing)
        objects = [*objects, label]
    if plan.mark_asset:
        warnings += placement.mark_asset(
            target.collection, service=name, prompt=job.prompt, preview=preview_file(job)
        )
    covers = placeholders.covered_by(holder, [target.collection, *objects]) if holder else ()
    return Built(objects, warnings, built.pad, built.notes, tuple(covers))


def _clean_up(job: Job, built: Built, collection: bpy.types.Collection) -> Built:
    """The plan's mesh options (a face budget, LODs, merge, smooth, applied transforms);
    a budget the service met itself (its own face limit) is said so."""
    plan = job.plan
    prep = meshprep.MeshPrep(
        plan.max_faces, plan.lods, plan.merge_distance, plan.smooth_angle, plan.apply_transforms
    )
    if not prep.active:
        return built
    came = meshprep.face_count(built.objects)
    done = meshprep.prepare(built.objects, collection, prep)
    info = SERVICES[job.provider]
    notes = [done.summary] if done.summary else []
    asked = plan.max_faces and job.options.get(info.face_limit_option) == plan.max_faces
    if asked and came <= plan.max_faces:  # the service kept the budget: Decimate had no work
        notes.insert(0, f"{came:,} faces by {info.name}'s {info.face_limit_option}")
    return Built(done.objects, [*built.warnings, *done.warnings], built.pad, (*built.notes, *notes))


def thumbnail(job: Job) -> str:
    return next((f for f in job.files if os.path.basename(f).startswith("thumbnail")), "")


def preview_file(job: Job) -> str:
    """The picture that best shows a job's result: the service's thumbnail, else the image
    it was made from (a picked candidate, or the user's own), else ''."""
    images = [p for p in job.image_paths if not is_url(p)]
    for path in (thumbnail(job), job.picked_path, *images[:1]):
        if path and os.path.isfile(path):
            return path
    return ""


def _tag(job: Job, targets: Sequence[bpy.types.ID]) -> None:
    """Custom properties on what a job made: where it came from, never a secret."""
    tags = {
        "conjure_provider": job.provider,
        "conjure_task_id": job.task_id or "",
        "conjure_job_id": job.job_id,
        "conjure_prompt": job.prompt,
    }
    parent = parent_task(job)  # its own earlier stage, or what it refines
    if parent:
        tags["conjure_parent_task_id"] = parent
    for target in targets:
        for key, value in tags.items():
            target[key] = value


def _load_image(path: str, name: str) -> bpy.types.Image:
    """Packed, so the .blend keeps it after the job folder is pruned; kept even if unused."""
    image = bpy.data.images.load(path, check_existing=False)
    image.name = name
    image.pack()
    image.use_fake_user = True
    image.preview_ensure()
    return image
