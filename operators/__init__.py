"""Operators: thin bpy wrappers that snapshot inputs and hand work to the engine/importers."""

from __future__ import annotations

import bpy

from ..jobs import pump
from . import generate, import_vox

CLASSES: tuple[type, ...] = (*generate.CLASSES, *import_vox.CLASSES)


def attach() -> None:
    """Menus and anything else beyond class registration."""
    bpy.types.TOPBAR_MT_file_import.append(import_vox.menu_import)


def detach() -> None:
    """Undo attach() and stop anything live (timers, threads) so disable leaves nothing."""
    bpy.types.TOPBAR_MT_file_import.remove(import_vox.menu_import)
    generate.CONJURE_OT_job_monitor.stop(bpy.context)
    pump.shutdown()
