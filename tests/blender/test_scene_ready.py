"""Scene-ready results (issue #22) in real Blender against the emulators: generate for
placeholders (a result fitted into each placeholder's box, in its collection, parented like
it; the placeholder hidden), and the mesh clean-up on import (a face budget that keeps UVs
and materials, levels of detail, the service's own face limit where it has one)."""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
from services import api as _api
from services import service

from conftest import ADDON_ID, FIXTURES
from emulators.trify3d import Trify3DEmulator
from emulators.triverse import TEXT_PATH, TriverseEmulator

TRIFY_KEY = "trf_live_scene-S3CRET-22"
TRIVERSE_KEY = "tvs_live_scene-S3CRET-22"


def _module(name: str):
    return importlib.import_module(f"{ADDON_ID}.{name}")


@pytest.fixture(scope="module")
def dense_glb(tmp_path_factory: pytest.TempPathFactory, addon) -> Path:
    """A 100,352-triangle grid with a UV layer and two materials, as a service might send."""
    import bmesh
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    mesh = bpy.data.meshes.new("Dense")
    bm = bmesh.new()
    bm.loops.layers.uv.new("UVMap")
    bmesh.ops.create_grid(bm, x_segments=225, y_segments=225, size=1.0, calc_uvs=True)
    for face in bm.faces:
        face.material_index = 1 if face.calc_center_median().x > 0 else 0
    bm.to_mesh(mesh)
    bm.free()
    for name, colour in (("Moss", (0.2, 0.5, 0.1, 1)), ("Stone", (0.5, 0.5, 0.5, 1))):
        material = bpy.data.materials.new(name)
        material.diffuse_color = colour
        mesh.materials.append(material)
    obj = bpy.data.objects.new("Dense", mesh)
    bpy.context.scene.collection.objects.link(obj)
    out = tmp_path_factory.mktemp("dense") / "dense.glb"
    bpy.ops.export_scene.gltf(filepath=str(out), export_format="GLB")
    bpy.ops.wm.read_homefile(use_empty=True)
    return out


@pytest.fixture
def box_glb() -> Path:
    sample = FIXTURES / "gltf" / "BoxTextured.glb"
    if not sample.exists():
        pytest.skip(f"fixture {sample} not found")
    return sample


@pytest.fixture
def trify(box_glb: Path, monkeypatch: pytest.MonkeyPatch):
    emulator = Trify3DEmulator(box_glb, api_key=TRIFY_KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, TRIFY_KEY, cancel_live=True) as emu:
        yield emu


# -- placeholders ----------------------------------------------------------------------------


def _cube(name: str, location=(0, 0, 0), rotation=(0, 0, 0), scale=(1, 1, 1)):
    """A 2 m cube mesh object (vertices ±1), linked into the scene."""
    import bpy

    corners = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(corners, [], faces)
    obj = bpy.data.objects.new(name, mesh)
    obj.location, obj.rotation_euler, obj.scale = location, rotation, scale
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _placeholders() -> list:
    """Five blockouts: scaled, turned about Z, tilted, parented, in its own collection."""
    import bpy

    scaled = _cube("Wooden Crate", (0, 0, 1), scale=(1.5, 0.5, 0.25))
    turned = _cube("fire_hydrant.001", (5, 0, 0), rotation=(0, 0, math.radians(30)),
                   scale=(0.4, 0.4, 0.8))  # fmt: skip
    tilted = _cube("Barrel", (0, 5, 0), rotation=(math.radians(20), math.radians(-15), 0))
    tilted["conjure_prompt"] = "an oak barrel with iron hoops"
    table = bpy.data.objects.new("Table", None)
    table.location, table.rotation_euler, table.scale = (-4, 2, 0), (0, 0, 0.5), (2, 2, 2)
    bpy.context.scene.collection.objects.link(table)
    lamp = _cube("Lamp", (0.5, 0, 1), scale=(0.2, 0.2, 0.5))
    lamp.parent = table
    props = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(props)
    sign = _cube("ShopSign", (3, -4, 2), scale=(1, 0.1, 0.5))
    bpy.context.scene.collection.objects.unlink(sign)
    props.objects.link(sign)
    bpy.context.view_layer.update()
    return [scaled, turned, tilted, lamp, sign]


def _in_frame(holder, objects) -> np.ndarray:
    """The results' world vertices in the placeholder's unscaled frame."""
    from mathutils import Matrix

    location, rotation, _scale = holder.matrix_world.decompose()
    frame = (Matrix.Translation(location) @ rotation.to_matrix().to_4x4()).inverted()
    points = [frame @ (o.matrix_world @ v.co) for o in objects if o.type == "MESH"
              for v in o.data.vertices]  # fmt: skip
    return np.array([tuple(p) for p in points])


def _half_size(holder) -> np.ndarray:
    """The placeholder cube's half extents in its frame (vertices ±1 times its scale)."""
    return np.array(holder.matrix_world.decompose()[2]) * 1.0


def test_each_placeholder_gets_one_job_and_its_result_fills_its_box(scene, trify) -> None:
    import bpy

    holders = _placeholders()
    names = [h.name for h in holders]
    results = _api().generate_for(holders, "trify3d", timeout=120)
    assert trify.count("POST") == 5  # one create per placeholder
    prompts = sorted(job["prompt"] for job in _api().jobs()[:5])
    assert prompts == sorted(["wooden crate", "fire hydrant", "an oak barrel with iron hoops",
                              "lamp", "shop sign"])  # fmt: skip
    for name in names:
        holder = bpy.data.objects[name]
        made = results[name]
        assert made, f"nothing placed for {name}"
        points = _in_frame(holder, made)
        half = _half_size(holder)
        low, high = points.min(axis=0), points.max(axis=0)
        assert np.all(high <= half * 1.01 + 1e-6) and np.all(low >= -half * 1.01 - 1e-6), name
        assert max((high - low) / (2 * half)) >= 0.99, name  # as large as fits
        assert low[2] == pytest.approx(-half[2], abs=1e-3)  # base on the box's bottom
        centre = (low + high) / 2
        assert centre[:2] == pytest.approx([0.0, 0.0], abs=1e-3)
        assert holder.hide_get() and holder.hide_render  # hidden, kept
        roots = [o for o in made if o.parent not in made]
        assert roots and all(r["conjure_placeholder"] == name for r in roots)
        assert all(r.parent == holder.parent for r in roots)  # parented like it
        home = holder.users_collection[0]
        assert made[0].users_collection[0].name in home.children  # in its collection
        status = _api().status(made[0]["conjure_job_id"])
        assert status["plan"]["placeholder"] == name


def test_generate_for_selected_runs_again_in_the_same_place(scene, trify) -> None:
    import bpy

    crate = _cube("Crate.004", (2, 2, 0), scale=(0.5, 0.5, 0.5))
    light = bpy.data.objects.new("Key Light", bpy.data.lights.new("Key Light", "POINT"))
    bpy.context.scene.collection.objects.link(light)
    for obj in (crate, light):
        obj.select_set(True)
    bpy.context.scene.conjure.provider = "trify3d"
    assert bpy.ops.conjure.generate_for_selected() == {"FINISHED"}
    assert trify.count("POST") == 1  # the light has no size: skipped, nothing sent for it
    (job,) = _api().jobs()[:1]
    assert job["prompt"] == "crate" and job["state"] == "imported"
    first = [bpy.data.objects[n] for n in job["objects"]]
    assert bpy.ops.conjure.rerun_job(job_id=job["job_id"]) == {"FINISHED"}
    again = _api().jobs()[0]
    assert again["job_id"] != job["job_id"] and again["plan"]["placeholder"] == "Crate.004"
    second = [bpy.data.objects[n] for n in again["objects"]]
    assert all(o.hide_get() and o.hide_render for o in first)  # the earlier result: hidden
    assert not any(o.hide_get() for o in second)
    assert _in_frame(crate, second).min(axis=0)[2] == pytest.approx(-0.5, abs=1e-3)


def test_fill_holds_to_max_credits_and_lifts_the_limit_after(scene, trify, capsys) -> None:
    """Trify3D charges 5 a job: once it has, 2 more are estimated at 10. Over the limit:
    nothing sent; under it, both go; after the run the limit is gone (a third job goes)."""
    _cube("Priced")["conjure_prompt"] = "a priced crate"
    cli = _module("cli")
    assert cli.main(["fill", "--service", "trify3d"]) == 0  # the price of this kind: 5
    for name in ("Crate A", "Crate B"):
        _cube(name)["conjure_prompt"] = "a crate"
    capsys.readouterr()
    assert cli.main(["fill", "--service", "trify3d", "--max-credits", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "conjure: the estimate, 10 credits, is over --max-credits 8: nothing sent"
    assert trify.count("POST") == 1
    assert cli.main(["fill", "--service", "trify3d", "--max-credits", "12"]) == 0
    assert trify.count("POST") == 3
    _cube("Crate C")["conjure_prompt"] = "a crate"  # 15 in all: goes only if the limit is lifted
    assert cli.main(["fill", "--service", "trify3d"]) == 0
    assert trify.count("POST") == 4


def test_names_become_prompts() -> None:
    readable = _module("placeholders").readable
    assert readable("Crate.001") == "crate"
    assert readable("fire_hydrant") == "fire hydrant"
    assert readable("FireHydrant-02") == "fire hydrant 02"
    assert readable("Sci Fi  Door.012") == "sci fi door"


def test_fill_from_the_command_line(scene, trify, tmp_path, capsys) -> None:
    import bpy

    for name, prompt in (("Box A", "a red toolbox"), ("Box B", "a blue toolbox")):
        _cube(name, scale=(0.3, 0.2, 0.2))["conjure_prompt"] = prompt
    _cube("Ground", scale=(10, 10, 0.01))  # no conjure_prompt: not a placeholder
    out = tmp_path / "filled.blend"
    cli = _module("cli")
    assert cli.main(["fill", "--service", "trify3d", "--output", str(out)]) == 0
    assert trify.count("POST") == 2 and out.is_file()
    printed = capsys.readouterr().out
    assert re.search(r"^Box A: \d+ object", printed, re.M)
    assert re.search(r"^Box B: \d+ object", printed, re.M)
    assert bpy.data.objects["Box A"].hide_render
    assert cli.main(["fill", "--service", "trify3d", "--output", str(out)]) == 0  # again
    assert trify.count("POST") == 2  # both have their results: nothing sent, nothing paid
    assert "Box A already has its result: skipped" in capsys.readouterr().out
    assert cli.main(["fill", "--service", "trify3d", "--collection", "Nowhere"]) == 2
    assert cli.main(["fill", "--service", "trify3d", "--max-faces", "5"]) == 2
    assert cli.main(["fill", "--service", "trify3d", "--lods", "7"]) == 2
    assert trify.count("POST") == 2  # refused up front


# -- the mesh on import ----------------------------------------------------------------------


def _faces(objects) -> int:
    return sum(len(o.data.polygons) for o in objects if o.type == "MESH")


def test_a_face_budget_keeps_uvs_and_materials_and_lods_halve(
    scene, dense_glb, monkeypatch
) -> None:
    emulator = Trify3DEmulator(dense_glb, api_key=TRIFY_KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, TRIFY_KEY, cancel_live=True):
        plain = _api().generate("trify3d", prompt="a dense field", timeout=120)
        assert _faces(plain) >= 100_000
        assert [uv.name for o in plain if o.type == "MESH" for uv in o.data.uv_layers] == ["UVMap"]
        budgeted = _api().generate("trify3d", prompt="a light field", timeout=120,
                                   mesh={"max_faces": 5000})  # fmt: skip
        (mesh,) = [o for o in budgeted if o.type == "MESH"]
        assert 4750 <= len(mesh.data.polygons) <= 5000
        assert [uv.name for uv in mesh.data.uv_layers] == ["UVMap"]
        assert [m.name.split(".")[0] for m in mesh.data.materials] == ["Moss", "Stone"]
        used = {p.material_index for p in mesh.data.polygons}
        assert used == {0, 1} and not mesh.modifiers
        status = _api().status(mesh["conjure_job_id"])
        assert "Decimate" in status["message"] and status["plan"]["max_faces"] == 5000
        lods = _api().generate("trify3d", prompt="a tiered field", timeout=120,
                               mesh={"max_faces": 8000, "lods": 3})  # fmt: skip
        again = _api().generate("trify3d", prompt="a tiered field", timeout=120,
                                mesh={"max_faces": 8000, "lods": 3})  # fmt: skip
    levels = sorted((o for o in lods if o.type == "MESH"), key=lambda o: o.name)
    assert [o.name.rsplit("_", 1)[1] for o in levels] == ["LOD0", "LOD1", "LOD2"]
    base = levels[0].name.removesuffix("_LOD0")
    second = sorted(o.name for o in again if o.type == "MESH")  # never "…_LOD0.001"
    assert second == [f"{base}.001_LOD{i}" for i in range(3)]
    counts = [len(o.data.polygons) for o in levels]
    assert counts[0] <= 8000 and counts[0] > counts[1] > counts[2]
    assert counts[1] == pytest.approx(counts[0] / 2, rel=0.15)
    assert len({o.users_collection[0].name for o in levels}) == 1  # siblings, one collection


def test_a_service_with_a_face_limit_is_asked_to_keep_the_budget(scene, monkeypatch) -> None:
    emulator = TriverseEmulator(api_key=TRIVERSE_KEY)
    with service(monkeypatch, "triverse", emulator, TRIVERSE_KEY, path="/api/v1") as emu:
        made = _api().generate("triverse", prompt="a small robot", timeout=120,
                               mesh={"max_faces": 5000})  # fmt: skip
        (body,) = emu.bodies(TEXT_PATH)
    assert body["polygon_limit"] == 5000
    status = _api().status(made[0]["conjure_job_id"])
    assert "faces by Triverse's polygon_limit" in status["message"]
    assert "Decimate" not in status["message"]  # the service kept the budget itself


@pytest.mark.parametrize(
    ("mesh", "words"),
    [
        ({"max_faces": 5}, "max_faces must be from 12"),
        ({"max_faces": 20_000_000}, "max_faces must be from 12"),
        ({"lods": 7}, "lods must be from 1 to 6"),
        ({"lods": 2.5}, "lods must be a whole number"),
        ({"smooth": 30}, "unknown mesh option 'smooth'"),
    ],
)
def test_mesh_options_out_of_range_are_refused_up_front(scene, trify, mesh, words) -> None:
    with pytest.raises(_api().ConjureError, match=words):
        _api().submit("trify3d", prompt="a refused crate", mesh=mesh)
    assert trify.count("POST") == 0


def test_a_mirrored_placeholder_keeps_its_result_upright(scene, trify) -> None:
    plain = _cube("Plain Crate", (-2, 0, 0), scale=(0.5, 0.5, 0.5))
    mirrored = _cube("Mirrored Crate", (2, 0, 0), scale=(-0.5, 0.5, 0.5))
    results = _api().generate_for([plain, mirrored], "trify3d", timeout=120)
    turns = []
    for holder in (plain, mirrored):
        made = results[holder.name]
        assert _in_frame(holder, made).min(axis=0)[2] == pytest.approx(-0.5, abs=1e-3)
        (root,) = [o for o in made if o.parent not in made]
        turns.append(np.array(root.matrix_world.to_3x3().normalized()))
    assert np.allclose(turns[0], turns[1], atol=1e-5)  # as the plain one stands: not upside down


def test_a_failed_import_leaves_the_placeholder_as_it_was(scene, tmp_path, monkeypatch) -> None:
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"glTF\x02\x00\x00\x00" + b"\xff" * 64)  # a GLB with nothing readable
    emulator = Trify3DEmulator(broken, api_key=TRIFY_KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, TRIFY_KEY, cancel_live=True):
        holder = _cube("Fragile Vase", scale=(0.3, 0.3, 0.6))
        with pytest.raises(_api().ConjureError, match="Import failed"):
            _api().generate_for([holder], "trify3d", timeout=120)
    assert not holder.hide_get() and not holder.hide_render  # still there to generate again


def test_a_placeholder_is_found_by_its_stamp_when_renamed(scene) -> None:
    import bpy

    placeholders = _module("placeholders")
    plan_of = _module("jobs.model").ImportPlan
    holder = _cube("Old Name", scale=(0.5, 0.5, 0.5))
    stamp = placeholders._stamp(holder)
    holder.name = "New Name"
    _cube("Old Name")  # another object takes the old name: not the placeholder
    found, problem = placeholders.find(plan_of(placeholder="Old Name", placeholder_id=stamp))
    assert (found, problem) == (holder, "")
    bpy.data.objects.remove(holder)
    found, problem = placeholders.find(plan_of(placeholder="Old Name", placeholder_id=stamp))
    assert found is None and problem == "placeholder 'Old Name' is gone"


def test_an_empty_with_parts_is_one_placeholder_and_hides_with_them(scene, trify) -> None:
    import bpy

    group = bpy.data.objects.new("Market Stall", None)
    bpy.context.scene.collection.objects.link(group)
    parts = [_cube(f"Stall Part {i}", (i * 2.0, 0, 0), scale=(0.5, 0.5, 1)) for i in range(2)]
    for part in parts:
        part.parent = group
    results = _api().generate_for([group, *parts], "trify3d", timeout=120)
    assert list(results) == ["Market Stall", "Stall Part 0", "Stall Part 1"]
    assert trify.count("POST") == 1  # the parts are the stall's box, not placeholders
    assert results["Market Stall"] and not results["Stall Part 0"]
    assert all(o.hide_get() for o in (group, *parts))
