"""Operators: thin bpy wrappers that snapshot inputs and hand work to the engine/importers."""

from __future__ import annotations

import bpy

from ..jobs import runtime
from . import generate, import_vox

CLASSES: tuple[type, ...] = (*generate.CLASSES, *import_vox.CLASSES)


def attach() -> None:
    """Menus and anything else beyond class registration."""
    bpy.types.TOPBAR_MT_file_import.append(import_vox.menu_import)
    bpy.app.handlers.load_post.append(generate.restart_monitor_after_load)


def detach() -> None:
    """Undo attach() and stop anything live (timers, threads) so disable leaves nothing."""
    bpy.types.TOPBAR_MT_file_import.remove(import_vox.menu_import)
    if generate.restart_monitor_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(generate.restart_monitor_after_load)
    if bpy.app.timers.is_registered(generate.start_monitor):
        bpy.app.timers.unregister(generate.start_monitor)
    generate.CONJURE_OT_job_monitor.stop(bpy.context)
    runtime.shutdown()
