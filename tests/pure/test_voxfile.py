"""The MagicaVoxel reader on real files and on files written here for every chunk type.

Pure tests: no bpy. Real files come from ../shared/fixtures/vox (skipped when absent);
everything else is written by tests/voxwriter.py.
"""

from __future__ import annotations

import contextlib
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voxwriter as w
from conftest import SHARED
from conjure_src.importers import voxfile
from conjure_src.importers.voxfile import VoxFormatError

VOX_FIXTURES = SHARED / "fixtures" / "vox"
SPEC = SHARED / "reference" / "MagicaVoxel-file-format-vox.txt"
FIXTURE_NAMES = [
    "chr_cat.vox",
    "chr_knight.vox",
    "deer_anim.vox",
    "metal-material.vox",
    "monu1.vox",
    "monu10.vox",
    "placeholder-with-materials.vox",
    "teapot.vox",
    "test_groups.vox",
]
CUBE = [(0, 0, 0, 1), (1, 0, 0, 2), (0, 1, 0, 3), (0, 0, 1, 4)]
ONE = [(0, 0, 0, 1)]
ORIENTATIONS = w.signed_permutations()


def fixture(name: str) -> bytes:
    path = VOX_FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture missing: {path} (../shared is not beside the repo)")
    return path.read_bytes()


def raw_models(data: bytes) -> list[tuple[tuple[int, int, int], np.ndarray]]:
    """SIZE/XYZI pairs found by a plain scan of MAIN's children (independent of the reader)."""
    out, pos, size = [], 20, None
    while pos < len(data):
        cid, n, m = struct.unpack_from("<4sii", data, pos)
        if cid == b"SIZE":
            size = struct.unpack_from("<3i", data, pos + 12)
        elif cid == b"XYZI":
            count = struct.unpack_from("<i", data, pos + 12)[0]
            out.append((size, np.frombuffer(data, np.uint8, count * 4, pos + 16).reshape(-1, 4)))
        pos += 12 + n + m
    return out


def expected_world(xyzi: np.ndarray, size, rotation, translation) -> np.ndarray:
    """The documented placement in plain floating point: floor(R (v + 0.5 - size//2)) + T."""
    centres = xyzi[:, :3].astype(np.float64) + 0.5 - np.asarray(size) // 2
    return np.floor(centres @ np.asarray(rotation, np.float64).T) + np.asarray(translation)


def assert_consistent(vox: voxfile.VoxFile) -> None:
    """Every instance is its model placed by its own reported rotation and translation."""
    for inst in vox.instances:
        model = vox.models[inst.model_index]
        assert inst.xyz.dtype == np.int32 and inst.xyz.shape == (len(model.xyzi), 3)
        assert inst.color_index.dtype == np.uint8 and inst.color_index.min(initial=1) >= 1
        want = expected_world(model.xyzi, model.size, inst.rotation, inst.translation)
        np.testing.assert_array_equal(inst.xyz, want)


# ----------------------------------------------------------------------------- module rules


def test_imports_with_bpy_and_mathutils_blocked() -> None:
    """The reader and its two halves, alone in their folder: nothing of Blender's needed."""
    folder = Path(voxfile.__file__).parent
    code = (
        "import sys, types, importlib\n"
        "sys.modules['bpy'] = None\nsys.modules['mathutils'] = None\n"
        "pkg = types.ModuleType('vox_alone'); pkg.__path__ = [sys.argv[1]]\n"
        "sys.modules['vox_alone'] = pkg\n"
        "mod = importlib.import_module('vox_alone.voxfile')\n"
        "print(mod.DEFAULT_PALETTE.shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(256, 4)"


def test_default_palette_matches_the_reference_table() -> None:
    pal = voxfile.DEFAULT_PALETTE
    assert pal.shape == (256, 4) and pal.dtype == np.uint8 and not pal.flags.writeable
    assert tuple(pal[0]) == (0, 0, 0, 0)
    assert tuple(pal[1]) == (255, 255, 255, 255)  # 0xffffffff
    assert tuple(pal[2]) == (255, 255, 204, 255)  # 0xffccffff: R=ff G=ff B=cc
    assert tuple(pal[7]) == (255, 204, 255, 255)  # 0xffffccff
    assert tuple(pal[216]) == (238, 0, 0, 255)  # 0xff0000ee: the red ramp
    assert tuple(pal[255]) == (17, 17, 17, 255)  # 0xff111111
    if not SPEC.exists():
        pytest.skip(f"format reference missing: {SPEC}")
    text = SPEC.read_text()
    words = re.findall(r"0x([0-9a-f]{8})", text[text.index("default_palette[256]") :])[:256]
    shifts = np.array([0, 8, 16, 24])
    want = np.array([(int(h, 16) >> shifts) & 0xFF for h in words], dtype=np.uint8)
    np.testing.assert_array_equal(pal, want)


# ----------------------------------------------------------------------------- real files


@pytest.mark.parametrize("name", [n for n in FIXTURE_NAMES if n != "test_groups.vox"])
def test_fixture_voxel_counts_match_a_plain_scan(name: str) -> None:
    raw = fixture(name)
    vox = voxfile.read(raw)
    scanned = raw_models(raw)
    assert [m.size for m in vox.models] == [s for s, _ in scanned]
    for model, (_, xyzi) in zip(vox.models, scanned, strict=True):
        assert len(model.xyzi) + model.dropped == len(xyzi)
        np.testing.assert_array_equal(model.xyzi, xyzi[xyzi[:, 3] > 0])
    assert_consistent(vox)


def test_chr_cat_has_no_rgba_so_uses_the_default_palette() -> None:
    raw = fixture("chr_cat.vox")
    vox = voxfile.read(raw)
    assert not vox.has_palette_chunk
    np.testing.assert_array_equal(vox.palette, voxfile.DEFAULT_PALETTE)
    assert vox.palette.flags.writeable  # a copy, not the shared table
    assert tuple(vox.palette[1]) == (255, 255, 255, 255)
    assert tuple(vox.palette[37]) == (204, 255, 255, 255)  # 0xffffffcc
    assert tuple(vox.palette[246]) == (238, 238, 238, 255)  # 0xffeeeeee
    (inst,) = vox.instances
    # No scene graph: raw coordinates, one instance, identity rotation.
    np.testing.assert_array_equal(inst.xyz, raw_models(raw)[0][1][:, :3])
    np.testing.assert_array_equal(inst.rotation, np.eye(3))
    assert (inst.name, inst.hidden, inst.layer, vox.frame_count) == ("", False, -1, 1)


def test_chr_knight_palette_is_rgba_shifted_by_one() -> None:
    raw = fixture("chr_knight.vox")
    at = raw.find(b"RGBA")
    rgba = np.frombuffer(raw, np.uint8, 1024, at + 12).reshape(256, 4)
    vox = voxfile.read(raw)
    assert vox.has_palette_chunk
    np.testing.assert_array_equal(vox.palette[1:], rgba[:255])
    assert tuple(vox.palette[0]) == (0, 0, 0, 0)
    used = np.unique(vox.instances[0].color_index)
    np.testing.assert_allclose(vox.palette_float()[used], rgba[used - 1] / 255.0, rtol=1e-6)


def test_monument_voxels_stay_inside_the_model() -> None:
    vox = voxfile.read(fixture("monu1.vox"))
    (inst,) = vox.instances
    assert len(inst.xyz) == 156_942
    assert inst.xyz.min() >= 0 and np.all(inst.xyz.max(axis=0) < (126, 126, 118))


def test_groups_fixture_scene_graph() -> None:
    vox = voxfile.read(fixture("test_groups.vox"))
    assert len(vox.models) == 15 and len(vox.instances) == 19
    assert {i.name for i in vox.instances} == {"characters", "text"}
    # Shape nodes shared by several transforms appear once per placement.
    assert sorted(i.model_index for i in vox.instances).count(9) == 3
    assert len({tuple(i.translation) for i in vox.instances}) == 19
    # nTRN 2 (46 0 24) > nTRN 6 "characters" (0 0 -14) > nTRN 8 (-36 0 0) > model 0
    first = vox.instances[0]
    assert first.model_index == 0 and first.translation.tolist() == [10, 0, 10]
    assert first.xyz.min(axis=0)[2] == 0  # the characters stand on the ground
    assert [i.translation.tolist() for i in vox.instances if i.model_index == 10] == [
        [27, 0, 44],
        [39, 0, 44],
    ]
    assert [(layer.layer_id, layer.name) for layer in vox.layers][:2] == [(0, "merged"), (1, "1")]
    assert all(i.layer == 0 and not i.hidden for i in vox.instances)
    assert len(vox.materials) == 255 and vox.materials[1].kind == "diffuse"
    assert_consistent(vox)


def test_metal_material_fixture() -> None:
    vox = voxfile.read(fixture("metal-material.vox"))
    metal, glass = vox.materials[85], vox.materials[249]
    assert metal.kind == "metal"
    assert (metal.metal, metal.rough, metal.spec) == pytest.approx((0.526316, 0.252632, 0.736842))
    assert glass.kind == "glass"
    assert (glass.trans, glass.ior, glass.att) == pytest.approx((0.810526, 1.547368, 0.021053))
    assert glass.raw["_ior"] == "0.547368"
    assert 0 not in vox.materials and len(vox.materials) == 255  # MATL id 0 has no colour
    (inst,) = vox.instances
    assert set(inst.color_index.tolist()) == {85}
    assert inst.translation.tolist() == [0, 0, 1] and inst.layer == 0
    np.testing.assert_array_equal(inst.xyz.min(axis=0), [-1, -1, 0])  # 3^3 centred on (0,0,1)


def test_placeholder_keeps_unknown_material_keys_raw() -> None:
    vox = voxfile.read(fixture("placeholder-with-materials.vox"))
    mat = vox.materials[216]
    assert (mat.kind, mat.raw["_plastic"]) == ("metal", "1")
    assert mat.metal == pytest.approx(0.694737)


def test_animated_fixture_frames_select_models() -> None:
    raw = fixture("deer_anim.vox")
    first = voxfile.read(raw)
    assert (first.frame_count, first.pack_count, len(first.models)) == (4, 4, 4)
    picked = [voxfile.read(raw, frame=f).instances[0].model_index for f in (-1, 0, 1, 2, 3, 4, 99)]
    assert picked == [0, 0, 1, 2, 3, 3, 3]
    assert len(first.materials) == 255  # legacy MATT chunks, ids 1..255
    assert {m.kind for m in first.materials.values()} <= set(voxfile.MATERIAL_KINDS)


def test_not_a_vox_file() -> None:
    with pytest.raises(VoxFormatError, match=r"not a MagicaVoxel file \(missing 'VOX ' header\)"):
        voxfile.read(fixture("not_a.vox"))


def test_read_file_matches_read_and_lets_oserror_through(tmp_path: Path) -> None:
    path = tmp_path / "cube.vox"
    path.write_bytes(w.vox_file(w.model((2, 2, 2), CUBE)))
    np.testing.assert_array_equal(voxfile.read_file(path).instances[0].xyz, np.array(CUBE)[:, :3])
    with pytest.raises(FileNotFoundError):
        voxfile.read_file(tmp_path / "missing.vox")


def test_parse_speed() -> None:
    """Budget: a solid 128^3 model (2.1M voxels) well under 0.2 s; monu1.vox a few ms."""
    cube = w.solid_cube(128)
    best = min(_timed(cube) for _ in range(3))
    assert best < 0.2, f"128^3 solid cube took {best * 1000:.0f} ms"
    if (VOX_FIXTURES / "monu1.vox").exists():
        monument = min(_timed(fixture("monu1.vox")) for _ in range(3))
        assert monument < 0.05, f"monu1.vox took {monument * 1000:.1f} ms"


def _timed(data: bytes) -> float:
    start = time.perf_counter()
    vox = voxfile.read(data)
    elapsed = time.perf_counter() - start
    assert sum(len(i.xyz) for i in vox.instances) > 0
    return elapsed


# ----------------------------------------------------------------------------- chunks


def test_minimal_file_without_optional_chunks() -> None:
    vox = voxfile.read(w.vox_file(w.model((2, 2, 2), CUBE)))
    (inst,) = vox.instances
    np.testing.assert_array_equal(inst.xyz, np.array(CUBE)[:, :3])
    np.testing.assert_array_equal(inst.color_index, [1, 2, 3, 4])
    np.testing.assert_array_equal(inst.translation, [1, 1, 1])  # size // 2: raw coordinates
    assert (vox.frame_count, vox.pack_count, vox.layers, vox.materials) == (1, None, [], {})
    np.testing.assert_array_equal(vox.palette, voxfile.DEFAULT_PALETTE)
    assert vox.palette_float().dtype == np.float32 and vox.palette_float()[1, 0] == 1.0


def test_out_of_bounds_and_zero_colour_voxels_are_dropped() -> None:
    voxels = [*CUBE, (2, 0, 0, 7), (0, 5, 0, 7), (0, 0, 200, 7), (1, 1, 1, 0)]
    vox = voxfile.read(w.vox_file(w.model((2, 2, 2), voxels)))
    assert (len(vox.models[0].xyzi), vox.models[0].dropped) == (4, 4)
    np.testing.assert_array_equal(vox.instances[0].color_index, [1, 2, 3, 4])


def test_empty_model_is_an_empty_instance() -> None:
    vox = voxfile.read(w.vox_file(w.model((4, 4, 4), [])))
    assert vox.instances[0].xyz.shape == (0, 3)


def test_version_number_does_not_decide_features() -> None:
    body = (w.model((2, 2, 2), CUBE), w.matl(3, {"_type": "_metal", "_metal": 0.7}))
    for version in (0, 150, 200, -1, 2**31 - 1):
        vox = voxfile.read(w.vox_file(*body, version=version))
        assert vox.version == version and vox.materials[3].metal == pytest.approx(0.7)


def test_unknown_and_informational_chunks_are_skipped() -> None:
    odd = w.chunk(b"ZZZZ", b"\x01\x02\x03", w.chunk(b"KID!", b"abc"))
    extras = (
        w.note(["red", "", "blue"]),
        w.imap(),
        w.chunk(b"rOBJ", w.vdict({"_type": "_setting"})),
        w.chunk(b"rCAM", b"\x00" * 8),
        w.chunk(b"SIZE", struct.pack("<3i", 2, 2, 2), w.chunk(b"XYZI", b"junk")),  # children
    )
    vox = voxfile.read(w.vox_file(odd, *extras, w.xyzi(CUBE), odd))
    assert len(vox.instances[0].xyz) == 4


def test_rgba_maps_file_colour_k_to_index_k_plus_1() -> None:
    colors = np.zeros((256, 4), np.uint8)
    colors[0] = (10, 20, 30, 255)
    colors[254] = (1, 2, 3, 255)
    colors[255] = (99, 99, 99, 99)  # never used
    vox = voxfile.read(w.vox_file(w.model((2, 2, 2), CUBE), w.rgba(colors)))
    assert tuple(vox.palette[0]) == (0, 0, 0, 0)
    assert tuple(vox.palette[1]) == (10, 20, 30, 255)
    assert tuple(vox.palette[255]) == (1, 2, 3, 255)
    assert vox.has_palette_chunk and not (vox.palette == 99).all(axis=1).any()


@pytest.mark.parametrize("kind", voxfile.MATERIAL_KINDS)
def test_matl_kinds(kind: str) -> None:
    vox = voxfile.read(w.vox_file(w.model((1, 1, 1), ONE), w.matl(1, {"_type": f"_{kind}"})))
    assert vox.materials[1].kind == kind


def test_matl_values_new_keys_old_weights_and_bad_numbers() -> None:
    vox = voxfile.read(
        w.vox_file(
            w.model((2, 2, 2), CUBE),
            w.matl(1, {"_type": "_emit", "_emit": 0.5, "_flux": 2, "_ldr": 0.25}),
            w.matl(2, {"_type": "_glass", "_trans": 0.4, "_ior": 0.5, "_rough": 0.2}),
            w.matl(3, {"_type": "_metal", "_weight": 0.8, "_rough": "bad", "_spec": "nan"}),
            w.matl(4, {"_type": "_glass", "_weight": 0.6, "_ri": 1.33, "_ior": 0.9}),
            w.matl(5, {"_type": "_sparkly", "_metal": 7, "_rough": -1}),
            w.matl(0, {"_type": "_metal"}),  # no colour uses index 0
            w.matl(256, {"_type": "_metal"}),
        )
    )
    m = vox.materials
    assert sorted(m) == [1, 2, 3, 4, 5]
    assert (m[1].kind, m[1].emit, m[1].flux, m[1].ldr) == ("emit", 0.5, 2.0, 0.25)
    assert (m[2].kind, m[2].trans, m[2].ior, m[2].rough) == ("glass", 0.4, 1.5, 0.2)
    assert (m[3].metal, m[3].rough, m[3].spec) == (pytest.approx(0.8), 0.1, 0.5)  # defaults
    assert (m[4].trans, m[4].ior) == (pytest.approx(0.6), pytest.approx(1.33))  # _ri wins
    assert (m[5].kind, m[5].metal, m[5].rough) == ("diffuse", 1.0, 0.0)  # clamped
    assert m[5].raw["_type"] == "_sparkly"


def test_legacy_matt_and_precedence_of_matl() -> None:
    vox = voxfile.read(
        w.vox_file(
            w.model((2, 2, 2), CUBE),
            w.matt(4, 1, 0.6, {1: 0.3}),  # metal, roughness bit
            w.matt(5, 2, 0.9, {3: 0.45, 0: 1.0}),  # glass, plastic + IOR bits
            w.matt(6, 3, 0.7, {5: 0.2, 6: 0.1}),  # emissive, power + glow bits
            w.matt(7, 0, 1.0, {}),
            w.matt(8, 1, 0.5, {}),
            w.matl(8, {"_type": "_glass"}),  # MATL beats MATT whatever the order
            w.matt(0, 1, 1.0, {}),
            w.matt(300, 1, 1.0, {}),
        )
    )
    m = vox.materials
    assert sorted(m) == [4, 5, 6, 7, 8]
    assert (m[4].kind, m[4].metal, m[4].rough) == ("metal", pytest.approx(0.6), pytest.approx(0.3))
    assert (m[5].kind, m[5].trans, m[5].ior) == ("glass", pytest.approx(0.9), pytest.approx(1.45))
    assert m[5].raw["plastic"] == "1.0"
    assert (m[6].kind, m[6].emit, m[6].flux) == ("emit", pytest.approx(0.7), pytest.approx(0.2))
    assert m[7].kind == "diffuse" and m[8].kind == "glass"


def test_layers_are_sorted_and_keep_their_names() -> None:
    vox = voxfile.read(
        w.vox_file(w.model((1, 1, 1), ONE), w.layr(3, "c", True), w.layr(0, "a"), w.layr(1, "b"))
    )
    assert [(ly.layer_id, ly.name, ly.hidden) for ly in vox.layers] == [
        (0, "a", False),
        (1, "b", False),
        (3, "c", True),
    ]


# ----------------------------------------------------------------------------- placement


def test_all_48_rotation_bytes_decode_and_the_other_80_are_rejected() -> None:
    seen = set()
    for m in ORIENTATIONS:
        byte = w.rotation_byte(m)
        np.testing.assert_array_equal(voxfile.rotation_from_byte(byte), m)
        seen.add(byte)
    assert len(seen) == 48
    for byte in set(range(128)) - seen:
        with pytest.raises(VoxFormatError, match=f"rotation byte {byte} "):
            voxfile.rotation_from_byte(byte)


@pytest.mark.parametrize("rot", ORIENTATIONS, ids=lambda m: f"r{w.rotation_byte(m)}")
@pytest.mark.parametrize("dims", [(4, 2, 6), (3, 5, 1), (7, 7, 7)])
def test_every_orientation_places_voxels_about_the_pivot(rot: np.ndarray, dims) -> None:
    rng = np.random.default_rng(w.rotation_byte(rot))
    coords = rng.integers(0, dims, size=(40, 3))
    voxels = [(*c, i % 255 + 1) for i, c in enumerate(coords)]
    t = np.array([7, -3, 11])
    frame = {"_t": " ".join(map(str, t)), "_r": w.rotation_byte(rot)}
    (inst,) = voxfile.read(w.simple_scene(dims, voxels, frame)).instances
    np.testing.assert_array_equal(inst.rotation, rot)
    np.testing.assert_array_equal(inst.translation, t)
    np.testing.assert_array_equal(inst.xyz, expected_world(np.array(voxels), dims, rot, t))
    # The filled model's box: the unrotated box [-size//2, size - size//2) turned about 0.
    full = np.indices(dims).reshape(3, -1).T
    box = expected_world(full, dims, rot, t)
    lo = np.minimum(rot @ -(np.array(dims) // 2), rot @ (np.array(dims) - np.array(dims) // 2))
    np.testing.assert_array_equal(box.min(axis=0), lo + t)
    np.testing.assert_array_equal(box.max(axis=0) - box.min(axis=0) + 1, np.abs(rot) @ dims)


def test_hand_computed_placements() -> None:
    quarter = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])  # +90 degrees about Z
    row = [(0, 0, 0, 1), (1, 0, 0, 2), (2, 0, 0, 3)]
    cases = [
        # 3x1x1 along X, pivot (1, 0, 0): X turns onto Y; the 1-thick Y layer [0, 1) about
        # pivot y=0 turns onto x in [-1, 0), i.e. cell -1.
        ((3, 1, 1), row, quarter, [[-1, -1, 0], [-1, 0, 0], [-1, 1, 0]]),
        # Identity: v - size // 2.
        ((3, 1, 1), row, np.eye(3, dtype=int), [[-1, 0, 0], [0, 0, 0], [1, 0, 0]]),
        # Mirror X of a 3-wide row: same cells, order reversed, one lower than -(v - 1).
        ((3, 1, 1), row, np.diag([-1, 1, 1]), [[0, 0, 0], [-1, 0, 0], [-2, 0, 0]]),
        # Mirror X of a 2-wide row keeps its cells [-1, 0].
        ((2, 1, 1), row[:2], np.diag([-1, 1, 1]), [[0, 0, 0], [-1, 0, 0]]),
    ]
    for dims, voxels, rot, want in cases:
        frame = {"_r": w.rotation_byte(rot)}
        (inst,) = voxfile.read(w.simple_scene(dims, voxels, frame)).instances
        assert inst.xyz.tolist() == want, (dims, rot.tolist())


def test_nested_transforms_compose_parent_first() -> None:
    quarter = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    data = w.vox_file(
        w.model((1, 1, 1), ONE),
        w.ntrn(0, 1, frames=[{"_t": "100 0 0", "_r": w.rotation_byte(quarter)}]),
        w.ngrp(1, [2]),
        w.ntrn(2, 3, frames=[{"_t": "5 0 0"}]),
        w.ngrp(3, [4]),
        w.ntrn(4, 5, frames=[{"_t": "0 0 7", "_r": w.rotation_byte(quarter)}]),
        w.nshp(5, [0]),
    )
    (inst,) = voxfile.read(data).instances
    np.testing.assert_array_equal(inst.translation, [100, 5, 7])  # R0 (t2 + R2 t4) + t0
    np.testing.assert_array_equal(inst.rotation, quarter @ quarter)
    np.testing.assert_array_equal(inst.xyz, [[99, 4, 7]])  # half-rotated single voxel


def test_shared_subtrees_are_placed_once_per_path() -> None:
    data = w.vox_file(
        w.model((1, 1, 1), ONE),
        w.ntrn(0, 1),
        w.ngrp(1, [2, 3, 4]),
        w.ntrn(2, 5, frames=[{"_t": "10 0 0"}]),
        w.ntrn(3, 5, frames=[{"_t": "20 0 0"}]),
        w.ntrn(4, 5, frames=[{"_t": "30 0 0"}]),
        w.ngrp(5, [6]),
        w.ntrn(6, 7, frames=[{"_t": "0 1 0"}]),
        w.nshp(7, [0]),
    )
    vox = voxfile.read(data)
    assert [i.xyz.tolist() for i in vox.instances] == [[[10, 1, 0]], [[20, 1, 0]], [[30, 1, 0]]]


def test_hidden_nodes_hidden_groups_and_hidden_layers() -> None:
    data = w.vox_file(
        w.model((1, 1, 1), ONE),
        w.ntrn(0, 1),
        w.ngrp(1, [2, 4, 6, 8]),
        w.ntrn(2, 3, attrs={"_name": "shown"}, layer=0),
        w.nshp(3, [0]),
        w.ntrn(4, 5, attrs={"_name": "hidden node", "_hidden": 1}, layer=0),
        w.nshp(5, [0]),
        w.ntrn(6, 7, attrs={"_name": "on hidden layer"}, layer=1),
        w.nshp(7, [0]),
        w.ntrn(8, 9, attrs={"_name": "hidden group", "_hidden": 1}),
        w.ngrp(9, [10]),
        w.ntrn(10, 11, layer=0),
        w.nshp(11, [0]),
        w.layr(0, "visible"),
        w.layr(1, "secret", hidden=True),
    )
    vox = voxfile.read(data)
    got = [(i.name, i.hidden, i.layer) for i in vox.instances]
    assert got == [
        ("shown", False, 0),
        ("hidden node", True, 0),
        ("on hidden layer", True, 1),
        ("hidden group", True, 0),  # inherits the group's name and hidden flag
    ]


def test_animation_keyframes_and_shape_frames() -> None:
    data = w.vox_file(
        w.model((1, 1, 1), ONE),
        w.model((1, 1, 1), [(0, 0, 0, 2)]),
        w.ntrn(
            0,
            1,
            frames=[{"_f": 5, "_t": "0 0 9"}, {"_f": 2, "_t": "0 0 4"}, {"_f": 8, "_t": "0 0 1"}],
        ),
        w.nshp(1, [(0, 0), (1, 3)]),
    )
    files = [voxfile.read(data, frame=f) for f in (0, 2, 3, 5, 8, 50)]
    assert [v.frame for v in files] == [0, 2, 3, 5, 8, 8]
    got = [v.instances[0] for v in files]
    assert [i.model_index for i in got] == [0, 0, 1, 1, 1, 1]
    # Before the earliest keyframe (2) the earliest one holds; then the latest one <= frame.
    assert [int(i.translation[2]) for i in got] == [4, 4, 4, 9, 1, 1]
    assert voxfile.read(data).frame_count == 9


def test_pack_without_scene_graph_is_an_animation() -> None:
    data = w.vox_file(
        w.pack(2), w.model((1, 1, 1), [(0, 0, 0, 1)]), w.model((2, 1, 1), [(1, 0, 0, 2)])
    )
    first = voxfile.read(data)
    assert (first.frame_count, first.pack_count, len(first.instances)) == (2, 2, 1)
    last = voxfile.read(data, frame=7)  # clamped to the last model
    assert (last.frame, last.instances[0].model_index) == (1, 1)
    assert last.instances[0].xyz.tolist() == [[1, 0, 0]]


def test_input_may_be_any_bytes_like() -> None:
    data = w.vox_file(w.model((2, 2, 2), CUBE))
    for form in (bytearray(data), memoryview(data)):
        assert len(voxfile.read(form).instances[0].xyz) == 4


# ----------------------------------------------------------------------------- bad bytes


def _main(children: bytes) -> bytes:
    """A file whose MAIN holds exactly `children`, however broken."""
    return b"VOX " + struct.pack("<i", 150) + w.chunk(b"MAIN", b"", children)


def _graph(*chunks: bytes) -> bytes:
    return w.vox_file(w.model((1, 1, 1), ONE), *chunks)


BAD = [
    (b"", "missing 'VOX ' header"),
    (b"VOX", "missing 'VOX ' header"),
    (b"RIFF" + b"\x00" * 40, "missing 'VOX ' header"),
    (b"VOX \x96\x00\x00\x00", "before its MAIN chunk"),
    (b"VOX \x96\x00\x00\x00" + w.chunk(b"PACK", b"\x01\x00\x00\x00"), "expected MAIN"),
    (w.vox_file(), "no models"),
    (w.vox_file(w.pack(1)), "no models"),
    (w.vox_file(w.xyzi(CUBE)), "no SIZE"),
    (w.vox_file(w.size(0, 1, 1) + w.xyzi(CUBE)), "outside 1..2048"),
    (w.vox_file(w.size(1, 1, 5000) + w.xyzi(CUBE)), "outside 1..2048"),
    (w.vox_file(w.chunk(b"SIZE", b"\x01\x00")), "size x at byte"),
    (w.vox_file(w.model((2, 2, 2), CUBE))[:-3], r"chunk MAIN at byte 8 claims \d+ bytes"),
    (_main(b"x" * 5), "truncated chunk"),
    (
        w.vox_file(w.size(2, 2, 2) + w.chunk(b"XYZI", struct.pack("<i", 10**6))),
        "voxel count 1000000 does not fit",
    ),
    (
        w.vox_file(w.size(2, 2, 2) + w.chunk(b"XYZI", struct.pack("<i", -1))),
        "voxel count -1",
    ),
    (_main(struct.pack("<4sii", b"XYZI", 99, 0)), "XYZI at byte 20 claims 99 bytes but only 0"),
    (_main(struct.pack("<4sii", b"XYZI", -4, 0)), "negative size"),
    (w.vox_file(w.model((1, 1, 1), ONE), w.chunk(b"RGBA", b"\x00" * 100)), "palette at byte"),
    (_graph(w.chunk(b"MATL", struct.pack("<ii", 1, -1))), "entry count -1"),
    (_graph(w.ntrn(0, 1), w.ngrp(1, [0])), "loops back to node 0"),
    (_graph(w.ntrn(0, 1), w.ngrp(1, [2]), w.ntrn(2, 1)), "loops back to node 1"),
    (_graph(w.ntrn(0, 9)), "missing node 9"),
    (_graph(w.ntrn(0, 1), w.nshp(1, [4])), "uses model 4, file has 1"),
    (_graph(w.ntrn(0, 1), w.nshp(1, [-1])), "uses model -1"),
    (_graph(w.ntrn(1, 2), w.nshp(2, [0])), "no root node 0"),
    (_graph(w.ntrn(0, 1), w.nshp(1, [0]), w.nshp(1, [0])), "node id 1 is used twice"),
    (_graph(w.ntrn(0, 1, frames=[]), w.nshp(1, [0])), "has no frames"),
    (_graph(w.ntrn(0, 1), w.nshp(1, [])), "has no model"),
    (_graph(w.ntrn(0, 1, frames=[{"_r": 3}]), w.nshp(1, [0])), "rotation byte 3 does not"),
    (_graph(w.ntrn(0, 1, frames=[{"_r": 200}]), w.nshp(1, [0])), "rotation byte 200 does not"),
    (_graph(w.ntrn(0, 1, frames=[{"_r": "x"}]), w.nshp(1, [0])), "_r = 'x' is not an integer"),
    (_graph(w.ntrn(0, 1, frames=[{"_t": "1 2"}]), w.nshp(1, [0])), "_t = '1 2' is not three"),
    (_graph(w.ntrn(0, 1, frames=[{"_t": "a b c"}]), w.nshp(1, [0])), "is not three integers"),
    (_graph(w.ntrn(0, 1, frames=[{"_t": "9" * 30 + " 0 0"}]), w.nshp(1, [0])), "in range"),
    (_graph(w.ntrn(0, 1, frames=[{"_f": -2}]), w.nshp(1, [0])), "_f = '-2' is not an integer"),
    (_graph(w.ntrn(0, 1), w.nshp(1, [(0, 10**9)])), "_f = '1000000000'"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_bytes_raise_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(VoxFormatError, match=message) as info:
        voxfile.read(data)
    assert "\n" not in str(info.value)


def test_scene_graph_expansion_is_bounded() -> None:
    # Each group lists the next one twice: 2**40 paths to one shape if nothing stopped it.
    depth = 40
    chunks = [w.ntrn(0, 1)]
    chunks += [w.ngrp(i, [i + 1, i + 1]) for i in range(1, depth)]
    chunks += [w.ntrn(depth, depth + 1), w.nshp(depth + 1, [0])]
    start = time.perf_counter()
    with pytest.raises(VoxFormatError, match="more than 65536 models"):
        voxfile.read(_graph(*chunks))
    # Without any shape at the bottom the visit cap stops it instead.
    chunks[-1] = w.ngrp(depth + 1, [])
    with pytest.raises(VoxFormatError, match="expands to more than"):
        voxfile.read(_graph(*chunks))
    assert time.perf_counter() - start < 10


def test_deep_nesting_is_an_error_not_a_recursion_error() -> None:
    n = voxfile.MAX_DEPTH + 10
    chunks = [w.ngrp(i, [i + 1]) for i in range(n)] + [w.nshp(n, [0])]
    with pytest.raises(VoxFormatError, match="nests deeper than"):
        voxfile.read(_graph(*chunks))
    ok = [w.ngrp(i, [i + 1]) for i in range(50)] + [w.nshp(50, [0])]
    assert len(voxfile.read(_graph(*ok)).instances) == 1


def test_voxel_budget() -> None:
    data = w.vox_file(w.model((2, 2, 2), CUBE))
    assert len(voxfile.read(data, max_voxels=4).instances[0].xyz) == 4
    with pytest.raises(VoxFormatError, match="more than 3 voxels"):
        voxfile.read(data, max_voxels=3)


# ----------------------------------------------------------------------------- fuzzing


def _every_chunk_file() -> bytes:
    colors = np.arange(1024, dtype=np.uint32).astype(np.uint8).reshape(256, 4)
    quarter = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    return w.vox_file(
        w.pack(2),
        w.model((3, 2, 2), CUBE),
        w.model((2, 2, 2), CUBE[:2]),
        w.ntrn(0, 1, attrs={"_name": "root"}),
        w.ngrp(1, [2, 4]),
        w.ntrn(2, 3, frames=[{"_t": "1 2 3", "_r": w.rotation_byte(quarter), "_f": 0}], layer=0),
        w.nshp(3, [(0, 0), (1, 2)]),
        w.ntrn(4, 3, attrs={"_hidden": 1}, frames=[{"_f": 0}, {"_f": 3, "_t": "0 0 5"}], layer=1),
        w.layr(0, "a"),
        w.layr(1, "b", hidden=True),
        w.rgba(colors),
        w.matl(1, {"_type": "_glass", "_trans": 0.5}),
        w.matt(2, 1, 0.5, {1: 0.3, 3: 0.2}),
        w.note(["x"]),
        w.chunk(b"ZZZZ", b"abc"),
    )


def _fuzz_corpus() -> list[bytes]:
    corpus = [_every_chunk_file()]
    for name in ("chr_knight.vox", "test_groups.vox", "deer_anim.vox", "metal-material.vox"):
        if (VOX_FIXTURES / name).exists():
            corpus.append((VOX_FIXTURES / name).read_bytes())
    return corpus


CORPUS = _fuzz_corpus()


def test_every_chunk_file_reads() -> None:
    vox = voxfile.read(CORPUS[0])
    assert [(i.name, i.hidden, i.layer) for i in vox.instances] == [
        ("root", False, 0),
        ("root", True, 1),
    ]
    assert vox.frame_count == 4 and sorted(vox.materials) == [1, 2]
    assert_consistent(vox)
    later = voxfile.read(CORPUS[0], frame=3)
    assert [i.model_index for i in later.instances] == [1, 1]
    assert later.instances[1].translation.tolist() == [0, 0, 5]


@settings(
    max_examples=400,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    which=st.integers(0, len(CORPUS) - 1),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert", "int", "delete", "byte"]),
            st.floats(0, 1),
            st.integers(0, 2**32 - 1),
        ),
        min_size=1,
        max_size=4,
    ),
    frame=st.integers(-2, 5),
)
def test_mutated_files_only_raise_vox_format_error(which, edits, frame) -> None:
    data = bytearray(CORPUS[which])
    for kind, where, value in edits:
        at = int(where * max(len(data) - 1, 0))
        if kind == "flip":
            data[at : at + 1] = bytes([data[at] ^ (1 << (value % 8))]) if data else b""
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = value.to_bytes(4, "little")
        elif kind == "delete":
            del data[at : at + value % 16 + 1]
        elif kind == "byte":
            data[at : at + 1] = bytes([value & 0xFF])
        else:  # overwrite a length-sized field with an arbitrary int32
            data[at : at + 4] = value.to_bytes(4, "little")
    try:
        vox = voxfile.read(bytes(data), frame=frame)
    except VoxFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert vox.frame_count >= 1 and vox.palette.shape == (256, 4)
    assert_consistent(vox)


@settings(max_examples=200, deadline=2000, derandomize=True)
@given(st.binary(max_size=200))
def test_random_bytes_after_a_valid_header(tail: bytes) -> None:
    with contextlib.suppress(VoxFormatError):
        voxfile.read(b"VOX " + struct.pack("<i", 150) + tail)
