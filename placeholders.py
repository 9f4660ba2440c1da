"""Generate for placeholders (blockout to final): each chosen object stands for an asset to
generate; its result is fitted into the object's box when it is imported (imports.py), and
the object is hidden, kept. What a placeholder asks for: its `conjure_prompt` custom property,
else its name made readable ("Crate.001" → "crate", "fire_hydrant" → "fire hydrant")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

import bpy

from .importers import fit
from .jobs.model import ImportPlan, Job
from .jobs.session import Session
from .providers.base import GenerationRequest

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


def usable(objects: Iterable[bpy.types.Object]) -> tuple[list[bpy.types.Object], list[str]]:
    """The objects that can be placeholders, and one line for each that cannot."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    kept: list[bpy.types.Object] = []
    skipped: list[str] = []
    for obj in objects:
        if obj.get("conjure_job_id"):
            skipped.append(f"{obj.name} is a Conjure result, not a placeholder: skipped")
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
            replace(plan, placeholder=obj.name),
        )
        for obj in objects
    ]
