"""Test harness: real Blender (the pip `bpy` wheel) with the built extension installed.

- `conjure_src` is a synthetic package whose path is the repo root, so the pure layers
  (providers, jobs engine/journal, parsers) are tested without executing the root
  `__init__.py` (which needs bpy).
- The `addon` fixture builds the zip with Blender's own builder, installs and enables it
  into a throwaway BLENDER_USER_RESOURCES, exactly as a user's "Install from Disk" does.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
ADDON_ID = "bl_ext.user_default.conjure"

sys.path.insert(0, str(ROOT / "tools"))


def _register_pure_package() -> None:
    pkg = types.ModuleType("conjure_src")
    pkg.__path__ = [str(ROOT)]
    pkg.__package__ = "conjure_src"
    sys.modules.setdefault("conjure_src", pkg)


_register_pure_package()

# Isolate Blender's user folders before bpy is first imported anywhere in this process,
# and keep the developer's own service keys/URLs out of the tests.
_USER_RESOURCES = tempfile.mkdtemp(prefix="conjure-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES
for _name in [n for n in os.environ if n.startswith("CONJURE_")]:
    del os.environ[_name]


def fixture_path(*parts: str) -> Path:
    """A file from ../shared/fixtures, or skip the test with a clear reason."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture missing: {path} (../shared is not beside the repo)")
    return path


@pytest.fixture(scope="session")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import ext

    zip_path = ext.run("build", tmp_path_factory.mktemp("dist"))
    assert zip_path is not None
    return zip_path


@pytest.fixture(scope="session")
def addon(built_zip: Path) -> Iterator[types.ModuleType]:
    """The installed, enabled extension module (`bl_ext.user_default.conjure`)."""
    import bpy

    bpy.context.preferences.system.use_online_access = True
    result = bpy.ops.extensions.package_install_files(
        filepath=str(built_zip), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    assert ADDON_ID in bpy.context.preferences.addons
    yield importlib.import_module(ADDON_ID)
    import addon_utils

    addon_utils.disable(ADDON_ID)
    shutil.rmtree(_USER_RESOURCES, ignore_errors=True)


@pytest.fixture
def scene(addon: types.ModuleType) -> Iterator[object]:
    """An empty scene for each Blender test (the add-on stays enabled)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene
    bpy.ops.wm.read_homefile(use_empty=True)
