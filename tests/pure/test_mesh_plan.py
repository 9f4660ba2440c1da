"""The mesh options of a job's plan (issue #22), without Blender: what is taken, what is
refused in one line, and when a service is asked to keep a face budget itself."""

from __future__ import annotations

import pytest

from conjure_src.jobs.model import ImportPlan, with_mesh
from conjure_src.jobs.session import server_face_limit


def test_mesh_options_from_scripts_and_csv_text() -> None:
    plan = with_mesh(ImportPlan(), {"max_faces": "5000", "lods": 3, "smooth_angle": 30,
                                    "merge_distance": 1e-4, "apply_transforms": "yes"})  # fmt: skip
    assert (plan.max_faces, plan.lods, plan.smooth_angle) == (5000, 3, 30.0)
    assert plan.merge_distance == 1e-4 and plan.apply_transforms is True
    assert with_mesh(ImportPlan(), {"max_faces": 0}).max_faces == 0  # 0: not done
    assert ImportPlan.from_json(plan.to_json()) == plan  # journaled and read back


@pytest.mark.parametrize(
    ("mesh", "words"),
    [
        ({"max_faces": 11}, "max_faces must be from 12 to 10,000,000 (0: off), got 11"),
        ({"max_faces": True}, "max_faces must be a whole number (0: off), got True"),
        ({"lods": 7}, "lods must be from 1 to 6 (0: off), got 7"),
        ({"lods": "two"}, "lods must be a whole number (0: off), got 'two'"),
        ({"smooth_angle": float("nan")}, "smooth_angle must be a number (0: off), got nan"),
        ({"merge_distance": -1}, "merge_distance must be from 1e-07 to 1 (0: off), got -1"),
        ({"apply_transforms": "maybe"}, "apply_transforms must be true or false, got 'maybe'"),
        ({"faces": 5}, "unknown mesh option 'faces': use max_faces, lods, merge_distance, "
                       "smooth_angle, apply_transforms"),
    ],
)  # fmt: skip
def test_bad_mesh_options_are_refused_in_one_line(mesh: dict, words: str) -> None:
    with pytest.raises(ValueError) as refused:
        with_mesh(ImportPlan(), mesh)
    assert str(refused.value) == words


def test_a_service_with_a_face_limit_is_asked_within_its_range_only() -> None:
    plan = ImportPlan(max_faces=5000)
    assert server_face_limit("triverse", {}, plan) == {"polygon_limit": 5000}
    assert server_face_limit("triverse", {"polygon_limit": 9000}, plan) == {"polygon_limit": 9000}
    assert server_face_limit("triverse", {}, ImportPlan(max_faces=500)) == {}  # below 1,000
    assert server_face_limit("trify3d", {}, plan) == {}  # no such option: Decimate does it
    assert server_face_limit("triverse", {}, None) == {}
