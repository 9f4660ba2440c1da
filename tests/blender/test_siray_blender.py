"""Siray in real Blender: every documented model, imported by what the output bytes are."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest
from services import api as _api
from services import service

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


def test_unknown_option_is_refused_before_sending(scene, siray) -> None:
    api = _api()
    with pytest.raises(api.ConjureError, match="face_limit"):
        api.generate("siray", prompt="x", options={"face_limit": 10}, timeout=5)
    assert siray.requests == []
