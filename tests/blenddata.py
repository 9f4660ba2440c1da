"""Blender data helpers shared by the importer tests: snapshots of data-block names (to see
what an import added, or that a failed one left nothing behind) and a target collection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def data_names(kinds: Iterable[str]) -> dict[str, set[str]]:
    """The names of every data-block of each kind (`bpy.data.<kind>`)."""
    import bpy

    return {kind: {block.name for block in getattr(bpy.data, kind)} for kind in kinds}


def target_collection(scene: Any) -> Any:
    """A new collection "Target" linked under the scene's collection."""
    import bpy

    collection = bpy.data.collections.new("Target")
    scene.collection.children.link(collection)
    return collection
