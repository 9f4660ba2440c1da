"""Generate for placeholders (blockout to final): each chosen object stands for an asset to
generate. Its prompt is its `conjure_prompt` custom property, else its name made readable
("Crate.001" → "crate", "fire_hydrant" → "fire hydrant"). On import (imports.py) the result
is fitted into the object's box, in its collection, parented like it, and the placeholder
(with an earlier result of it) is hidden, kept. A placeholder is found again by the
`conjure_placeholder_id` stamped on it, so renaming it while its job runs changes nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace

import bpy

from .importers import fit
from .jobs.model import ImportPlan, Job
from .jobs.session import Session
from .providers.base import GenerationRequest

ID_PROPERTY = "conjure_placeholder_id"  # stamped on a placeholder when its job is made
RESULT_OF = "conjure_placeholder_of"  # on what a result made: its placeholder's stamp
_NUMBERED = re.compile(r"\.\d{3,}$")  # Blender's ".001" on a copy
_WORDS = re.compile(r"[\s_\-.]+|(?<=[a-z0-9])(?=[A-Z])")  # separators, and camelCase


def readable(name: str) -> str:
    """An object's name as a prompt: 'Crate.001' → 'crate', 'FireHydrant_02' → 'fire hydrant 02'."""
    return " ".join(w for w in _WORDS.split(_NUMBERED.sub("", name)) if w).lower()


def prompt_of(obj: bpy.types.Object) -> str:
    custom = obj.get("conjure_prompt")
    if isinstance(custom, str) and custom.strip():
        return custom.strip()
    return readable(obj.name)


def usable(
    objects: Iterable[bpy.types.Object], refill: bool = True
) -> tuple[list[bpy.types.Object], list[str]]:
    """The objects that can be placeholders (once each; not one inside another chosen one),
    and one line for each that cannot. `refill=False` also leaves out the ones that already
    have a result."""
    chosen = list(dict.fromkeys(objects))
    inside = {o for o in chosen if any(p in chosen for p in _ancestors(o))}
    depsgraph = bpy.context.evaluated_depsgraph_get()  # also brings the view layer up to date
    layer = bpy.context.view_layer.objects
    kept: list[bpy.types.Object] = []
    skipped: list[str] = []
    for obj in chosen:
        if obj in inside:
            continue  # part of a placeholder above it
        if obj.get("conjure_job_id"):
            skipped.append(f"{obj.name} is a Conjure result, not a placeholder: skipped")
        elif layer.get(obj.name) != obj:
            skipped.append(f"{obj.name} is not in this view layer: skipped")
        elif not refill and results_of(obj):
            skipped.append(f"{obj.name} already has its result: skipped")
        elif fit.placeholder_box(obj, depsgraph) is None:
            skipped.append(f"{obj.name} has no size to fit a result into: skipped")
        elif not prompt_of(obj):
            skipped.append(f"{obj.name} gives no prompt (set conjure_prompt): skipped")
        else:
            kept.append(obj)
    return kept, skipped


def new_jobs(
    session: Session,
    provider: str,
    objects: Iterable[bpy.types.Object],
    options: Mapping[str, object],
    plan: ImportPlan,
) -> list[Job]:
    """One job per placeholder (checked, not yet submitted); ConjureError on a bad one."""
    return [
        session.new_job(
            provider,
            GenerationRequest("TEXT", prompt_of(obj), (), dict(options)),
            replace(plan, placeholder=obj.name, placeholder_id=_stamp(obj)),
        )
        for obj in objects
    ]


def find(plan: ImportPlan) -> tuple[bpy.types.Object | None, str]:
    """The plan's placeholder if it is still in this view layer, else why not."""
    stamped = [o for o in bpy.data.objects if o.get(ID_PROPERTY) == plan.placeholder_id]
    holder = stamped[0] if stamped and plan.placeholder_id else None
    if holder is None:
        return None, f"placeholder {plan.placeholder!r} is gone"
    bpy.context.view_layer.update()  # its object list up to date
    if bpy.context.view_layer.objects.get(holder.name) != holder:
        return None, f"placeholder {holder.name!r} is not in this view layer"
    return holder, ""


def fit_into(
    holder: bpy.types.Object,
    objects: list[bpy.types.Object],
    collection: bpy.types.Collection,
    pad: float,
) -> str:
    """The result fitted into the placeholder's box (its rotation, unscaled frame, base on
    the bottom, centred, as large as fits), its collection a child of the placeholder's, its
    top objects parented like the placeholder; or, changing nothing, why it cannot be."""
    box = fit.placeholder_box(holder, bpy.context.evaluated_depsgraph_get())
    if box is None:
        return f"placeholder {holder.name!r} has no size left"
    fit.fit(objects, box, pad)
    home = holder.users_collection[0]
    for parent in [c for c in (*bpy.data.collections, bpy.context.scene.collection)
                   if collection.name in c.children]:  # fmt: skip
        parent.children.unlink(collection)
    home.children.link(collection)
    if holder.parent is not None:
        for root in [o for o in objects if o.parent is None]:
            world = root.matrix_world.copy()
            root.parent = holder.parent
            if holder.parent_type == "BONE":  # a vertex parent is the placeholder's own
                root.parent_type, root.parent_bone = "BONE", holder.parent_bone
            root.matrix_world = world
    return ""


def covered_by(
    holder: bpy.types.Object, made: Iterable[bpy.types.ID]
) -> list[bpy.types.Object]:
    """Name the placeholder on what was made; return what the new result covers: the
    placeholder (an empty: with the parts under it), and its earlier results."""
    earlier = results_of(holder)
    for block in made:
        block["conjure_placeholder"] = holder.name
        block[RESULT_OF] = holder.get(ID_PROPERTY, "")
    parts = list(holder.children_recursive) if holder.type == "EMPTY" else []
    return [holder, *parts, *earlier]


def results_of(holder: bpy.types.Object) -> list[bpy.types.Object]:
    """The objects of results already fitted into `holder`."""
    stamp = holder.get(ID_PROPERTY)
    return [o for o in bpy.data.objects if stamp and o.get(RESULT_OF) == stamp]


def hide(obj: bpy.types.Object) -> None:
    """Out of sight in the viewport and in renders, kept in the file."""
    obj.hide_render = True
    if bpy.context.view_layer.objects.get(obj.name) == obj:
        obj.hide_set(True)


def _stamp(obj: bpy.types.Object) -> str:
    if not obj.get(ID_PROPERTY):
        obj[ID_PROPERTY] = uuid.uuid4().hex
    return str(obj[ID_PROPERTY])


def _ancestors(obj: bpy.types.Object) -> Iterable[bpy.types.Object]:
    parent = obj.parent
    while parent is not None:
        yield parent
        parent = parent.parent
