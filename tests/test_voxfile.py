"""The MagicaVoxel reader on real files and on files written here for every chunk type."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voxwriter as w
from conftest import fixture_path
from conjure_src.importers import voxfile
from conjure_src.importers.voxfile import VoxFormatError

CUBE = [(0, 0, 0, 1), (1, 0, 0, 2), (0, 1, 0, 3), (0, 0, 1, 4)]


def _rotations() -> list[np.ndarray]:
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), dtype=np.int64)
            for row, (col, sign) in enumerate(zip(perm, signs, strict=True)):
                m[row, col] = sign
            if round(np.linalg.det(m)) == 1:
                mats.append(m)
    return mats


def _xyzi_count(raw: bytes) -> int:
    at = raw.find(b"XYZI")
    return struct.unpack_from("<i", raw, at + 12)[0]


# ----------------------------------------------------------------------------- real files


def test_default_palette_table_spot_values() -> None:
    pal = voxfile.DEFAULT_PALETTE
    assert tuple(pal[0]) == (0, 0, 0, 0)
    assert tuple(pal[1]) == (255, 255, 255, 255)  # 0xffffffff
    assert tuple(pal[2]) == (255, 255, 204, 255)  # 0xffccffff: R=ff G=ff B=cc
    assert tuple(pal[7]) == (255, 204, 255, 255)  # 0xffffccff
    assert tuple(pal[255]) == (17, 17, 17, 255)  # 0xff111111


def test_chr_cat_uses_the_default_palette() -> None:
    raw = fixture_path("vox", "chr_cat.vox").read_bytes()
    vox = voxfile.read(raw)
    assert not vox.has_palette_chunk
    np.testing.assert_array_equal(vox.palette, voxfile.DEFAULT_PALETTE)
    (inst,) = vox.instances
    assert len(inst.xyz) == _xyzi_count(raw)


def test_chr_knight_palette_is_shifted_by_one() -> None:
    raw = fixture_path("vox", "chr_knight.vox").read_bytes()
    at = raw.find(b"RGBA")
    rgba = np.frombuffer(raw, np.uint8, 1024, at + 12).reshape(256, 4)
    vox = voxfile.read(raw)
    np.testing.assert_array_equal(vox.palette[1:], rgba[:255])
    assert tuple(vox.palette[0]) == (0, 0, 0, 0)


def test_monument_voxels_and_bounds() -> None:
    raw = fixture_path("vox", "monu1.vox").read_bytes()
    vox = voxfile.read(raw)
    (inst,) = vox.instances
    assert len(inst.xyz) == _xyzi_count(raw) == 156_942
    assert inst.xyz.min() >= 0 and tuple(inst.xyz.max(axis=0) < (126, 126, 118)) == (True,) * 3
    assert inst.color_index.min() >= 1


def test_groups_fixture_scene_graph() -> None:
    vox = voxfile.read_file(fixture_path("vox", "test_groups.vox"))
    assert len(vox.models) == 15 and len(vox.instances) == 19
    assert {i.name for i in vox.instances} == {"characters", "text"}
    # Models shared by several shape nodes appear once per placement.
    assert sorted(i.model_index for i in vox.instances).count(9) == 3
    assert len({tuple(i.translation) for i in vox.instances}) == 19
    assert [layer.name for layer in vox.layers][:2] == ["merged", "1"]


def test_metal_material_fixture() -> None:
    vox = voxfile.read_file(fixture_path("vox", "metal-material.vox"))
    mat = vox.materials[85]
    assert (mat.kind, mat.metal, mat.rough) == (
        "metal",
        pytest.approx(0.526316),
        pytest.approx(0.252632),
    )
    assert vox.materials[249].kind == "glass" and vox.materials[249].trans > 0.8
    assert set(vox.instances[0].color_index.tolist()) == {85}


def test_animated_fixture_frames_select_models() -> None:
    raw = fixture_path("vox", "deer_anim.vox").read_bytes()
    first = voxfile.read(raw)
    assert first.frame_count == 4 and len(first.models) == 4
    assert [voxfile.read(raw, frame=f).instances[0].model_index for f in range(6)] == [
        0,
        1,
        2,
        3,
        3,
        3,
    ]
    assert len(first.materials) == 255  # legacy MATT chunks


def test_not_a_vox_file() -> None:
    with pytest.raises(VoxFormatError, match="not a MagicaVoxel file"):
        voxfile.read_file(fixture_path("vox", "not_a.vox"))


# ----------------------------------------------------------------------------- written here


def test_minimal_file_without_optional_chunks() -> None:
    vox = voxfile.read(w.vox_file(w.model((2, 2, 2), CUBE)))
    (inst,) = vox.instances
    np.testing.assert_array_equal(inst.xyz, np.array(CUBE)[:, :3])
    np.testing.assert_array_equal(inst.color_index, [1, 2, 3, 4])
    assert not inst.hidden and vox.frame_count == 1


def test_out_of_bounds_and_zero_colour_voxels_are_dropped() -> None:
    vox = voxfile.read(w.vox_file(w.model((2, 2, 2), [*CUBE, (5, 0, 0, 7), (1, 1, 1, 0)])))
    assert len(vox.instances[0].xyz) == 4


def test_version_number_does_not_decide_features() -> None:
    body = (w.model((2, 2, 2), CUBE), w.matl(3, {"_type": "_metal", "_metal": 0.7}))
    for version in (0, 150, 200, 99999):
        vox = voxfile.read(w.vox_file(*body, version=version))
        assert vox.version == version and vox.materials[3].metal == pytest.approx(0.7)


def test_unknown_chunks_and_children_are_skipped() -> None:
    odd = w.chunk(b"ZZZZ", b"\x01\x02\x03", w.chunk(b"KID!", b"abc"))
    extras = (w.chunk(b"NOTE", struct.pack("<i", 0)), w.chunk(b"rCAM", b"\x00" * 8))
    vox = voxfile.read(w.vox_file(odd, w.model((2, 2, 2), CUBE), *extras, odd))
    assert len(vox.instances[0].xyz) == 4


def test_rgba_chunk_maps_file_colour_k_to_index_k_plus_1() -> None:
    colors = np.zeros((256, 4), np.uint8)
    colors[0] = (10, 20, 30, 255)
    colors[254] = (1, 2, 3, 255)
    colors[255] = (99, 99, 99, 99)  # never used
    vox = voxfile.read(w.vox_file(w.model((2, 2, 2), CUBE), w.rgba(colors)))
    assert tuple(vox.palette[1]) == (10, 20, 30, 255)
    assert tuple(vox.palette[255]) == (1, 2, 3, 255)
    assert vox.has_palette_chunk


def test_matl_and_legacy_matt() -> None:
    vox = voxfile.read(
        w.vox_file(
            w.model((2, 2, 2), CUBE),
            w.matl(1, {"_type": "_emit", "_emit": 0.5, "_flux": 2}),
            w.matl(2, {"_type": "_glass", "_trans": 0.4, "_ior": 0.5, "_rough": 0.2}),
            w.matl(3, {"_type": "_metal", "_weight": 0.8, "_rough": "bad"}),
            w.matt(4, 1, 0.6, {1: 0.3}),  # metal, roughness bit
            w.matt(5, 2, 0.9, {3: 0.45}),  # glass, IOR bit
        )
    )
    m = vox.materials
    assert (m[1].kind, m[1].emit, m[1].flux) == ("emit", 0.5, 2.0)
    assert (m[2].kind, m[2].trans, m[2].ior, m[2].rough) == ("glass", 0.4, 1.5, 0.2)
    assert (m[3].metal, m[3].rough) == (pytest.approx(0.8), 0.5)
    assert (m[4].kind, m[4].metal, m[4].rough) == ("metal", pytest.approx(0.6), pytest.approx(0.3))
    assert (m[5].kind, m[5].ior) == ("glass", pytest.approx(1.45))


@pytest.mark.parametrize("rot", _rotations(), ids=lambda m: str(w.rotation_byte(m)))
@pytest.mark.parametrize("dims", [(4, 2, 6), (3, 5, 1)])
def test_every_rotation_places_voxels_about_the_model_centre(rot, dims) -> None:
    voxels = [(0, 0, 0, 1), (dims[0] - 1, 0, 0, 2), (0, dims[1] - 1, dims[2] - 1, 3)]
    t = np.array([7, -3, 11])
    data = w.vox_file(
        w.model(dims, voxels),
        w.ntrn(0, 1),
        w.ngrp(1, [2]),
        w.ntrn(2, 3, frames=[{"_t": " ".join(map(str, t)), "_r": w.rotation_byte(rot)}]),
        w.nshp(3, [0]),
    )
    (inst,) = voxfile.read(data).instances
    np.testing.assert_array_equal(inst.rotation, rot)
    centres = np.array(voxels)[:, :3] + 0.5 - np.array(dims) / 2.0
    expected = np.floor(centres @ rot.T + t).astype(int)
    np.testing.assert_array_equal(inst.xyz, expected)
    # The whole model's bounding box stays centred on the translation.
    full = np.array(list(itertools.product(*(range(d) for d in dims))))
    box = np.floor((full + 0.5 - np.array(dims) / 2.0) @ rot.T + t)
    assert np.allclose(box.min(axis=0) + box.max(axis=0) + 1, 2 * t + (np.abs(rot) @ dims) % 2)


def test_nested_transforms_compose_parent_first() -> None:
    quarter = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about Z
    data = w.vox_file(
        w.model((1, 1, 1), [(0, 0, 0, 1)]),
        w.ntrn(0, 1, frames=[{"_t": "100 0 0", "_r": w.rotation_byte(quarter)}]),
        w.ngrp(1, [2]),
        w.ntrn(2, 3, frames=[{"_t": "5 0 0"}]),
        w.nshp(3, [0]),
    )
    (inst,) = voxfile.read(data).instances
    np.testing.assert_array_equal(inst.translation, [100, 5, 0])
    np.testing.assert_array_equal(inst.xyz, [[100, 5, 0]])


def test_hidden_nodes_and_hidden_layers() -> None:
    data = w.vox_file(
        w.model((1, 1, 1), [(0, 0, 0, 1)]),
        w.ntrn(0, 1),
        w.ngrp(1, [2, 4, 6]),
        w.ntrn(2, 3, attrs={"_name": "shown"}, layer=0),
        w.nshp(3, [0]),
        w.ntrn(4, 5, attrs={"_name": "hidden node", "_hidden": 1}, layer=0),
        w.nshp(5, [0]),
        w.ntrn(6, 7, attrs={"_name": "on hidden layer"}, layer=1),
        w.nshp(7, [0]),
        w.layr(0, "visible"),
        w.layr(1, "secret", hidden=True),
    )
    vox = voxfile.read(data)
    assert {i.name: i.hidden for i in vox.instances} == {
        "shown": False,
        "hidden node": True,
        "on hidden layer": True,
    }
    assert [(layer.name, layer.hidden) for layer in vox.layers] == [
        ("visible", False),
        ("secret", True),
    ]


def test_animation_frames_in_scene_graph() -> None:
    data = w.vox_file(
        w.model((1, 1, 1), [(0, 0, 0, 1)]),
        w.model((1, 1, 1), [(0, 0, 0, 2)]),
        w.ntrn(0, 1, frames=[{"_f": 0, "_t": "0 0 0"}, {"_f": 5, "_t": "0 0 9"}]),
        w.nshp(1, [(0, 0), (1, 3)]),
    )
    got = [voxfile.read(data, frame=f).instances[0] for f in (0, 3, 5, 8)]
    assert [i.model_index for i in got] == [0, 1, 1, 1]
    assert [int(i.translation[2]) for i in got] == [0, 0, 9, 9]
    assert voxfile.read(data).frame_count == 6


def test_pack_without_scene_graph_is_an_animation() -> None:
    data = w.vox_file(
        w.pack(2), w.model((1, 1, 1), [(0, 0, 0, 1)]), w.model((2, 1, 1), [(1, 0, 0, 2)])
    )
    assert voxfile.read(data).frame_count == 2
    assert voxfile.read(data, frame=1).instances[0].xyz.tolist() == [[1, 0, 0]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "missing 'VOX ' header"),
        (b"VOX \x96\x00\x00\x00", "needs 4 bytes"),
        (w.vox_file(), "no models"),
        (w.vox_file(w.xyzi(CUBE)), "no SIZE"),
        (w.vox_file(w.size(0, 1, 1) + w.xyzi(CUBE)), "out of range"),
        (w.vox_file(w.model((2, 2, 2), CUBE))[:-3], "needs"),
        (b"VOX " + struct.pack("<i", 150) + w.chunk(b"MAIN", b"", b"x" * 5), "truncated"),
        (w.vox_file(w.size(2, 2, 2) + w.chunk(b"XYZI", struct.pack("<i", 10**6))), "count"),
        (w.vox_file(w.model((1, 1, 1), CUBE[:1]), w.ntrn(0, 1), w.ngrp(1, [0])), "loops"),
        (w.vox_file(w.model((1, 1, 1), CUBE[:1]), w.ntrn(0, 9)), "missing node 9"),
        (w.vox_file(w.model((1, 1, 1), CUBE[:1]), w.ntrn(0, 1), w.nshp(1, [4])), "model 4"),
        (
            w.vox_file(
                w.model((1, 1, 1), CUBE[:1]), w.ntrn(0, 1, frames=[{"_r": 3}]), w.nshp(1, [0])
            ),
            "rotation byte 3",
        ),
        (w.vox_file(w.model((1, 1, 1), CUBE[:1]), w.ntrn(1, 2), w.nshp(2, [0])), "root node 0"),
    ],
)
def test_bad_bytes_raise_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(VoxFormatError, match=message) as info:
        voxfile.read(data)
    assert "\n" not in str(info.value)


def test_scene_graph_expansion_is_bounded() -> None:
    # Each group lists the next one twice: 2**40 paths to one shape if nothing stopped it.
    depth = 40
    chunks = [w.model((1, 1, 1), CUBE[:1]), w.ntrn(0, 1)]
    chunks += [w.ngrp(i, [i + 1, i + 1]) for i in range(1, depth)]
    chunks += [w.ntrn(depth, depth + 1), w.nshp(depth + 1, [0])]
    with pytest.raises(VoxFormatError, match="too many"):
        voxfile.read(w.vox_file(*chunks))


# ----------------------------------------------------------------------------- fuzzing


def _fixture_bytes() -> list[bytes]:
    names = ["chr_knight.vox", "test_groups.vox", "deer_anim.vox", "metal-material.vox"]
    return [fixture_path("vox", n).read_bytes() for n in names]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    which=st.integers(0, 3),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert", "int"]),
            st.floats(0, 1),
            st.integers(0, 2**32 - 1),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzzed_real_files_only_raise_vox_format_error(which, edits) -> None:
    data = bytearray(_fixture_bytes()[which])
    for kind, where, value in edits:
        at = int(where * (len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << (value % 8)
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = value.to_bytes(4, "little")
        else:  # overwrite a length-sized field with an arbitrary int32
            data[at : at + 4] = value.to_bytes(4, "little")
        if not data:
            break
    try:
        vox = voxfile.read(bytes(data))
    except VoxFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert all(len(i.xyz) == len(i.color_index) for i in vox.instances)
