"""Demo: the main job end to end, in real Blender, against the bundled Trify3D emulator.

Usage: python tools/demo.py [--out dist]   (or: make demo)
Builds and installs the extension into a throwaway Blender, starts the emulated Trify3D
service on 127.0.0.1, generates from a prompt and from an image exactly as a `blender -b`
pipeline would, imports a MagicaVoxel model as instanced cubes, then saves
`<out>/demo.blend` and renders `<out>/demo.png`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS), str(TOOLS.parent / "tests")]
import blender_env  # noqa: E402
from emulators.trify3d import Trify3DEmulator, tiny_png  # noqa: E402

FIXTURES = blender_env.ROOT.parent / "shared" / "fixtures"


def sample_glb(out: Path) -> Path:
    """The Khronos textured box when ../shared is there; else a model exported here."""
    glb = FIXTURES / "gltf" / "BoxTextured.glb"
    if glb.exists():
        return glb
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add()
    path = out / "sample.glb"
    bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB")
    return path


def sample_vox(out: Path) -> Path:
    vox = FIXTURES / "vox" / "chr_knight.vox"
    if vox.exists():
        return vox
    from bench_vox import solid_cube_vox

    path = out / "cube.vox"
    path.write_bytes(solid_cube_vox(16))
    return path


def step(title: str, fn) -> None:
    started = time.perf_counter()
    detail = fn()
    print(f"  {title:<44} {detail}  ({time.perf_counter() - started:.2f} s)")


def render(path: Path) -> None:
    """A small Cycles still (CPU, 8 samples) of everything the demo made."""
    import bpy
    from mathutils import Vector

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", 8
    scene.render.resolution_x, scene.render.resolution_y = 640, 360
    scene.world = bpy.data.worlds.new("Demo World")
    scene.world.color = (0.5, 0.5, 0.5)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler, sun.data.energy = (0.6, 0.2, 0.5), 3.0
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.location = Vector((3.5, -9.0, 5.0))
    cam.rotation_euler = (
        (Vector((3.0, 0.0, 0.5)) - cam.location).to_track_quat("-Z", "Y").to_euler()
    )
    for obj in (sun, cam):
        scene.collection.objects.link(obj)
    scene.camera = cam
    scene.render.filepath = str(path)
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

    emu = Trify3DEmulator(sample_glb(out), api_key="trf_live_demo", polls_to_complete=3).start()
    os.environ.update(
        CONJURE_TRIFY3D_API_KEY="trf_live_demo",
        CONJURE_TRIFY3D_BASE_URL=emu.url,
        CONJURE_POLL_SECONDS="0.2",
    )
    bpy.ops.wm.read_homefile(use_empty=True)
    print(f"Conjure demo: Blender {bpy.app.version_string}, add-on {addon.__name__}")
    print(f"  emulated Trify3D at {emu.url}")

    def generate_text() -> str:
        bpy.context.scene.cursor.location = (0, 0, 0)
        result = bpy.ops.conjure.generate(
            provider="trify3d", source="TEXT", prompt="a wooden crate"
        )
        coll = bpy.data.collections["Conjure a wooden crate"]
        mats = sorted(
            {s.material.name for o in coll.objects for s in o.material_slots if s.material}
        )
        return f"{result} {len(coll.objects)} objects, materials {mats}"

    def generate_image() -> str:
        image = out / "reference.png"
        image.write_bytes(tiny_png())
        bpy.context.scene.cursor.location = (2.5, 0, 0)
        result = bpy.ops.conjure.generate(provider="trify3d", source="IMAGE", image_path=str(image))
        return f"{result} from {image.name}"

    def import_vox() -> str:
        path = sample_vox(out)
        bpy.context.scene.cursor.location = (5, 0, 0)
        result = bpy.ops.conjure.import_vox(filepath=str(path), voxel_size=0.1)
        root = bpy.data.objects[path.stem]
        cubes = sum(len(o.data.vertices) for o in root.children)
        return f"{result} {path.name}: {cubes} instanced cubes"

    step("generate: text → Trify3D → GLB in scene", generate_text)
    step("generate: image → Trify3D → GLB in scene", generate_image)
    step("import: MagicaVoxel → instanced cubes", import_vox)
    print(f"  service saw {emu.count('POST')} create requests, {emu.count('GET')} GETs")
    emu.stop()

    blend = out / "demo.blend"
    render(out / "demo.png")
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    print(f"  saved {blend} and {out / 'demo.png'}")
    addon_utils.disable(addon.__name__)  # stops the job engine as closing Blender would


if __name__ == "__main__":
    main()
