"""Demo: all five services end to end, in real Blender, against the bundled emulators.

Usage: python tools/demo.py [--out dist]   (or: make demo)
Builds and installs the extension into a throwaway Blender, starts the five emulated services
on 127.0.0.1 (no key, no internet), and generates through each exactly as a `blender -b`
script would: Trify3D from a prompt and from an image, Ravenra a textured model from a
prompt, Siray from an image, Triverse from a prompt, Voxel-AI a prompt → three candidates →
pick → voxelize. It lays the results out in a row, labelled by service, prints what the run
cost as each service said it (`conjure spend`) and the estimate of a 13-row batch
(`--dry-run`), saves `<out>/demo.blend` and renders the contact sheet `<out>/demo.png`.
Then blockout → final: three boxes (one parented to a turned empty) filled by Generate for
Selected, rendered before and after as `<out>/blockout.png`.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS), str(TOOLS.parent / "tests")]
import blender_env  # noqa: E402
from emulators import voxelai as voxelai_emulator  # noqa: E402
from emulators.ravenra import RavenraEmulator  # noqa: E402
from emulators.siray import SirayEmulator  # noqa: E402
from emulators.trify3d import Trify3DEmulator, tiny_png  # noqa: E402
from emulators.triverse import TriverseEmulator  # noqa: E402
from emulators.voxelai import VoxelAIEmulator  # noqa: E402

FIXTURES = blender_env.ROOT.parent / "shared" / "fixtures"
SPACING = 2.6  # metres between results on the contact sheet
SIZE = 1.8  # each result is scaled to this largest dimension


def fixture(*parts: str) -> bytes | None:
    """A real file nobody here wrote, when ../shared is beside the repo."""
    path = FIXTURES.joinpath(*parts)
    return path.read_bytes() if path.exists() else None


def start_services(out: Path) -> dict[str, object]:
    """The five emulators, serving real sample files where ../shared has them."""
    box = FIXTURES / "gltf" / "BoxTextured.glb"
    trify = Trify3DEmulator(box if box.exists() else _made_glb(out), api_key="demo")
    raven = RavenraEmulator(api_key="demo")
    capsule = (fixture("obj", "capsule.obj"), fixture("obj", "capsule.mtl"))
    texture = fixture("obj", "capsule0.jpg")
    if all(capsule) and texture:
        raven.files.update(obj=capsule[0], mtl=capsule[1], png=texture)
    siray = SirayEmulator(api_key="demo")
    duck = fixture("gltf", "Duck.glb")
    if duck:
        siray.files["glb"] = duck
    triverse = TriverseEmulator(api_key="demo")
    cube = fixture("gltf", "cube.glb")
    if cube:
        served = triverse.asset
        triverse.asset = lambda kind: cube if kind in ("model", "textured") else served(kind)
    voxel = VoxelAIEmulator(api_key="demo", images_window=1.0, polls_to_complete=2)
    knight = fixture("vox", "chr_knight.vox")
    if knight:
        voxelai_emulator.vox_for = lambda _size: knight  # the emulator's voxelize result
    services = {"trify3d": trify, "ravenra": raven, "siray": siray, "triverse": triverse,
                "voxelai": voxel}  # fmt: skip
    for name, emu in services.items():
        emu.start()
        base = f"{emu.url}/api/v1" if name == "triverse" else emu.url
        os.environ[f"CONJURE_{name.upper()}_API_KEY"] = "demo"
        os.environ[f"CONJURE_{name.upper()}_BASE_URL"] = base
    os.environ["CONJURE_POLL_SECONDS"] = "0.1"
    return services


def _made_glb(out: Path) -> Path:
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add()
    path = out / "sample.glb"
    bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB")
    return path


def jobs(out: Path) -> list[tuple[str, Callable[[object], list]]]:
    """(label, run) for each result: `run(api)` returns the imported objects."""
    reference = out / "reference.png"
    reference.write_bytes(tiny_png((200, 120, 40)))
    image = str(reference)
    return [
        ("Trify3D · text", lambda api: api.generate("trify3d", prompt="a wooden crate")),
        ("Trify3D · image", lambda api: api.generate("trify3d", "IMAGE", image_paths=[image])),
        ("Ravenra · text", lambda api: api.generate("ravenra", prompt="a stone capsule")),
        ("Siray · image", lambda api: api.generate("siray", "IMAGE", image_paths=[image])),
        ("Triverse · text", lambda api: api.generate("triverse", prompt="a robot toy")),
        ("Voxel-AI · pick", lambda api: api.generate(
            "voxelai", prompt="a knight", options={"candidate": 1, "voxel_size": 32})),
    ]  # fmt: skip


def place(objects: list, slot: int, label: str) -> None:
    """Scale a result to SIZE, stand it on the ground at its slot, and label it."""
    import bpy
    from mathutils import Vector

    roots = [o for o in objects if o.parent is None]
    depsgraph = bpy.context.evaluated_depsgraph_get()
    corners = [  # of what is seen (meshes; VOX cubes are instanced on their points)
        o.matrix_world @ point
        for o in objects
        if o.type == "MESH"
        for point in _points(o.evaluated_get(depsgraph))
    ]
    low = Vector([min(c[i] for c in corners) for i in range(3)])
    high = Vector([max(c[i] for c in corners) for i in range(3)])
    scale = SIZE / max(max(high - low), 1e-6)
    centre = (low + high) / 2
    target = Vector((slot * SPACING, 0.0, 0.0))
    for root in roots:
        root.location = target + (root.location - Vector((centre.x, centre.y, low.z))) * scale
        root.scale = root.scale * scale
    curve = bpy.data.curves.new(f"Label {label}", "FONT")
    curve.body, curve.align_x, curve.size = label, "CENTER", 0.28
    text = bpy.data.objects.new(f"Label {label}", curve)
    text.location = (slot * SPACING, -1.5, 0.02)
    bpy.context.scene.collection.objects.link(text)


def _points(evaluated) -> list:
    from mathutils import Vector

    box = [Vector(c) for c in evaluated.bound_box]
    if (box[6] - box[0]).length > 0:
        return box
    return [v.co.copy() for v in evaluated.original.data.vertices]  # instances' centres


def money(out: Path, cli) -> None:
    """What the run cost, as each service said (`conjure spend`), and what a batch of the
    same kinds of job would likely cost (`conjure batch --dry-run`: nothing sent)."""
    plan = out / "demo-batch.csv"
    rows = [f"a prop no. {i},{s}" for i in range(4) for s in ("trify3d", "ravenra", "triverse")]
    plan.write_text("\n".join(["prompt,service", *rows, "a new kind,siray"]) + "\n")
    print("\n$ conjure spend")
    cli.main(["spend"])
    print(f"\n$ conjure batch {plan.name} --dry-run")
    cli.main(["batch", str(plan), "--dry-run"])


def blockout(out: Path, api) -> None:
    """Blockout to final: boxes placed as a scene is blocked out, rendered; then Generate
    for Selected (`api.generate_for`) fills each with a generated asset (Siray's emulator
    serves a duck), rendered again; the two side by side as `<out>/blockout.png`."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    table = bpy.data.objects.new("Table", None)  # a parent, turned: its child follows
    table.location, table.rotation_euler = (2 * SPACING, 0.0, 0.0), (0.0, 0.0, 0.4)
    bpy.context.scene.collection.objects.link(table)
    boxes = []
    for name, location, size, turn, parent in (
        ("rubber_duck", (0.0, 0.0, 0.0), (1.6, 1.0, 1.4), 0.5, None),
        ("Duckling.001", (SPACING, 0.0, 0.0), (0.9, 0.6, 0.8), -0.6, None),
        ("Bath Duck", (0.0, 0.0, 0.0), (1.2, 1.2, 1.8), 0.0, table),
    ):
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=location)
        box = bpy.context.object
        box.name, box.scale, box.rotation_euler.z, box.parent = name, size, turn, parent
        box.location.z = size[2] / 2
        boxes.append(box)
    bpy.ops.object.select_all(action="DESELECT")
    render(out / "blockout-before.png", 3, width=800)
    api.generate_for(boxes, "siray", timeout=120)
    render(out / "blockout-after.png", 3, width=800, fresh=False)
    side_by_side(out / "blockout-before.png", out / "blockout-after.png", out / "blockout.png")
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "blockout.blend"))
    print(f"  blockout → final: {out / 'blockout.png'}")


def side_by_side(left: Path, right: Path, path: Path) -> None:
    import bpy
    import numpy as np

    images = [bpy.data.images.load(str(p)) for p in (left, right)]
    width, height = images[0].size
    pixels = [np.array(i.pixels[:]).reshape(height, width, 4) for i in images]
    both = bpy.data.images.new("Blockout to final", width * 2, height, alpha=True)
    both.pixels[:] = np.concatenate(pixels, axis=1).ravel()
    both.filepath_raw, both.file_format = str(path), "PNG"
    both.save()


def render(path: Path, count: int, width: int = 1600, fresh: bool = True) -> None:
    """A Cycles contact sheet (CPU, a few samples), orthographic from the front."""
    import bpy

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", 16
    scene.render.resolution_x, scene.render.resolution_y = width, 420
    scene.render.filepath = str(path)
    if not fresh:  # the same lights and camera as the render before
        bpy.ops.render.render(write_still=True)
        return
    scene.world = bpy.data.worlds.new("Demo World")
    scene.world.color = (0.42, 0.44, 0.48)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler, sun.data.energy = (0.7, 0.2, 0.6), 3.5
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.data.type, cam.data.ortho_scale = "ORTHO", count * SPACING + 0.4
    middle = (count - 1) * SPACING / 2
    cam.location = (middle, -14.0, 4.2)
    cam.rotation_euler = (math.radians(76), 0.0, 0.0)
    for obj in (sun, cam):
        scene.collection.objects.link(obj)
    scene.camera = cam
    bpy.ops.render.render(write_still=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=blender_env.ROOT / "dist")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    blender_env.isolate_user_resources()
    addon = blender_env.build_and_install()
    import addon_utils
    import bpy

    services = start_services(out)
    api = importlib.import_module(f"{addon.__name__}.api")
    bpy.ops.wm.read_homefile(use_empty=True)
    print(f"Conjure demo: Blender {bpy.app.version_string}, five emulated services")
    planned = jobs(out)
    for slot, (label, run) in enumerate(planned):
        started = time.perf_counter()
        objects = run(api)
        place(objects, slot, label)
        print(f"  {label:<18} {len(objects)} object(s)  ({time.perf_counter() - started:.2f} s)")
    for name, emu in services.items():
        creates = sum(1 for r in emu.requests if r.method == "POST")
        print(f"  {name:<9} saw {creates} create/upload request(s), {len(emu.requests)} in all")
    money(out, importlib.import_module(f"{addon.__name__}.cli"))

    blend = out / "demo.blend"
    render(out / "demo.png", len(planned))
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    print(f"  saved {blend} and {out / 'demo.png'}")
    blockout(out, api)
    for emu in services.values():
        emu.stop()
    addon_utils.disable(addon.__name__)  # stops the job engine as closing Blender would


if __name__ == "__main__":
    main()
