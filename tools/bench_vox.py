"""Benchmark: MagicaVoxel meshing in numpy alone, then parse + build + first evaluation in
real Blender, per build mode.

Usage: python tools/bench_vox.py [--repeat N] [--numpy-only] [--against DIR]

Meshing (no Blender): `greedy_faces` and `watertight_polygons` of importers/voxmesh.py on
three sizes of a noisy cave model this script makes (many colours and small exposed faces,
the hard case: 157k, 409k and 843k voxels), a solid 128^3 block coloured by height, the
monu1.vox fixture doubled along each axis (1.26M voxels), and the larger fixtures. Prints
voxels, exposed (unit) faces, greedy faces, and the best and median of N runs of each step
(`watertight` includes the vertex sharing), with the greedy time per voxel and per exposed
face: flat columns mean time grows linearly.

Blender: the larger fixtures (../shared/fixtures/vox: monu1.vox, monu10.vox, teapot.vox),
the solid 128^3 block (2,097,152 voxels) and the largest cave model, through the installed
extension's parser and builder, in every mode: instanced cubes (with and without interior
culling), merge (a quad per exposed voxel face), greedy and watertight. `faces` counts the
polygons of the built mesh (six per cube when instanced); `mesh+build` is the builder's
whole time (meshing, materials, Blender mesh), `numpy` the meshing alone within it. Prints
the best of N runs.

With --against DIR (a folder holding the public blender_magicavoxel add-on, which is not
bundled and not fetched), that add-on's greedy import of the same files, once each in the
same process, next to Conjure's best greedy import: faces, times and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blender_env

FIXTURES = blender_env.ROOT.parent / "shared" / "fixtures" / "vox"
FILES = ("monu1.vox", "monu10.vox", "teapot.vox")
CAVE_SIZES = (64, 88, 112)
# Greedy faces before #24 (the lexsort sweep): the face count may not grow.
BEFORE = {
    "cave64": 32_663,
    "cave88": 85_119,
    "cave112": 175_650,
    "solid128": 514,
    "monu1 x2": 1_342,
    "monu1.vox": 1_342,
    "monu10.vox": 5_457,
    "teapot.vox": 22_008,
}
# (label, VoxOptions keyword arguments)
MODES = (
    ("instanced", {"cull_interior": True}),
    ("inst. no cull", {"cull_interior": False}),
    ("merge", {"merge": True}),
    ("greedy", {"merge": True, "greedy": True}),
    ("watertight", {"merge": True, "greedy": True, "watertight": True}),
)


# ------------------------------------------------------------------------------- models


def solid_cube(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n^3 block, every voxel coloured by its height."""
    xyz = np.indices((n, n, n)).reshape(3, -1).T
    return xyz, xyz[:, 2] % 254 + 1


def cave(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A noisy n^3 block of caves, 60% solid, in blobs of six colours with 1% random specks:
    a few hundred thousand small exposed faces at n = 112."""
    rng = np.random.default_rng(seed)
    density = _value_noise(n, 8, rng) + 0.5 * _value_noise(n, 4, rng)
    solid = density > np.quantile(density, 0.4)
    xyz = np.argwhere(solid)
    tint = _value_noise(n, 16, rng)[solid]
    color = 10 * (1 + np.minimum((tint * 6).astype(np.int64), 5))
    speck = rng.random(len(xyz)) < 0.01
    color[speck] = rng.integers(1, 256, int(speck.sum()))
    return xyz, color


def _value_noise(n: int, scale: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n, n) smooth noise in [0, 1): random values every `scale` cells, interpolated."""
    noise = rng.random((n // scale + 2,) * 3)
    at = np.arange(n) / scale
    low = at.astype(np.int64)
    frac = at - low
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = n
        weight = frac.reshape(shape)
        noise = (
            np.take(noise, low, axis=axis) * (1 - weight)
            + np.take(noise, low + 1, axis=axis) * weight
        )
    return noise


def doubled(xyz: np.ndarray, color: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every voxel as a 2x2x2 block: same shape, eight times the voxels."""
    offsets = np.indices((2, 2, 2)).reshape(3, -1).T
    big = (2 * xyz.astype(np.int64))[:, None, :] + offsets[None, :, :]
    return big.reshape(-1, 3), np.repeat(color, 8)


def vox_bytes(xyz: np.ndarray, color: np.ndarray) -> bytes:
    """One model (coordinates 0..255, palette indices 1..255) as a .vox file."""
    dims = [int(v) + 1 for v in xyz.max(axis=0)]
    xyzi = np.column_stack([xyz, color]).astype(np.uint8)
    size = struct.pack("<4sii3i", b"SIZE", 12, 0, *dims)
    body = struct.pack("<i", len(xyzi)) + xyzi.tobytes()
    voxels = struct.pack("<4sii", b"XYZI", len(body), 0) + body
    children = size + voxels
    return (
        b"VOX "
        + struct.pack("<i", 150)
        + struct.pack("<4sii", b"MAIN", 0, len(children))
        + children
    )


def _pure(name: str) -> types.ModuleType:
    """A module of the add-on's pure layers, imported without Blender (as the pure tests do)."""
    package = types.ModuleType("conjure_src")
    package.__path__ = [str(blender_env.ROOT)]
    sys.modules.setdefault("conjure_src", package)
    return __import__(f"conjure_src.importers.{name}", fromlist=[name])


def fixture_voxels(voxfile: types.ModuleType, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The shown voxels of a file, merged as the builder merges them."""
    vox = voxfile.read_file(path)
    shown = [i for i in vox.instances if len(i.xyz) and not i.hidden]
    xyz = np.concatenate([i.xyz for i in shown])
    return xyz, np.concatenate([i.color_index for i in shown]).astype(np.int64)


# ------------------------------------------------------------------------------- meshing


def _times(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best and median seconds of `repeat` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def bench_meshing(repeat: int) -> None:
    voxmesh, voxfile = _pure("voxmesh"), _pure("voxfile")
    models: list[tuple[str, np.ndarray, np.ndarray]] = [(f"cave{n}", *cave(n)) for n in CAVE_SIZES]
    models.append(("solid128", *solid_cube(128)))
    if (FIXTURES / "monu1.vox").exists():
        models.append(("monu1 x2", *doubled(*fixture_voxels(voxfile, FIXTURES / "monu1.vox"))))
    models += [
        (name, *fixture_voxels(voxfile, FIXTURES / name))
        for name in FILES
        if (FIXTURES / name).exists()
    ]
    print(f"meshing in numpy: best / median of {repeat} runs")
    print(
        f"{'model':<12}{'voxels':>11}{'exposed':>10}{'greedy':>9}{'before':>9}"
        f"{'greedy ms':>14}{'watertight ms':>16}{'ns/voxel':>10}{'ns/face':>9}"
    )
    for name, xyz, color in models:
        opaque = np.ones(len(xyz), dtype=bool)
        exposed = len(voxmesh.unit_faces(xyz, color, opaque).color)
        rects = voxmesh.greedy_faces(xyz, color, opaque)
        greedy = _times(partial(voxmesh.greedy_faces, xyz, color, opaque), repeat)
        water = _times(partial(voxmesh.watertight_polygons, rects), repeat)
        before = f"{BEFORE[name]:,}" if name in BEFORE else "-"
        worse = "  more faces than before!" if len(rects.color) > BEFORE.get(name, 1 << 62) else ""
        print(
            f"{name:<12}{len(xyz):>11,}{exposed:>10,}{len(rects.color):>9,}{before:>9}"
            f"{greedy[0] * 1e3:>8.1f} /{greedy[1] * 1e3:>4.0f}"
            f"{water[0] * 1e3:>10.1f} /{water[1] * 1e3:>4.0f}"
            f"{greedy[0] * 1e9 / len(xyz):>10.0f}{greedy[0] * 1e9 / max(exposed, 1):>9.0f}{worse}"
        )


# ------------------------------------------------------------------------------- Blender


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
        numpy_time = 0.0
    else:
        faces = sum(len(obj.data.polygons) for obj in result.objects)
        numpy_time = _numpy_surface(vox, data, settings.mode)
    return {
        "parse": t1 - t0,
        "build": t2 - t1,
        "numpy": numpy_time,
        "eval": t3 - t2,
        "total": t3 - t0,
        "voxels": float(result.voxel_count),
        "faces": float(faces),
    }


def _numpy_surface(vox: types.ModuleType, data: object, mode: str) -> float:
    """Seconds the builder's meshing step (`vox._surface`) takes alone on `data`."""
    shown = [i for i in data.instances if len(i.xyz) and not i.hidden]  # type: ignore[attr-defined]
    xyz = np.concatenate([i.xyz for i in shown])
    ci = np.concatenate([i.color_index for i in shown])
    opaque = vox._opaque(data, ci)
    start = time.perf_counter()
    vox._surface(xyz, ci.astype(np.int64), opaque, mode)
    return time.perf_counter() - start


def bench_blender(repeat: int, against: Path | None) -> None:
    blender_env.isolate_user_resources()
    blender_env.build_and_install()
    work = Path(tempfile.mkdtemp(prefix="conjure-bench-"))
    paths = []
    for name in FILES:
        if (FIXTURES / name).exists():
            paths.append(FIXTURES / name)
        else:
            print(f"skipping {name}: not found in {FIXTURES}")
    for name, model in (("solid128.vox", solid_cube(128)), ("cave112.vox", cave(112))):
        (work / name).write_bytes(vox_bytes(*model))
        paths.append(work / name)
    print(f"\nimport in Blender: best of {repeat} runs")
    print(
        f"{'file':<14}{'mode':<15}{'voxels':>11}{'faces':>12}"
        f"{'parse':>9}{'mesh+build':>12}{'numpy':>9}{'eval':>9}{'total':>9}"
    )
    greedy: dict[Path, tuple[float, float]] = {}  # best total and faces, per file
    for path in paths:
        for label, options in MODES:
            runs = [run_once(path, options) for _ in range(repeat)]
            best = {k: min(r[k] for r in runs) for k in runs[0]}
            if label == "greedy":
                greedy[path] = best["total"], best["faces"]
            ms = {
                k: f"{best[k] * 1000:.0f}ms" for k in ("parse", "build", "numpy", "eval", "total")
            }
            if label.startswith("inst"):
                ms["numpy"] = "-"
            print(
                f"{path.name:<14}{label:<15}{int(best['voxels']):>11,}{int(best['faces']):>12,}"
                f"{ms['parse']:>9}{ms['build']:>12}{ms['numpy']:>9}{ms['eval']:>9}{ms['total']:>9}"
            )
    if against is not None:
        bench_against(against, greedy)


def bench_against(addon: Path, greedy: dict[Path, tuple[float, float]]) -> None:
    """The public MagicaVoxel add-on (blender_magicavoxel, not bundled: a folder the user
    gives) importing the same files with its greedy meshing, once each, in this process:
    its time and faces next to Conjure's greedy import (best total of the table above)."""
    import bpy

    sys.path.insert(0, str(addon.resolve().parent))
    __import__(addon.name).register()
    print(f"\ngreedy import against {addon.name} (one run each)")
    print(f"{'file':<14}{'its faces':>11}{'its time':>11}{'faces':>9}{'time':>9}{'ratio':>9}")
    for path, (ours, faces) in greedy.items():
        bpy.ops.wm.read_homefile(use_empty=True)
        start = time.perf_counter()
        bpy.ops.import_scene.vox(filepath=str(path), meshing_type="GREEDY")
        theirs = time.perf_counter() - start
        their_faces = sum(len(o.data.polygons) for o in bpy.data.objects if o.type == "MESH")
        print(
            f"{path.name:<14}{their_faces:>11,}{theirs:>10.2f}s{int(faces):>9,}"
            f"{ours * 1000:>7.0f}ms{theirs / ours:>8.0f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    parser.add_argument(
        "--numpy-only", action="store_true", help="only the meshing table, without Blender"
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="the folder of the public blender_magicavoxel add-on (not bundled): also time "
        "its greedy import of the same files, in this process",
    )
    args = parser.parse_args()
    bench_meshing(args.repeat)
    if not args.numpy_only:
        bench_blender(args.repeat, args.against)
    if args.against is not None:
        # After that add-on's larger imports, the bpy module hangs in its exit handlers
        # (seen on 4.5 with cave64 and larger; not with Conjure's imports): leave at once.
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
