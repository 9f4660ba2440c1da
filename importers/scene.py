"""Scene placement shared by every importer: where new assets go and what gets selected."""

from __future__ import annotations

from collections.abc import Iterable

import bpy


def new_collection(context: bpy.types.Context, name: str) -> bpy.types.Collection:
    """A fresh collection under the active one (Blender de-duplicates the name)."""
    collection = bpy.data.collections.new(name)
    parent = context.collection or context.scene.collection
    parent.children.link(collection)
    return collection


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
