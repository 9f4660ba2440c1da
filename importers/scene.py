"""Shared by every importer: where new assets go, what gets selected, and how a failed
import removes every data-block it made (found by difference against a snapshot)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import bpy
from mathutils import Vector

# Data-blocks an import can create, in the order a rollback removes them: objects first
# (they use everything else), then collections and scenes (4.5+ make them for a file with
# several glTF scenes), then data. Kinds missing from a Blender version are skipped; shape
# keys have no `remove` and go with their mesh.
_KINDS = (
    "objects",
    "collections",
    "scenes",
    "meshes",
    "armatures",
    "cameras",
    "lights",
    "curves",
    "pointclouds",
    "materials",
    "node_groups",
    "textures",
    "images",
    "actions",
    "worlds",
    "shape_keys",
)

Snapshot = dict[str, set[int]]


def link_under_active(context: bpy.types.Context, collection: bpy.types.Collection) -> None:
    """Put a collection made with `bpy.data.collections.new` under the active one."""
    (context.collection or context.scene.collection).children.link(collection)


def select_only(
    context: bpy.types.Context, objects: Iterable[bpy.types.Object], active: bpy.types.Object
) -> None:
    """Select exactly the new objects (hidden ones stay unselected) and make `active` active."""
    view_layer = context.view_layer
    for obj in view_layer.objects.selected:
        obj.select_set(False)
    for obj in (*objects, active):
        if not (obj.hide_viewport or obj.hide_get()):
            obj.select_set(True)
    view_layer.objects.active = active


def snapshot() -> Snapshot:
    """Which data-blocks exist now, to find (or remove) what an import adds."""
    return {kind: {block.session_uid for block in _blocks(kind)} for kind in _KINDS}


def _blocks(kind: str) -> list[bpy.types.ID]:
    return list(getattr(bpy.data, kind, ()))


def created(before: Snapshot, kind: str) -> list[bpy.types.ID]:
    return [block for block in _blocks(kind) if block.session_uid not in before[kind]]


def rollback(before: Snapshot, keep: bpy.types.ID | None = None) -> None:
    """Remove every data-block created since `before`, objects first; never `keep`.

    Best effort, block by block: it runs while an error is on its way to the user, and one
    block that will not go must neither hide that error nor keep the others.
    """
    if bpy.context.mode != "OBJECT" and bpy.ops.object.mode_set.poll():
        bpy.ops.object.mode_set(mode="OBJECT")  # a failed armature import may be in Edit mode
    for kind in _KINDS:
        if kind == "shape_keys":
            continue
        for block in created(before, kind):
            if block != keep:
                with contextlib.suppress(ReferenceError, RuntimeError):
                    remove(kind, [block])


def remove(kind: str, blocks: Sequence[bpy.types.ID]) -> None:
    data = getattr(bpy.data, kind)
    for block in blocks:
        data.remove(block, do_unlink=True)


def one_line(text: str, fallback: str) -> str:
    """The line that says what went wrong: operator errors end in a traceback's last line,
    followed by the calling script's `Location:`, which says nothing about the file."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Location:")]
    return lines[-1].removeprefix("Error: ") if lines else fallback


def move_into(
    objects: Iterable[bpy.types.Object], collection: bpy.types.Collection, offset: Sequence[float]
) -> None:
    """Only in `collection`, roots shifted by `offset` (to the 3D cursor)."""
    for obj in objects:
        for coll in list(obj.users_collection):
            coll.objects.unlink(obj)
        collection.objects.link(obj)
        if obj.parent is None:
            obj.location += Vector(offset)


@contextlib.contextmanager
def all_or_nothing(
    before: Snapshot,
    keep: bpy.types.ID | None,
    error: type[Exception],
    what: str,
    plain: tuple[type[Exception], ...] = (),
) -> Iterator[None]:
    """On any failure remove what was made since `before` (never `keep`) and raise `error`
    with one line: a `plain` error's own words, else its type and words. KeyboardInterrupt
    and SystemExit are cleaned up, not disguised."""
    try:
        yield
    except BaseException as exc:
        rollback(before, keep=keep)
        if isinstance(exc, error) or not isinstance(exc, Exception):
            raise
        detail = one_line(str(exc), f"unknown {what} import error")
        if isinstance(exc, plain):
            raise error(detail) from None
        raise error(f"{type(exc).__name__}: {detail}") from None
