"""Benchmark: MagicaVoxel parse + build + first evaluation in real Blender.

Usage: python tools/bench_vox.py [--repeat N]
Times the monument fixture (../shared/fixtures/vox/monu1.vox) and a solid 128^3 model that
this script writes itself (2,097,152 voxels), with and without interior culling, through the
installed extension's parser and builder. Prints the best of N runs for each stage.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blender_env

MONUMENT = blender_env.ROOT.parent / "shared" / "fixtures" / "vox" / "monu1.vox"


def solid_cube_vox(n: int) -> bytes:
    """One n^3 model, every voxel coloured by its height (n <= 256)."""
    grid = np.indices((n, n, n)).reshape(3, -1).T.astype(np.uint8)
    xyzi = np.column_stack([grid, (grid[:, 2] % 254 + 1).astype(np.uint8)])
    size = struct.pack("<4sii3i", b"SIZE", 12, 0, n, n, n)
    body = struct.pack("<i", len(xyzi)) + xyzi.tobytes()
    voxels = struct.pack("<4sii", b"XYZI", len(body), 0) + body
    children = size + voxels
    return (
        b"VOX "
        + struct.pack("<i", 150)
        + struct.pack("<4sii", b"MAIN", 0, len(children))
        + children
    )


def run_once(addon, path: Path, cull: bool) -> dict[str, float]:
    import bpy

    voxfile = sys.modules[f"{blender_env.ADDON_ID}.importers.voxfile"]
    vox = sys.modules[f"{blender_env.ADDON_ID}.importers.vox"]
    bpy.ops.wm.read_homefile(use_empty=True)
    t0 = time.perf_counter()
    data = voxfile.read_file(path)
    t1 = time.perf_counter()
    result = vox.build(
        data, path.stem, bpy.context.scene.collection, vox.VoxOptions(0.1, cull, False)
    )
    t2 = time.perf_counter()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    for obj in result.objects:
        obj.evaluated_get(depsgraph)
    t3 = time.perf_counter()
    return {
        "parse": t1 - t0,
        "build": t2 - t1,
        "eval": t3 - t2,
        "total": t3 - t0,
        "cubes": float(result.voxel_count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    blender_env.isolate_user_resources()
    addon = blender_env.build_and_install()
    work = Path(tempfile.mkdtemp(prefix="conjure-bench-"))
    cube = work / "solid128.vox"
    cube.write_bytes(solid_cube_vox(128))
    cases = [(cube, True), (cube, False)]
    if MONUMENT.exists():
        cases = [(MONUMENT, True), (MONUMENT, False), *cases]
    else:
        print(f"skipping monu1.vox: {MONUMENT} not found")
    print(
        f"{'file':<14}{'cull':<6}{'voxels→cubes':>14}{'parse':>9}{'build':>9}{'eval':>9}{'total':>9}"
    )
    for path, cull in cases:
        runs = [run_once(addon, path, cull) for _ in range(args.repeat)]
        best = {k: min(r[k] for r in runs) for k in runs[0]}
        print(
            f"{path.name:<14}{'on' if cull else 'off':<6}{int(best['cubes']):>14,}"
            + "".join(f"{best[k] * 1000:>7.0f}ms" for k in ("parse", "build", "eval", "total"))
        )


if __name__ == "__main__":
    main()
