"""Conjure: generate 3D assets from a prompt or an image. This file only registers."""

from __future__ import annotations

import bpy

from . import cli, operators, panels, preferences, props

CLASSES: tuple[type, ...] = (
    *preferences.CLASSES,
    *props.CLASSES,
    *operators.CLASSES,
    *panels.CLASSES,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    props.attach()
    operators.attach()
    panels.attach()
    cli.register()


def unregister() -> None:
    cli.unregister()
    panels.detach()
    operators.detach()
    props.detach()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
