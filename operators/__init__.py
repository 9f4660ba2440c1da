"""Operators: thin bpy wrappers that snapshot inputs and hand work to the engine/importers."""

from __future__ import annotations

import atexit

import bpy
from bpy.app.handlers import persistent

from .. import runtime
from . import generate, import_vox, sidebar

CLASSES: tuple[type, ...] = (*generate.CLASSES, *sidebar.CLASSES, *import_vox.CLASSES)


@persistent
def _quitting(*_args: object) -> None:
    """Quit: stop the engine so nothing new is sent; jobs stay in the journal to resume."""
    runtime.shutdown()


def _exit_handlers() -> list:
    """`exit_pre` where Blender has it (5.2); Python's atexit covers every version."""
    return getattr(bpy.app.handlers, "exit_pre", [])


def attach() -> None:
    """Menus and anything else beyond class registration."""
    bpy.types.TOPBAR_MT_file_import.append(import_vox.menu_import)
    bpy.app.handlers.load_post.append(generate.restart_monitor_after_load)
    if not bpy.app.background:  # pipelines resume explicitly (`conjure resume`, api.resume)
        bpy.app.timers.register(generate.show_jobs_on_start, first_interval=0.5)
    _exit_handlers().append(_quitting)
    atexit.register(_quitting)


def detach() -> None:
    """Undo attach() and stop anything live (timers, threads) so disable leaves nothing."""
    bpy.types.TOPBAR_MT_file_import.remove(import_vox.menu_import)
    if generate.restart_monitor_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(generate.restart_monitor_after_load)
    for timer in (generate.start_monitor, generate.show_jobs_on_start):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    if _quitting in _exit_handlers():
        _exit_handlers().remove(_quitting)
    atexit.unregister(_quitting)
    generate.CONJURE_OT_job_monitor.stop(bpy.context)
    runtime.shutdown()
