"""Culling and exposed faces against a brute-force reference on small random shapes."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED
from conjure_src.importers import voxmesh


def _solid_cube(n: int) -> np.ndarray:
    return np.array(list(itertools.product(range(n), repeat=3)), dtype=np.int32)


def _reference_visible(xyz: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    solid = {tuple(v) for v, o in zip(xyz.tolist(), opaque, strict=True) if o}
    return np.array(
        [any(tuple(np.add(v, d)) not in solid for d in voxmesh.DIRECTIONS.tolist()) for v in xyz]
    )


def test_solid_cube_keeps_only_its_shell() -> None:
    xyz = _solid_cube(6)
    keep = voxmesh.visible_mask(xyz, np.ones(len(xyz), dtype=bool))
    assert keep.sum() == 6**3 - 4**3
    assert not keep[np.all((xyz > 0) & (xyz < 5), axis=1)].any()


@pytest.mark.parametrize("seed", range(5))
def test_visible_mask_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xyz = np.unique(rng.integers(-3, 4, size=(250, 3)), axis=0).astype(np.int32)
    opaque = rng.random(len(xyz)) > 0.2
    np.testing.assert_array_equal(
        voxmesh.visible_mask(xyz, opaque), _reference_visible(xyz, opaque)
    )


def test_glass_never_hides_neighbours() -> None:
    xyz = _solid_cube(3)
    opaque = np.ones(len(xyz), dtype=bool)
    centre = int(np.flatnonzero(np.all(xyz == 1, axis=1))[0])
    assert not voxmesh.visible_mask(xyz, opaque)[centre]
    side = int(np.flatnonzero(np.all(xyz == (1, 1, 2), axis=1))[0])
    opaque[side] = False
    assert voxmesh.visible_mask(xyz, opaque)[centre]


def test_exposed_faces_of_a_cube_are_its_surface() -> None:
    n = 4
    xyz = _solid_cube(n)
    faces = voxmesh.exposed_faces(xyz, np.ones(len(xyz), dtype=bool))
    assert len(faces.voxel) == 6 * n * n
    corners = faces.corners.reshape(-1, 4, 3)
    assert corners.min() == 0 and corners.max() == n
    # Every quad lies on the cube's boundary and its normal points outwards.
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    np.testing.assert_array_equal(np.sign(normals), voxmesh.DIRECTIONS[faces.direction])


def test_glass_block_has_no_inner_walls_but_solid_behind_glass_shows() -> None:
    xyz = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=np.int32)
    opaque = np.array([False, False, True])
    faces = voxmesh.exposed_faces(xyz, opaque)
    pairs = set(zip(faces.voxel.tolist(), faces.direction.tolist(), strict=True))
    assert (0, 1) not in pairs  # glass next to glass: no wall between them
    assert (2, 0) in pairs  # solid seen through glass keeps its face
    assert (1, 1) not in pairs  # glass touching a solid shows nothing there
    assert len(faces.voxel) == 5 + 4 + 6


def test_srgb_to_linear_endpoints() -> None:
    out = voxmesh.srgb_to_linear(np.array([0, 255, 188], dtype=np.uint8))
    np.testing.assert_allclose(out, [0.0, 1.0, 0.5029], atol=1e-3)


# ------------------------------------------------------------------- greedy and watertight

FIXTURE_DIR = SHARED / "fixtures" / "vox"
FIXTURES = sorted(p.name for p in FIXTURE_DIR.glob("*.vox") if p.name != "not_a.vox")


def _random_shape(seed: int, size: int = 7, fill: float = 0.55) -> tuple[np.ndarray, ...]:
    """Unique voxels in a small box: lumps of a few colours, one of them glass."""
    rng = np.random.default_rng(seed)
    grid = np.indices((size, size, size)).reshape(3, -1).T
    xyz = grid[rng.random(len(grid)) < fill].astype(np.int32) - size // 2
    color = rng.choice(np.array([3, 7, 200, 201]), size=len(xyz)).astype(np.int64)
    # Colour in blocks too, so that large same-colour planes exist to merge.
    color[xyz[:, 2] > 1] = 7
    opaque = color != 201
    return xyz, color, opaque


def _reference_faces(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """Rows (direction, colour, x, y, z) of every exposed voxel face, found by looking each
    neighbour up in a sorted table of the voxels (no grid, nothing shared with voxmesh)."""
    lo = xyz.min(axis=0).astype(np.int64) - 1
    dims = xyz.max(axis=0).astype(np.int64) - lo + 2

    def key(p: np.ndarray) -> np.ndarray:
        q = p.astype(np.int64) - lo
        return (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]

    def member(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
        at = np.clip(np.searchsorted(table, keys), 0, max(len(table) - 1, 0))
        return (table[at] == keys) if len(table) else np.zeros(len(keys), dtype=bool)

    occupied, solid = np.sort(key(xyz)), np.sort(key(xyz[opaque]))
    rows = []
    for direction, step in enumerate(voxmesh.DIRECTIONS):
        n = key(xyz + step)
        show = np.where(opaque, ~member(solid, n), ~member(occupied, n))
        idx = np.flatnonzero(show)
        rows.append(np.column_stack([np.full(len(idx), direction), color[idx], xyz[idx]]))
    return _sorted_rows(np.concatenate(rows).astype(np.int64))


def _naive_faces(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """The same rule with Python sets, one voxel at a time: checks `_reference_faces`."""
    occupied = {tuple(v) for v in xyz.tolist()}
    solid = {tuple(v) for v, o in zip(xyz.tolist(), opaque, strict=True) if o}
    rows = []
    for v, c, o in zip(xyz.tolist(), color.tolist(), opaque, strict=True):
        for d, step in enumerate(voxmesh.DIRECTIONS.tolist()):
            n = tuple(np.add(v, step).tolist())
            if n not in (solid if o else occupied):
                rows.append([d, c, *v])
    return _sorted_rows(np.array(rows, dtype=np.int64).reshape(-1, 5))


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


def _rasterize(rects: voxmesh.Rectangles) -> np.ndarray:
    """Rows (direction, colour, x, y, z): the voxel behind every unit square of every
    rectangle, so overlaps show up as repeated rows."""
    corners = rects.corners.reshape(-1, 4, 3)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    axis, facing = rects.direction // 2, rects.direction % 2
    rows = np.arange(len(axis))
    lo[rows, axis] -= facing  # a face on the + side lies one past its voxel
    hi[rows, axis] = lo[rows, axis] + 1
    extent = hi - lo
    count = extent.prod(axis=1)
    owner = np.repeat(rows, count)
    i = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    ey, ez = extent[owner, 1], extent[owner, 2]
    cells = lo[owner] + np.column_stack([i // (ey * ez), i // ez % ey, i % ez])
    out = np.column_stack([rects.direction[owner], rects.color[owner], cells])
    return _sorted_rows(out.astype(np.int64))


def _check_rectangles(
    rects: voxmesh.Rectangles, xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray
) -> np.ndarray:
    expected = _reference_faces(xyz, color, opaque)
    # Same unit faces with the same colours and directions, each covered exactly once.
    np.testing.assert_array_equal(_rasterize(rects), expected)
    # Per colour and direction, the rectangles' areas add up to the exposed faces.
    area = np.zeros((256, 6), dtype=np.int64)
    np.add.at(area, (rects.color, rects.direction), rects.areas())
    want = np.zeros((256, 6), dtype=np.int64)
    np.add.at(want, (expected[:, 1], expected[:, 0]), 1)
    np.testing.assert_array_equal(area, want)
    # Every rectangle is wound counter-clockwise seen from outside.
    c = rects.corners.reshape(-1, 4, 3)
    normals = np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    np.testing.assert_array_equal(np.sign(normals), voxmesh.DIRECTIONS[rects.direction])
    return expected


@pytest.mark.parametrize("seed", range(3))
def test_reference_faces_agree_with_a_voxel_by_voxel_count(seed: int) -> None:
    xyz, color, opaque = _random_shape(seed, size=5)
    np.testing.assert_array_equal(
        _reference_faces(xyz, color, opaque), _naive_faces(xyz, color, opaque)
    )


@pytest.mark.parametrize("seed", range(8))
def test_greedy_faces_cover_exactly_the_exposed_faces(seed: int) -> None:
    xyz, color, opaque = _random_shape(seed)
    rects = voxmesh.greedy_faces(xyz, color, opaque)
    expected = _check_rectangles(rects, xyz, color, opaque)
    assert len(rects.color) < len(expected)  # something merged
    unit = voxmesh.unit_faces(xyz, color, opaque)
    _check_rectangles(unit, xyz, color, opaque)
    assert len(unit.color) == len(expected) and unit.voxel_count == rects.voxel_count


def test_greedy_solid_cube_is_six_faces_and_colours_stay_apart() -> None:
    xyz = _solid_cube(4)
    one = voxmesh.greedy_faces(xyz, np.full(len(xyz), 5), np.ones(len(xyz), dtype=bool))
    assert len(one.color) == 6 and set(one.areas().tolist()) == {16}
    halves = np.where(xyz[:, 0] < 2, 5, 9)
    two = voxmesh.greedy_faces(xyz, halves, np.ones(len(xyz), dtype=bool))
    # -X and +X whole; the four other sides split by colour.
    assert len(two.color) == 2 + 4 * 2
    _check_rectangles(two, xyz, halves, np.ones(len(xyz), dtype=bool))


def test_greedy_keeps_the_last_voxel_of_a_shared_cell() -> None:
    xyz = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 0]], dtype=np.int32)
    color = np.array([4, 4, 6])
    rects = voxmesh.greedy_faces(xyz, color, np.ones(3, dtype=bool))
    _check_rectangles(rects, xyz[:2], np.array([4, 6]), np.ones(2, dtype=bool))
    assert rects.voxel_count == 2
    assert len(voxmesh.greedy_faces(xyz[:0], color[:0], np.ones(0, dtype=bool)).color) == 0


def _fixture_voxels(name: str) -> tuple[np.ndarray, ...]:
    from conjure_src.importers import voxfile

    path = FIXTURE_DIR / name
    if not path.exists():
        pytest.skip(f"shared fixture missing: {path}")
    vox = voxfile.read_file(path)
    shown = [i for i in vox.instances if len(i.xyz)]
    xyz = np.concatenate([i.xyz for i in shown])
    color = np.concatenate([i.color_index for i in shown]).astype(np.int64)
    glass = [i for i, m in vox.materials.items() if m.kind in {"glass", "media", "cloud"}]
    keep = voxmesh.last_in_cell(xyz)
    return xyz[keep], color[keep], ~np.isin(color[keep], glass)


@pytest.mark.parametrize("name", FIXTURES or ["(no fixtures)"])
def test_greedy_faces_of_every_fixture_match_its_exposed_faces(name: str) -> None:
    xyz, color, opaque = _fixture_voxels(name)
    rects = voxmesh.greedy_faces(xyz, color, opaque)
    expected = _check_rectangles(rects, xyz, color, opaque)
    assert len(rects.color) <= len(expected)
    polys = voxmesh.watertight_polygons(rects)
    np.testing.assert_array_equal(_polygon_areas(polys), rects.areas())


def test_monument_greedy_has_no_more_faces_than_the_best_public_importer() -> None:
    xyz, color, opaque = _fixture_voxels("monu1.vox")
    assert len(voxmesh.greedy_faces(xyz, color, opaque).color) <= 1345


# Greedy faces per fixture before #24 (the lexsort sweep): the count may not grow.
FIXTURE_FACES_BEFORE = {
    "chr_cat.vox": 497,
    "chr_knight.vox": 505,
    "deer_anim.vox": 627,
    "metal-material.vox": 48,
    "monu1.vox": 1342,
    "monu10.vox": 5457,
    "placeholder-with-materials.vox": 24,
    "teapot.vox": 22008,
    "test_groups.vox": 1827,
}


@pytest.mark.parametrize("name", FIXTURES or ["(no fixtures)"])
def test_greedy_faces_of_every_fixture_are_no_more_than_before(name: str) -> None:
    xyz, color, opaque = _fixture_voxels(name)
    assert len(voxmesh.greedy_faces(xyz, color, opaque).color) <= FIXTURE_FACES_BEFORE[name]


def _last_listed(xyz: np.ndarray, *per_voxel: np.ndarray) -> tuple[np.ndarray, ...]:
    """The voxels that count where several share a cell: the last one listed."""
    last = {cell: i for i, cell in enumerate(map(tuple, xyz.tolist()))}
    keep = np.array(sorted(last.values()), dtype=np.int64)
    return (xyz[keep], *(a[keep] for a in per_voxel))


def _greedy_2d(cells: set[tuple[int, int]]) -> int:
    """The classic greedy mesher, cell by cell: rows in increasing order; each cell not yet
    covered starts a run as wide as uncovered cells go, which goes down while the whole run
    is there and uncovered. Returns how many rectangles it makes."""
    covered: set[tuple[int, int]] = set()
    count = 0
    for row, col in sorted(cells):
        if (row, col) in covered:
            continue
        width = 1
        while (row, col + width) in cells and (row, col + width) not in covered:
            width += 1
        height = 1
        while all(
            (row + height, col + i) in cells and (row + height, col + i) not in covered
            for i in range(width)
        ):
            height += 1
        covered.update((row + h, col + i) for h in range(height) for i in range(width))
        count += 1
    return count


def _reference_greedy_count(faces: np.ndarray) -> int:
    """Per direction, plane and colour, the classic greedy mesher with rows along either
    in-plane axis, whichever makes fewer rectangles: the count `greedy_faces` must reach."""
    groups: dict[tuple[int, int, int], set[tuple[int, int]]] = defaultdict(set)
    for direction, color, *cell in faces.tolist():
        axis = direction // 2
        u, v = (cell[a] for a in range(3) if a != axis)
        groups[(direction, color, cell[axis])].add((u, v))
    return sum(
        min(_greedy_2d(cells), _greedy_2d({(v, u) for u, v in cells})) for cells in groups.values()
    )


@st.composite
def voxel_models(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small random models: any box shape and place, 1-4 colours (0 and 255 included) in
    lumps, some glass, sometimes voxels listed twice in one cell with another colour."""
    dims = draw(st.tuples(*[st.integers(1, 7)] * 3))
    offset = draw(st.tuples(*[st.integers(-300, 300)] * 3))
    palette = draw(st.lists(st.sampled_from([0, 1, 2, 7, 128, 255]), min_size=1, max_size=4))
    fill = draw(st.sampled_from([0.3, 0.6, 0.9, 1.0]))
    glass = draw(st.sampled_from([0.0, 0.0, 0.2]))
    twice = draw(st.sampled_from([0, 0, 5]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    grid = np.indices(dims).reshape(3, -1).T
    xyz = grid[rng.random(len(grid)) < fill]
    if len(xyz) == 0:
        xyz = grid[:1]
    lump = (xyz // 2 * np.array([1, 3, 9])).sum(axis=1)  # 2x2x2 lumps share a colour
    color = np.asarray(palette)[(lump + rng.integers(0, 2, len(xyz))) % len(palette)]
    again = rng.integers(0, len(xyz), twice)
    xyz = np.concatenate([xyz, xyz[again]]) + np.asarray(offset)
    color = np.concatenate([color, rng.choice(palette, twice)]).astype(np.int64)
    opaque = rng.random(len(xyz)) >= glass
    return xyz.astype(np.int32), color, opaque


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(model=voxel_models())
def test_greedy_rectangles_are_the_exposed_faces_per_colour_and_as_few_as_classic_greedy(
    model: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    xyz, color, opaque = model
    rects = voxmesh.greedy_faces(xyz, color, opaque)
    unique = _last_listed(xyz, color, opaque)
    # Each exposed unit face of each colour covered exactly once, by its colour's rectangles.
    expected = _check_rectangles(rects, *unique)
    assert len(rects.color) == _reference_greedy_count(expected)
    _check_rectangles(voxmesh.unit_faces(xyz, color, opaque), *unique)
    polys = voxmesh.watertight_polygons(rects)
    assert _t_junctions(polys) == 0
    _check_edges(polys)
    np.testing.assert_array_equal(_polygon_areas(polys), rects.areas())
    np.testing.assert_array_equal(polys.color, rects.color)


def test_models_spread_far_apart_take_the_sparse_paths() -> None:
    """Two lumps 70,000 cells apart: a grid mostly empty (faces found voxel by voxel),
    coordinates past 16 bits (two radix passes) and vertex keys sorted, not tabled."""
    xyz, color, opaque = _random_shape(3, size=6)
    far = xyz + np.array([70_000, -5, 3], dtype=np.int32)
    both = np.concatenate([xyz, far])
    color2, opaque2 = np.concatenate([color, color]), np.concatenate([opaque, opaque])
    rects = voxmesh.greedy_faces(both, color2, opaque2)
    expected = _check_rectangles(rects, both, color2, opaque2)
    assert len(rects.color) == 2 * len(voxmesh.greedy_faces(xyz, color, opaque).color)
    assert len(rects.color) == _reference_greedy_count(expected)
    polys = voxmesh.watertight_polygons(rects)
    assert _t_junctions(polys) == 0
    _check_edges(polys)
    np.testing.assert_array_equal(_polygon_areas(polys), rects.areas())


@pytest.mark.parametrize("bound", [1, 300, 65_536, 70_000, 1 << 40])
def test_stable_order_is_a_stable_argsort(bound: int) -> None:
    keys = np.random.default_rng(bound).integers(0, bound, 5000)
    np.testing.assert_array_equal(
        voxmesh._stable_order(keys, bound), np.argsort(keys, kind="stable")
    )


def test_shared_polygons_share_coincident_corners() -> None:
    xyz = _solid_cube(2)
    quads = voxmesh.unit_faces(xyz, np.full(8, 1), np.ones(8, dtype=bool))
    polys = voxmesh.shared_polygons(quads)
    assert len(polys.starts) == 24 and len(polys.vertices) == 3**3 - 1
    np.testing.assert_array_equal(polys.vertices[polys.loops], quads.corners)


# ------------------------------------------------------------------------------ watertight


def _polygon_areas(polys: voxmesh.Polygons) -> np.ndarray:
    """Area of each polygon (Newell's formula), as integers: corners are lattice points."""
    co = polys.vertices[polys.loops].astype(np.float64)
    face = np.repeat(np.arange(len(polys.starts)), polys.sizes)
    nxt = np.arange(len(polys.loops)) + 1
    ends = polys.starts + polys.sizes
    nxt[ends - 1] = polys.starts
    cross = np.cross(co, co[nxt])
    total = np.zeros((len(polys.starts), 3))
    np.add.at(total, face, cross)
    return np.rint(np.linalg.norm(total, axis=1) / 2).astype(np.int64)


def _edges(polys: voxmesh.Polygons) -> tuple[np.ndarray, np.ndarray]:
    nxt = np.arange(len(polys.loops)) + 1
    ends = polys.starts + polys.sizes
    nxt[ends - 1] = polys.starts
    return polys.loops, polys.loops[nxt]


def _check_edges(polys: voxmesh.Polygons) -> None:
    """The mesher's own edges are the mesh's edges: each loop's edge is the step from its
    vertex to the face's next corner, and each pair of vertices has one edge."""
    assert polys.edges is not None and polys.corner_edges is not None
    a, b = _edges(polys)
    named = np.sort(polys.edges[polys.corner_edges], axis=1)
    np.testing.assert_array_equal(named, np.sort(np.column_stack([a, b]), axis=1))
    assert len(np.unique(np.sort(polys.edges, axis=1), axis=0)) == len(polys.edges)
    assert np.array_equal(np.unique(polys.corner_edges), np.arange(len(polys.edges)))


def _t_junctions(polys: voxmesh.Polygons) -> int:
    """Vertices lying strictly inside some polygon edge, checked against every edge."""
    a, b = _edges(polys)
    p, q = polys.vertices[a].astype(np.float64), polys.vertices[b].astype(np.float64)
    v = polys.vertices.astype(np.float64)
    d = q - p
    t = np.einsum("ek,evk->ev", d, v[None] - p[:, None]) / np.einsum("ek,ek->e", d, d)[:, None]
    off = v[None] - (p[:, None] + t[..., None] * d[:, None])
    inside = (np.abs(off).sum(axis=2) < 1e-9) & (t > 1e-9) & (t < 1 - 1e-9)
    return int(inside.sum())


def _manifold_problems(polys: voxmesh.Polygons) -> int:
    """Edges not shared by exactly two faces, or walked the same way by both."""
    a, b = _edges(polys)
    directed = np.unique(np.column_stack([a, b]), axis=0, return_counts=True)[1]
    undirected = np.unique(np.sort(np.column_stack([a, b]), axis=1), axis=0, return_counts=True)[1]
    return int((directed != 1).sum() + (undirected != 2).sum())


def manifold_shapes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Shapes with no voxels touching only along an edge: a bumpy cube, an L, a hollow box."""
    cube = _solid_cube(6)
    bumps = np.array([[2, 2, 6], [3, 2, 6], [2, 3, 6], [6, 1, 1], [6, 1, 2], [-1, 4, 4], [2, 6, 0]])
    bumpy = np.concatenate([cube, bumps]).astype(np.int32)
    bumpy_color = np.where(bumpy[:, 0] < 3, 10, 20) + (bumpy[:, 2] > 4)
    ell = np.array(
        [(x, y, z) for x in range(8) for y in range(5) for z in range(3) if x < 3 or y < 2],
        dtype=np.int32,
    )
    ell_color = 1 + (ell[:, 0] + ell[:, 1]) // 3 % 3
    box = _solid_cube(5)
    hollow = box[~np.all((box > 0) & (box < 4), axis=1)]
    return {
        "bumpy cube": (bumpy, bumpy_color),
        "L": (ell, ell_color),
        "hollow box": (hollow, 1 + hollow[:, 1] // 2),
    }


@pytest.mark.parametrize("name", sorted(manifold_shapes()))
def test_watertight_polygons_have_no_t_junctions_and_are_manifold(name: str) -> None:
    xyz, color = manifold_shapes()[name]
    opaque = np.ones(len(xyz), dtype=bool)
    rects = voxmesh.greedy_faces(xyz, color, opaque)
    _check_rectangles(rects, xyz, color, opaque)
    greedy = voxmesh.shared_polygons(rects)
    polys = voxmesh.watertight_polygons(rects)
    assert _t_junctions(polys) == 0
    _check_edges(polys)
    assert _manifold_problems(polys) == 0
    np.testing.assert_array_equal(_polygon_areas(polys), rects.areas())
    np.testing.assert_array_equal(polys.color, rects.color)
    assert len(polys.vertices) == len(greedy.vertices)  # only existing corners are added


def test_plain_greedy_faces_do_have_t_junctions_the_checks_find() -> None:
    for name in ("bumpy cube", "L"):
        xyz, color = manifold_shapes()[name]
        rects = voxmesh.greedy_faces(xyz, color, np.ones(len(xyz), dtype=bool))
        greedy = voxmesh.shared_polygons(rects)
        assert _t_junctions(greedy) > 0 and _manifold_problems(greedy) > 0


@pytest.mark.parametrize("seed", range(4))
def test_watertight_random_shapes_lose_no_area_and_leave_no_t_junction(seed: int) -> None:
    xyz, color, opaque = _random_shape(seed, size=6)
    rects = voxmesh.greedy_faces(xyz, color, opaque)
    polys = voxmesh.watertight_polygons(rects)
    assert _t_junctions(polys) == 0
    _check_edges(polys)
    np.testing.assert_array_equal(_polygon_areas(polys), rects.areas())
    np.testing.assert_array_equal(polys.direction, rects.direction)
