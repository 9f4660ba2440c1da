"""Culling and exposed faces against a brute-force reference on small random shapes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

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
