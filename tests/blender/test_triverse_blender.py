"""Triverse in real Blender: text and image (uploaded first) to GLB; the textured model, or
the geometry when texturing fails."""

from __future__ import annotations

import pytest
from services import api as _api
from services import service

from emulators.trify3d import tiny_png
from emulators.triverse import IMAGE_PATH, TEXT_PATH, UPLOAD_PATH, TriverseEmulator

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


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "headers": {"Retry-After": "1"}},
        {"status": 429},
        {"status": 500, "body": "<html>oops</html>"},
        {"status": 503},
    ],
    ids=["429-retry-after", "429", "500", "503"],
)
def test_upload_trouble_sends_it_again_and_pays_once(scene, triverse, tmp_path, fault) -> None:
    """An upload costs nothing and starts no task: after a refusal or a server error it goes
    again (after Retry-After, or a back-off); the paid create then goes once."""
    image = tmp_path / "robot.png"
    image.write_bytes(tiny_png((9, 90, 200)))
    triverse.inject(method="POST", path=UPLOAD_PATH, **fault)
    assert _api().generate("triverse", source="IMAGE", image_paths=[str(image)], timeout=60)
    assert not triverse.faults and len(triverse.uploads()) == 2
    assert len(triverse.bodies(IMAGE_PATH)) == 1 and triverse.charges == 1


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


def test_out_of_range_options_send_nothing(scene, triverse) -> None:
    api = _api()
    with pytest.raises(api.ConjureError, match="polygon_limit"):
        api.generate("triverse", prompt="a robot", options={"polygon_limit": 999}, timeout=5)
    assert triverse.requests == []


def test_a_wrong_base_url_says_so(scene, triverse, monkeypatch) -> None:
    monkeypatch.setenv("CONJURE_TRIVERSE_BASE_URL", triverse.url)  # /api/v1 left out
    api = _api()
    with pytest.raises(api.ConjureError, match="check its base URL"):
        api.generate("triverse", prompt="a lost robot", timeout=10)
