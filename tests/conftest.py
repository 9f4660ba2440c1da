"""Test harness: real Blender (the pip `bpy` wheel) with the built extension installed.

- `conjure_src` is a synthetic package whose path is the repo root, so the pure layers
  (providers, jobs engine/journal, parsers) are tested without executing the root
  `__init__.py` (which needs bpy).
- The `addon` fixture builds the zip with Blender's own builder, installs and enables it
  into a throwaway BLENDER_USER_RESOURCES, exactly as a user's "Install from Disk" does.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"

sys.path.insert(0, str(ROOT / "tools"))
import blender_env  # noqa: E402
from blender_env import ADDON_ID  # noqa: E402


def _register_pure_package() -> None:
    pkg = types.ModuleType("conjure_src")
    pkg.__path__ = [str(ROOT)]
    pkg.__package__ = "conjure_src"
    sys.modules.setdefault("conjure_src", pkg)


_register_pure_package()

# Isolate Blender's user folders before bpy is first imported anywhere in this process,
# and keep the developer's own service keys/URLs out of the tests.
USER_RESOURCES = blender_env.isolate_user_resources()


def fixture_path(*parts: str) -> Path:
    """A file from ../shared/fixtures, or skip the test with a clear reason."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture missing: {path} (../shared is not beside the repo)")
    return path


@pytest.fixture
def trify(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A Trify3D emulator serving a tiny GLB, with the test module's KEY (a module with
    its own `trify` fixture, as the Blender tests have, uses that one)."""
    from emulators.trify3d import TINY_GLB, Trify3DEmulator

    glb = tmp_path / "m.glb"
    glb.write_bytes(TINY_GLB)
    emu = Trify3DEmulator(glb, api_key=request.module.KEY, rate_limit=100_000).start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import ext

    zip_path = ext.run("build", tmp_path_factory.mktemp("dist"))
    assert zip_path is not None
    return zip_path


@pytest.fixture(scope="session")
def addon(built_zip: Path) -> Iterator[types.ModuleType]:
    """The installed, enabled extension module (`bl_ext.user_default.conjure`)."""
    yield blender_env.install_extension(built_zip)
    import addon_utils

    addon_utils.disable(ADDON_ID)


@pytest.fixture
def scene(addon: types.ModuleType) -> Iterator[object]:
    """An empty scene for each Blender test (the add-on stays enabled)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene
    bpy.ops.wm.read_homefile(use_empty=True)


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process once pytest has reported. The bpy 4.5 module can hang in its own
    interpreter teardown after a long session (after Blender's leak report, all tests
    passed); the add-on's engine is already stopped by then, so nothing is lost."""
    if "bpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)


PURE = Path(__file__).parent / "pure"
BLENDER_FIXTURES = {"addon", "scene", "built_zip"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/pure runs without Blender: a test there that asks for the installed add-on
    belongs in tests/blender/."""
    for item in items:
        wants = BLENDER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if wants and item.path.is_relative_to(PURE):
            raise pytest.UsageError(
                f"{item.nodeid} uses {', '.join(sorted(wants))}: move it to tests/blender/"
            )
