"""Operators: thin bpy wrappers that snapshot inputs and hand work to the job session.

- `generate.py`: what starts new jobs (generate, the sidebar's and F3's, compare, resume) and
  the blocking rule they share;
- `jobs.py`: every action on one existing job (cancel, pick, import, import again, run
  again, refine, open folder, remove) and Clear Finished Jobs;
- `inputs.py`: the sidebar's inputs (an Image Editor's image, multiview images);
- `monitor.py`: the modal job monitor and Blender's handlers;
- `import_vox.py`: File > Import > MagicaVoxel;
- `doctor.py`: Check Services (`conjure doctor` in the sidebar).
"""

from __future__ import annotations

import bpy

from . import doctor, generate, import_vox, inputs, jobs, monitor

CLASSES: tuple[type, ...] = (
    *generate.CLASSES,
    *jobs.CLASSES,
    *inputs.CLASSES,
    *monitor.CLASSES,
    *import_vox.CLASSES,
    *doctor.CLASSES,
)


def attach() -> None:
    """Menus and handlers, beyond class registration."""
    bpy.types.TOPBAR_MT_file_import.append(import_vox.menu_import)
    monitor.attach()


def detach() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(import_vox.menu_import)
    monitor.detach()
