"""Type-check the pure layers (no bpy) with mypy, as configured in pyproject.toml.

Usage: python tools/typecheck.py [mypy arguments]   (what `make typecheck` runs)

The repository root is itself the package (`jobs/` imports `..providers`), yet the folder a
clone lands in may have any name, even one that is no Python name. So mypy is shown the tree
through a link named like the extension, `conjure`, in a temporary folder, and its messages
are given back with the repository's own paths. Exits with mypy's status.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "conjure"  # blender_manifest.toml's id; pyproject.toml's [tool.mypy] files use it


def main(argv: list[str]) -> int:
    from mypy import api

    with tempfile.TemporaryDirectory(prefix="conjure-typecheck-") as folder:
        (Path(folder) / PACKAGE).symlink_to(ROOT, target_is_directory=True)
        here = os.getcwd()
        os.chdir(folder)
        try:
            out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), *argv])
        finally:
            os.chdir(here)
    prefix = PACKAGE + os.sep
    for stream, text in ((sys.stdout, out), (sys.stderr, err)):
        for line in text.splitlines():
            stream.write((line[len(prefix) :] if line.startswith(prefix) else line) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
