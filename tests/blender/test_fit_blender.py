"""importers.fit in real Blender: placeholder boxes from real geometry, results fitted into
them (checked with the result's world vertices expressed in the placeholder's frame)."""

from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest

from conftest import ADDON_ID

MM = 1e-3
CUBE = list(itertools.product((-1.0, 1.0), repeat=3))  # vertex 4x + 2y + z
CUBE_FACES = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


@pytest.fixture
def fit(scene):
    return importlib.import_module(f"{ADDON_ID}.importers.fit")


def _link(name: str, data, parent=None, **transform):
    import bpy

    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    obj.parent = parent
    for key, value in transform.items():
        setattr(obj, key, value)
    return obj


def _mesh(name: str, vertices, faces=(), parent=None, **transform):
    import bpy

    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(map(float, v)) for v in vertices], [], list(faces))
    return _link(name, mesh, parent, **transform)


def _cuboid(low, high):
    """The corners of an axis-aligned box, in CUBE's order."""
    return [
        (x, y, z) for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])
    ]


def _result(location=(5.0, -3.0, 2.0)):
    """A 2 x 1 x 1.5 asset: a box with a smaller box parented on top."""
    root = _mesh("Asset", _cuboid((0, 0, 0), (2, 1, 1)), CUBE_FACES, location=location)
    child = _mesh(
        "Asset Top",
        _cuboid((-0.5, -0.25, 0), (0.5, 0.25, 0.5)),
        CUBE_FACES,
        root,
        location=(1.0, 0.5, 1.0),
    )
    return [root, child]


def _frame(location, rotation=(0.0, 0.0, 0.0)):
    from mathutils import Euler, Matrix

    return Matrix.LocRotScale(location, Euler(rotation), None)


def _box(fit, placeholder):
    import bpy

    return fit.placeholder_box(placeholder, bpy.context.evaluated_depsgraph_get())


def _in_frame(objects, frame) -> np.ndarray:
    """Every vertex of the objects, in `frame` coordinates."""
    import bpy

    bpy.context.view_layer.update()
    to_frame = frame.inverted()
    return np.array(
        [
            tuple(to_frame @ obj.matrix_world @ v.co)
            for obj in objects
            if obj.type == "MESH"
            for v in obj.data.vertices
        ]
    )


def _assert_box(box, frame, low, high) -> None:
    assert box is not None
    np.testing.assert_allclose(np.array(box.frame), np.array(frame), atol=1e-5)
    np.testing.assert_allclose(box.low, low, atol=1e-5)
    np.testing.assert_allclose(box.high, high, atol=1e-5)


def _assert_fits(objects, frame, low, high) -> None:
    """Inside the box (1 % slack), filling it on the limiting axis, base on its bottom and
    centred on x/y; a flat box axis only takes the base."""
    points = _in_frame(objects, frame)
    low, high = np.array(low), np.array(high)
    size = high - low
    got_low, got_high = points.min(axis=0), points.max(axis=0)
    used = size > 1e-6
    slack = 0.01 * size[used]
    assert np.all(got_low[used] >= low[used] - slack), (got_low, low)
    assert np.all(got_high[used] <= high[used] + slack), (got_high, high)
    assert ((got_high - got_low)[used] / size[used]).max() >= 0.99
    assert abs(got_low[2] - low[2]) <= MM
    np.testing.assert_allclose((got_low + got_high)[:2] / 2, (low + high)[:2] / 2, atol=MM)


def _assert_turned(root, frame) -> None:
    """The (unrotated) result now has the frame's rotation."""
    turned = root.matrix_world.to_3x3().normalized()
    np.testing.assert_allclose(np.array(turned), np.array(frame.to_3x3()), atol=1e-5)


def test_scaled_cube_placeholder(fit) -> None:
    holder = _mesh("Holder", CUBE, CUBE_FACES, location=(3, 4, 1), scale=(2, 1, 0.5))
    result = _result()
    box = _box(fit, holder)
    frame = _frame((3, 4, 1))
    _assert_box(box, frame, (-2, -1, -0.5), (2, 1, 0.5))

    assert fit.fit(result, box) == pytest.approx(1 / 1.5)  # the height limits
    _assert_fits(result, frame, box.low, box.high)
    _assert_turned(result[0], frame)


@pytest.mark.parametrize(
    ("rotation", "scale", "expected"),
    [
        ((0, 0, math.radians(30)), (1, 0.5, 3), 1.0),  # x and y limit together
        ((math.radians(25), math.radians(-40), 0), (1.5, 1, 2), 1.5),  # tilted: x limits
    ],
    ids=["turned", "tilted"],
)
def test_rotated_placeholder(fit, rotation, scale, expected) -> None:
    holder = _mesh(
        "Holder", CUBE, CUBE_FACES, location=(-1, 2, 0.5), rotation_euler=rotation, scale=scale
    )
    result = _result()
    box = _box(fit, holder)
    frame = _frame((-1, 2, 0.5), rotation)
    _assert_box(box, frame, [-s for s in scale], scale)

    assert fit.fit(result, box) == pytest.approx(expected)
    _assert_fits(result, frame, box.low, box.high)
    _assert_turned(result[0], frame)


def test_placeholder_under_scaled_rotated_parent(fit) -> None:
    import bpy
    from mathutils import Vector

    parent = _link(
        "Parent",
        None,
        location=(1, 1, 0),
        rotation_euler=(0, 0, math.radians(40)),
        scale=(2, 1, 1.5),
    )
    holder = _mesh("Holder", CUBE, CUBE_FACES, parent, location=(1, 0, 0), scale=(1, 0.5, 1))
    result = _result()
    box = _box(fit, holder)
    bpy.context.view_layer.update()
    where = parent.matrix_world @ Vector((1, 0, 0))
    frame = _frame(where, (0, 0, math.radians(40)))
    _assert_box(box, frame, (-2, -0.5, -1.5), (2, 0.5, 1.5))  # the parent's scale counts

    assert fit.fit(result, box) == pytest.approx(1.0)  # y limits
    _assert_fits(result, frame, box.low, box.high)
    _assert_turned(result[0], frame)


def test_placeholder_measured_from_evaluated_vertices(fit) -> None:
    """A cube turned 45° inside its mesh data, doubled along x by an Array modifier."""
    from mathutils import Matrix, Vector

    turn = Matrix.Rotation(math.radians(45), 3, "Z")
    holder = _mesh("Holder", [turn @ Vector(v) for v in CUBE], CUBE_FACES)
    array = holder.modifiers.new("Array", "ARRAY")
    array.count = 2  # relative offset 1: a second copy right beside the first
    result = _result()
    box = _box(fit, holder)
    r = math.sqrt(2)
    _assert_box(box, _frame((0, 0, 0)), (-r, -r, -1), (3 * r, r, 1))

    fit.fit(result, box)
    _assert_fits(result, _frame((0, 0, 0)), box.low, box.high)


def test_empty_placeholder_is_its_display_cube(fit) -> None:
    empty = _link("Holder", None, location=(0, 0, 3), scale=(2, 2, 2))
    empty.empty_display_type = "CUBE"
    empty.empty_display_size = 0.5
    result = _result()
    box = _box(fit, empty)
    _assert_box(box, _frame((0, 0, 3)), (-1, -1, -1), (1, 1, 1))

    assert fit.fit(result, box) == pytest.approx(1.0)  # 2 x 1 x 1.5 into a cube of side 2
    _assert_fits(result, _frame((0, 0, 3)), box.low, box.high)


def test_empty_placeholder_with_child_is_the_childs_vertices(fit) -> None:
    """A diamond turned 45°: its vertices reach 0.71, its turned bound_box corners 1.41."""
    empty = _link("Holder", None, location=(2, 0, 0), rotation_euler=(0, 0, math.radians(10)))
    empty.empty_display_type = "PLAIN_AXES"
    diamond = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 0.5), (0, 0, -0.5)]
    _mesh("Diamond", diamond, (), empty, rotation_euler=(0, 0, math.radians(45)))
    result = _result()
    box = _box(fit, empty)
    h = math.sqrt(0.5)
    frame = _frame((2, 0, 0), (0, 0, math.radians(10)))
    _assert_box(box, frame, (-h, -h, -0.5), (h, h, 0.5))

    fit.fit(result, box)
    _assert_fits(result, frame, box.low, box.high)


def test_plane_placeholder_fits_on_x_and_y(fit) -> None:
    plane = _mesh(
        "Holder",
        [(x, y, 0) for x in (-1, 1) for y in (-1, 1)],
        [(0, 1, 3, 2)],
        location=(0, 0, 1),
        scale=(3, 0.25, 1),
    )
    result = _result()
    box = _box(fit, plane)
    _assert_box(box, _frame((0, 0, 1)), (-3, -0.25, 0), (3, 0.25, 0))

    assert fit.fit(result, box) == pytest.approx(0.5)  # y limits; the height is free
    _assert_fits(result, _frame((0, 0, 1)), box.low, box.high)


def test_text_placeholder_through_its_mesh(fit) -> None:
    import bpy

    curve = bpy.data.curves.new("Holder", "FONT")
    curve.body = "Box"
    box = _box(fit, _link("Holder", curve))
    assert box is not None
    assert box.high.x - box.low.x > 0.5 and box.high.y - box.low.y > 0.3
    assert box.high.z == box.low.z  # flat text: fitted as a plane


def test_objects_without_extent_have_no_box(fit) -> None:
    import bpy

    light = _link("Lamp", bpy.data.lights.new("Lamp", "POINT"))
    camera = _link("Camera", bpy.data.cameras.new("Camera"))
    point = _mesh("Point", [(1, 2, 3)])
    assert _box(fit, light) is None
    assert _box(fit, camera) is None
    assert _box(fit, point) is None


def test_several_roots_fit_as_one_asset(fit) -> None:
    left = _mesh("Left", _cuboid((0, 0, 0), (1, 1, 1)), CUBE_FACES)
    right = _mesh("Right", _cuboid((0, 0, 0), (1, 1, 2)), CUBE_FACES, location=(3, 0, 0))
    holder = _mesh("Holder", CUBE, CUBE_FACES, location=(0, 5, 0), scale=(4, 4, 4))
    box = _box(fit, holder)

    assert fit.fit([left, right], box) == pytest.approx(2.0)  # 4 x 1 x 2 into 8 x 8 x 8
    _assert_fits([left, right], _frame((0, 5, 0)), box.low, box.high)
    gap = right.matrix_world.translation - left.matrix_world.translation
    assert gap.length == pytest.approx(6.0)  # still side by side, scaled together


def test_pad_widens_a_point_only_result(fit) -> None:
    """Voxel centres with half a voxel of pad: the cubes they instance fill the box."""
    from mathutils import Matrix, Vector

    points = _mesh("Voxels", [(0.5, 0.5, 0.5), (1.5, 0.5, 0.5)], location=(7, 7, 7))
    box = fit.Box(Matrix.Identity(4), Vector((-2, -2, -2)), Vector((2, 2, 2)))

    assert fit.fit([points], box, pad=0.5) == pytest.approx(2.0)  # 2 x 1 x 1 into 4 x 4 x 4
    np.testing.assert_allclose(_in_frame([points], box.frame), [(-1, 0, -1), (1, 0, -1)], atol=1e-5)


def test_result_without_vertices_goes_by_its_origin(fit) -> None:
    from mathutils import Matrix, Vector

    empty = _link("Asset", None, location=(5, 5, 5))
    box = fit.Box(Matrix.Translation((1, 0, 0)), Vector((-1, -1, 0)), Vector((1, 1, 2)))
    assert fit.fit([empty], box) == 1.0
    np.testing.assert_allclose(empty.matrix_world.translation, (1, 0, 0), atol=1e-6)


def test_box_without_size_is_refused(fit) -> None:
    from mathutils import Matrix, Vector

    box = fit.Box(Matrix.Identity(4), Vector((1, 1, 1)), Vector((1, 1, 1)))
    with pytest.raises(ValueError, match="no size"):
        fit.fit(_result(), box)
