"""Real Blender with the built extension installed, for tests, the demo and benchmarks.

Call `isolate_user_resources()` before anything imports bpy: Blender reads
BLENDER_USER_RESOURCES once, at import.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON_ID = "bl_ext.user_default.conjure"


def isolate_user_resources(path: str | None = None) -> str:
    """Point Blender at a throwaway user folder and drop the caller's CONJURE_* settings."""
    if "bpy" in sys.modules:
        raise RuntimeError("isolate_user_resources() must run before bpy is imported")
    folder = path or tempfile.mkdtemp(prefix="conjure-user-")
    if path is None:
        atexit.register(shutil.rmtree, folder, True)
    os.environ["BLENDER_USER_RESOURCES"] = folder
    for name in [n for n in os.environ if n.startswith("CONJURE_")]:
        del os.environ[name]
    return folder


def install_extension(zip_path: Path) -> types.ModuleType:
    """Install and enable the zip as "Install from Disk" does; allow online access."""
    import bpy

    bpy.context.preferences.system.use_online_access = True
    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    if result != {"FINISHED"} or ADDON_ID not in bpy.context.preferences.addons:
        raise RuntimeError(f"installing {zip_path} failed: {result}")
    return importlib.import_module(ADDON_ID)


def build_and_install(output_dir: Path | None = None) -> types.ModuleType:
    import ext

    out = output_dir or Path(tempfile.mkdtemp(prefix="conjure-dist-"))
    zip_path = ext.run("build", out)
    assert zip_path is not None
    return install_extension(zip_path)
