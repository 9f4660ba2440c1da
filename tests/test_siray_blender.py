"""Siray in real Blender: every documented model, imported by what the output bytes are."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest
from killresume import kill_and_resume, result_line
from services import api as _api
from services import service, service_env

from emulators.siray import SirayEmulator, tiny_glb
from emulators.trify3d import tiny_png

KEY = "sk-siray-S3CRET-planted-77"


@pytest.fixture
def siray(monkeypatch: pytest.MonkeyPatch):
    with service(monkeypatch, "siray", SirayEmulator(api_key=KEY), KEY) as emu:
        yield emu


def _meshes(objects) -> list:
    return [o for o in objects if o.type == "MESH"]


def test_text_to_3d_imports_the_glb(scene, siray) -> None:
    import bpy

    assert bpy.ops.conjure.generate(provider="siray", prompt="a siray teapot") == {"FINISHED"}
    (body,) = siray.bodies()
    assert body == {"model": "tencent/hunyuan3d-v2.5-rapid-text-to-3d", "prompt": "a siray teapot"}
    assert any(o.get("conjure_provider") == "siray" for o in bpy.data.objects)


def test_image_to_3d_with_tripo_and_its_options(scene, siray, tmp_path) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(tiny_png((5, 6, 7)))
    objects = _api().generate(
        "siray", source="IMAGE", image_paths=[str(image)],
        options={"model": "tripo", "face_limit": 5000, "texture_quality": "hd"},
    )  # fmt: skip
    assert _meshes(objects)
    (body,) = siray.bodies()
    assert body["model"] == "tripo/tripo3d-v2.5-image-to-3d"
    assert body["face_limit"] == 5000 and body["texture_quality"] == "HD"
    assert base64.b64decode(body["image"].split(",", 1)[1]) == image.read_bytes()


def test_operator_model_argument_picks_the_image_model(scene, siray) -> None:
    import bpy

    url = "https://example.com/chair.png"
    result = bpy.ops.conjure.generate(
        provider="siray", source="IMAGE", image_path=url,
        model="tencent/hunyuan3d-v2.5-rapid-image-to-3d",
    )  # fmt: skip
    assert result == {"FINISHED"}
    assert siray.bodies()[0] == {"model": "tencent/hunyuan3d-v2.5-rapid-image-to-3d", "image": url}


def test_a_zip_of_obj_mtl_and_texture_is_imported_with_its_texture(scene, siray) -> None:
    siray.output = "zip"
    objects = _api().generate("siray", prompt="a zipped teapot")
    images = [
        node.image
        for o in _meshes(objects)
        for slot in o.material_slots
        if slot.material and slot.material.node_tree
        for node in slot.material.node_tree.nodes
        if node.type == "TEX_IMAGE" and node.image
    ]
    assert images and all(i.packed_file is not None for i in images)


def test_a_zip_holding_a_glb_is_imported_as_gltf(scene, siray) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("result/model.glb", tiny_glb())
    siray.files["zipped_glb"] = buffer.getvalue()
    siray.output = "zipped_glb"
    assert _meshes(_api().generate("siray", prompt="a bundled teapot"))


def test_a_bare_obj_imports(scene, siray) -> None:
    siray.output = "obj"
    assert _meshes(_api().generate("siray", prompt="a plain teapot"))


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda e: setattr(e, "api_key", "other"), "rejected the API key"),
        (lambda e: setattr(e, "credits", 0), "Not enough credits"),
        (lambda e: (setattr(e, "credits", 0), setattr(e, "credit_status", 403)), "credits"),
        (lambda e: e.refuse("invalid_request", "prompt rejected by moderation"), "moderation"),
        (lambda e: setattr(e, "fail", ("FAILURE", "mesh generation crashed")), "crashed"),
    ],
    ids=["401", "402", "403", "code-not-success", "failure"],
)
def test_each_error_is_one_line_and_nothing_is_imported(scene, siray, setup, expected) -> None:
    import bpy

    setup(siray)
    with pytest.raises(RuntimeError) as info:
        bpy.ops.conjure.generate(provider="siray", prompt="a doomed teapot")
    text = str(info.value).strip()
    assert expected.lower() in text.lower() and "\n" not in text and KEY not in text
    assert not [o for o in bpy.data.objects if o.get("conjure_job_id")]


def test_unknown_option_is_refused_before_sending(scene, siray) -> None:
    api = _api()
    with pytest.raises(api.ConjureError, match="face_limit"):
        api.generate("siray", prompt="x", options={"face_limit": 10}, timeout=5)
    assert siray.requests == []


def test_killed_after_submit_resumes_with_one_create(built_zip, tmp_path) -> None:
    siray = SirayEmulator(api_key=KEY).start()
    try:
        siray.steps = (("IN_PROGRESS", "10%"),)  # never finishes while the first one lives
        second = kill_and_resume(
            built_zip,
            tmp_path,
            service_env("siray", KEY, siray.url),
            'bpy.ops.conjure.generate(provider="siray", prompt="a killed teapot")',
            "SELECT 1 FROM jobs WHERE task_id != ''",
            before_resume=lambda: setattr(siray, "steps", (("SUCCESS", "100%"),)),
        )
        result_line(second)
        assert len(siray.bodies()) == 1
    finally:
        siray.stop()


@pytest.mark.parametrize("status", [429, 500, 502])
def test_trouble_after_the_create_waits_and_imports(scene, siray, status) -> None:
    siray.inject(status=status, headers={"Retry-After": "1"}, method="GET", times=2)
    assert _meshes(_api().generate("siray", prompt="a patient teapot"))
    assert len(siray.bodies()) == 1  # paid once, never re-sent


def test_an_unknown_task_fails_in_one_line(scene, siray) -> None:
    import bpy

    siray.inject(status=404, body={"code": "not_found", "message": "task not exist"},
                 method="GET")  # fmt: skip
    with pytest.raises(RuntimeError) as info:
        bpy.ops.conjure.generate(provider="siray", prompt="a forgotten teapot")
    assert "does not know this task" in str(info.value) and "\n" not in str(info.value).strip()
