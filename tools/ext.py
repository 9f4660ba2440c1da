"""Validate or build the extension with Blender's own extension CLI from the installed bpy wheel.

Usage: python tools/ext.py validate | build [--output-dir DIR] | release [--output-dir DIR]
Prints the path of the built zip on its last line for `build`. `release` validates, builds
into a static extension repository (DIR, default dist/repo), lets Blender's `server-generate`
write its index.json (the listing Blender's own extension client reads) and prints that path.
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


def run(command: str, output_dir: Path, source_dir: Path = ROOT) -> Path | None:
    """validate (None), build (the zip) or release (the repository's index.json)."""
    if command == "validate":
        _blender_ext("validate", str(source_dir), quiet=False)
        return None
    if command == "release":
        run("validate", output_dir, source_dir)
        run("build", output_dir, source_dir)
        return generate_index(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("conjure-*.zip"):
        old.unlink()
    _blender_ext("build", "--source-dir", str(source_dir), "--output-dir", str(output_dir))
    (zip_path,) = output_dir.glob("conjure-*.zip")
    return zip_path


def generate_index(repo_dir: Path) -> Path:
    """Blender's own listing of the zips in `repo_dir` (a static extension repository)."""
    _blender_ext("server-generate", "--repo-dir", str(repo_dir))
    return repo_dir / "index.json"


def _blender_ext(*args: str, quiet: bool = True) -> None:
    """Run Blender's extension CLI with this Python; raise if it fails."""
    subprocess.run(
        [sys.executable, str(blender_ext_cli()), *args],
        check=True,
        stdout=subprocess.DEVNULL if quiet else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("validate", "build", "release"))
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where the zip goes (default dist; for release the repository, dist/repo)",
    )
    args = parser.parse_args()
    default = ROOT / "dist" / "repo" if args.command == "release" else ROOT / "dist"
    path = run(args.command, args.output_dir or default)
    if path:
        print(path)


if __name__ == "__main__":
    main()
