"""Pytest plugin (loaded by -p in pyproject.toml): the repo root is the add-on package.

Pytest would treat the root's __init__.py as a package to import (under the clone folder's
name, with bpy); collecting it as a plain directory keeps the tests on the built, installed
extension and on `conjure_src` (tests/conftest.py) only.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path == ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None
