"""The few Blender API differences between supported versions, behind one small adapter.

Each function tests for the feature, not the version number, so a later Blender that keeps
the newer API works unchanged. docs/versions.md lists what differs and why.
"""

from __future__ import annotations

import bpy


def _modifier_inputs(mod: bpy.types.NodesModifier) -> object | None:
    """5.2+: typed RNA under `mod.properties.inputs`; before: ID properties on the modifier."""
    properties = getattr(mod, "properties", None)
    return getattr(properties, "inputs", None) if properties is not None else None


def set_modifier_input(mod: bpy.types.NodesModifier, identifier: str, value: object) -> None:
    inputs = _modifier_inputs(mod)
    if inputs is None:
        mod[identifier] = value
    else:
        getattr(inputs, identifier).value = value


def get_modifier_input(mod: bpy.types.NodesModifier, identifier: str) -> object:
    inputs = _modifier_inputs(mod)
    return mod[identifier] if inputs is None else getattr(inputs, identifier).value
