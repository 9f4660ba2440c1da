"""Mesh clean-up for a just-imported result: rotation and scale applied, close vertices
merged, a face budget met with Blender's Decimate, smooth shading by angle, and LODs.

Runs after an importer made the objects and before the import is committed, so an error
here rolls back like any other import failure. No operators: the data API behaves the same
in the UI, in `blender -b` and in the `bpy` module, and needs no selection (Decimate runs on
a scratch object in the scene, evaluated through the depsgraph).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import bmesh
import bpy
from mathutils import Matrix

MAX_LODS = 6
FILL = 0.95  # a met budget is filled to at least this share
LOD_SPREAD = 0.1  # each LOD has half the faces of the one before, give or take this share
MIN_HALVABLE = 8  # fewer faces than this: a LOD level is a plain copy
MIN_PART = 12  # the budget never shrinks a part below this (a box keeps its faces)
SEARCH_STEPS = 12  # Decimate evaluations allowed to find a ratio
NAME_BYTES = 58  # Blender's 63-byte names, less "_LOD9"

Groups = dict[bpy.types.Mesh, list[bpy.types.Object]]


@dataclass(frozen=True)
class MeshPrep:
    max_faces: int = 0  # 0: no budget; else all meshes together have at most this many faces
    lods: int = 0  # 0: none; K in 1..6: levels <name>_LOD0..<name>_LOD{K-1}
    merge_distance: float = 0.0  # 0: off; merge vertices closer than this (local space)
    smooth_angle: float = 0.0  # 0: off; shade smooth, edges sharper than this (degrees) sharp
    apply_transforms: bool = False  # bake rotation and scale into the mesh (location kept)

    def __post_init__(self) -> None:
        if self.max_faces < 0:
            raise ValueError(f"Face budget must be 0 or more, not {self.max_faces}")
        if not 0 <= self.lods <= MAX_LODS:
            raise ValueError(f"LOD levels must be 0 to {MAX_LODS}, not {self.lods}")
        if not self.merge_distance >= 0:  # NaN too
            raise ValueError(f"Merge distance must be 0 or more, not {self.merge_distance}")
        if not 0 <= self.smooth_angle <= 180:
            raise ValueError(f"Smooth angle must be 0 to 180 degrees, not {self.smooth_angle}")

    @property
    def active(self) -> bool:
        """Anything to do."""
        return bool(
            self.max_faces
            or self.lods
            or self.merge_distance
            or self.smooth_angle
            or self.apply_transforms
        )


@dataclass
class Prepared:
    objects: list[bpy.types.Object]  # the objects now: the input ones, then the LOD copies
    warnings: list[str] = field(default_factory=list)  # one line each
    summary: str = ""  # e.g. "98,304 → 4,996 faces (Decimate), 3 LODs"; '' if nothing done


def face_count(objects: Iterable[bpy.types.Object]) -> int:
    """Polygons of the mesh objects among `objects` (a linked duplicate counts again)."""
    return sum(len(obj.data.polygons) for obj in objects if obj.type == "MESH")


def prepare(
    objects: list[bpy.types.Object], collection: bpy.types.Collection, prep: MeshPrep
) -> Prepared:
    """Apply `prep` to the mesh objects among `objects`; other objects pass through. A mesh
    shared by several of them is processed once; one without faces is left as it is.
    Blender refusing a step raises ValueError (one line)."""
    objects = list(dict.fromkeys(objects))
    done = Prepared(objects)
    if not prep.active:
        return done
    try:
        groups = _groups(objects)
        bare = [users[0].name for mesh, users in groups.items() if not mesh.polygons]
        if bare:
            more = f" and {len(bare) - 3} more" if len(bare) > 3 else ""
            done.warnings.append(f"left as imported, no faces: {', '.join(bare[:3])}{more}")
        groups = _own({mesh: users for mesh, users in groups.items() if mesh.polygons})
        steps = _run(groups, collection, prep, done) if groups else []
    except (RuntimeError, ReferenceError) as exc:
        detail = str(exc).strip().splitlines()
        why = detail[0] if detail else type(exc).__name__
        raise ValueError(f"Mesh clean-up failed: {why}") from exc
    done.summary = ", ".join(steps)
    return done


def _run(
    groups: Groups, collection: bpy.types.Collection, prep: MeshPrep, done: Prepared
) -> list[str]:
    """The steps in their order; returns what each did, for the summary."""
    steps = []
    if prep.apply_transforms:
        groups = _apply_rotation_scale(groups)
        steps.append("rotation and scale applied")
    if prep.merge_distance:
        merged = sum(_merge(mesh, prep.merge_distance) for mesh in groups)
        steps.append(f"{merged:,} vertices merged")
    if prep.max_faces:
        before = _weighted_faces(groups)
        if before > prep.max_faces:
            groups = _budget(groups, prep.max_faces, done.warnings)
            steps.append(f"{before:,} → {_weighted_faces(groups):,} faces (Decimate)")
    if prep.smooth_angle:
        if "set_sharp_from_angle" in bpy.types.Mesh.bl_rna.functions:  # 4.1+
            for mesh in groups:
                _smooth(mesh, math.radians(prep.smooth_angle))
            steps.append(f"smooth by angle {prep.smooth_angle:g}°")
        else:
            done.warnings.append("smooth by angle needs Blender 4.1 or later: shading kept")
    if prep.lods:
        done.objects += _lods(groups, prep.lods, collection, done.warnings)
        steps.append(f"{prep.lods} LODs")
    return steps


def _groups(objects: Iterable[bpy.types.Object]) -> Groups:
    """Each mesh with the objects using it, in the objects' order."""
    groups: Groups = {}
    for obj in objects:
        if obj.type == "MESH" and obj.data is not None:
            groups.setdefault(obj.data, []).append(obj)
    return groups


def _own(groups: Groups) -> Groups:
    """A mesh also used outside `groups` (elsewhere in the file) is copied first: the changes
    below edit meshes in place."""
    owned: Groups = {}
    for mesh, users in groups.items():
        if mesh.users > len(users):
            mesh = mesh.copy()
            for obj in users:
                obj.data = mesh
        owned[mesh] = users
    return owned


def _weighted_faces(groups: Groups) -> int:
    return sum(len(mesh.polygons) * len(users) for mesh, users in groups.items())


def _apply_rotation_scale(groups: Groups) -> Groups:
    """Ctrl+A Rotation & Scale: each object's rotation and scale go into its mesh, children
    keep their world placement. Linked duplicates turned differently get a mesh each."""
    applied: Groups = {}
    for mesh, users in groups.items():
        alike: dict[tuple[float, ...], list[bpy.types.Object]] = {}
        for obj in users:
            key = tuple(round(v, 6) for row in obj.matrix_basis.to_3x3() for v in row)
            alike.setdefault(key, []).append(obj)
        for index, same in enumerate(alike.values()):
            data = mesh if index == 0 else mesh.copy()
            linear = same[0].matrix_basis.to_3x3().to_4x4()
            data.transform(linear, shape_keys=True)
            if linear.determinant() < 0:  # a mirror turns faces inside out
                data.flip_normals()
            for obj in same:
                obj.data = data
                obj.matrix_basis = Matrix.Translation(obj.matrix_basis.translation)
                for child in obj.children:
                    if child.parent_type == "OBJECT":
                        child.matrix_parent_inverse = linear @ child.matrix_parent_inverse
            applied[data] = same
    return applied


def _merge(mesh: bpy.types.Mesh, distance: float) -> int:
    """Merge vertices closer than `distance` (UVs and materials stay); how many went."""
    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        before = len(bm.verts)
        bmesh.ops.remove_doubles(bm, verts=bm.verts[:], dist=distance)
        merged = before - len(bm.verts)
        if merged:
            bm.to_mesh(mesh)
    finally:
        bm.free()
    return merged


def _budget(groups: Groups, max_faces: int, warnings: list[str]) -> Groups:
    """Decimate so that all meshes together have at most `max_faces` faces (at least 95 % of
    it), shared by face count. Smallest first: whatever one mesh cannot use or give back
    is passed on to the bigger ones."""
    order = sorted(groups.items(), key=lambda item: len(item[0].polygons) * len(item[1]))
    left_budget, left_faces = max_faces, _weighted_faces(groups)
    budgeted: Groups = {}
    for mesh, users in order:
        faces, copies = len(mesh.polygons), len(users)
        share = left_budget * faces * copies / left_faces
        left_faces -= faces * copies
        target = max(int(share) // copies, min(faces, MIN_PART))
        data = mesh
        if faces > target:
            if mesh.shape_keys is not None:
                warnings.append(f"{users[0].name}: shape keys dropped by the decimation")
            data = _decimate(mesh, math.ceil(FILL * target), target)
            _replace(mesh, data, users)
        left_budget -= len(data.polygons) * copies
        budgeted[data] = users
    if left_budget < 0:
        total = _weighted_faces(budgeted)
        warnings.append(f"face budget {max_faces:,} not met: {total:,} faces, in parts too small")
    return budgeted


def _decimate(mesh: bpy.types.Mesh, low: int, high: int) -> bpy.types.Mesh:
    """A new mesh: `mesh` through a Decimate (Collapse) modifier, with `low` to `high` faces,
    or the most under `high` that Blender's collapse reaches. The ratio counts triangles and
    some of them join back into quads, so it is searched for, on a throwaway object."""
    probe = bpy.data.objects.new("Conjure Decimate", mesh)
    bpy.context.scene.collection.objects.link(probe)
    try:
        modifier = probe.modifiers.new("Decimate", "DECIMATE")
        modifier.decimate_type = "COLLAPSE"
        depsgraph = bpy.context.evaluated_depsgraph_get()

        def faces_at(ratio: float) -> int:
            modifier.ratio = ratio
            depsgraph.update()
            return len(probe.evaluated_get(depsgraph).data.polygons)

        ratio = _search(faces_at, mesh, low, high)
        if not math.isclose(modifier.ratio, ratio, rel_tol=1e-6):  # not the last one tried
            faces_at(ratio)
        return bpy.data.meshes.new_from_object(probe.evaluated_get(depsgraph))
    finally:
        bpy.data.objects.remove(probe)


def _search(faces_at: Callable[[float], int], mesh: bpy.types.Mesh, low: int, high: int) -> float:
    """The ratio giving `low`..`high` faces (else the most under `high`, else the fewest):
    interpolation between the nearest ratios tried, bisection once that is slow."""
    goal = (low + high) / 2
    triangles = len(mesh.loops) - 2 * len(mesh.polygons)
    below, above = (0.0, 0), (1.0, len(mesh.polygons))
    ratio = min(goal / max(triangles, 1), 1.0)
    best_under: tuple[int, float] | None = None
    fewest = (above[1], 1.0)
    for step in range(SEARCH_STEPS):
        faces = faces_at(ratio)
        fewest = min(fewest, (faces, ratio))
        if faces <= high and (best_under is None or faces > best_under[0]):
            best_under = (faces, ratio)
        if low <= faces <= high:
            break
        if faces > high:
            above = (ratio, faces)
        else:
            below = (ratio, faces)
        width = above[0] - below[0]
        if step >= SEARCH_STEPS // 2 or above[1] <= below[1]:
            ratio = below[0] + width / 2
            continue
        if above[0] == 1.0 and faces < low:  # nothing tried above yet: scale this one
            ratio = min(ratio * goal / max(faces, 1), 1.0)
            continue
        guess = below[0] + (goal - below[1]) / (above[1] - below[1]) * width
        ratio = min(max(guess, below[0] + 0.02 * width), above[0] - 0.02 * width)
    return (best_under or fewest)[1]


def _replace(old: bpy.types.Mesh, new: bpy.types.Mesh, users: list[bpy.types.Object]) -> None:
    """`new` takes `old`'s place (and name). Object-linked material slots stay on the
    objects: the slot count is unchanged."""
    name = old.name
    for obj in users:
        obj.data = new
    if old.users == 0:
        bpy.data.meshes.remove(old)
        new.name = name


def _smooth(mesh: bpy.types.Mesh, angle: float) -> None:
    """Faces smooth, edges sharper than `angle` (radians) sharp. Custom normals from the file
    go: they would decide the shading instead."""
    custom = mesh.attributes.get("custom_normal")  # 4.5+: an attribute
    if custom is not None:
        mesh.attributes.remove(custom)
    elif mesh.has_custom_normals:  # 4.2: zero vectors mean "Blender's own normal"
        mesh.normals_split_custom_set([(0.0, 0.0, 0.0)] * len(mesh.loops))
    mesh.shade_smooth()
    mesh.set_sharp_from_angle(angle=angle)  # reads custom normals: so after they went


def _lods(
    groups: Groups, levels: int, collection: bpy.types.Collection, warnings: list[str]
) -> list[bpy.types.Object]:
    """Each object becomes <name>_LOD0; LOD1.. are sibling copies with about half the faces
    of the level before, hidden so they do not overlap it (they still export)."""
    copies = []
    for mesh, users in groups.items():
        chain = _lod_meshes(mesh, levels)
        small = [i for i in range(1, levels) if len(chain[i - 1].polygons) < MIN_HALVABLE]
        if small:
            faces = len(chain[small[0] - 1].polygons)
            warnings.append(
                f"{users[0].name}: {faces} faces, too few to halve: LOD{small[0]} and up copy it"
            )
        for obj in users:
            base = _free_base(obj.name, levels)
            homes = list(obj.users_collection) or [collection]
            obj.name = f"{base}_LOD0"
            for level in range(1, levels):
                copy = obj.copy()
                copy.data = chain[level]
                copy.name = f"{base}_LOD{level}"
                for home in homes:
                    home.objects.link(copy)
                copy.hide_render = True
                with contextlib.suppress(RuntimeError):  # not in the view layer: nothing shown
                    copy.hide_set(True)
                copies.append(copy)
    return copies


def _free_base(name: str, levels: int) -> str:
    """A base for <base>_LOD0..: `name` (cut to fit), or `name.001`.. when an earlier result
    holds those names: Blender would add ".001" after "_LOD0", which engines do not read."""
    stem = name.encode()[: NAME_BYTES - 4].decode(errors="ignore")
    for n in range(1000):
        base = stem if n == 0 else f"{stem}.{n:03d}"
        if all(f"{base}_LOD{i}" not in bpy.data.objects for i in range(levels)):
            return base
    return stem


def _lod_meshes(mesh: bpy.types.Mesh, levels: int) -> list[bpy.types.Mesh]:
    """`mesh`, then each level decimated from the one before to about half its faces."""
    chain = [mesh]
    base = mesh.name.encode()[:NAME_BYTES].decode(errors="ignore")
    for level in range(1, levels):
        previous = chain[-1]
        faces = len(previous.polygons)
        if faces < MIN_HALVABLE:
            data = previous.copy()
        else:
            spread = LOD_SPREAD * faces / 2
            data = _decimate(previous, math.ceil(faces / 2 - spread), int(faces / 2 + spread))
        data.name = f"{base}_LOD{level}"
        chain.append(data)
    return chain
