"""glTF/GLB import in real Blender: the installed add-on's `importers.gltf` on models that
Blender itself exports (a textured cube as .gltf + .bin + .png, a rigged and animated GLB) and
then edits, and on the Khronos sample files in ../shared/fixtures/gltf: confined to the job
folder, all or nothing, no importer leftovers."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from blenddata import data_names
from blenddata import target_collection as _target
from gltfdoc import bad_json, glb, json_length_too_big, parse_glb, png, truncated

from conftest import fixture_path

# -------------------------------------------------------------------------- Blender helpers

KINDS = ("objects", "meshes", "materials", "images", "collections", "actions", "armatures")
KINDS += ("textures", "node_groups", "cameras", "lights")


def _gltf(addon: ModuleType) -> ModuleType:
    return importlib.import_module(f"{addon.__name__}.importers.gltf")


def _names() -> dict[str, set[str]]:
    return data_names(KINDS)


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _textured_material(texture: Path) -> Any:
    import bpy

    material = bpy.data.materials.new("Wood")
    if material.node_tree is None:
        material.use_nodes = True
    nodes = material.node_tree.nodes
    node = nodes.new("ShaderNodeTexImage")
    node.image = bpy.data.images.load(str(texture))
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    material.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def _export_textured_cube(folder: Path) -> Path:
    """folder/model.gltf + model.bin + wood.png (4x4), as Blender's exporter writes them."""
    import bpy

    source = folder.parent / "source"
    source.mkdir(parents=True, exist_ok=True)
    (source / "wood.png").write_bytes(png(4, 4, (200, 120, 40)))
    folder.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    bpy.context.object.data.materials.append(_textured_material(source / "wood.png"))
    model = folder / "model.gltf"
    assert bpy.ops.export_scene.gltf(filepath=str(model), export_format="GLTF_SEPARATE") == {
        "FINISHED"
    }
    bpy.ops.wm.read_homefile(use_empty=True)
    doc = json.loads(model.read_text())
    assert [i["uri"] for i in doc["images"]] == ["wood.png"]
    assert [b["uri"] for b in doc["buffers"]] == ["model.bin"]
    return model


def _export_rig(path: Path, export_format: str = "GLB") -> Path:
    """An armature with two bones, a skinned, textured cube and a bone animation."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    armature = bpy.data.armatures.new("Rig")
    rig = bpy.data.objects.new("Rig", armature)
    bpy.context.scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    root = armature.edit_bones.new("Root")
    root.head, root.tail = (0, 0, 0), (0, 0, 1)
    tip = armature.edit_bones.new("Tip")
    tip.head, tip.tail, tip.parent = (0, 0, 1), (0, 0, 2), root
    bpy.ops.object.mode_set(mode="OBJECT")

    bpy.ops.mesh.primitive_cube_add(size=1, location=(0, 0, 1))
    body = bpy.context.object
    body.name = "Body"
    texture = path.parent.parent / "rig_wood.png"
    texture.write_bytes(png(4, 4, (10, 200, 10)))
    body.data.materials.append(_textured_material(texture))
    low, high = body.vertex_groups.new(name="Root"), body.vertex_groups.new(name="Tip")
    for v in body.data.vertices:
        (low if v.co.z < 0 else high).add([v.index], 1.0, "REPLACE")
    body.parent = rig
    body.modifiers.new("Armature", "ARMATURE").object = rig

    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="POSE")
    bone = rig.pose.bones["Tip"]
    bone.rotation_mode = "XYZ"
    bone.keyframe_insert("rotation_euler", frame=1)
    bone.rotation_euler = (0.5, 0, 0)
    bone.keyframe_insert("rotation_euler", frame=10)
    bpy.ops.object.mode_set(mode="OBJECT")

    path.parent.mkdir(parents=True, exist_ok=True)
    result = bpy.ops.export_scene.gltf(filepath=str(path), export_format=export_format)
    assert result == {"FINISHED"}
    bpy.ops.wm.read_homefile(use_empty=True)
    return path


def test_the_importers_progress_lines_are_not_printed(scene, addon, tmp_path, capsys) -> None:
    """Blender's glTF importer logs three INFO lines per file; a batch would print hundreds.
    Conjure drops those while it imports; its warnings still show."""
    import bpy

    model = _export_textured_cube(tmp_path / "job")
    capsys.readouterr()
    bpy.ops.import_scene.gltf(filepath=str(model))  # Blender's own operator: it does print
    assert "| INFO: " in capsys.readouterr().out
    bpy.ops.wm.read_homefile(use_empty=True)
    collection = _target(bpy.context.scene)
    result = _gltf(addon).import_gltf(str(model), collection, (0, 0, 0), str(tmp_path / "job"))
    assert len(result.objects) == 1
    assert "| INFO: " not in capsys.readouterr().out


def _inside(path: str, root: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, top]) == top


# ---------------------------------------------------------------------- import_gltf (Blender)


def test_texture_inside_the_job_folder_is_imported_and_packed(scene, addon, tmp_path) -> None:
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    model = _export_textured_cube(job)
    collection = _target(bpy.context.scene)

    result = gltf.import_gltf(str(model), collection, (1, 2, 3), str(job))

    assert result.warnings == []
    assert [o.type for o in result.objects] == ["MESH"]
    assert result.objects[0].users_collection == (collection,)
    assert tuple(result.objects[0].location) == pytest.approx((1, 2, 3))
    (image,) = bpy.data.images
    assert image.packed_file is not None and tuple(image.size) == (4, 4)
    assert not (job / "model.confined.gltf").exists()


@pytest.mark.parametrize("kind", ["absolute", "parent", "file_url", "symlink"])
def test_texture_outside_the_job_folder_is_left_out(scene, addon, tmp_path, kind) -> None:
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    model = _export_textured_cube(job)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png(3, 5, (255, 0, 0)))
    (job / "link.png").symlink_to(outside)
    uri = {
        "absolute": str(outside),
        "parent": "../outside.png",
        "file_url": outside.as_uri(),
        "symlink": "link.png",
    }[kind]
    _edit_json(model, lambda doc: doc["images"][0].update(uri=uri))
    collection = _target(bpy.context.scene)

    result = gltf.import_gltf(str(model), collection, (0, 0, 0), str(job))

    assert len(result.warnings) == 1 and f"'{uri}'" in result.warnings[0]
    (obj,) = result.objects
    assert obj.users_collection == (collection,) and obj.active_material.name.startswith("Wood")
    assert len(bpy.data.images) == 1  # the material keeps a (blank) texture
    for image in bpy.data.images:
        path = bpy.path.abspath(image.filepath) if image.filepath else ""
        assert not path or _inside(path, job), path
        packed = image.packed_file
        assert packed is None or bytes(packed.data) != outside.read_bytes()
        assert tuple(image.size) != (3, 5)


@pytest.mark.parametrize("uri", ["../outside.bin", "ABSOLUTE"])
def test_buffer_outside_the_job_folder_fails_and_changes_nothing(
    scene, addon, tmp_path, uri
) -> None:
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    model = _export_textured_cube(job)
    shutil.move(job / "model.bin", tmp_path / "outside.bin")
    uri = str(tmp_path / "outside.bin") if uri == "ABSOLUTE" else uri
    _edit_json(model, lambda doc: doc["buffers"][0].update(uri=uri))
    collection = _target(bpy.context.scene)
    before = _names()

    with pytest.raises(gltf.GltfImportError) as err:
        gltf.import_gltf(str(model), collection, (0, 0, 0), str(job))

    assert f"'{uri}'" in str(err.value) and "\n" not in str(err.value)
    assert _names() == before
    assert len(collection.objects) == 0


def test_failure_midway_removes_everything_the_importer_made(scene, addon, tmp_path) -> None:
    """A bad animation accessor: the importer fails after making objects, meshes, an armature,
    a material, an image and an action. The plain importer leaves them; import_gltf may not."""
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    model = _export_rig(job / "rig.gltf", export_format="GLTF_SEPARATE")

    def break_animation(doc: dict[str, Any]) -> None:
        doc["accessors"][doc["animations"][0]["samplers"][0]["input"]]["count"] = 10**6

    _edit_json(model, break_animation)
    collection = _target(bpy.context.scene)
    before = _names()

    with pytest.raises(gltf.GltfImportError) as err:
        gltf.import_gltf(str(model), collection, (0, 0, 0), str(job))

    assert str(err.value) and "\n" not in str(err.value)
    assert _names() == before
    assert collection.name in bpy.data.collections and len(collection.objects) == 0

    with pytest.raises(RuntimeError):  # the scenario is real: the bare importer leaves debris
        bpy.ops.import_scene.gltf(filepath=str(model))
    after = _names()
    assert after["objects"] - before["objects"] and after["armatures"] - before["armatures"]


def test_rigged_glb_leaves_no_bone_shapes_behind(scene, addon, tmp_path) -> None:
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    model = _export_rig(job / "rig.glb")
    collection = _target(bpy.context.scene)
    before = _names()

    result = gltf.import_gltf(str(model), collection, (1, 2, 3), str(job))

    assert result.warnings == []
    assert "glTF_not_exported" not in bpy.data.collections
    assert _names()["collections"] == before["collections"]  # the importer's own are gone
    assert not [o for o in bpy.data.objects if o.name.startswith("Icosphere")]
    assert not [m for m in bpy.data.meshes if m.name.startswith("Icosphere")]
    assert set(bpy.data.objects) == set(result.objects)
    assert all(o.users_collection == (collection,) for o in result.objects)
    (rig,) = [o for o in result.objects if o.type == "ARMATURE"]
    (body,) = [o for o in result.objects if o.type == "MESH"]
    assert {b.name for b in rig.data.bones} == {"Root", "Tip"}
    assert all(b.custom_shape is None for b in rig.pose.bones)
    assert {g.name for g in body.vertex_groups} >= {"Root", "Tip"}
    assert body.parent == rig or any(m.type == "ARMATURE" for m in body.modifiers)
    assert rig.animation_data is not None and bpy.data.actions
    assert rig.parent is None and tuple(rig.location) == pytest.approx((1, 2, 3))


def test_several_gltf_scenes_end_in_the_target_collection_only(scene, addon, tmp_path) -> None:
    """4.5+ make a Blender scene, a collection per glTF scene and one for orphan nodes."""
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    model = _export_textured_cube(job)

    def add_scenes(doc: dict[str, Any]) -> None:
        node = doc["nodes"][0]
        doc["nodes"] += [dict(node, name="Other"), dict(node, name="Orphan")]
        doc["scenes"] = [{"name": "Main", "nodes": [0]}, {"name": "Second", "nodes": [1]}]
        doc["scene"] = 0

    _edit_json(model, add_scenes)
    collection = _target(bpy.context.scene)
    before = _names()
    scenes = {s.name for s in bpy.data.scenes}

    result = gltf.import_gltf(str(model), collection, (0, 0, 0), str(job))

    assert sorted(o.name for o in result.objects) == ["Cube", "Orphan", "Other"]
    assert all(o.users_collection == (collection,) for o in result.objects)
    assert _names()["collections"] == before["collections"]
    assert {s.name for s in bpy.data.scenes} == scenes


def _bad_asset_version(data: bytes) -> bytes:
    doc, chunks = parse_glb(data)
    doc["asset"]["version"] = "1.0"
    return glb(doc, chunks[0][1])


@pytest.mark.parametrize(
    "corrupt", [truncated, json_length_too_big, bad_json, _bad_asset_version]
)
def test_corrupt_glb_fails_with_one_line_and_changes_nothing(
    scene, addon, tmp_path, corrupt
) -> None:
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    model = _export_rig(job / "rig.glb")
    model.write_bytes(corrupt(model.read_bytes()))
    collection = _target(bpy.context.scene)
    before = _names()

    with pytest.raises(gltf.GltfImportError) as err:
        gltf.import_gltf(str(model), collection, (0, 0, 0), str(job))

    assert str(err.value) and "\n" not in str(err.value) and "Location" not in str(err.value)
    assert _names() == before


@pytest.mark.parametrize("name", ["Duck.glb", "BoxTextured.glb"])
def test_khronos_samples_import_with_materials_and_images(scene, addon, tmp_path, name) -> None:
    import bpy

    gltf = _gltf(addon)
    job = tmp_path / "job"
    job.mkdir()
    model = Path(shutil.copy(fixture_path("gltf", name), job))
    collection = _target(bpy.context.scene)

    result = gltf.import_gltf(str(model), collection, (5, 0, 0), str(job))

    assert result.warnings == []
    assert set(bpy.data.objects) == set(result.objects)
    assert all(o.users_collection == (collection,) for o in result.objects)
    meshes = [o for o in result.objects if o.type == "MESH"]
    assert meshes and all(len(o.data.polygons) > 0 for o in meshes)
    materials = {m for o in meshes for m in o.data.materials if m is not None}
    assert materials
    textured = [
        n.image
        for m in materials
        for n in m.node_tree.nodes
        if n.type == "TEX_IMAGE" and n.image is not None
    ]
    assert textured and all(i.packed_file is not None and i.size[0] > 1 for i in textured)
    roots = [o for o in result.objects if o.parent is None]
    assert roots and all(o.location.x == pytest.approx(5) for o in roots)
    assert sorted(p.name for p in job.iterdir()) == [name]  # nothing rewritten
