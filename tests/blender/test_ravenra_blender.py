"""Ravenra in real Blender: preview, refine, image URL → 3D and text → image, through the
operators and the script API, imported with Blender's own OBJ importer."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
from services import api as _api
from services import service

from emulators.ravenra import RavenraEmulator, hostile_mtl

KEY = "rvn_live_S3CRET-raven-key"


@pytest.fixture
def raven(monkeypatch: pytest.MonkeyPatch):
    with service(
        monkeypatch, "ravenra", RavenraEmulator(api_key=KEY), KEY, cancel_live=True
    ) as emu:
        yield emu


def _textures(objects) -> list:
    """Images used by the objects' materials through Image Texture nodes."""
    images = []
    for obj in objects:
        for slot in obj.material_slots:
            tree = slot.material.node_tree if slot.material else None
            for node in tree.nodes if tree else ():
                if node.type == "TEX_IMAGE" and node.image:
                    images.append(node.image)
    return images


def _meshes(job_id: str) -> list:
    import bpy

    names = _api().status(job_id)["objects"]
    return [bpy.data.objects[n] for n in names if bpy.data.objects[n].type == "MESH"]


def test_text_prompt_ends_in_a_textured_model(scene, raven) -> None:
    import bpy

    scene.cursor.location = (0.0, 3.0, 0.0)
    assert bpy.ops.conjure.generate(provider="ravenra", prompt="a raven statue") == {"FINISHED"}
    (job,) = _api().jobs()[:1]
    meshes = _meshes(job["job_id"])
    assert job["state"] == "imported" and meshes
    images = _textures(meshes)
    assert images and all(i.packed_file is not None and i.size[0] > 0 for i in images)
    assert all(o.get("conjure_provider") == "ravenra" for o in meshes)
    assert meshes[0].location.y == pytest.approx(3.0)
    preview, refine = raven.bodies("/task/create-task")  # the page's workflow, as one job
    assert preview == {"prompt": "a raven statue", "mode": "preview"}
    assert refine["mode"] == "refine" and refine["parent_task_id"] in raven.tasks
    assert meshes[0]["conjure_parent_task_id"] == refine["parent_task_id"]
    assert all(r.headers.get("x-api-key") == KEY for r in raven.requests if "/task/" in r.path)


def test_api_generate_and_a_zip_texture_bundle(scene, raven) -> None:
    raven.texture = "zip"
    objects = _api().generate("ravenra", prompt="a zipped raven")
    meshes = [o for o in objects if o.type == "MESH"]
    assert meshes and _textures(meshes)


def test_image_url_to_3d_and_a_local_file_is_refused(scene, raven, tmp_path) -> None:
    api = _api()
    local = tmp_path / "photo.png"
    local.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(api.ConjureError, match=r"takes an image URL \(https://…\), not a local"):
        api.submit("ravenra", source="IMAGE", image_paths=[str(local)])
    assert raven.requests == []
    url = "https://example.com/raven.png"
    objects = api.generate("ravenra", source="IMAGE", image_paths=[url], prompt="from a photo")
    assert objects
    assert raven.bodies("/task/create-task")[0]["image_source"] == url


def test_text_to_image_is_kept_as_a_packed_image(scene, raven) -> None:
    import bpy

    api = _api()
    job_id = api.submit("ravenra", prompt="a raven logo", options={"mode": "text-to-image"})
    status = api.wait(job_id, 10)[job_id]
    assert status["state"] == "imported"
    (name,) = status["objects"]
    image = bpy.data.images[name]
    assert image.packed_file is not None and image.use_fake_user and tuple(image.size) == (2, 2)
    assert image["conjure_job_id"] == job_id
    assert raven.bodies("/task/text-to-image") == [{"prompt": "a raven logo"}]


def test_refine_the_selected_preview_keeps_the_parent_link(scene, raven) -> None:
    import bpy

    assert bpy.ops.conjure.generate(provider="ravenra", prompt="a rough raven") == {"FINISHED"}
    preview = _api().jobs()[0]
    mesh = _meshes(preview["job_id"])[0]
    bpy.context.view_layer.objects.active = mesh
    assert bpy.ops.conjure.refine() == {"FINISHED"}
    refine_body = raven.bodies("/task/create-task")[-1]
    assert refine_body["mode"] == "refine"
    assert refine_body["parent_task_id"] == preview["task_id"]
    refined = _api().jobs()[0]
    assert refined["job_id"] != preview["job_id"] and refined["state"] == "imported"
    refined_mesh = _meshes(refined["job_id"])[0]
    assert refined_mesh["conjure_parent_task_id"] == preview["task_id"]


def test_refine_without_a_conjure_asset_says_what_to_select(scene, raven) -> None:
    import bpy

    with pytest.raises(RuntimeError, match="Select an asset Conjure imported"):
        bpy.ops.conjure.refine()
    assert raven.requests == []


def test_hostile_mtl_paths_are_warnings_and_nothing_outside_is_read(scene, raven) -> None:
    import bpy

    raven.files["mtl"] = hostile_mtl()
    job_id = _api().submit("ravenra", prompt="a nosy raven")
    status = _api().wait(job_id, 10)[job_id]
    assert status["state"] == "imported" and status["warnings"]
    jobs_dir = os.path.dirname(os.path.dirname(status["files"][0]))
    for image in bpy.data.images:
        path = bpy.path.abspath(image.filepath)
        assert not path or path.startswith(jobs_dir) or image.packed_file is not None
        assert "passwd" not in path


def test_a_zip_bomb_texture_is_one_line_and_nothing_half_imported(scene, raven) -> None:
    import bpy

    buffer = io.BytesIO()
    block = b"\0" * (1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb.png", "w", force_zip64=True) as member,  # over the 1 GiB cap
    ):
        for _ in range(1100):
            member.write(block)
    raven.texture = "zip"
    raven.texture_bytes = lambda: buffer.getvalue()
    before = {o.name for o in bpy.data.objects}
    job_id = _api().submit("ravenra", prompt="a bombed raven")
    status = _api().wait(job_id, 30)[job_id]
    assert status["state"] == "failed"
    assert "zip would inflate to" in status["message"] and "\n" not in status["message"]
    assert {o.name for o in bpy.data.objects} == before


def test_a_record_whose_urls_never_appear_keeps_polling_until_cancelled(scene, raven) -> None:
    raven.never_ready = True
    api = _api()
    job_id = api.submit("ravenra", prompt="a shy raven")
    assert api.wait(job_id, 1.5)[job_id]["state"] == "running"
    assert api.cancel(job_id)
    assert api.wait(job_id, 5)[job_id]["state"] == "cancelled"
