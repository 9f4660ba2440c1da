"""importers.meshprep in real Blender: face budget, LODs, merge, applied transforms, smooth."""

from __future__ import annotations

import importlib
import itertools
import time

import numpy as np
import pytest

from conftest import ADDON_ID


@pytest.fixture
def meshprep(scene):
    return importlib.import_module(f"{ADDON_ID}.importers.meshprep")


@pytest.fixture
def home(scene):
    """The import's collection, as imports.py makes it: under the scene's."""
    import bpy

    collection = bpy.data.collections.new("Import")
    scene.collection.children.link(collection)
    return collection


def _sheet(home, name: str, columns: int, rows: int, triangulate: bool = False, wave=0.2):
    """A wavy sheet of columns x rows quads (or twice as many triangles) with two UV maps,
    material A on one half and B on the other. (bmesh's UV sphere takes 13 s for 100k.)"""
    import bmesh
    import bpy

    bm = bmesh.new()
    bmesh.ops.create_grid(bm, x_segments=columns, y_segments=rows, size=1.0)
    if triangulate:
        bmesh.ops.triangulate(bm, faces=bm.faces[:])
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    co[:, 2] = wave * np.sin(6 * co[:, 0]) * np.cos(4 * co[:, 1])
    mesh.vertices.foreach_set("co", co.ravel())
    corner_vertex = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", corner_vertex)
    for uv_name in ("UVMap", "Detail"):
        mesh.uv_layers.new(name=uv_name).data.foreach_set("uv", co[corner_vertex, :2].ravel())
    for material in ("A", "B"):
        mesh.materials.append(bpy.data.materials.get(material) or bpy.data.materials.new(material))
    centres = np.empty(len(mesh.polygons) * 3, dtype=np.float32)
    mesh.polygons.foreach_get("center", centres)
    mesh.polygons.foreach_set("material_index", (centres[1::3] < 0).astype(np.int32))
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    home.objects.link(obj)
    return obj


def _cube(home, name: str, size: float = 2.0):
    import bmesh
    import bpy

    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=size)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    home.objects.link(obj)
    return obj


def _world_points(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float64)
    obj.data.vertices.foreach_get("co", co)
    points = np.c_[co.reshape(-1, 3), np.ones(len(obj.data.vertices))]
    return (points @ np.array(obj.matrix_world).T)[:, :3]


def _world_normals(obj) -> np.ndarray:
    normals = np.empty(len(obj.data.polygons) * 3, dtype=np.float64)
    obj.data.polygons.foreach_get("normal", normals)
    linear = np.array(obj.matrix_world.to_3x3().inverted().transposed())
    turned = normals.reshape(-1, 3) @ linear.T
    return turned / np.linalg.norm(turned, axis=1)[:, None]


def _used_materials(mesh) -> set[int]:
    index = np.empty(len(mesh.polygons), dtype=np.int32)
    mesh.polygons.foreach_get("material_index", index)
    return set(np.unique(index).tolist())


def test_budget_decimates_100k_to_5000(meshprep, home) -> None:
    import bpy

    obj = _sheet(home, "Rock", 250, 200, triangulate=True)  # as generated assets come
    obj.material_slots[1].link = "OBJECT"  # object-linked slots survive the new mesh too
    obj.material_slots[1].material = bpy.data.materials.new("C")
    mesh_name = obj.data.name
    assert len(obj.data.polygons) == 100_000

    start = time.perf_counter()
    done = meshprep.prepare([obj], home, meshprep.MeshPrep(max_faces=5000))
    took = time.perf_counter() - start

    faces = len(obj.data.polygons)
    assert 4750 <= faces <= 5000, faces
    assert done.objects == [obj] and not done.warnings
    assert done.summary == f"100,000 → {faces:,} faces (Decimate)"
    assert obj.name == "Rock" and list(obj.users_collection) == [home]
    assert obj.data.name == mesh_name and not obj.modifiers
    assert [uv.name for uv in obj.data.uv_layers] == ["UVMap", "Detail"]
    assert [m.name for m in obj.data.materials] == ["A", "B"]
    assert [(s.link, s.material.name) for s in obj.material_slots] == [
        ("DATA", "A"),
        ("OBJECT", "C"),
    ]
    assert _used_materials(obj.data) == {0, 1}
    assert "Conjure Decimate" not in bpy.data.objects and len(bpy.data.meshes) == 1
    assert took < 5, f"100k → 5k took {took:.1f} s"  # about 0.7 s here


def test_within_budget_is_untouched(meshprep, home) -> None:
    obj = _sheet(home, "Small", 40, 20)
    mesh = obj.data
    done = meshprep.prepare([obj], home, meshprep.MeshPrep(max_faces=800))
    assert obj.data == mesh and obj.data.as_pointer() == mesh.as_pointer()
    assert (len(mesh.polygons), len(mesh.vertices)) == (800, 41 * 21)
    assert done.summary == "" and not done.warnings


def test_budget_is_split_by_face_count(meshprep, home) -> None:
    big = _sheet(home, "Big", 200, 150, triangulate=True)  # triangles, as generated assets
    small = _sheet(home, "Small", 200, 100)  # quads
    assert (len(big.data.polygons), len(small.data.polygons)) == (60_000, 20_000)

    done = meshprep.prepare([big, small], home, meshprep.MeshPrep(max_faces=8000))

    total = meshprep.face_count(done.objects)
    assert 7600 <= total <= 8000, total
    split = len(big.data.polygons) / len(small.data.polygons)
    assert 2.7 < split < 3.3, split
    assert done.summary == f"80,000 → {total:,} faces (Decimate)"


def test_linked_duplicates_are_decimated_once(meshprep, home) -> None:
    import bpy

    first = _sheet(home, "Wheel", 100, 50)  # 5000 faces, twice
    second = bpy.data.objects.new("Wheel.R", first.data)
    home.objects.link(second)
    done = meshprep.prepare([first, second], home, meshprep.MeshPrep(max_faces=4000))
    assert first.data == second.data and first.data.users == 2
    assert 3800 <= meshprep.face_count(done.objects) <= 4000
    assert len(bpy.data.meshes) == 1


def test_lods_are_hidden_siblings_halving(meshprep, home) -> None:
    import bpy
    from mathutils import Euler, Matrix

    parent = bpy.data.objects.new("Holder", None)
    home.objects.link(parent)
    parent.matrix_world = Matrix.Translation((1, 2, 3)) @ Euler((0.3, 0, 0.5)).to_matrix().to_4x4()
    obj = _sheet(home, "Statue", 80, 50)  # 4000 faces
    obj.parent = parent
    obj.matrix_parent_inverse = parent.matrix_world.inverted()
    obj.location = (0.5, 0, 0)
    bpy.context.view_layer.update()

    done = meshprep.prepare([parent, obj], home, meshprep.MeshPrep(lods=3))

    assert [o.name for o in done.objects] == ["Holder", "Statue_LOD0", "Statue_LOD1", "Statue_LOD2"]
    levels = done.objects[1:]
    faces = [len(o.data.polygons) for o in levels]
    assert faces[0] == 4000
    for before, after in itertools.pairwise(faces):
        assert 0.45 * before <= after <= 0.55 * before, faces
    assert len({o.data.name for o in levels}) == 3
    bpy.context.view_layer.update()
    for lod in levels[1:]:
        assert lod.parent == parent and lod.matrix_parent_inverse == obj.matrix_parent_inverse
        assert np.allclose(np.array(lod.matrix_world), np.array(obj.matrix_world), atol=1e-6)
        assert list(lod.users_collection) == [home]
        assert lod.hide_render and lod.hide_get()
        assert [uv.name for uv in lod.data.uv_layers] == ["UVMap", "Detail"]
        assert _used_materials(lod.data) == {0, 1}
    assert not obj.hide_render and not obj.hide_get()
    assert done.summary == "3 LODs" and not done.warnings


def test_lods_of_a_tiny_mesh_are_copies_with_one_warning(meshprep, home) -> None:
    cube = _cube(home, "Box")
    done = meshprep.prepare([cube], home, meshprep.MeshPrep(lods=3))
    assert [o.name for o in done.objects] == ["Box_LOD0", "Box_LOD1", "Box_LOD2"]
    assert [len(o.data.polygons) for o in done.objects] == [6, 6, 6]
    assert len({o.data.as_pointer() for o in done.objects}) == 3
    assert len(done.warnings) == 1 and "too few to halve" in done.warnings[0]


def test_budget_then_lods(meshprep, home) -> None:
    obj = _sheet(home, "Tree", 100, 100)  # 10k
    done = meshprep.prepare([obj], home, meshprep.MeshPrep(max_faces=2000, lods=2))
    lod0, lod1 = done.objects
    assert 1900 <= len(lod0.data.polygons) <= 2000
    assert 0.45 <= len(lod1.data.polygons) / len(lod0.data.polygons) <= 0.55
    assert done.summary.startswith("10,000 → ") and done.summary.endswith("(Decimate), 2 LODs")


def test_merge_by_distance(meshprep, home) -> None:
    import bmesh
    import bpy

    bm = bmesh.new()
    bmesh.ops.create_grid(bm, x_segments=10, y_segments=10, size=1.0)
    bmesh.ops.split_edges(bm, edges=bm.edges[:])  # every quad on its own four vertices
    mesh = bpy.data.meshes.new("Loose")
    bm.to_mesh(mesh)
    bm.free()
    mesh.uv_layers.new(name="UVMap")
    obj = bpy.data.objects.new("Loose", mesh)
    home.objects.link(obj)
    assert (len(mesh.vertices), len(mesh.polygons)) == (400, 100)

    done = meshprep.prepare([obj], home, meshprep.MeshPrep(merge_distance=1e-4))

    assert (len(obj.data.vertices), len(obj.data.polygons)) == (121, 100)
    assert [uv.name for uv in obj.data.uv_layers] == ["UVMap"]
    assert done.summary == "279 vertices merged"


def test_apply_transforms_keeps_world_placement(meshprep, home) -> None:
    import bpy
    from mathutils import Euler, Vector

    obj = _sheet(home, "Turned", 24, 12)
    obj.location = Vector((1.0, -2.0, 0.5))
    obj.rotation_euler = Euler((0.4, -0.7, 1.2))
    obj.scale = Vector((2.0, 0.5, -1.5))  # a mirror too: faces must not turn inside out
    child = bpy.data.objects.new("Child", None)
    home.objects.link(child)
    child.parent = obj
    child.location = (0.3, 0.2, 0.1)
    child.rotation_euler = (0.1, 0.2, 0.3)
    bpy.context.view_layer.update()
    points, normals = _world_points(obj), _world_normals(obj)
    child_world = np.array(child.matrix_world)

    done = meshprep.prepare([obj, child], home, meshprep.MeshPrep(apply_transforms=True))
    bpy.context.view_layer.update()

    basis = np.array(obj.matrix_basis)
    assert np.allclose(basis[:3, :3], np.eye(3), atol=1e-6)
    assert np.allclose(basis[:3, 3], [1.0, -2.0, 0.5], atol=1e-6)
    assert np.allclose(_world_points(obj), points, atol=1e-5)
    assert np.allclose(_world_normals(obj), normals, atol=1e-4)
    assert np.allclose(np.array(child.matrix_world), child_world, atol=1e-5)
    assert done.summary == "rotation and scale applied"


def test_apply_transforms_splits_differently_turned_duplicates(meshprep, home) -> None:
    import bpy

    first = _cube(home, "Leg")
    second = bpy.data.objects.new("Leg.001", first.data)
    home.objects.link(second)
    second.rotation_euler = (0.0, 0.0, 0.8)
    second.scale = (1.0, 2.0, 1.0)
    bpy.context.view_layer.update()
    before = [_world_points(first), _world_points(second)]

    meshprep.prepare([first, second], home, meshprep.MeshPrep(apply_transforms=True))
    bpy.context.view_layer.update()

    assert first.data != second.data
    assert np.allclose(_world_points(first), before[0], atol=1e-5)
    assert np.allclose(_world_points(second), before[1], atol=1e-5)


def test_smooth_by_angle(meshprep, home) -> None:
    cube = _cube(home, "Crate")
    cube.data.normals_split_custom_set([(0.0, 0.0, 1.0)] * len(cube.data.loops))
    sheet = _sheet(home, "Sheet", 32, 16, wave=0.05)

    done = meshprep.prepare([cube, sheet], home, meshprep.MeshPrep(smooth_angle=30))

    for mesh in (cube.data, sheet.data):
        assert all(p.use_smooth for p in mesh.polygons)
    assert all(e.use_edge_sharp for e in cube.data.edges)  # 90° > 30°
    assert not any(e.use_edge_sharp for e in sheet.data.edges)  # gentle waves
    corners = np.array([tuple(n.vector) for n in cube.data.corner_normals])
    faces = np.array([tuple(p.normal) for p in cube.data.polygons for _ in range(p.loop_total)])
    assert np.allclose(corners, faces, atol=1e-5)  # the file's custom normals are gone
    assert done.summary == "smooth by angle 30°"


def test_odd_input_passes_through(meshprep, home) -> None:
    import bpy

    empty_mesh = bpy.data.objects.new("Nothing", bpy.data.meshes.new("Nothing"))
    lamp = bpy.data.objects.new("Lamp", bpy.data.lights.new("Lamp", "POINT"))
    text = bpy.data.objects.new("Text", bpy.data.curves.new("Text", "FONT"))
    for obj in (empty_mesh, lamp, text):
        home.objects.link(obj)
    prep = meshprep.MeshPrep(
        max_faces=10, lods=2, merge_distance=0.01, smooth_angle=30, apply_transforms=True
    )
    assert prep.active and not meshprep.MeshPrep().active

    done = meshprep.prepare([empty_mesh, lamp, text], home, prep)

    assert done.objects == [empty_mesh, lamp, text] and done.summary == ""
    assert done.warnings == ["left as imported, no faces: Nothing"]
    assert empty_mesh.name == "Nothing"
    assert meshprep.face_count(done.objects) == 0


def test_budget_too_small_for_many_parts_warns(meshprep, home) -> None:
    boxes = [_cube(home, f"Box{i}") for i in range(10)]
    done = meshprep.prepare(boxes, home, meshprep.MeshPrep(max_faces=30))
    assert [len(b.data.polygons) for b in boxes] == [6] * 10
    assert done.warnings == ["face budget 30 not met: 60 faces, in parts too small"]


def test_blender_refusing_a_step_is_one_line_value_error(meshprep, home, monkeypatch) -> None:
    obj = _sheet(home, "Rock", 20, 20)

    def refuse(*_args):
        raise RuntimeError("Error: out of memory\nmore detail")

    monkeypatch.setattr(meshprep, "_decimate", refuse)
    with pytest.raises(ValueError, match=r"^Mesh clean-up failed: Error: out of memory$"):
        meshprep.prepare([obj], home, meshprep.MeshPrep(max_faces=100))


@pytest.mark.parametrize(
    "options",
    [{"max_faces": -1}, {"lods": 7}, {"merge_distance": float("nan")}, {"smooth_angle": 200}],
)
def test_bad_options_are_refused(meshprep, options) -> None:
    with pytest.raises(ValueError):
        meshprep.MeshPrep(**options)
