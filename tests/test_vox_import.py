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
def test_voxel_size_and_material_reach_the_evaluated_cubes(scene, tmp_path: Path, voxel_size) -> None:
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
