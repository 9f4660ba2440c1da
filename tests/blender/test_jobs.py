"""Engine v2 in real Blender: the script API, the blocking rule, import timing and safety,
keys per job, housekeeping, and two Blenders sharing one journal."""

from __future__ import annotations

import importlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from services import api as _api
from services import service
from test_generate import KEY, model_glb  # noqa: F401  (fixture)

from conftest import ADDON_ID, ROOT
from emulators.glb import triangle_glb
from emulators.trify3d import Trify3DEmulator


@pytest.fixture
def trify(model_glb: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    # no live job of one test may count against the next one's limits
    emulator = Trify3DEmulator(model_glb, api_key=KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, KEY, cancel_live=True, cancel_wait=5) as emu:
        yield emu


def _prefs():
    import bpy

    return bpy.context.preferences.addons[ADDON_ID].preferences


def _conjure_objects() -> list:
    import bpy

    return [o for o in bpy.data.objects if o.get("conjure_job_id")]


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- the script API ---------------------------------------------------------------------------


def test_api_generate_returns_the_imported_objects(scene, trify) -> None:
    objects = _api().generate("trify3d", prompt="an api chair")
    assert objects and all(o.get("conjure_prompt") == "an api chair" for o in objects)
    (job,) = _api().jobs()[:1]
    assert job["state"] == "imported" and set(job["objects"]) == {o.name for o in objects}


def test_api_submit_never_blocks_and_wait_returns_at_its_timeout(scene, trify) -> None:
    api = _api()
    trify.polls_to_complete = 10_000
    trify.inject(delay=1.0, passthrough=True, method="POST")  # a slow service
    started = time.monotonic()
    job_id = api.submit("trify3d", prompt="a patient job")
    assert time.monotonic() - started < 0.5
    assert api.status(job_id)["state"] in ("queued", "submitting")
    result = api.wait([job_id], timeout=1.5)[job_id]
    assert result["state"] in ("submitted", "running")  # not failed by the timeout
    assert api.status(job_id)["task_id"]
    assert api.cancel(job_id) and api.wait(job_id, 5)[job_id]["state"] == "cancelled"


def test_api_errors_are_one_line(scene, trify, monkeypatch) -> None:
    api = _api()
    with pytest.raises(api.ConjureError, match="Enter a prompt"):
        api.submit("trify3d", prompt=" ")
    with pytest.raises(api.ConjureError, match="Unknown service"):
        api.submit("nope", prompt="x")
    with pytest.raises(api.ConjureError, match=r"not available in this version|No API key"):
        api.generate("siray", prompt="x", timeout=5)
    trify.credits = 0
    with pytest.raises(api.ConjureError, match="Not enough credits") as info:
        api.generate("trify3d", prompt="a costly thing", timeout=10)
    assert "\n" not in str(info.value) and KEY not in str(info.value)


# -- 14. one blocking rule -----------------------------------------------------------------


def test_an_executed_operator_blocks_until_the_asset_exists(scene, trify) -> None:
    """Scripts execute operators; they block until imported whatever the mode. (Invoking,
    the UI path that returns at once, needs a window: the bpy module never calls invoke.)"""
    import bpy

    trify.polls_to_complete = 5
    assert bpy.ops.conjure.generate(provider="trify3d", prompt="executed") == {"FINISHED"}
    assert any(o.get("conjure_prompt") == "executed" for o in _conjure_objects())
    assert bpy.ops.conjure.generate("EXEC_DEFAULT", provider="trify3d", prompt="ex2") == {
        "FINISHED"
    }
    assert any(o.get("conjure_prompt") == "ex2" for o in _conjure_objects())


# -- 10. imports only in Object mode and into the file the job started from ------------------


def test_a_job_waits_for_object_mode_then_imports(scene, trify) -> None:
    import bpy

    bpy.ops.mesh.primitive_cube_add()
    bpy.ops.object.mode_set(mode="EDIT")
    api = _api()
    job_id = api.submit("trify3d", prompt="while editing")
    status = api.wait(job_id, timeout=3)[job_id]
    assert status["state"] == "ready" and status["message"] == "Ready — Import"
    assert bpy.context.mode == "EDIT_MESH" and not _conjure_objects()
    bpy.ops.object.mode_set(mode="OBJECT")
    assert api.wait(job_id, timeout=5)[job_id]["state"] == "imported"
    assert _conjure_objects()


def test_after_a_file_load_a_job_waits_for_a_click(scene, trify, tmp_path) -> None:
    import bpy

    trify.polls_to_complete = 6
    api = _api()
    job_id = api.submit("trify3d", prompt="for the first file")
    bpy.ops.wm.read_homefile(use_empty=True)  # another file replaces the one it started in
    assert api.wait(job_id, timeout=5)[job_id]["state"] == "ready"
    assert not _conjure_objects()
    assert bpy.ops.conjure.import_job(job_id=job_id) == {"FINISHED"}
    assert api.status(job_id)["state"] == "imported" and _conjure_objects()


# -- 6/7. imports are confined and clean ------------------------------------------------------


def _glb_with_outside_texture(outside_png: Path) -> bytes:
    """A one-triangle GLB whose image points at an absolute path outside any job folder."""
    material = {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}
    return triangle_glb(material=material, image_uri=str(outside_png))


def test_a_served_glb_cannot_pull_in_local_files(scene, trify, tmp_path) -> None:
    import bpy

    from emulators.trify3d import tiny_png

    secret = tmp_path / "private" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(tiny_png((1, 2, 3)))
    trify.model_bytes = _glb_with_outside_texture(secret)
    api = _api()
    job_id = api.submit("trify3d", prompt="a nosy model")
    status = api.wait(job_id, 10)[job_id]
    assert status["state"] == "imported"
    assert any("secret.png" in w and "outside the job folder" in w for w in status["warnings"])
    for image in bpy.data.images:
        assert "private" not in bpy.path.abspath(image.filepath)


def test_a_failed_import_leaves_no_data_behind(scene, trify) -> None:
    import bpy

    def names() -> dict[str, set[str]]:
        kinds = ("objects", "meshes", "materials", "images", "collections", "actions")
        return {k: {b.name for b in getattr(bpy.data, k)} for k in kinds}

    before = names()
    trify.model_bytes = b"glTF\x02\x00\x00\x00" + b"\xff" * 40  # a GLB that lies about itself
    with pytest.raises(RuntimeError, match="Import failed"):
        bpy.ops.conjure.generate(provider="trify3d", prompt="a broken model")
    assert names() == before
    assert _api().jobs()[0]["state"] == "failed"


# -- 5. which key a job belongs to ------------------------------------------------------------


def test_journal_records_key_fingerprint_and_base_url_never_the_key(scene, trify) -> None:
    import bpy

    job_id = _api().submit("trify3d", prompt="a fingerprinted job")
    _api().wait(job_id, 10)
    journal = Path(bpy.utils.extension_path_user(ADDON_ID)) / "journal.sqlite"
    with sqlite3.connect(journal) as db:
        fingerprint, base_url = db.execute(
            "SELECT key_fingerprint, base_url FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
    assert len(fingerprint) == 12 and fingerprint not in KEY and base_url == trify.url


def test_resume_with_another_key_says_so_and_sends_nothing(scene, trify, monkeypatch) -> None:
    import bpy

    api = _api()
    trify.polls_to_complete = 10_000
    job_id = api.submit("trify3d", prompt="a job of the first key")
    _wait_for(lambda: api.status(job_id)["task_id"])
    addon_utils = importlib.import_module("addon_utils")
    addon_utils.disable(ADDON_ID)  # like quitting Blender: the job stays in the journal
    addon_utils.enable(ADDON_ID, default_set=True)
    bpy.context.preferences.system.use_online_access = True
    monkeypatch.setenv("CONJURE_TRIFY3D_API_KEY", "trf_live_a-different-key")
    gets = trify.count("GET")
    assert _api().resume() == []
    status = _api().status(job_id)
    assert (
        status["message"] == "Created with another Trify3D API key: set that key to resume this job"
    )
    time.sleep(0.3)
    assert trify.count("GET") == gets
    monkeypatch.setenv("CONJURE_TRIFY3D_API_KEY", KEY)
    assert _api().resume() == [job_id]
    _api().cancel(job_id)


# -- 11. housekeeping ------------------------------------------------------------------------


def test_clear_finished_and_prune_old_jobs(scene, trify) -> None:
    import bpy

    api = _api()
    api.generate("trify3d", prompt="done one")
    failed = api.submit("trify3d", prompt="please fail")
    api.wait(failed, 10)
    runtime = importlib.import_module(f"{ADDON_ID}.runtime").get()
    folder = Path(bpy.utils.extension_path_user(ADDON_ID)) / "jobs"
    assert len(list(folder.iterdir())) >= 1
    assert runtime.prune(keep_days=-1) >= 2  # everything finished counts as old
    assert not [j for j in api.jobs() if j["state"] in ("imported", "failed")]
    assert not list(folder.iterdir())
    api.generate("trify3d", prompt="done two")
    assert bpy.ops.conjure.clear_finished_jobs() == {"FINISHED"}
    finished = {"imported", "failed", "cancelled", "unsure"}
    assert not [j for j in api.jobs() if j["state"] in finished]
    assert not [i for i in bpy.context.window_manager.conjure.jobs if i.state in finished]


def test_the_live_mirror_keeps_only_recent_finished_jobs(scene, trify) -> None:
    import bpy

    api = _api()
    bpy.ops.conjure.clear_finished_jobs()
    for i in range(24):
        api.submit("trify3d", prompt=f"please fail {i}")
    _wait_for(lambda: sum(j["state"] == "failed" for j in api.jobs()) == 24, 30)
    api.wait([j["job_id"] for j in api.jobs()], 5)
    mirror = bpy.context.window_manager.conjure.jobs
    assert len([i for i in mirror if i.state == "failed"]) == 20


# -- networks as studios have them -------------------------------------------------------------


def test_a_missing_ca_bundle_fails_the_job_in_one_line(scene, trify, tmp_path) -> None:
    prefs = _prefs()
    prefs.ca_bundle = str(tmp_path / "nowhere.pem")
    try:
        api = _api()
        job_id = api.submit("trify3d", prompt="behind a proxy")
        status = api.wait(job_id, 10)[job_id]
    finally:
        prefs.ca_bundle = ""
    assert status["state"] == "failed" and "CA bundle not found" in status["message"]
    assert trify.requests == []


# -- 9. two Blenders, one journal ----------------------------------------------------------------

CHILD = """
import sys, importlib, time
import bpy, addon_utils
bpy.context.preferences.system.use_online_access = True
if sys.argv[1] == "owner":
    bpy.ops.extensions.package_install_files(filepath=sys.argv[2], repo="user_default",
                                             enable_on_install=True)
    api = importlib.import_module("{addon}.api")
    job = api.submit("trify3d", prompt="a shared job")
    print("JOB", job, flush=True)
    api.wait(job, 600)
else:
    addon_utils.enable("{addon}", default_set=True)
    api = importlib.import_module("{addon}.api")
    for line in sys.stdin:
        started = api.resume()
        msgs = [j["message"] for j in api.jobs()]
        print("RESUMED", started, msgs, flush=True)
        if started:
            done = api.wait(started, 60)
            print("DONE", [d["state"] for d in done.values()], flush=True)
            break
"""


def test_two_blenders_never_run_the_same_job(built_zip, trify, tmp_path) -> None:
    user = tmp_path / "user"
    env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(user),
        "CONJURE_TRIFY3D_API_KEY": KEY,
        "CONJURE_TRIFY3D_BASE_URL": trify.url,
        "CONJURE_POLL_SECONDS": "0.05",
    }
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("{addon}", ADDON_ID))
    trify.polls_to_complete = 10**9
    run = {"env": env, "cwd": ROOT, "stdout": subprocess.PIPE, "text": True}
    owner = subprocess.Popen([sys.executable, str(script), "owner", str(built_zip)], **run)
    other = None
    try:
        line = ""
        while not line.startswith("JOB") and owner.poll() is None:
            line = owner.stdout.readline()  # past Blender's own "STATUS Installed ..."
        assert line.startswith("JOB"), line
        _wait_for(lambda: trify.tasks, 60)
        other = subprocess.Popen(
            [sys.executable, str(script), "other"], stdin=subprocess.PIPE, **run
        )
        other.stdin.write("go\n")
        other.stdin.flush()
        first = other.stdout.readline()
        assert first.startswith("RESUMED []") and "Running in another Blender" in first, first
        owner.kill()  # the owning Blender is gone
        owner.wait(10)
        (task,) = trify.tasks.values()
        trify.polls_to_complete = task.polls + 2
        other.stdin.write("go\n")
        other.stdin.flush()
        second = other.stdout.readline()
        assert second.startswith("RESUMED ['"), second
        done = ""
        while not done.startswith("DONE") and other.poll() is None:
            done = other.stdout.readline()  # past the glTF importer's log lines
        assert done.strip() == "DONE ['imported']"
        assert trify.count("POST") == 1
    finally:
        owner.kill()
        if other is not None:
            other.kill()


def test_the_concurrency_preference_applies_to_waiting_jobs(scene, trify) -> None:
    api = _api()
    prefs = _prefs()
    trify.polls_to_complete = 10_000
    prefs.max_concurrent_jobs = 2
    try:
        ids = [api.submit("trify3d", prompt=f"held back {i}") for i in range(5)]
        api.wait(ids, 0.5)
        assert trify.count("POST") == 2
        prefs.max_concurrent_jobs = 4  # no new submit: the change alone lets two more go
        api.wait(ids, 0.5)
        assert trify.count("POST") == 4
    finally:
        prefs.max_concurrent_jobs = 8
        for job_id in ids:
            api.cancel(job_id)
        api.wait(ids, 5)
    assert trify.count("POST") == 4  # the cancelled, never-sent job never paid


# -- the monitor's tick: a burst of changes and imports is spread over ticks, nothing lost --------


def test_a_burst_is_spread_over_ticks_and_nothing_is_lost(scene, trify) -> None:
    import bpy

    rt = importlib.import_module(f"{ADDON_ID}.runtime").get()
    monitor = importlib.import_module(f"{ADDON_ID}.operators.monitor")
    trify.polls_to_complete = 1
    ids = [_api().submit("trify3d", prompt=f"burst crate {i}") for i in range(6)]
    _wait_for(lambda: not rt.engine.live_job_ids(), timeout=20)  # all downloaded, none applied
    queued = rt.engine.events.qsize()
    assert queued > len(ids) and rt.is_busy()

    ticks, imported = 0, 0
    while rt.is_busy() or rt.has_ready():
        before = {o["conjure_job_id"] for o in _conjure_objects()}
        made_here = rt.drain(bpy.context, budget=0.0, import_budget=0.0)
        made = {o["conjure_job_id"] for o in _conjure_objects()} - before
        assert len(made) <= 1  # the first import always goes; no time for a second
        assert made_here == 1 + len(made)  # and one change: each tick applies at least one
        imported += len(made)
        ticks += 1
        assert ticks < queued
        if rt.is_busy() or rt.has_ready():  # changes or imports left: the next tick comes soon
            assert monitor.tick_interval(rt) == monitor.IMPORT_INTERVAL
    assert ticks >= len(ids) and imported == len(ids)
    assert [_api().status(i)["state"] for i in ids] == ["imported"] * len(ids)
    assert monitor.tick_interval(rt) == monitor.MONITOR_INTERVAL
    assert trify.count("POST") == len(ids)
