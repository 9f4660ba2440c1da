"""conjure.generate end to end in real Blender against the Trify3D emulator."""

from __future__ import annotations

import base64
import importlib
import json
import time
from pathlib import Path

import pytest
from services import api as _api
from services import service

from conftest import ADDON_ID, FIXTURES
from emulators.trify3d import Trify3DEmulator, tiny_png

KEY = "trf_live_S3CRET-planted-key-0042"


@pytest.fixture(scope="session")
def model_glb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A textured GLB: the Khronos sample when ../shared is there, else one exported here."""
    sample = FIXTURES / "gltf" / "BoxTextured.glb"
    if sample.exists():
        return sample
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    bpy.context.object.data.materials.append(bpy.data.materials.new("Made Here"))
    out = tmp_path_factory.mktemp("glb") / "made.glb"
    bpy.ops.export_scene.gltf(filepath=str(out), export_format="GLB")
    return out


@pytest.fixture
def trify(model_glb: Path, monkeypatch: pytest.MonkeyPatch):
    emulator = Trify3DEmulator(model_glb, api_key=KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, KEY) as emu:
        yield emu


def _journal_rows() -> list[dict]:
    return _api().jobs()


def _journal_files() -> list[Path]:
    import bpy

    return list(Path(bpy.utils.extension_path_user(ADDON_ID)).glob("journal.sqlite*"))


def _generate(**kw) -> set[str]:
    import bpy

    return bpy.ops.conjure.generate(provider="trify3d", **kw)


def _job_collection(prompt: str):
    import bpy

    return next(c for c in bpy.data.collections if c.get("conjure_prompt") == prompt)


def test_text_to_3d_imports_glb_with_materials_at_cursor(scene, trify) -> None:

    scene.cursor.location = (1.0, 2.0, 3.0)
    assert _generate(source="TEXT", prompt="a textured box") == {"FINISHED"}

    coll = _job_collection("a textured box")
    assert coll.name == "Conjure a textured box"
    objects = list(coll.objects)
    meshes = [o for o in objects if o.type == "MESH"]
    assert meshes and all(o.select_get() for o in objects)
    assert any(
        slot.material and slot.material.node_tree for o in meshes for slot in o.material_slots
    )
    roots = [o for o in objects if o.parent is None]
    assert tuple(roots[0].location) == pytest.approx((1.0, 2.0, 3.0), abs=1e-5)
    task_id = next(iter(trify.tasks))
    for obj in objects:
        assert (obj["conjure_provider"], obj["conjure_task_id"]) == ("trify3d", task_id)
        assert obj["conjure_prompt"] == "a textured box" and len(obj["conjure_job_id"]) == 32
    assert trify.count("POST", "/api/v1/generations/text-to-3d") == 1
    row = next(r for r in _journal_rows() if r["task_id"] == task_id)
    assert set(row["objects"]) == {o.name for o in objects}
    assert row["state"] == "imported"
    created = json.loads(trify.requests[0].body)
    assert created == {"prompt": "a textured box"}
    assert trify.requests[0].headers["Idempotency-Key"].startswith("conjure-")


def test_image_to_3d_sends_the_local_file_as_data_url(scene, trify, tmp_path: Path) -> None:
    image = tmp_path / "chair.png"
    image.write_bytes(tiny_png())
    assert _generate(source="IMAGE", image_path=str(image)) == {"FINISHED"}
    body = json.loads(next(r.body for r in trify.requests if r.method == "POST"))
    prefix = "data:image/png;base64,"
    assert body["imageUrl"].startswith(prefix)
    assert base64.b64decode(body["imageUrl"][len(prefix) :]) == image.read_bytes()
    assert _job_collection("").objects  # label from the image; prompt empty


def test_multiview_sends_every_view(scene, trify, tmp_path: Path) -> None:
    import bpy

    views = []
    for i, rgb in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        path = tmp_path / f"view{i}.png"
        path.write_bytes(tiny_png(rgb))
        views.append({"name": str(path)})
    result = bpy.ops.conjure.generate(provider="trify3d", source="MULTIVIEW", image_paths=views)
    assert result == {"FINISHED"}
    body = json.loads(next(r.body for r in trify.requests if r.method == "POST"))
    assert len(body["imageUrls"]) == 3 and trify.count("POST") == 1
    assert any(o.type == "MESH" for o in bpy.data.objects)


def test_failed_generation_reports_the_services_error_code(scene, trify) -> None:
    with pytest.raises(RuntimeError, match="GENERATION_FAILED"):
        _generate(source="TEXT", prompt="please fail")


def test_key_never_reaches_output_journal_or_blend(scene, trify, tmp_path, capfd) -> None:
    import bpy

    # A hostile server echoing the credentials back in its error body.
    trify.inject(
        status=400, body={"error": f"bad header Authorization: Bearer {KEY}"}, method="POST"
    )
    with pytest.raises(RuntimeError) as info:
        _generate(source="TEXT", prompt="a vase")
    assert KEY not in str(info.value)
    assert _generate(source="TEXT", prompt="a vase") == {"FINISHED"}
    prefs = bpy.context.preferences.addons[ADDON_ID].preferences
    prefs.trify3d_api_key = KEY
    try:
        blend = tmp_path / "scene.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        assert KEY.encode() not in blend.read_bytes()
    finally:
        prefs.trify3d_api_key = ""
    for path in _journal_files():
        assert KEY.encode() not in path.read_bytes()
    out, err = capfd.readouterr()
    assert KEY not in out and KEY not in err


def test_cancel_stops_a_running_job(scene, trify) -> None:
    import bpy

    api = _api()
    trify.polls_to_complete = 10_000
    job_id = api.submit("trify3d", prompt="a slow tree")
    deadline = time.monotonic() + 10
    while trify.count("GET", "/api/v1/generations/") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bpy.ops.conjure.cancel_job(job_id=job_id) == {"FINISHED"}
    assert api.wait(job_id, timeout=10)[job_id]["state"] == "cancelled"
    polls = trify.count("GET")
    time.sleep(0.3)
    assert trify.count("GET") == polls  # nothing polls after cancel
    assert next(j for j in api.jobs() if j["job_id"] == job_id)["state"] == "cancelled"


def test_online_access_off_fails_before_any_request(scene, trify) -> None:
    import bpy

    bpy.context.preferences.system.use_online_access = False
    try:
        with pytest.raises(RuntimeError, match="--online-mode"):
            _generate(source="TEXT", prompt="a door")
    finally:
        bpy.context.preferences.system.use_online_access = True
    assert trify.requests == []


def test_missing_inputs_and_key_are_refused_up_front(scene, trify, monkeypatch) -> None:
    with pytest.raises(RuntimeError, match="Enter a prompt"):
        _generate(source="TEXT", prompt="   ")
    with pytest.raises(RuntimeError, match="at least two images"):
        _generate(source="MULTIVIEW")
    with pytest.raises(RuntimeError, match="Image not found"):
        _generate(source="IMAGE", image_path="/nonexistent/x.png")
    monkeypatch.delenv("CONJURE_TRIFY3D_API_KEY")
    with pytest.raises(RuntimeError, match="No API key for Trify3D"):
        _generate(source="TEXT", prompt="a cup")
    assert trify.requests == []


def test_disable_after_jobs_leaves_no_threads_and_reenables(scene, trify) -> None:
    import threading

    import addon_utils
    import bpy

    assert _generate(source="TEXT", prompt="a bench") == {"FINISHED"}
    assert [t for t in threading.enumerate() if t.name.startswith("conjure-")]
    addon_utils.disable(ADDON_ID)
    try:
        assert not [t for t in threading.enumerate() if t.name.startswith("conjure-")]
    finally:
        addon_utils.enable(ADDON_ID, default_set=True)
    assert bpy.ops.conjure.generate.poll()
    assert _generate(source="TEXT", prompt="a second bench") == {"FINISHED"}


def test_loading_a_file_with_live_jobs_brings_the_pump_back(scene, trify) -> None:
    import bpy

    monitor = importlib.import_module(f"{ADDON_ID}.operators.monitor")
    api = _api()
    trify.polls_to_complete = 10_000
    job_id = api.submit("trify3d", prompt="a long job")
    try:
        bpy.ops.wm.read_homefile(use_empty=True)
        assert bpy.app.timers.is_registered(monitor.start_monitor)
    finally:
        api.cancel(job_id)
        api.wait(job_id, timeout=10)
        if bpy.app.timers.is_registered(monitor.start_monitor):
            bpy.app.timers.unregister(monitor.start_monitor)


def test_one_undo_step_removes_a_generated_import(scene, trify) -> None:
    import bpy

    bpy.ops.ed.undo_push(message="before")
    assert _generate(source="TEXT", prompt="an undoable chair") == {"FINISHED"}
    assert any(c.get("conjure_prompt") == "an undoable chair" for c in bpy.data.collections)
    bpy.ops.ed.undo()
    assert not any(c.get("conjure_prompt") for c in bpy.data.collections)
    assert not [o for o in bpy.data.objects if o.get("conjure_job_id")]
