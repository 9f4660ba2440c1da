"""Tests here run without Blender: the pure layers (providers, jobs, parsers) imported as
`conjure_src`, real engines and journals, local emulators. A test that asks for the
installed add-on belongs in tests/blender/."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
BLENDER_FIXTURES = {"addon", "scene", "built_zip"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wants = BLENDER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if wants and item.path.is_relative_to(HERE):
            raise pytest.UsageError(
                f"{item.nodeid} uses {', '.join(sorted(wants))}: move it to tests/blender/"
            )
