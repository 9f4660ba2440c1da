"""Ravenra without Blender: the provider and the engine against the emulator, and the pure
helpers of the OBJ path (archive.extract_zip, mtl.confine_textures).

Every run goes through a real Engine (journal, scheduler, workers, downloads) talking HTTP to
tests/emulators/ravenra.py; what the service received is read back from its request log.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import stat
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from harness import EngineHarness, StubHttp, harness_fixture
from harness import files_by_role as _files

from conjure_src.importers import archive, mtl
from conjure_src.importers.archive import ArchiveError
from conjure_src.jobs.model import Job, JobState
from conjure_src.providers import make_http, ravenra
from conjure_src.providers.base import (
    FlowStep,
    GenerationRequest,
    Step,
    TaskState,
)
from conjure_src.providers.errors import ErrorKind, ProviderError
from conjure_src.providers.filekind import kind_of
from conjure_src.providers.ravenra import INFO, Ravenra
from emulators.ravenra import (
    TEXTURE_NAME,
    RavenraEmulator,
    cube_mtl,
    cube_obj,
    hostile_mtl,
    texture_zip,
)

KEY = "rvn_live_RAVEN-secret-4242"
IMAGE_URL = "https://images.example.com/chair.png"


@pytest.fixture
def emu():
    server = RavenraEmulator(api_key=KEY).start()
    yield server
    server.stop()


def _provider(url: str, key: str = KEY) -> Ravenra:
    return Ravenra(make_http("ravenra", key, url))


class Harness(EngineHarness):
    """An Engine on a journal in tmp_path whose every job talks to one Ravenra emulator."""

    def __init__(self, tmp_path: Path, url: str, key: str = KEY, **kw: Any) -> None:
        self.url, self.key = url, key
        super().__init__(tmp_path, self._provider, **kw)

    def _provider(self, job: Job, on_rate) -> Ravenra:
        return Ravenra(make_http("ravenra", self.key, self.url, on_rate=on_rate))

    def submit(self, source: str = "TEXT", prompt: str = "a chair", **kw: Any) -> str:
        """A one-stage job (a preview, unless options say otherwise): most tests look at one
        create; the default textured flow (preview, then refine) has its own test."""
        if source == "TEXT":
            kw["options"] = {"mode": "preview", **(kw.get("options") or {})}
        return self.add(Job.new("ravenra", source, prompt, **kw))

    def run(self, source: str = "TEXT", prompt: str = "a chair", **kw: Any) -> Job:
        return self.wait(self.submit(source, prompt, **kw))


harness = harness_fixture(Harness)


def _kind(path: Path) -> str | None:
    return kind_of(path.read_bytes()[:512])


# ------------------------------------------------------------------------------ the modes


def test_preview_runs_to_ready_with_obj_and_mtl(harness, emu) -> None:
    h = harness()
    job = h.run()
    assert job.state == JobState.READY, job.message
    files = _files(job)
    assert set(files) == {"model", "material", "thumbnail"}
    assert files["model"].suffix == ".obj" and _kind(files["model"]) == "obj"
    assert files["model"].read_bytes() == emu.files["obj"]
    assert files["material"].suffix == ".mtl" and _kind(files["material"]) == "mtl"
    assert files["material"].read_bytes() == emu.files["preview_mtl"]
    assert _kind(files["thumbnail"]) == "png"
    assert emu.bodies() == [{"prompt": "a chair", "mode": "preview"}]
    assert job.task_id in emu.tasks and emu.tasks[job.task_id].mode == "preview"
    assert emu.count("POST") == 1


def test_refine_of_a_finished_preview_brings_the_texture(harness, emu) -> None:
    h = harness()
    preview = h.run()
    assert preview.state == JobState.READY
    job = h.run(options={"mode": "refine", "parent_task_id": preview.task_id}, prompt="")
    assert job.state == JobState.READY, job.message
    files = _files(job)
    assert set(files) == {"model", "material", "texture", "thumbnail"}
    assert files["texture"].suffix == ".png" and files["texture"].read_bytes() == emu.files["png"]
    assert f"map_Kd {TEXTURE_NAME}" in files["material"].read_text()
    assert emu.bodies()[-1] == {"mode": "refine", "parent_task_id": preview.task_id}
    assert emu.tasks[job.task_id].parent == preview.task_id


def test_refine_with_a_prompt_sends_it(harness, emu) -> None:
    parent = emu.create_task()
    emu.tasks[parent].polls = emu.polls_to_complete
    h = harness()
    job = h.run(prompt="make it red", options={"mode": "refine", "parent_task_id": parent})
    assert job.state == JobState.READY, job.message
    assert emu.bodies() == [{"prompt": "make it red", "mode": "refine", "parent_task_id": parent}]


@pytest.mark.parametrize("bundle", ["zip", "zip+mtl"])
def test_image_to_3d_sends_the_url_and_gets_a_zip_bundle(harness, emu, bundle) -> None:
    emu.texture = bundle
    h = harness()
    job = h.run("IMAGE", "a chair", image_paths=(IMAGE_URL,))
    assert job.state == JobState.READY, job.message
    assert emu.bodies() == [{"prompt": "a chair", "image_source": IMAGE_URL}]
    texture = _files(job)["texture"]
    assert texture.suffix == ".zip" and texture.read_bytes() == emu.texture_bytes()
    with zipfile.ZipFile(texture) as bundle_zip:
        names = bundle_zip.namelist()
    assert f"textures/{TEXTURE_NAME}" in names and ("cube.mtl" in names) == (bundle == "zip+mtl")


def test_image_without_a_prompt_sends_only_the_image(harness, emu) -> None:
    job = harness().run("IMAGE", "", image_paths=(IMAGE_URL,))
    assert job.state == JobState.READY, job.message
    assert emu.bodies() == [{"image_source": IMAGE_URL}]


@pytest.mark.parametrize("field", ["thumbnail_url", "image_url", "preview_image_url"])
def test_text_to_image_downloads_the_image(harness, emu, field) -> None:
    emu.image_field = field
    job = harness().run(prompt="a red chair", options={"mode": "text-to-image"})
    assert job.state == JobState.READY, job.message
    assert [Path(f).name for f in job.files] == ["image.png"]
    assert Path(job.files[0]).read_bytes() == emu.files["image"]
    assert emu.bodies("/task/text-to-image") == [{"prompt": "a red chair"}]
    assert emu.count("POST", "/task/create-task") == 0


def test_flows_per_mode() -> None:
    provider = _provider("http://127.0.0.1:9")
    three_d = (FlowStep(Step.CREATE), FlowStep(Step.POLL), FlowStep(Step.DOWNLOAD))
    image = (FlowStep(Step.CREATE), FlowStep(Step.POLL, "image"), FlowStep(Step.DOWNLOAD, "image"))
    textured = (
        FlowStep(Step.CREATE, "preview"),
        FlowStep(Step.POLL, "preview"),
        FlowStep(Step.CREATE, "refine"),
        FlowStep(Step.POLL, "refine"),
        FlowStep(Step.DOWNLOAD),
    )
    assert provider.flow(GenerationRequest("TEXT", "x")) == textured
    assert provider.flow(GenerationRequest("TEXT", "x", options={"mode": "preview"})) == three_d
    assert provider.flow(GenerationRequest("TEXT", "", options={"mode": "refine"})) == three_d
    assert provider.flow(GenerationRequest("IMAGE", "", (IMAGE_URL,))) == three_d
    assert provider.flow(GenerationRequest("TEXT", "x", options={"mode": "text-to-image"})) == image


def test_service_facts() -> None:
    assert (INFO.id, INFO.auth_header, INFO.auth_scheme) == ("ravenra", "x-api-key", "")
    assert INFO.image_input == "url" and INFO.idempotent_create is False
    assert INFO.job_lifetime is None  # the page documents none
    assert INFO.rate_rules == ()  # nor any rate limit
    assert INFO.poll_interval == 3.0


def test_poll_back_off_is_3_then_5_then_10_seconds() -> None:
    provider = _provider("http://127.0.0.1:9")
    assert [provider.poll_delay(n) for n in range(6)] == [3.0, 5.0, 10.0, 10.0, 10.0, 10.0]


def test_engine_paces_polls_by_the_back_off(tmp_path, emu, monkeypatch) -> None:
    """Without an override the engine asks the provider: gaps grow like 3 → 5 → 10 (scaled
    down here, so the test stays fast; the real values are checked above)."""
    monkeypatch.setattr(ravenra, "POLL_DELAYS", (0.2, 0.4, 0.8))
    emu.polls_to_complete = 4
    h = Harness(tmp_path, emu.url, poll_interval=None)
    try:
        created = time.monotonic()
        job = h.run()
    finally:
        h.close()
    assert job.state == JobState.READY, job.message
    times = [created, *emu.poll_times]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 4
    for gap, want in zip(gaps, (0.2, 0.4, 0.8, 0.8), strict=True):
        assert want - 0.02 <= gap <= want + 0.25, gaps


# ------------------------------------------------------------------------- status handling


def test_urls_complete_the_task_while_status_still_says_in_progress(emu) -> None:
    provider = _provider(emu.url)
    task = emu.create_task("image", {"prompt": "x", "image_source": IMAGE_URL})
    first = provider.poll(task)
    assert first.state == TaskState.RUNNING and first.message == ""
    done = provider.poll(task)
    record = json.loads(emu_get(emu, f"/task/result/{task}"))
    assert record["status"] == "IN_PROGRESS" and record["obj_url"]  # the quirk is real
    assert done.state == TaskState.SUCCEEDED and done.progress == 1.0
    assert [a.role for a in done.assets] == ["model", "material", "texture", "thumbnail"]


def emu_get(emu: RavenraEmulator, path: str) -> bytes:
    import requests

    return requests.get(emu.url + path, headers={"x-api-key": KEY}, timeout=5).content


@pytest.mark.parametrize(
    ("word", "field"),
    [
        ("FAILED", "message"),
        ("ERROR", "error"),
        ("GENERATION_ABORTED", "failure_reason"),
        ("moderation-rejected", "reason"),
        ("TIMED_OUT", "message"),
    ],
)
def test_failure_words_fail_the_job_with_the_records_message(harness, emu, word, field) -> None:
    emu.fail = (word, "GPU worker lost the mesh")
    emu.fail_field = field
    job = harness().run()
    assert job.state == JobState.FAILED
    assert "GPU worker lost the mesh" in job.message and "\n" not in job.message
    assert emu.count("POST") == 1


@pytest.mark.parametrize("word", ["CANCELLED", "CANCELED"])
def test_cancelled_on_the_service_ends_the_job(harness, emu, word) -> None:
    emu.fail = (word, "cancelled by the owner")
    job = harness().run()
    assert job.state == JobState.FAILED and "cancelled by the owner" in job.message


def test_unknown_non_failure_word_keeps_polling_and_shows_it(emu) -> None:
    emu.running_status = "WARMING_UP"
    emu.polls_to_complete = 5
    provider = _provider(emu.url)
    task = emu.create_task()
    provider.poll(task)  # PENDING
    status = provider.poll(task)
    assert status.state == TaskState.RUNNING and "WARMING_UP" in status.message
    assert status.progress == pytest.approx(0.4)


def test_unknown_word_then_urls_finishes(harness, emu) -> None:
    emu.running_status, emu.done_status = "DEFERRED", "ALL_GOOD"
    emu.polls_to_complete = 3
    job = harness().run()
    assert job.state == JobState.READY, job.message


def _stub(record: Any) -> Ravenra:
    return Ravenra(StubHttp(record))  # type: ignore[arg-type]


def test_record_shapes() -> None:
    url = "https://cdn.example.com/"
    wrapped = _stub({"data": {"status": "IN_PROGRESS", "progress": 0.25}}).poll("t")
    assert wrapped.state == TaskState.RUNNING and wrapped.progress == 0.25
    assert _stub({"status": None, "progress": 80}).poll("t").progress == 0.8
    # finished by its word but no URL yet: keep asking, say why
    waiting = _stub({"status": "SUCCEEDED", "obj_url": None}).poll("t")
    assert waiting.state == TaskState.RUNNING and "waiting for the file URLs" in waiting.message
    # an untextured result the service calls finished: the OBJ alone
    bare = _stub({"status": "SUCCEEDED", "obj_url": url + "o"}).poll("t")
    assert bare.state == TaskState.SUCCEEDED and [a.role for a in bare.assets] == ["model"]
    # the OBJ alone while still working is not finished yet
    early = _stub({"status": "IN_PROGRESS", "obj_url": url + "o"}).poll("t")
    assert early.state == TaskState.RUNNING
    # a URL that is not http(s) is no URL
    odd = _stub({"obj_url": "file:///etc/passwd", "mtl_url": url + "m"}).poll("t")
    assert odd.state == TaskState.RUNNING
    # the input image is never taken for the output of text-to-image
    source_only = _stub({"image_source_url": url + "in", "status": "IN_PROGRESS"})
    assert source_only.poll("t", "image").state == TaskState.RUNNING
    failed = _stub({"status": "FAILED", "task_error": {"message": "bad prompt"}}).poll("t")
    assert failed.state == TaskState.FAILED and failed.message.endswith("bad prompt")
    silent = _stub({"status": "ERROR"}).poll("t")
    assert silent.state == TaskState.FAILED and "no reason given" in silent.message
    with pytest.raises(ProviderError) as err:
        _stub(["not", "an", "object"]).poll("t")
    assert err.value.kind == ErrorKind.BAD_RESPONSE


@pytest.mark.parametrize(
    ("answer", "task_id"),
    [
        ({"id": "internal", "taskId": "tsk_1"}, "tsk_1"),
        ({"data": {"task_id": "tsk_2"}}, "tsk_2"),
        ({"result": "tsk_3"}, "tsk_3"),
    ],
)
def test_task_id_from_the_create_answer(answer: dict, task_id: str) -> None:
    assert _stub(answer).create(GenerationRequest("TEXT", "x"), "k").task_id == task_id


def test_create_answer_without_an_id_is_a_bad_response() -> None:
    with pytest.raises(ProviderError) as err:
        _stub({"status": "PENDING"}).create(GenerationRequest("TEXT", "x"), "k")
    assert err.value.kind == ErrorKind.BAD_RESPONSE


# ----------------------------------------------------------------- checks before sending


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (GenerationRequest("TEXT", "  "), "prompt is required"),
        (GenerationRequest("TEXT", "", options={"mode": "text-to-image"}), "prompt is required"),
        (GenerationRequest("TEXT", "x", options={"mode": "refine"}), "parent_task_id"),
        (GenerationRequest("TEXT", "x", options={"mode": "remesh"}), "unknown Ravenra mode"),
        (GenerationRequest("TEXT", "x", options={"mode": "image"}), "unknown Ravenra mode"),
        (GenerationRequest("IMAGE", "x", ("/home/u/chair.png",)), "not from a local file"),
        (GenerationRequest("IMAGE", "x"), "no image given"),
        (
            GenerationRequest("IMAGE", "x", (IMAGE_URL,), {"mode": "refine"}),
            "only previews from an image",
        ),
        (GenerationRequest("MULTIVIEW", "x", (IMAGE_URL, IMAGE_URL)), "cannot generate"),
    ],
)
def test_check_refuses_before_anything_is_sent(emu, request_, words) -> None:
    provider = _provider(emu.url)
    with pytest.raises(ProviderError) as err:
        provider.create(request_, "key")
    assert err.value.kind == ErrorKind.BAD_REQUEST and words in str(err.value)
    assert "\n" not in str(err.value)
    assert emu.requests == []


# ------------------------------------------------------------------- errors before a create


def test_wrong_key_fails_in_one_line_without_repeating_it(harness, emu) -> None:
    wrong = "rvn_live_WRONG-key-9999"
    job = harness(key=wrong).run()
    assert job.state == JobState.FAILED and job.task_id is None
    assert job.message.startswith("The service rejected the API key")
    assert wrong not in job.message and "\n" not in job.message
    assert emu.tasks == {}


@pytest.mark.parametrize("status", [402, 403])
def test_out_of_credits_reads_as_credits(harness, emu, status) -> None:
    emu.credits, emu.credit_status = 0, status
    job = harness().run()
    assert job.state == JobState.FAILED and not job.paid
    assert job.message.startswith("Not enough credits"), job.message
    assert emu.tasks == {}


def test_forbidden_key_reads_as_auth(harness, emu) -> None:
    emu.forbidden = True
    job = harness().run()
    assert job.state == JobState.FAILED
    assert job.message.startswith("The service rejected the API key"), job.message


def test_refused_request_fails_with_the_services_words(harness, emu) -> None:
    job = harness().run(options={"mode": "refine", "parent_task_id": "tsk_nope"})
    assert job.state == JobState.FAILED and "parent task not found" in job.message


def test_429_on_create_waits_for_retry_after_then_creates_once(harness, emu) -> None:
    emu.inject(
        status=429, body={"message": "slow down"}, headers={"Retry-After": "1"}, method="POST"
    )
    h = harness()
    job_id = h.submit()
    started = time.monotonic()
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert time.monotonic() - started >= 0.9  # Retry-After was honoured
    assert any("retrying in" in j.message for j in h.seen[job_id])
    assert emu.count("POST") == 2 and len(emu.tasks) == 1


@pytest.mark.parametrize("status", [500, 502])
def test_server_error_on_create_is_never_resent(harness, emu, status) -> None:
    emu.inject(status=status, method="POST")
    job = harness().run()
    assert job.state == JobState.UNSURE
    assert "check its dashboard" in job.message and "\n" not in job.message
    time.sleep(0.2)
    assert emu.count("POST") == 1  # no idempotency key: a second create could pay twice


# ------------------------------------------------------------------- errors after a create


@pytest.mark.parametrize(
    ("status", "headers"),
    [(500, {}), (502, {}), (503, {}), (429, {"Retry-After": "1"}), (401, {})],
)
def test_poll_errors_after_a_create_stall_then_recover(harness, emu, status, headers) -> None:
    emu.inject(status=status, headers=headers, method="GET", path="/task/result/", times=2)
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id, timeout=15)
    assert job.state == JobState.READY, job.message
    assert JobState.STALLED in [j.state for j in h.seen[job_id]]
    assert JobState.FAILED not in [j.state for j in h.seen[job_id]]
    assert emu.count("POST") == 1


def test_unknown_task_on_poll_fails_the_job(harness, emu) -> None:
    emu.polls_to_complete = 50
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id, {JobState.RUNNING})
    emu.tasks.pop(job.task_id)
    job = h.wait(job_id)
    assert job.state == JobState.FAILED and "does not know this task" in job.message


def test_urls_that_never_appear_keep_the_job_running_until_cancelled(harness, emu) -> None:
    """No job lifetime is documented, so nothing ends the job but the user (or the service)."""
    emu.never_ready = True
    h = harness()
    job_id = h.submit()
    h.wait(job_id, {JobState.RUNNING})
    h.drain(0.8)
    polls = emu.count("GET", "/task/result/")
    assert polls >= 10 and h.jobs[job_id].state == JobState.RUNNING
    assert h.engine.cancel(job_id)
    assert h.wait(job_id, {JobState.CANCELLED}).state == JobState.CANCELLED


# ---------------------------------------------------------------------------- the key


def test_key_goes_in_x_api_key_and_nowhere_else(emu, caplog, tmp_path) -> None:
    caplog.set_level(logging.DEBUG)
    emu.inject(status=500, method="GET", path="/task/result/")  # an error on the way
    h = Harness(tmp_path, emu.url)
    try:
        job = h.run()
    finally:
        h.close()
    assert job.state == JobState.READY, job.message
    api = [r for r in emu.requests if r.path.startswith("/task/")]
    assert api and all(r.headers.get("x-api-key") == KEY for r in api)
    assert all("Authorization" not in r.headers for r in api)
    assert all(KEY not in r.path and KEY.encode() not in r.body for r in emu.requests)
    assert KEY not in caplog.text
    assert not any(KEY in j.message for j in h.seen[job.job_id])
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*"))
    assert stored and KEY.encode() not in stored


# ------------------------------------------- the downloaded parts, made ready for Blender


def test_a_hostile_job_folder_is_made_safe_for_blender(harness, emu) -> None:
    """Zip bundle + hostile MTL from the service, through the engine, then prepare_obj:
    the zip extracted, the OBJ pointed at the downloaded MTL, every texture path confined."""
    emu.texture = "zip+mtl"
    emu.files["mtl"] = hostile_mtl()
    job = harness().run("IMAGE", "a chair", image_paths=(IMAGE_URL,))
    assert job.state == JobState.READY, job.message
    files = _files(job)
    folder = files["model"].parent
    model, warnings = mtl.prepare_obj(str(files["model"]), str(folder))
    assert warnings == [
        "texture '/etc/passwd' not found among the downloaded files; left out",
        "texture '../x.png' not found among the downloaded files; left out",
    ]
    assert Path(model) == folder / ".confined" / "model.obj"
    mtllib = [line for line in Path(model).read_text().splitlines() if "mtllib" in line]
    assert mtllib == [f"mtllib ../{files['material'].name}"]  # not the zip's cube.mtl
    assert (folder / "texture-2-files" / "textures" / TEXTURE_NAME).read_bytes() == emu.files["png"]
    lines = files["material"].read_bytes().split(b"\r\n")
    target = f"texture-2-files/textures/{TEXTURE_NAME}".encode()
    assert b"map_Kd -s 1 1 1 " + target in lines
    assert b"map_d\t" + target in lines and b"map_Ns " + target in lines
    assert not any(b"passwd" in line or b"x.png" in line for line in lines)
    # a second run (a re-import) gives the same answer and the same files
    assert mtl.prepare_obj(str(files["model"]), str(folder)) == (model, [])


def test_prepare_obj_with_a_png_download(tmp_path: Path) -> None:
    (tmp_path / "model.obj").write_bytes(cube_obj())
    (tmp_path / "material-1.mtl").write_bytes(cube_mtl())
    (tmp_path / "texture-2.png").write_bytes(b"png")
    model, warnings = mtl.prepare_obj(str(tmp_path / "model.obj"), str(tmp_path))
    assert warnings == []
    text = Path(model).read_text()
    assert "mtllib ../material-1.mtl\n" in text and "mtllib cube.mtl" not in text
    assert text.replace("mtllib ../material-1.mtl", "mtllib cube.mtl") == cube_obj().decode()
    assert "map_Kd texture-2.png\n" in (tmp_path / "material-1.mtl").read_text()


def test_prepare_obj_keeps_an_obj_that_names_its_mtl_rightly(tmp_path: Path) -> None:
    (tmp_path / "model.obj").write_bytes(cube_obj(mtllib="material.mtl"))
    (tmp_path / "material.mtl").write_bytes(cube_mtl())
    (tmp_path / TEXTURE_NAME).write_bytes(b"png")
    assert mtl.prepare_obj(str(tmp_path / "model.obj"), str(tmp_path)) == (
        str(tmp_path / "model.obj"),
        [],
    )
    assert not (tmp_path / ".confined").exists()


@pytest.mark.parametrize("name", ["/etc/passwd", "C:\\x\\evil.mtl", "../../evil.mtl"])
def test_prepare_obj_never_lets_mtllib_point_outside(tmp_path: Path, name: str) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (tmp_path / "evil.mtl").write_text("newmtl CubeSkin\nmap_Kd /etc/passwd\n")
    (job / "model.obj").write_bytes(cube_obj(mtllib=name))
    model, warnings = mtl.prepare_obj(str(job / "model.obj"), str(job))
    assert warnings == [] and b"mtllib" not in Path(model).read_bytes()
    assert Path(model).parent == job / ".confined"


def test_prepare_obj_refuses_what_is_not_in_the_job_folder(tmp_path: Path) -> None:
    (tmp_path / "job").mkdir()
    (tmp_path / "model.obj").write_bytes(cube_obj())
    with pytest.raises(mtl.MtlError, match="not in the job folder"):
        mtl.prepare_obj(str(tmp_path / "model.obj"), str(tmp_path / "job"))
    (tmp_path / "job" / "model.zip").write_bytes(texture_zip(b"png"))
    with pytest.raises(mtl.MtlError, match=r"holds no \.obj file"):
        mtl.prepare_obj(str(tmp_path / "job" / "model.zip"), str(tmp_path / "job"))


# ------------------------------------------------------------------ mtl.confine_textures


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "job"
    (folder / "textures").mkdir(parents=True)
    (folder / "sub").mkdir()
    (folder / "textures" / "Cube_Diffuse.png").write_bytes(b"png")
    (folder / "tex.png").write_bytes(b"png")
    (folder / "sub" / "fuze_uv.jpg").write_bytes(b"jpg")
    (folder / "-odd.png").write_bytes(b"png")
    (folder / "texture-2.png").write_bytes(b"png")
    (folder / "model.obj").write_bytes(cube_obj())
    (tmp_path / "outside.png").write_bytes(b"png")
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    return folder


def test_every_hostile_texture_path_is_confined_or_removed(job_dir: Path) -> None:
    source = [
        b"# made on a workstation caf\xe9",  # Latin-1 in a comment: kept byte for byte
        b"newmtl Skin",
        b"Kd 1 1 1",
        b"map_Kd -s 1 1 1 C:\\Users\\x\\cube diffuse.PNG",  # Windows, spaces, case
        b"map_Bump -bm 0.5 /etc/passwd",  # POSIX, outside
        b"bump ../outside.png",  # climbs out to a file that exists
        b"map_Ks ../tex.png",  # climbs out, but the name is in the job folder
        b"\tmap_d\tfuze uv.jpg",  # tab separated, spaces for underscores, in a sub-folder
        b"map_Ns /home/u/TEX.PNG",  # absolute, another case
        b"disp link.png",  # a symlink in the job folder pointing out
        b"refl -type sphere -mm 0 1 tex.png",  # fine as it is
        b"# map_Kd /etc/passwd",  # a comment, not a statement
        b'map_Pr "C:\\x\\fuze_uv.jpg"',  # quoted
        b"norm -odd.png",  # a name that looks like an option
        b"map_Ke caf\xe9.png",  # undecodable, missing
        b"map_Kd",  # names nothing
    ]
    mtl_path = job_dir / "material.mtl"
    mtl_path.write_bytes(b"\r\n".join(source) + b"\r\n")
    warnings = mtl.confine_textures(str(mtl_path), str(job_dir))
    assert mtl_path.read_bytes() == b"\r\n".join(
        [
            b"# made on a workstation caf\xe9",
            b"newmtl Skin",
            b"Kd 1 1 1",
            b"map_Kd -s 1 1 1 textures/Cube_Diffuse.png",
            b"map_Ks tex.png",
            b"\tmap_d\tsub/fuze_uv.jpg",
            b"map_Ns tex.png",
            b"refl -type sphere -mm 0 1 tex.png",
            b"# map_Kd /etc/passwd",
            b"map_Pr sub/fuze_uv.jpg",
            b"norm ./-odd.png",
            b"map_Kd",
            b"",
        ]
    )
    assert warnings == [
        "texture '/etc/passwd' not found among the downloaded files; left out",
        "texture '../outside.png' not found among the downloaded files; left out",
        "texture 'link.png' not found among the downloaded files; left out",
        "texture 'caf\ufffd.png' not found among the downloaded files; left out",
    ]
    # confining again changes nothing and finds nothing more to leave out
    before = mtl_path.read_bytes()
    assert mtl.confine_textures(str(mtl_path), str(job_dir)) == []
    assert mtl_path.read_bytes() == before


def test_rewritten_paths_are_relative_to_the_mtls_folder(job_dir: Path) -> None:
    (job_dir / "mats").mkdir()
    mtl_path = job_dir / "mats" / "m.mtl"
    mtl_path.write_text("newmtl A\nmap_Kd C:\\tex.png\nmap_Ks ./local.png\n")
    (job_dir / "mats" / "local.png").write_bytes(b"png")
    assert mtl.confine_textures(str(mtl_path), str(job_dir)) == []
    assert mtl_path.read_text() == "newmtl A\nmap_Kd ../tex.png\nmap_Ks ./local.png\n"


def test_fallback_serves_diffuse_maps_only(job_dir: Path) -> None:
    mtl_path = job_dir / "material.mtl"
    mtl_path.write_text("newmtl A\nmap_Kd D:\\renders\\albedo.png\nmap_Bump albedo_n.png\n")
    warnings = mtl.confine_textures(str(mtl_path), str(job_dir), str(job_dir / "texture-2.png"))
    assert mtl_path.read_text() == "newmtl A\nmap_Kd texture-2.png\n"
    assert warnings == ["texture 'albedo_n.png' not found among the downloaded files; left out"]


def test_fallback_outside_the_job_folder_is_ignored(job_dir: Path, tmp_path: Path) -> None:
    mtl_path = job_dir / "material.mtl"
    mtl_path.write_text("map_Kd albedo.png\n")
    warnings = mtl.confine_textures(str(mtl_path), str(job_dir), str(tmp_path / "outside.png"))
    assert mtl_path.read_text() == "" and len(warnings) == 1


def test_never_points_at_models_or_archives(job_dir: Path) -> None:
    mtl_path = job_dir / "material.mtl"
    mtl_path.write_text("map_Kd model.obj\n")
    assert len(mtl.confine_textures(str(mtl_path), str(job_dir))) == 1
    assert mtl_path.read_text() == ""


def test_mtl_outside_the_job_folder_is_refused(job_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "evil.mtl"
    outside.write_text("map_Kd tex.png\n")
    with pytest.raises(mtl.MtlError, match="outside the job folder"):
        mtl.confine_textures(str(outside), str(job_dir))
    assert outside.read_text() == "map_Kd tex.png\n"


def test_emulator_mtl_with_png_download_uses_the_fallback(tmp_path: Path) -> None:
    """The engine names the texture by its bytes (texture-2.png), not as the MTL does."""
    (tmp_path / "texture-2.png").write_bytes(b"png")
    path = tmp_path / "material-1.mtl"
    path.write_bytes(cube_mtl())
    parts = mtl.obj_parts(str(p) for p in tmp_path.iterdir())
    assert parts.textures == (str(tmp_path / "texture-2.png"),)
    assert parts.materials == (str(path),)
    assert mtl.confine_textures(str(path), str(tmp_path), parts.textures[0]) == []
    assert "map_Kd texture-2.png\n" in path.read_text()


# ------------------------------------------------------------------------ archive.extract_zip


def _zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buffer.getvalue()


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    return path


def _tree(folder: Path) -> list[str]:
    return (
        sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        if folder.exists()
        else []
    )


def test_a_normal_bundle_extracts(tmp_path: Path) -> None:
    data = texture_zip(b"\x89PNG fake", cube_mtl())
    dest = tmp_path / "out"
    files = archive.extract_zip(str(_write(tmp_path, data)), str(dest))
    assert sorted(Path(f).relative_to(dest).as_posix() for f in files) == [
        "cube.mtl",
        f"textures/{TEXTURE_NAME}",
    ]
    assert (dest / "textures" / TEXTURE_NAME).read_bytes() == b"\x89PNG fake"
    assert _tree(dest) == ["cube.mtl", "textures", f"textures/{TEXTURE_NAME}"]  # no staging left


def test_backslash_names_become_folders(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    archive.extract_zip(str(_write(tmp_path, _zip([("maps\\a.png", b"a")]))), str(dest))
    assert (dest / "maps" / "a.png").read_bytes() == b"a"


@pytest.mark.parametrize(
    "name",
    [
        "../evil.png",
        "textures/../../evil.png",
        "..\\evil.png",
        "textures\\..\\..\\evil.png",
        "/tmp/evil.png",
        "\\\\server\\share\\evil.png",
        "C:\\Users\\evil.png",
        "C:evil.png",
        "tex.png:stream",
    ],
)
def test_unsafe_names_extract_nothing(tmp_path: Path, name: str) -> None:
    data = _zip([("good.png", b"ok"), (name, b"evil")])
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.namelist()[1] == name  # the hostile name really is in the file
    dest = tmp_path / "job" / "out"
    dest.mkdir(parents=True)
    (dest / "kept.txt").write_text("mine")
    with pytest.raises(ArchiveError) as err:
        archive.extract_zip(str(_write(tmp_path, data)), str(dest))
    assert "\n" not in str(err.value)
    assert _tree(dest) == ["kept.txt"]
    assert not any(p.name == "evil.png" for p in tmp_path.rglob("*"))


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("textures/tex.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = _zip([("a.png", b"a"), (link, b"/etc/passwd")])
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.extract_zip(str(_write(tmp_path, data)), str(dest))
    assert _tree(dest) == []


def test_declared_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    data = _zip([("bomb.png", bytes(20 * 1024 * 1024))])
    assert len(data) < 100 * 1024  # small on the wire
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match="over the"):
        archive.extract_zip(str(_write(tmp_path, data)), str(dest), max_total=1024 * 1024)
    assert _tree(dest) == []


def test_lying_sizes_are_caught_while_inflating(tmp_path: Path) -> None:
    """Headers that declare 100 bytes for 20 MB of zeros: counted, refused, nothing kept."""
    data = bytearray(_zip([("a.png", b"a"), ("bomb.png", bytes(20 * 1024 * 1024))]))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("bomb.png")
        local, size = info.header_offset, info.file_size
    central = data.rfind(b"PK\x01\x02")  # the last central record is bomb.png's
    data[local + 22 : local + 26] = (100).to_bytes(4, "little")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        assert z.getinfo("bomb.png").file_size == 100 != size
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError):
        archive.extract_zip(str(_write(tmp_path, bytes(data))), str(dest), max_total=1024 * 1024)
    assert _tree(dest) == []


def test_too_many_members_is_refused(tmp_path: Path) -> None:
    data = _zip([(f"t{i}.png", b"x") for i in range(11)])
    with pytest.raises(ArchiveError, match="11 members"):
        archive.extract_zip(str(_write(tmp_path, data)), str(tmp_path / "out"), max_members=10)
    assert archive.extract_zip(str(_write(tmp_path, data)), str(tmp_path / "ok"), max_members=11)


@pytest.mark.parametrize(
    "members",
    [
        [("Tex.png", b"a"), ("tex.png", b"b")],  # one file on Windows and macOS
        [("maps", b"a"), ("maps/tex.png", b"b")],  # a file and a folder of one name
    ],
)
def test_colliding_members_are_refused(tmp_path: Path, members) -> None:
    with pytest.raises(ArchiveError):
        archive.extract_zip(str(_write(tmp_path, _zip(members))), str(tmp_path / "out"))
    assert _tree(tmp_path / "out") == []


def test_not_a_zip_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "texture.zip"
    path.write_bytes(b"PK\x03\x04 but truncated")
    with pytest.raises(ArchiveError, match="not a readable zip") as err:
        archive.extract_zip(str(path), str(tmp_path / "out"))
    assert "\n" not in str(err.value)
    assert not os.path.exists(tmp_path / "out")


def test_the_default_text_flow_previews_then_refines_into_a_textured_model(tmp_path, emu):
    h = Harness(tmp_path, emu.url, KEY)
    try:
        job = Job.new("ravenra", "TEXT", "a textured chair")
        h.add(job)
        done = h.wait(job.job_id)
    finally:
        h.close()
    preview, refine = emu.bodies("/task/create-task")
    assert preview == {"prompt": "a textured chair", "mode": "preview"}
    assert refine["mode"] == "refine" and refine["parent_task_id"] in emu.tasks
    assert done.state == JobState.READY and done.task_id != refine["parent_task_id"]
    assert done.previous_task_id == refine["parent_task_id"]
    kinds = sorted(Path(f).suffix for f in done.files)
    assert ".obj" in kinds and ".mtl" in kinds and ".png" in kinds  # textured
