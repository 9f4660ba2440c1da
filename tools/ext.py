"""Validate or build the extension with Blender's own extension CLI from the installed bpy wheel.

Usage: python tools/ext.py validate | build [--output-dir DIR]
Prints the path of the built zip on its last line for `build`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def blender_ext_cli() -> Path:
    """Locate bl_pkg/cli/blender_ext.py inside the bpy wheel without importing bpy."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bpy is not installed in this Python; run `make test` to set up .venv")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(pkg.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit(f"blender_ext.py not found under {pkg}")
    return found[-1]


def run(command: str, output_dir: Path) -> Path | None:
    cli = [sys.executable, str(blender_ext_cli())]
    if command == "validate":
        subprocess.run([*cli, "validate", str(ROOT)], check=True)
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("conjure-*.zip"):
        old.unlink()
    subprocess.run(
        [*cli, "build", "--source-dir", str(ROOT), "--output-dir", str(output_dir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (zip_path,) = output_dir.glob("conjure-*.zip")
    return zip_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("validate", "build"))
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    zip_path = run(args.command, args.output_dir)
    if zip_path:
        print(zip_path)


if __name__ == "__main__":
    main()
