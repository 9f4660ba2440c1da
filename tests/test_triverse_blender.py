"""Triverse in real Blender: text and image (uploaded first) to GLB; the textured model, or
the geometry when texturing fails."""

from __future__ import annotations

import pytest
from killresume import kill_and_resume, result_line
from services import api as _api
from services import service, service_env

from emulators.trify3d import tiny_png
from emulators.triverse import IMAGE_PATH, TEXT_PATH, TriverseEmulator

KEY = "tvs_live_S3CRET-planted-31"


@pytest.fixture
def triverse(monkeypatch: pytest.MonkeyPatch):
    emulator = TriverseEmulator(api_key=KEY)
    with service(monkeypatch, "triverse", emulator, KEY, path="/api/v1") as emu:  # as the real base
        yield emu


def _mesh_names(objects) -> set[str]:
    return {o.data.name for o in objects if o.type == "MESH"}


def test_text_to_model_imports_the_textured_glb(scene, triverse) -> None:
    import bpy

    result = bpy.ops.conjure.generate(provider="triverse", prompt="a triverse robot")
    assert result == {"FINISHED"}
    objects = [o for o in bpy.data.objects if o.get("conjure_provider") == "triverse"]
    assert any("triverse-textured" in n for n in _mesh_names(objects))
    (body,) = triverse.bodies(TEXT_PATH)
    assert body["prompt"] == "a triverse robot" and body["client_order_id"].startswith("conjure-")


def test_a_local_image_is_uploaded_then_used(scene, triverse, tmp_path) -> None:
    image = tmp_path / "robot.png"
    image.write_bytes(tiny_png((9, 90, 200)))
    objects = _api().generate(
        "triverse", source="IMAGE", image_paths=[str(image)], options={"texture_size": 2048}
    )
    assert objects
    (parts,) = triverse.uploads()
    assert any(p.data == image.read_bytes() for p in parts)
    (body,) = triverse.bodies(IMAGE_PATH)
    assert body["image_file"] in triverse.files and body["texture_size"] == 2048


def test_an_image_url_is_passed_through_without_upload(scene, triverse) -> None:
    url = "https://example.com/robot.png"
    assert _api().generate("triverse", source="IMAGE", image_paths=[url])
    assert triverse.uploads() == []
    assert triverse.bodies(IMAGE_PATH)[0]["image_file"] == url


def test_failed_texturing_imports_the_geometry_with_a_warning(scene, triverse) -> None:
    triverse.texture_fails = True
    api = _api()
    job_id = api.submit("triverse", prompt="a half robot")
    status = api.wait(job_id, 10)[job_id]
    assert status["state"] == "imported"
    assert any("Texturing failed" in w for w in status["warnings"])
    import bpy

    objects = [bpy.data.objects[n] for n in status["objects"]]
    assert any("triverse-geometry" in n for n in _mesh_names(objects))


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda e: setattr(e, "api_key", "other"), "rejected the API key"),
        (lambda e: setattr(e, "credits", 0), "Not enough credits"),
        (lambda e: e.inject_code(1001, "prompt violates the content policy", method="POST"),
         "content policy"),
    ],
    ids=["401", "402", "code-not-zero"],
)  # fmt: skip
def test_each_error_is_one_line_and_nothing_is_imported(scene, triverse, setup, expected) -> None:
    import bpy

    setup(triverse)
    with pytest.raises(RuntimeError) as info:
        bpy.ops.conjure.generate(provider="triverse", prompt="a doomed robot")
    text = str(info.value).strip()
    assert expected.lower() in text.lower() and "\n" not in text and KEY not in text
    assert not [o for o in bpy.data.objects if o.get("conjure_job_id")]


def test_out_of_range_options_send_nothing(scene, triverse) -> None:
    api = _api()
    with pytest.raises(api.ConjureError, match="polygon_limit"):
        api.generate("triverse", prompt="a robot", options={"polygon_limit": 999}, timeout=5)
    assert triverse.requests == []


def test_killed_after_submit_resumes_with_one_create(built_zip, tmp_path) -> None:
    triverse = TriverseEmulator(api_key=KEY, polls_per_stage=10**9).start()
    try:
        second = kill_and_resume(
            built_zip,
            tmp_path,
            service_env("triverse", KEY, f"{triverse.url}/api/v1"),
            'bpy.ops.conjure.generate(provider="triverse", prompt="a killed robot")',
            "SELECT 1 FROM jobs WHERE task_id != ''",
            before_resume=lambda: setattr(triverse, "polls_per_stage", 1),
        )
        result_line(second)
        assert len(triverse.bodies(TEXT_PATH)) == 1 and triverse.charges == 1
    finally:
        triverse.stop()


def test_a_wrong_base_url_says_so(scene, triverse, monkeypatch) -> None:
    monkeypatch.setenv("CONJURE_TRIVERSE_BASE_URL", triverse.url)  # /api/v1 left out
    api = _api()
    with pytest.raises(api.ConjureError, match="check its base URL"):
        api.generate("triverse", prompt="a lost robot", timeout=10)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_trouble_after_the_create_waits_and_imports(scene, triverse, status) -> None:
    triverse.inject(status=status, headers={"Retry-After": "1"}, method="GET", times=2)
    assert _api().generate("triverse", prompt="a patient robot")
    assert len(triverse.bodies(TEXT_PATH)) == 1 and triverse.charges == 1


def test_an_unknown_task_fails_in_one_line(scene, triverse) -> None:
    import bpy

    triverse.inject(status=404, body={"code": 404, "message": "task not found"}, method="GET")
    with pytest.raises(RuntimeError) as info:
        bpy.ops.conjure.generate(provider="triverse", prompt="a forgotten robot")
    assert "does not know this task" in str(info.value) and "\n" not in str(info.value).strip()
