"""Benchmark: MagicaVoxel parse + build + first evaluation in real Blender, per build mode.

Usage: python tools/bench_vox.py [--repeat N]
Times the larger fixtures (../shared/fixtures/vox: monu1.vox, monu10.vox, teapot.vox) and a
solid 128^3 model that this script writes itself (2,097,152 voxels, coloured by height)
through the installed extension's parser and builder, in every mode: instanced cubes (with
and without interior culling), merge (a quad per exposed voxel face), greedy and watertight.
`faces` counts the polygons of the built mesh (six per cube when instanced); `mesh+build`
is the builder's whole time (meshing, materials, Blender mesh). Prints the best of N runs.
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

FIXTURES = blender_env.ROOT.parent / "shared" / "fixtures" / "vox"
FILES = ("monu1.vox", "monu10.vox", "teapot.vox")
# (label, VoxOptions keyword arguments)
MODES = (
    ("instanced", {"cull_interior": True}),
    ("inst. no cull", {"cull_interior": False}),
    ("merge", {"merge": True}),
    ("greedy", {"merge": True, "greedy": True}),
    ("watertight", {"merge": True, "greedy": True, "watertight": True}),
)


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


def run_once(path: Path, options: dict[str, bool]) -> dict[str, float]:
    import bpy

    voxfile = sys.modules[f"{blender_env.ADDON_ID}.importers.voxfile"]
    vox = sys.modules[f"{blender_env.ADDON_ID}.importers.vox"]
    bpy.ops.wm.read_homefile(use_empty=True)
    t0 = time.perf_counter()
    data = voxfile.read_file(path)
    t1 = time.perf_counter()
    settings = vox.VoxOptions(0.1, **options)
    result = vox.build(data, path.stem, bpy.context.scene.collection, settings)
    t2 = time.perf_counter()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    for obj in result.objects:
        obj.evaluated_get(depsgraph)
    t3 = time.perf_counter()
    if settings.mode == "instanced":
        faces = 6 * result.voxel_count
    else:
        faces = sum(len(obj.data.polygons) for obj in result.objects)
    return {
        "parse": t1 - t0,
        "build": t2 - t1,
        "eval": t3 - t2,
        "total": t3 - t0,
        "voxels": float(result.voxel_count),
        "faces": float(faces),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    blender_env.isolate_user_resources()
    blender_env.build_and_install()
    work = Path(tempfile.mkdtemp(prefix="conjure-bench-"))
    cube = work / "solid128.vox"
    cube.write_bytes(solid_cube_vox(128))
    paths = []
    for name in FILES:
        if (FIXTURES / name).exists():
            paths.append(FIXTURES / name)
        else:
            print(f"skipping {name}: not found in {FIXTURES}")
    paths.append(cube)
    print(
        f"{'file':<14}{'mode':<15}{'voxels':>11}{'faces':>12}"
        f"{'parse':>9}{'mesh+build':>12}{'eval':>9}{'total':>9}"
    )
    for path in paths:
        for label, options in MODES:
            runs = [run_once(path, options) for _ in range(args.repeat)]
            best = {k: min(r[k] for r in runs) for k in runs[0]}
            ms = {k: f"{best[k] * 1000:.0f}ms" for k in ("parse", "build", "eval", "total")}
            print(
                f"{path.name:<14}{label:<15}{int(best['voxels']):>11,}{int(best['faces']):>12,}"
                f"{ms['parse']:>9}{ms['build']:>12}{ms['eval']:>9}{ms['total']:>9}"
            )


if __name__ == "__main__":
    main()
