"""conjure.import_vox in real Blender: objects, instances, positions, colours, materials."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, fixture_path
from conjure_src.importers import voxfile, voxmesh

VOX_FILES = sorted(p.name for p in (FIXTURES / "vox").glob("*.vox") if p.name != "not_a.vox")


def _import(path: Path, **options) -> set[str]:
    import bpy

    return bpy.ops.conjure.import_vox(filepath=str(path), **options)


def _voxel_objects(root) -> list:
    return [o for o in root.children if o.type == "MESH"]


def _instance_count(obj) -> int:
    """Cubes after Geometry Nodes evaluation, counted from the depsgraph."""
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    return sum(
        1 for inst in depsgraph.object_instances if inst.is_instance and inst.parent.original == obj
    )


def _expected_visible(vox: voxfile.VoxFile, inst: voxfile.VoxInstance) -> np.ndarray:
    glass = {i for i, m in vox.materials.items() if m.kind in {"glass", "media", "cloud"}}
    opaque = ~np.isin(inst.color_index, list(glass))
    return voxmesh.visible_mask(inst.xyz, opaque)


@pytest.mark.parametrize("name", VOX_FILES or ["(no fixtures)"])
def test_every_fixture_imports_as_instanced_cubes(scene, name: str) -> None:
    import bpy

    path = fixture_path("vox", name)
    vox = voxfile.read_file(path)
    assert _import(path, voxel_size=0.5) == {"FINISHED"}

    root = bpy.data.objects[path.stem]
    assert root.type == "EMPTY" and root.select_get() and bpy.context.active_object == root
    objects = _voxel_objects(root)
    shown = [i for i in vox.instances if len(i.xyz)]
    assert len(objects) == len(shown)
    for obj, inst in zip(objects, shown, strict=True):
        keep = _expected_visible(vox, inst)
        mesh = obj.data
        assert len(mesh.vertices) == keep.sum()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        expected = (inst.xyz[keep].astype(np.float32) + 0.5) * 0.5
        np.testing.assert_allclose(co.reshape(-1, 3), expected, atol=1e-5)
        idx = np.empty(len(mesh.vertices), dtype=np.int32)
        mesh.attributes["vox_color_index"].data.foreach_get("value", idx)
        np.testing.assert_array_equal(idx, inst.color_index[keep])
        mod = obj.modifiers["Voxel Cubes"]
        assert mod.type == "NODES" and mod.node_group.name.startswith("Conjure Voxel Cubes")
        assert obj.hide_render == inst.hidden
    if len(objects[0].data.vertices) < 60_000:
        assert _instance_count(objects[0]) == len(objects[0].data.vertices)


def test_palette_image_matches_default_palette_for_chr_cat(scene) -> None:
    import bpy

    path = fixture_path("vox", "chr_cat.vox")
    vox = voxfile.read_file(path)
    assert not vox.has_palette_chunk
    assert _import(path) == {"FINISHED"}
    image = bpy.data.images["chr_cat Voxels Palette"]
    pixels = np.empty(256 * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    got = np.rint(pixels.reshape(256, 4)[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(got[1:], voxfile.DEFAULT_PALETTE[1:, :3])
    # Spot values straight from the default palette table in the format reference.
    assert tuple(got[1]) == (255, 255, 255)
    assert tuple(got[255]) == (0x11, 0x11, 0x11)
    used = np.unique(vox.instances[0].color_index)
    assert all(tuple(got[i]) == tuple(voxfile.DEFAULT_PALETTE[i, :3]) for i in used)


def test_knight_colours_follow_rgba_chunk(scene) -> None:
    import bpy

    path = fixture_path("vox", "chr_knight.vox")
    raw = path.read_bytes()
    at = raw.find(b"RGBA")
    assert at > 0, "chr_knight.vox has an RGBA chunk"
    rgba = np.frombuffer(raw, dtype=np.uint8, count=1024, offset=at + 12).reshape(256, 4)
    assert _import(path) == {"FINISHED"}
    obj = _voxel_objects(bpy.data.objects["chr_knight"])[0]
    n = len(obj.data.vertices)
    idx = np.empty(n, dtype=np.int32)
    obj.data.attributes["vox_color_index"].data.foreach_get("value", idx)
    col = np.empty(n * 4, dtype=np.float32)
    obj.data.attributes["vox_color"].data.foreach_get("color", col)
    # palette[i] = rgba[i - 1]; the attribute stores it scene-linear.
    expected = voxmesh.srgb_to_linear(rgba[idx - 1, :3])
    np.testing.assert_allclose(col.reshape(-1, 4)[:, :3], expected, atol=1e-5)


def test_metal_material_maps_to_principled(scene) -> None:
    import bpy

    path = fixture_path("vox", "metal-material.vox")
    vox = voxfile.read_file(path)
    metals = [i for i, m in vox.materials.items() if m.kind == "metal" and m.metal > 0]
    assert metals, "fixture declares metal materials"
    assert _import(path) == {"FINISHED"}
    image = bpy.data.images["metal-material Voxels Properties"]
    props = np.empty(256 * 4, dtype=np.float32)
    image.pixels.foreach_get(props)
    props = props.reshape(256, 4)
    for i in metals:
        assert props[i, 0] == pytest.approx(vox.materials[i].metal, abs=1e-4)
        assert props[i, 1] == pytest.approx(vox.materials[i].rough, abs=1e-4)
    mat = bpy.data.materials["metal-material Voxels"]
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Metallic"].is_linked and bsdf.inputs["Base Color"].is_linked
    attr = next(n for n in mat.node_tree.nodes if n.type == "ATTRIBUTE")
    assert (attr.attribute_type, attr.attribute_name) == ("INSTANCER", "vox_color_index")


def test_groups_scene_graph_places_models(scene) -> None:
    import bpy

    path = fixture_path("vox", "test_groups.vox")
    vox = voxfile.read_file(path)
    assert len(vox.instances) > 1
    assert _import(path, voxel_size=1.0, cull_interior=False) == {"FINISHED"}
    objects = _voxel_objects(bpy.data.objects["test_groups"])
    for obj, inst in zip(objects, [i for i in vox.instances if len(i.xyz)], strict=True):
        co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
        obj.data.vertices.foreach_get("co", co)
        np.testing.assert_allclose(co.reshape(-1, 3), inst.xyz + 0.5)


def test_merge_builds_a_real_mesh_of_exposed_faces(scene) -> None:
    import bpy

    path = fixture_path("vox", "chr_knight.vox")
    vox = voxfile.read_file(path)
    inst = vox.instances[0]
    faces = voxmesh.exposed_faces(inst.xyz, np.ones(len(inst.xyz), dtype=bool))
    assert _import(path, merge=True, voxel_size=0.25) == {"FINISHED"}
    (obj,) = _voxel_objects(bpy.data.objects["chr_knight"])
    assert not obj.modifiers and len(obj.data.polygons) == len(faces.voxel)
    assert len(obj.data.uv_layers) == 1 and obj.data.materials[0] is not None
    lo = inst.xyz.min(axis=0) * 0.25
    hi = (inst.xyz.max(axis=0) + 1) * 0.25
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    assert np.all(co >= lo - 1e-5) and np.all(co <= hi + 1e-5)


def test_bad_file_is_one_line_error_and_nothing_imported(scene, tmp_path: Path) -> None:
    import bpy

    bad = tmp_path / "broken.vox"
    good = fixture_path("vox", "chr_cat.vox").read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(RuntimeError) as info:
        bpy.ops.conjure.import_vox(filepath=str(bad))
    message = str(info.value)
    assert "broken.vox" in message and "Traceback" not in message
    assert len(bpy.data.objects) == 0 and len(bpy.data.meshes) == 0

    with pytest.raises(RuntimeError, match=r"not_a\.vox"):
        bpy.ops.conjure.import_vox(filepath=str(fixture_path("vox", "not_a.vox")))
    assert len(bpy.data.objects) == 0


def test_import_is_one_undo_step(scene) -> None:
    import bpy

    bpy.ops.ed.undo_push(message="before")
    path = str(fixture_path("vox", "chr_cat.vox"))
    # undo=True makes the call push its undo step as a click in the UI does.
    assert bpy.ops.conjure.import_vox("EXEC_DEFAULT", True, filepath=path) == {"FINISHED"}
    assert "chr_cat" in bpy.data.objects and len(bpy.data.objects) == 2
    bpy.ops.ed.undo()
    assert "chr_cat" not in bpy.data.objects and len(bpy.data.objects) == 0
    bpy.ops.ed.redo()
    assert len(bpy.data.objects) == 2


def test_file_menu_and_drop_handler_registered(addon) -> None:
    import bpy

    handler = bpy.types.FileHandler.bl_rna_get_subclass_py("CONJURE_FH_vox")
    assert handler.bl_import_operator == "conjure.import_vox"
    assert handler.bl_file_extensions == ".vox"
    draw_funcs = bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    assert any(getattr(f, "__name__", "") == "menu_import" for f in draw_funcs)


def test_written_file_hidden_layer_glass_emission_and_frames(scene, tmp_path: Path) -> None:
    import bpy

    import voxwriter as w

    solid = [(x, y, z, 1) for x in range(3) for y in range(3) for z in range(3)]
    glassy = [v if v[:3] != (1, 1, 2) else (1, 1, 2, 2) for v in solid]  # glass on top
    data = w.vox_file(
        w.model((3, 3, 3), glassy),
        w.model((1, 1, 1), [(0, 0, 0, 3)]),
        w.model((1, 1, 1), [(0, 0, 0, 4)]),
        w.ntrn(0, 1),
        w.ngrp(1, [2, 4]),
        w.ntrn(2, 3, attrs={"_name": "block"}, layer=0),
        w.nshp(3, [0]),
        w.ntrn(4, 5, attrs={"_name": "lamp"}, layer=1, frames=[{"_t": "5 0 0"}]),
        w.nshp(5, [(1, 0), (2, 1)]),
        w.layr(0, "main"),
        w.layr(1, "lights", hidden=True),
        w.matl(2, {"_type": "_glass", "_trans": 0.9}),
        w.matl(3, {"_type": "_emit", "_emit": 1.0, "_flux": 1}),
    )
    path = tmp_path / "written.vox"
    path.write_bytes(data)
    assert _import(path, frame=1) == {"FINISHED"}
    block, lamp = _voxel_objects(bpy.data.objects["written"])
    # The centre voxel shows through the glass above it; the glass voxel itself stays.
    assert len(block.data.vertices) == 27
    assert lamp.hide_render and lamp.hide_viewport and not lamp.select_get()
    idx = np.empty(1, dtype=np.int32)
    lamp.data.attributes["vox_color_index"].data.foreach_get("value", idx)
    assert idx[0] == 4  # frame 1 picks the second model of the animated shape
    props = np.empty(256 * 4, dtype=np.float32)
    bpy.data.images["written Voxels Properties"].pixels.foreach_get(props)
    props = props.reshape(256, 4)
    assert props[3, 2] == pytest.approx(2.0)  # emission strength = emit * (1 + flux)
    assert props[2, 3] == pytest.approx(0.9)  # glass transmission


@pytest.mark.parametrize("voxel_size", [0.25, 2.0])
def test_voxel_size_and_material_reach_the_evaluated_cubes(
    scene, tmp_path: Path, voxel_size
) -> None:
    """The modifier's inputs are set through whichever API this Blender offers (5.2 changed it)."""
    import bpy

    import voxwriter as w

    path = tmp_path / "pair.vox"
    path.write_bytes(w.vox_file(w.model((2, 1, 1), [(0, 0, 0, 7), (1, 0, 0, 9)])))
    assert _import(path, voxel_size=voxel_size) == {"FINISHED"}
    (obj,) = _voxel_objects(bpy.data.objects["pair"])
    depsgraph = bpy.context.evaluated_depsgraph_get()
    extents, materials = [], []
    for inst in depsgraph.object_instances:  # instance structs only live inside this loop
        if inst.is_instance and inst.parent.original == obj:
            corners = np.array([v.co[:] for v in inst.object.data.vertices])
            extents.append(np.ptp(corners, axis=0))
            mesh = inst.object.data
            used = {p.material_index for p in mesh.polygons}
            materials.append({mesh.materials[i].original.name for i in used})
    assert len(extents) == 2
    np.testing.assert_allclose(extents, [[voxel_size] * 3] * 2, rtol=1e-5)
    assert materials == [{"pair Voxels"}] * 2


# ------------------------------------------------------------------ greedy and watertight


def _scene_with_rotations_hidden_layer_and_frames() -> bytes:
    """Four instances of three models: one turned, one mirrored, one animated (two frames),
    and a fifth on a hidden layer; colours vary within each model."""
    import voxwriter as w

    ell = [
        (x, y, z, 1 + (x + 2 * y + z) % 4)
        for x in range(4)
        for y in range(3)
        for z in range(5)
        if x < 2 or z < 2
    ]
    slab = [(x, y, z, 10 + z) for x in range(3) for y in range(4) for z in range(2)]
    quarter_turn = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    mirror = np.diag([-1, 1, 1])
    return w.vox_file(
        w.model((4, 3, 5), ell),
        w.model((3, 4, 2), slab),
        w.model((2, 1, 1), [(0, 0, 0, 20), (1, 0, 0, 21)]),
        w.model((1, 3, 1), [(0, 0, 0, 22), (0, 1, 0, 22), (0, 2, 0, 23)]),
        w.ntrn(0, 1),
        w.ngrp(1, [2, 4, 6, 8, 10]),
        w.ntrn(2, 3, frames=[{"_t": "0 0 3"}], layer=0),
        w.nshp(3, [0]),
        w.ntrn(4, 5, frames=[{"_t": "12 0 2", "_r": w.rotation_byte(quarter_turn)}], layer=0),
        w.nshp(5, [0]),
        w.ntrn(6, 7, frames=[{"_t": "0 12 1", "_r": w.rotation_byte(mirror)}], layer=0),
        w.nshp(7, [1]),
        w.ntrn(8, 9, frames=[{"_t": "-9 0 0", "_f": 0}, {"_t": "-9 -5 0", "_f": 1}], layer=0),
        w.nshp(9, [(2, 0), (3, 1)]),
        w.ntrn(10, 11, frames=[{"_t": "30 30 0"}], layer=1),
        w.nshp(11, [1]),
        w.layr(0, "main"),
        w.layr(1, "hidden", hidden=True),
    )


def _shown_voxels(vox: voxfile.VoxFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shown = [i for i in vox.instances if len(i.xyz) and not i.hidden]
    xyz = np.concatenate([i.xyz for i in shown])
    color = np.concatenate([i.color_index for i in shown]).astype(np.int64)
    glass = [i for i, m in vox.materials.items() if m.kind in {"glass", "media", "cloud"}]
    assert len(np.unique(xyz, axis=0)) == len(xyz), "test files have no overlapping voxels"
    return xyz, color, ~np.isin(color, glass)


def _face_arrays(mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per polygon: area, `vox_color_index` and material index."""
    n = len(mesh.polygons)
    area = np.empty(n, dtype=np.float32)
    mesh.polygons.foreach_get("area", area)
    index = np.empty(n, dtype=np.int32)
    mesh.attributes["vox_color_index"].data.foreach_get("value", index)
    slot = np.empty(n, dtype=np.int32)
    mesh.polygons.foreach_get("material_index", slot)
    return area, index, slot


def _merged_object(name: str):
    import bpy

    (obj,) = _voxel_objects(bpy.data.objects[name])
    return obj


def _import_as(path: Path, mode: str, **options):
    """Import `path` once more in `mode` ("merge", "greedy", "watertight"); its mesh object."""
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    assert _import(path, **{mode: True}, **options) == {"FINISHED"}
    return _merged_object(path.stem)


GREEDY_CASES = ["test_groups.vox", "deer_anim.vox", "chr_knight.vox", "teapot.vox", "written"]


@pytest.mark.parametrize("case", GREEDY_CASES)
def test_greedy_import_keeps_every_colour_area_with_fewer_faces(
    scene, tmp_path: Path, case: str
) -> None:
    from test_voxmesh import _reference_faces

    frame = 1 if case in {"deer_anim.vox", "written"} else 0
    if case == "written":
        path = tmp_path / "written.vox"
        path.write_bytes(_scene_with_rotations_hidden_layer_and_frames())
    else:
        path = fixture_path("vox", case)
    vox = voxfile.read_file(path, frame=frame)
    if case == "written":  # the file holds what the test claims
        assert any(i.hidden for i in vox.instances)
        turned = [i for i in vox.instances if not np.array_equal(i.rotation, np.eye(3))]
        assert len(turned) == 2 and vox.frame == 1
    xyz, color, opaque = _shown_voxels(vox)
    expected = _reference_faces(xyz, color, opaque)
    want = np.bincount(expected[:, 1], minlength=256) * 0.5**2

    merged = _import_as(path, "merge", voxel_size=0.5, frame=frame)
    assert len(merged.data.polygons) == len(expected)
    greedy = _import_as(path, "greedy", voxel_size=0.5, frame=frame)
    mesh = greedy.data
    assert len(mesh.polygons) < len(expected)
    assert not greedy.modifiers and not any(p.use_smooth for p in mesh.polygons)
    area, index, _ = _face_arrays(mesh)
    got = np.bincount(index, weights=area, minlength=256)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Every corner of a face sits on its palette texel.
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    mesh.uv_layers["Palette"].data.foreach_get("uv", uv)
    sizes = np.empty(len(mesh.polygons), dtype=np.int32)
    mesh.polygons.foreach_get("loop_total", sizes)
    np.testing.assert_array_equal(np.floor(uv[0::2] * 256).astype(int), np.repeat(index, sizes))
    # Coincident corners are one vertex: merging by distance finds nothing left to merge.
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    assert len(np.unique(co.reshape(-1, 3), axis=0)) == len(mesh.vertices)


def _matl_file() -> bytes:
    """A 4x3x3 block of plain colours with an emissive, a metal and a glass stripe."""
    import voxwriter as w

    def color(x: int, y: int) -> int:
        return {0: 1, 1: 3, 2: 5}[y] if x < 3 else 2

    voxels = [(x, y, z, color(x, y)) for x in range(4) for y in range(3) for z in range(3)]
    return w.vox_file(
        w.model((4, 3, 3), voxels),
        w.matl(2, {"_type": "_glass", "_trans": 0.9, "_rough": 0.2, "_ior": 0.5}),
        w.matl(3, {"_type": "_emit", "_emit": 1.0, "_flux": 1}),
        w.matl(5, {"_type": "_metal", "_metal": 0.8, "_rough": 0.3}),
        w.matl(9, {"_type": "_metal", "_metal": 0.5}),  # declared, used by no voxel
    )


def _bsdf(mat):
    return next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")


@pytest.mark.parametrize("mode", ["merge", "greedy", "watertight"])
def test_matl_kinds_keep_their_own_material_slots(scene, tmp_path: Path, mode: str) -> None:
    path = tmp_path / "matl.vox"
    path.write_bytes(_matl_file())
    vox = voxfile.read_file(path)
    obj = _import_as(path, mode)
    mesh = obj.data
    names = [m.name for m in mesh.materials]
    assert names == [
        "matl Voxels",
        "matl Voxels Glass 2",
        "matl Voxels Emit 3",
        "matl Voxels Metal 5",
    ]
    _, index, slot = _face_arrays(mesh)
    expected_slot = {1: 0, 2: 1, 3: 2, 5: 3}
    np.testing.assert_array_equal(slot, [expected_slot[i] for i in index.tolist()])
    assert set(index.tolist()) == {1, 2, 3, 5}

    plain, glass, emit, metal = (_bsdf(m) for m in mesh.materials)
    palette = _palette_image_of(mesh.materials[0])
    for bsdf in (plain, glass, emit, metal):  # one palette texture, read through the UVs
        link = bsdf.inputs["Base Color"].links[0]
        assert link.from_node.image == palette and link.from_node.interpolation == "Closest"
    assert plain.inputs["Metallic"].default_value == 0.0
    assert not plain.inputs["Emission Strength"].is_linked
    assert metal.inputs["Metallic"].default_value == pytest.approx(vox.materials[5].metal)
    assert metal.inputs["Roughness"].default_value == pytest.approx(0.3)
    assert emit.inputs["Emission Strength"].default_value == pytest.approx(2.0)
    assert emit.inputs["Emission Color"].links[0].from_node.image == palette
    assert glass.inputs["Transmission Weight"].default_value == pytest.approx(0.9)
    assert glass.inputs["IOR"].default_value == pytest.approx(vox.materials[2].ior)


def test_metal_fixture_gets_a_metal_slot_in_the_greedy_mesh(scene) -> None:
    path = fixture_path("vox", "metal-material.vox")
    vox = voxfile.read_file(path)
    obj = _import_as(path, "greedy")
    _, index, slot = _face_arrays(obj.data)
    metals = sorted({i for i in index.tolist() if vox.materials[i].kind == "metal"})
    assert metals == [85]
    mat = obj.data.materials[int(slot[index == 85][0])]
    assert mat.name == "metal-material Voxels Metal 85"
    assert _bsdf(mat).inputs["Metallic"].default_value == pytest.approx(vox.materials[85].metal)
    assert np.all(slot[index != 85] == 0)


def _palette_image_of(material):
    return _bsdf(material).inputs["Base Color"].links[0].from_node.image


def _gltf_round_trip(obj, path: Path) -> list:
    """Export `obj` alone to .glb and import it back; the mesh objects that came in."""
    import bpy

    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    result = bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", use_selection=True)
    assert result == {"FINISHED"}
    before = set(bpy.data.objects)
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    return [o for o in bpy.data.objects if o not in before and o.type == "MESH"]


def _triangle_colours(obj, voxel_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per triangle of an imported glTF mesh with area: the texel colour (sRGB bytes) its
    base colour texture shows at its UV, the voxel cell behind it, and its material."""
    mesh = obj.data
    n = len(mesh.polygons)
    totals = np.empty(n, dtype=np.int32)
    mesh.polygons.foreach_get("loop_total", totals)
    assert np.all(totals == 3)
    verts = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", verts)
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    world = np.array(obj.matrix_world)
    co = co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
    tri = co[verts].reshape(-1, 3, 3) / voxel_size
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    keep = np.linalg.norm(normal, axis=1) > 1e-6  # collinear corners make empty triangles
    unit = np.rint(normal[keep] / np.linalg.norm(normal[keep], axis=1)[:, None])
    centre = tri[keep].mean(axis=1)
    cell = np.floor(centre - 0.5 * unit + 1e-4).astype(np.int64)
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    mesh.uv_layers[0].data.foreach_get("uv", uv)
    u = uv[0::2].reshape(-1, 3)[keep]
    assert np.all(np.ptp(u, axis=1) < 1e-6), "a face's corners share one texel"
    slot = np.empty(n, dtype=np.int32)
    mesh.polygons.foreach_get("material_index", slot)
    slot = slot[keep]
    texel = np.zeros((len(u), 3), dtype=np.int64)
    for s in np.unique(slot).tolist():
        image = _palette_image_of(mesh.materials[s])
        pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        row = np.rint(pixels.reshape(-1, 4)[:, :3] * 255).astype(np.int64)[: image.size[0]]
        at = np.clip(np.floor(u[slot == s, 0] * image.size[0]).astype(int), 0, image.size[0] - 1)
        texel[slot == s] = row[at]
    return texel, cell, slot


@pytest.mark.parametrize("mode", ["greedy", "watertight"])
@pytest.mark.parametrize("case", ["chr_knight.vox", "test_groups.vox", "matl"])
def test_gltf_export_of_greedy_mesh_shows_the_palette_colour_of_every_face(
    scene, tmp_path: Path, mode: str, case: str
) -> None:
    if case == "matl":
        path = tmp_path / "matl.vox"
        path.write_bytes(_matl_file())
    else:
        path = fixture_path("vox", case)
    vox = voxfile.read_file(path)
    xyz, color, _ = _shown_voxels(vox)
    obj = _import_as(path, mode, voxel_size=0.5)
    (back,) = _gltf_round_trip(obj, tmp_path / "round.glb")
    texel, cell, slot = _triangle_colours(back, 0.5)
    assert len(texel) >= len(obj.data.polygons)
    # The voxel behind each triangle, and the palette colour it has in the file.
    lookup = {tuple(v): c for v, c in zip(xyz.tolist(), color.tolist(), strict=True)}
    index = np.array([lookup[tuple(c)] for c in cell.tolist()])
    np.testing.assert_array_equal(texel, vox.palette[index, :3].astype(np.int64))
    assert len(np.unique(index)) > 3
    if case == "matl":  # the constants survive the exporter too
        mats = {int(index[slot == s][0]): back.data.materials[s] for s in np.unique(slot)}
        assert _bsdf(mats[5]).inputs["Metallic"].default_value == pytest.approx(0.8, abs=1e-3)
        assert _bsdf(mats[1]).inputs["Metallic"].default_value == pytest.approx(0.0)
        strength = _bsdf(mats[3]).inputs["Emission Strength"].default_value
        assert strength == pytest.approx(2.0, abs=1e-3)
        assert _bsdf(mats[2]).inputs["Transmission Weight"].default_value == pytest.approx(0.9)


def _write_shape(path: Path, xyz: np.ndarray, color: np.ndarray) -> None:
    import voxwriter as w

    local = xyz - xyz.min(axis=0)
    dims = tuple(int(d) + 1 for d in local.max(axis=0))
    path.write_bytes(w.vox_file(w.model(dims, np.column_stack([local, color]))))


@pytest.mark.parametrize("shape", ["bumpy cube", "L", "hollow box"])
def test_watertight_mesh_is_manifold(scene, tmp_path: Path, shape: str) -> None:
    import bmesh
    from test_voxmesh import manifold_shapes

    xyz, color = manifold_shapes()[shape]
    path = tmp_path / "shape.vox"
    _write_shape(path, xyz, color)

    def problems(obj) -> tuple[int, int]:
        bm = bmesh.new()
        try:
            bm.from_mesh(obj.data)
            bad = sum(
                1 for e in bm.edges if len(e.link_faces) != 2 or not e.is_manifold or e.is_boundary
            )
            flipped = sum(1 for e in bm.edges if not e.is_contiguous)
            return bad, flipped
        finally:
            bm.free()

    greedy = _import_as(path, "greedy")
    faces = len(greedy.data.polygons)
    if shape != "hollow box":  # the colour stripes there happen to meet corner to corner
        assert problems(greedy)[0] > 0  # plain greedy faces leave T-junctions: open edges
    obj = _import_as(path, "watertight")
    assert len(obj.data.polygons) == faces
    assert problems(obj) == (0, 0)
    area, index, _ = _face_arrays(obj.data)
    want = np.bincount(_reference_faces_of(xyz, color)[:, 1], minlength=256) * 0.1**2
    np.testing.assert_allclose(np.bincount(index, weights=area, minlength=256), want, rtol=1e-4)


def _reference_faces_of(xyz: np.ndarray, color: np.ndarray) -> np.ndarray:
    from test_voxmesh import _reference_faces

    return _reference_faces(xyz, color.astype(np.int64), np.ones(len(xyz), dtype=bool))


def test_greedy_and_watertight_options_imply_merge(scene) -> None:
    import bpy

    props = bpy.ops.conjure.import_vox.get_rna_type().properties
    assert props["greedy"].name == "Greedy Faces" and props["watertight"].name == "Watertight"
    assert props["greedy"].description and props["watertight"].description
    path = fixture_path("vox", "chr_cat.vox")
    obj = _import_as(path, "watertight")
    assert not obj.modifiers and len(obj.data.polygons) > 0
    sizes = np.empty(len(obj.data.polygons), dtype=np.int32)
    obj.data.polygons.foreach_get("loop_total", sizes)
    assert sizes.max() > 4  # n-gons: corners inserted where other faces meet the edges


@pytest.mark.parametrize("mode", ["merge", "greedy", "watertight"])
@pytest.mark.parametrize("case", ["teapot.vox", "test_groups.vox", "written"])
def test_merged_mesh_holds_the_polygons_exactly_and_is_valid(
    scene, tmp_path: Path, case: str, mode: str
) -> None:
    """The builder writes through Blender's attributes and skips validate(): the mesh must
    hold the meshed arrays as they are, and validate() must find nothing to fix."""
    if case == "written":
        path = tmp_path / "written.vox"
        path.write_bytes(_scene_with_rotations_hidden_layer_and_frames())
    else:
        path = fixture_path("vox", case)
    xyz, color, opaque = _shown_voxels(voxfile.read_file(path))
    if mode == "merge":
        polys = voxmesh.shared_polygons(voxmesh.unit_faces(xyz, color, opaque))
    else:
        polys = voxmesh.greedy_faces(xyz, color, opaque)
        polys = (voxmesh.watertight_polygons if mode == "watertight" else voxmesh.shared_polygons)(
            polys
        )
    mesh = _import_as(path, mode, voxel_size=0.5).data

    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    np.testing.assert_array_equal(co.reshape(-1, 3), (polys.vertices * 0.5).astype(np.float32))
    loops = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    np.testing.assert_array_equal(loops, polys.loops)
    starts = np.empty(len(mesh.polygons), dtype=np.int32)
    mesh.polygons.foreach_get("loop_start", starts)
    np.testing.assert_array_equal(starts, polys.starts)
    smooth = np.empty(len(mesh.polygons), dtype=bool)
    mesh.polygons.foreach_get("use_smooth", smooth)
    assert not smooth.any()
    _, index, slot = _face_arrays(mesh)
    np.testing.assert_array_equal(index, polys.color)
    assert not slot.any()  # no MATL kinds in these files: every face on the palette slot
    assert mesh.uv_layers.active.name == "Palette" and mesh.uv_layers.active.active_render
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    mesh.uv_layers["Palette"].data.foreach_get("uv", uv)
    np.testing.assert_allclose(uv[0::2], np.repeat((polys.color + 0.5) / 256, polys.sizes))
    np.testing.assert_array_equal(uv[1::2], 0.5)
    assert len(mesh.edges) > 0
    assert mesh.validate(verbose=False, clean_customdata=False) is False
