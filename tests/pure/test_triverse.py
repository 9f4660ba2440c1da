"""Triverse without Blender: the provider and a real Engine against the emulator (seed 004).

Text and image (local file → upload → create by file_key; URL → create) to a textured GLB;
bodies as the page describes them; options and images checked before anything is sent; the
upload window honoured; a create whose answer was lost never sent again; `code != 0` at HTTP 200; the
geometry-first message; texturing failures that still deliver the geometry; old field
names; HTTP errors before and after the create; the key kept out of every message.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from harness import EngineHarness, harness_fixture
from harness import files_by_role as _files

from conjure_src.jobs.model import Job, JobState
from conjure_src.providers import make_http
from conjure_src.providers.base import (
    STANDARD_FLOW,
    Capability,
    GenerationRequest,
    RateRule,
    Step,
    TaskState,
)
from conjure_src.providers.errors import ErrorKind, ProviderError
from conjure_src.providers.triverse import INFO, ORDER_ID, Triverse, client_order_id
from emulators.trify3d import tiny_png
from emulators.triverse import (
    COST,
    GEOMETRY_GLB,
    IMAGE_PATH,
    PREFIX,
    TASKS_PATH,
    TEXT_PATH,
    TEXTURED_GLB,
    UPLOAD_PATH,
    URL_PATH,
    TriverseEmulator,
)

KEY = "tvs_live_TRIVERSE-secret-4711"
IMAGE_URL = "https://images.example.com/chair.png"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
WEBP = b"RIFF\x40\x00\x00\x00WEBPVP8 " + b"\x00" * 64


@pytest.fixture
def emu():
    server = TriverseEmulator(api_key=KEY).start()
    yield server
    server.stop()


def _provider(url: str, key: str = KEY, on_rate=None) -> Triverse:
    return Triverse(make_http("triverse", key, url + PREFIX, on_rate=on_rate))


class Harness(EngineHarness):
    """An Engine on a journal in tmp_path whose every job talks to one Triverse emulator."""

    provider = "triverse"

    def __init__(self, tmp_path: Path, url: str, key: str = KEY, **kw: Any) -> None:
        self.url, self.key = url, key
        kw.setdefault("probe_after", 0.5)
        kw.setdefault("rate_rules", {"triverse": INFO.rate_rules})
        super().__init__(tmp_path, self._provider, **kw)

    def _provider(self, job: Job, on_rate) -> Triverse:
        return _provider(self.url, self.key, on_rate)


harness = harness_fixture(Harness)


def _image(tmp_path: Path, data: bytes | None = None, name: str = "chair.png") -> Path:
    path = tmp_path / name
    path.write_bytes(tiny_png() if data is None else data)
    return path


def _ready_with(job: Job, model: bytes) -> None:
    assert job.state == JobState.READY, job.message
    files = _files(job)
    assert files["model"].name == "model.glb" and files["model"].read_bytes() == model


def _one_line_failure(job: Job, *needles: str) -> None:
    assert job.state == JobState.FAILED, job.message
    assert "\n" not in job.message and KEY not in job.message
    for needle in needles:
        assert needle in job.message, job.message


# -- facts and flows --------------------------------------------------------------------------


def test_facts_and_flows_are_declared_by_the_module() -> None:
    assert INFO.id == "triverse" and INFO.default_base_url == "https://api.triverse.ai/api/v1"
    assert INFO.capabilities == {Capability.TEXT, Capability.IMAGE}
    assert INFO.rate_rules == (RateRule(10, 60.0, "upload"),)
    assert not INFO.idempotent_create and INFO.image_input == "both" and INFO.job_lifetime is None
    provider = _provider("http://127.0.0.1:9")
    local = provider.flow(GenerationRequest("IMAGE", "", ("/tmp/a.png",)))
    assert [s.step for s in local] == [Step.UPLOAD, Step.CREATE, Step.POLL, Step.DOWNLOAD]
    assert local[0].bucket == "upload"
    assert provider.flow(GenerationRequest("IMAGE", "", (IMAGE_URL,))) == STANDARD_FLOW
    assert provider.flow(GenerationRequest("TEXT", "a chair")) == STANDARD_FLOW
    # After upload() the request carries the file_key; the flow keeps its shape.
    uploaded = GenerationRequest("IMAGE", "", ("/tmp/a.png",), upload_ref="uploads/x.png")
    assert provider.flow(uploaded) == local


@pytest.mark.parametrize(
    "key",
    ["conjure-0123456789abcdef0123456789abcdef", "conjure-0123456789abcdef0123456789abcdef-"],
)
def test_a_valid_engine_key_is_the_client_order_id_itself(key: str) -> None:
    assert client_order_id(key) == key


@pytest.mark.parametrize("key", ["x" * 65, "key with spaces", "ключ", "a.b/c"])
def test_other_keys_map_to_a_stable_valid_client_order_id(key: str) -> None:
    order = client_order_id(key)
    assert ORDER_ID.fullmatch(order) and order == client_order_id(key)
    assert client_order_id(key + "!") != order


def test_an_empty_key_sends_no_client_order_id(emu) -> None:
    _provider(emu.url).create(GenerationRequest("TEXT", "a chair"), "")
    assert emu.bodies(TEXT_PATH) == [{"prompt": "a chair"}]


def test_the_emulators_glbs_are_well_formed_and_tell_apart() -> None:
    for glb, name in ((GEOMETRY_GLB, "triverse-geometry"), (TEXTURED_GLB, "triverse-textured")):
        magic, version, total = struct.unpack_from("<4sII", glb)
        assert (magic, version, total) == (b"glTF", 2, len(glb))
        json_length, json_type = struct.unpack_from("<I4s", glb, 12)
        doc = json.loads(glb[20 : 20 + json_length])
        bin_length, bin_type = struct.unpack_from("<I4s", glb, 20 + json_length)
        assert (json_type, bin_type) == (b"JSON", b"BIN\x00") and json_length % 4 == 0
        assert 28 + json_length + bin_length == total
        assert bin_length >= doc["buffers"][0]["byteLength"] == 36
        assert doc["nodes"][0]["name"] == name
    assert GEOMETRY_GLB != TEXTURED_GLB


# -- the flows end to end ---------------------------------------------------------------------


def test_text_runs_to_ready_with_the_textured_glb(harness, emu) -> None:
    h = harness()
    job = h.run()
    _ready_with(job, TEXTURED_GLB)
    assert _files(job)["thumbnail"].read_bytes() == tiny_png()
    assert emu.bodies(TEXT_PATH) == [{"prompt": "a chair", "client_order_id": job.idempotency_key}]
    assert emu.count("POST", UPLOAD_PATH) == 0 and emu.count("GET", URL_PATH) == 1
    assert job.task_id in emu.tasks and emu.charges == 1 and emu.credits == 99 * COST


def test_text_body_carries_every_documented_option(harness, emu) -> None:
    options = dict(polygon_limit=20_000, texture_size=2048, turbo=True, negative_prompt="blurry")
    job = harness().run("TEXT", "  a red chair ", **options)
    _ready_with(job, TEXTURED_GLB)
    assert emu.bodies(TEXT_PATH) == [
        {
            "prompt": "a red chair", "negative_prompt": "blurry", "polygon_limit": 20_000,
            "texture_size": 2048, "turbo": True, "client_order_id": job.idempotency_key,
        }
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "mime", "ext"),
    [(None, "image/png", "png"), (JPEG, "image/jpeg", "jpg"), (WEBP, "image/webp", "webp")],
    ids=["png", "jpeg", "webp"],
)
def test_a_local_image_is_uploaded_then_created_by_its_file_key(
    harness, emu, tmp_path, data, mime, ext
) -> None:
    path = _image(tmp_path, data, f"my chair.{ext}")
    job = harness().run("IMAGE", "", (path,), polygon_limit=1000, texture_size=4096, turbo=False)
    _ready_with(job, TEXTURED_GLB)
    ((part,),) = emu.uploads()
    assert (part.name, part.filename, part.content_type) == ("file", f"image.{ext}", mime)
    assert part.data == path.read_bytes()
    (upload,) = [r for r in emu.requests if r.path == UPLOAD_PATH]
    assert upload.headers["Authorization"] == f"Bearer {KEY}"
    assert upload.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    (file_key,) = emu.files
    (body,) = emu.bodies(IMAGE_PATH)
    order = body.pop("client_order_id")
    assert body == {
        "image_file": file_key, "model_version": "v2", "polygon_limit": 1000,
        "texture_size": 4096, "turbo": False,
    }  # fmt: skip
    assert ORDER_ID.fullmatch(order) and order.startswith(job.idempotency_key)
    paths = [r.path for r in emu.requests if r.method == "POST"]
    assert paths == [UPLOAD_PATH, IMAGE_PATH]
    assert job.upload_ref == file_key  # journaled: a resume creates without re-upload


def test_a_job_resumed_after_its_upload_creates_without_uploading_again(
    harness, emu, tmp_path
) -> None:
    path = _image(tmp_path)
    job = Job.new("triverse", "IMAGE", "", (str(path),))
    uploaded = _provider(emu.url).upload(job.request())  # then Blender closed
    job = job.evolve(upload_ref=uploaded, step=1)
    path.unlink()  # the service has the image now: the local file is no longer needed
    h = harness()
    h.journal.save(job)
    h.resume(job)
    _ready_with(h.wait(job.job_id), TEXTURED_GLB)
    assert emu.count("POST", UPLOAD_PATH) == 1 and emu.count("POST", IMAGE_PATH) == 1
    assert emu.bodies(IMAGE_PATH)[0]["image_file"] == uploaded


def test_an_image_url_is_created_without_an_upload(harness, emu) -> None:
    job = harness().run("IMAGE", "ignored for images", (IMAGE_URL,), negative_prompt="blurry")
    _ready_with(job, TEXTURED_GLB)
    assert emu.count("POST", UPLOAD_PATH) == 0
    assert emu.bodies(IMAGE_PATH) == [
        {"image_file": IMAGE_URL, "model_version": "v2", "client_order_id": job.idempotency_key}
    ]


def test_the_geometry_first_message_is_shown_while_texturing(harness, emu) -> None:
    emu.polls_per_stage = 2
    h = harness()
    job_id = h.submit()
    _ready_with(h.wait(job_id), TEXTURED_GLB)
    messages = h.messages(job_id)
    assert "Queued on Triverse" in messages and "Generating geometry" in messages
    geometry = messages.index("Geometry ready; texturing…")
    assert geometry < messages.index("Downloaded")
    progress = [j.progress for j in h.seen[job_id] if j.state == JobState.RUNNING]
    assert progress == sorted(progress) and 0.6 in progress


@pytest.mark.parametrize("overall", ["FAILED", "SUCCESS"])
def test_a_texturing_failure_delivers_the_geometry_and_says_so(harness, emu, overall) -> None:
    emu.texture_fails, emu.texture_failure_status = True, overall
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id)
    _ready_with(job, GEOMETRY_GLB)
    said = (
        "Texturing failed: Texture generation failed: UV unwrap error; "
        "imported the untextured geometry"
    )
    assert said in h.messages(job_id)
    assert emu.count("GET", URL_PATH) == 0  # the status named the geometry: nothing to ask


def test_old_field_names_are_accepted(harness, emu) -> None:
    emu.old_fields = True
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id)
    _ready_with(job, TEXTURED_GLB)
    assert job.task_id in emu.tasks
    assert "Geometry ready; texturing…" in h.messages(job_id)


# -- options and images checked before anything is sent --------------------------------------


BAD_OPTIONS = [
    ({"polygon_limit": 999}, "polygon_limit must be a whole number from 1000 to 1500000"),
    ({"polygon_limit": 1_500_001}, "polygon_limit must be a whole number from 1000 to 1500000"),
    ({"polygon_limit": "many"}, "polygon_limit must be a whole number from 1000 to 1500000"),
    ({"texture_size": 1023}, "texture_size must be a whole number from 1024 to 4096"),
    ({"texture_size": 4097}, "texture_size must be a whole number from 1024 to 4096"),
    ({"turbo": "yes"}, "turbo must be true or false"),
]


@pytest.mark.parametrize(("options", "needle"), BAD_OPTIONS)
@pytest.mark.parametrize("source", ["TEXT", "IMAGE"])
def test_options_outside_the_documented_ranges_send_nothing(
    harness, emu, tmp_path, source, options, needle
) -> None:
    images = (_image(tmp_path),) if source == "IMAGE" else ()
    job = harness().run(source, "a chair", images, **options)
    _one_line_failure(job, "The service refused the request", needle)
    assert emu.requests == []


def test_a_prompt_of_two_characters_sends_nothing(harness, emu) -> None:
    _one_line_failure(harness().run("TEXT", " ab "), "prompt must be at least 3 characters")
    assert emu.requests == []


def test_the_edges_of_every_range_are_accepted() -> None:
    provider = _provider("http://127.0.0.1:9")
    for low, high in ((1000, 1024), (1_500_000, 4096)):
        provider.check(
            GenerationRequest("TEXT", "abc", options={"polygon_limit": low, "texture_size": high})
        )


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"GIF89a" + b"\x00" * 32, "is not a JPEG, PNG or WebP file"),
        (b"just some text", "is not a JPEG, PNG or WebP file"),
        ("huge", "Triverse accepts at most 50 MB"),
        (None, "cannot read image"),
    ],
    ids=["gif", "text", "over-50-MB", "missing"],
)
def test_a_bad_image_sends_nothing(harness, emu, tmp_path, content, needle) -> None:
    path = tmp_path / "input.img"
    if content == "huge":  # a sparse file: 50 MB + 1 byte without writing them
        with open(path, "wb") as f:
            f.write(tiny_png())
            f.truncate(50 * 1024 * 1024 + 1)
    elif content is not None:
        path.write_bytes(content)
    _one_line_failure(harness().run("IMAGE", "", (path,)), needle)
    assert emu.requests == []


def test_exactly_50_mb_is_accepted(tmp_path) -> None:
    path = tmp_path / "big.png"
    with open(path, "wb") as f:
        f.write(tiny_png())
        f.truncate(50 * 1024 * 1024)
    _provider("http://127.0.0.1:9").check(GenerationRequest("IMAGE", "", (str(path),)))


# -- the upload window --------------------------------------------------------------------------


def test_eleven_image_jobs_wait_for_the_upload_window_with_no_refusal(
    harness, emu, tmp_path
) -> None:
    emu.upload_window = 1.5
    h = harness(rate_rules={"triverse": (RateRule(10, 1.5, "upload"),)}, max_in_flight=20)
    path = _image(tmp_path)
    ids = [h.submit("IMAGE", "", (path,)) for _ in range(11)]
    jobs = [h.wait(i, timeout=20) for i in ids]
    assert all(j.state == JobState.READY for j in jobs), [j.message for j in jobs]
    assert emu.refused_uploads == 0 and len(emu.upload_times) == 11
    times = sorted(emu.upload_times)
    assert times[10] - times[0] >= 1.5  # the 11th waited for the window
    assert times[9] - times[0] < 1.5  # the first ten did not
    assert len(emu.tasks) == 11 and emu.charges == 11


def test_a_429_on_the_upload_is_waited_out(harness, emu, tmp_path) -> None:
    emu.inject(status=429, headers={"Retry-After": "1"}, method="POST", path=UPLOAD_PATH)
    h = harness()
    job_id = h.submit("IMAGE", "", (_image(tmp_path),))
    job = h.wait(job_id)
    _ready_with(job, TEXTURED_GLB)
    assert emu.count("POST", UPLOAD_PATH) == 2 and emu.count("POST", IMAGE_PATH) == 1
    assert any("retrying in" in m for m in h.messages(job_id))


# -- creates are never paid twice ---------------------------------------------------------------


def test_a_resumed_unsure_create_is_not_sent_again(harness, emu) -> None:
    """client_order_id is sent, but the page does not say a repeated one is not charged."""
    h = harness()
    job = Job.new("triverse", "TEXT", "a duck")
    _provider(emu.url).create(job.request(), job.idempotency_key)  # answer lost
    job = job.evolve(state=JobState.SUBMITTING)
    h.journal.save(job)
    h.resume(job)
    done = h.wait(job.job_id)
    assert done.state == JobState.UNSURE and "check its dashboard" in done.message
    assert len(emu.bodies(TEXT_PATH)) == 1 and emu.charges == 1


def test_an_image_create_whose_answer_was_lost_is_never_sent_again(harness, emu, tmp_path):
    emu.lose_create_answers = 1  # made and charged; the gateway answers 504
    h = harness()
    job_id = h.submit("IMAGE", "", (_image(tmp_path),))
    job = h.wait(job_id, timeout=15)
    assert job.state == JobState.UNSURE and "check its dashboard" in job.message
    assert len(emu.bodies(IMAGE_PATH)) == 1 and emu.charges == 1
    assert emu.count("POST", UPLOAD_PATH) == 1


# -- code != 0 at HTTP 200 ----------------------------------------------------------------------


def test_a_refused_create_at_http_200_fails_in_one_line(harness, emu) -> None:
    emu.inject_code(40001, "Prompt violates the content policy", method="POST", path=TEXT_PATH)
    job = harness().run()
    _one_line_failure(
        job, "The service refused the request: Triverse: Prompt violates the content policy"
    )
    assert "(code 40001)" in job.message and emu.tasks == {} and emu.charges == 0


def test_a_refused_upload_at_http_200_fails_and_creates_nothing(harness, emu, tmp_path) -> None:
    emu.inject_code(40002, "Image is too small", method="POST", path=UPLOAD_PATH)
    job = harness().run("IMAGE", "", (_image(tmp_path),))
    _one_line_failure(job, "Triverse: Image is too small (code 40002)")
    assert emu.count("POST", IMAGE_PATH) == 0


def test_a_credits_code_at_http_200_is_a_credits_failure(harness, emu) -> None:
    emu.inject_code(20003, "Insufficient balance", method="POST", path=TEXT_PATH)
    _one_line_failure(harness().run(), "Not enough credits", "Insufficient balance")


def test_an_error_code_while_polling_stalls_then_recovers(harness, emu) -> None:
    emu.inject_code(50001, "Internal error, retry later", method="GET", path=TASKS_PATH, times=2)
    h = harness()
    job_id = h.submit()
    _ready_with(h.wait(job_id), TEXTURED_GLB)
    assert JobState.STALLED in h.states(job_id)
    assert any("Triverse: Internal error, retry later" in m for m in h.messages(job_id))
    assert emu.count("POST", TEXT_PATH) == 1 and emu.charges == 1


def test_every_error_at_http_200_is_still_an_error(harness, emu) -> None:
    emu.errors_at_200, emu.credits = True, 0
    job = harness().run()
    _one_line_failure(job, "Not enough credits", "Insufficient credits (code 402)")
    assert emu.tasks == {}


# -- HTTP errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("at_200", [False, True], ids=["http", "code"])
def test_a_wrong_key_fails_in_one_line(tmp_path, emu, at_200) -> None:
    emu.errors_at_200 = at_200
    h = Harness(tmp_path, emu.url, key="tvs_live_wrong-key-123")
    try:
        _one_line_failure(h.run(), "rejected the API key", "Invalid or missing API key")
    finally:
        h.close()
    assert emu.tasks == {}


@pytest.mark.parametrize("status", [402, 403])
def test_out_of_credits_fails_in_one_line_and_charges_nothing(harness, emu, status) -> None:
    emu.credits, emu.credit_status = COST - 1, status
    _one_line_failure(harness().run(), "Not enough credits", f"HTTP {status} Insufficient credits")
    assert emu.tasks == {} and emu.credits == COST - 1


def test_a_403_without_credit_words_is_a_key_problem(harness, emu) -> None:
    emu.inject(status=403, body={"code": 403, "message": "Forbidden"}, method="POST")
    _one_line_failure(harness().run(), "rejected the API key", "HTTP 403 Forbidden")


@pytest.mark.parametrize("words", ["Billing account suspended", "Please top up to continue"])
def test_a_403_that_speaks_of_billing_or_top_up_is_credits(harness, emu, words) -> None:
    """One word list for every service: these words once read as a rejected key here."""
    emu.inject(status=403, body={"code": 403, "message": words}, method="POST")
    _one_line_failure(harness().run(), "Not enough credits", f"HTTP 403 {words}")
    emu.inject_code(20009, words, method="POST", path=TEXT_PATH)  # the same at HTTP 200
    _one_line_failure(harness().run(), "Not enough credits", f"Triverse: {words} (code 20009)")
    assert emu.tasks == {}


def test_a_404_on_create_fails_in_one_line(harness, emu) -> None:
    emu.inject(status=404, body={"code": 404, "message": "No such route"}, method="POST")
    _one_line_failure(harness().run(), "HTTP 404 No such route")
    assert emu.tasks == {}


def test_a_429_on_create_is_sent_again_to_ready(harness, emu) -> None:
    emu.inject(status=429, headers={"Retry-After": "1"}, method="POST", path=TEXT_PATH)
    job = harness().run()
    _ready_with(job, TEXTURED_GLB)
    first, second = emu.bodies(TEXT_PATH)  # refused, so not made: safe to send again
    assert first == second and len(emu.tasks) == 1 and emu.charges == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_on_create_may_have_been_charged_and_is_not_resent(harness, emu, status) -> None:
    headers = {"Retry-After": "1"} if status == 503 else {}
    emu.inject(status=status, headers=headers, method="POST", path=TEXT_PATH)
    job = harness().run()
    assert job.state == JobState.UNSURE and "check its dashboard" in job.message
    assert len(emu.bodies(TEXT_PATH)) == 1


@pytest.mark.parametrize("status", [401, 402, 403, 429, 500, 502, 503])
def test_trouble_after_the_create_stalls_then_recovers(harness, emu, status) -> None:
    body = {"code": status, "message": "Insufficient credits" if status == 402 else "trouble"}
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    emu.inject(status=status, body=body, headers=headers, method="GET", path=TASKS_PATH, times=2)
    h = harness()
    job_id = h.submit()
    _ready_with(h.wait(job_id, timeout=15), TEXTURED_GLB)
    assert JobState.STALLED in h.states(job_id)
    assert any("next try at" in m for m in h.messages(job_id))
    assert emu.count("POST", TEXT_PATH) == 1 and emu.charges == 1


def test_an_unknown_task_fails_on_the_services_word(harness, emu) -> None:
    h = harness()
    task_id = emu.create_task({"prompt": "gone"})
    job = Job.new("triverse", "TEXT", "gone").evolve(
        state=JobState.RUNNING, task_id=task_id, paid_at=time.time(), step=1
    )
    del emu.tasks[task_id]
    h.journal.save(job)
    h.resume(job)
    _one_line_failure(h.wait(job.job_id), "does not know this task", "Task not found")


def test_a_download_link_not_registered_yet_is_asked_again(harness, emu) -> None:
    emu.url_not_ready = 2
    job = harness().run()
    _ready_with(job, TEXTURED_GLB)
    assert emu.count("GET", URL_PATH) == 1  # the 404 fell back to the textured URL at once


# -- secrets ------------------------------------------------------------------------------------


def test_the_key_never_reaches_messages_logs_or_the_journal(harness, emu, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="conjure")
    emu.inject(status=401, body={"code": 401, "message": f"key {KEY} revoked"}, method="POST")
    emu.inject_code(50001, f"upstream said Bearer {KEY}", method="GET", path=TASKS_PATH)
    h = harness()
    refused = h.wait(h.submit())
    stalled_id = h.submit()
    stalled = h.wait(stalled_id)
    h.close()
    assert refused.state == JobState.FAILED and "***" in refused.message
    assert stalled.state == JobState.READY
    for message in [refused.message, *h.messages(stalled_id)]:
        assert KEY not in message
    assert KEY not in caplog.text
    for path in tmp_path.glob("journal.sqlite*"):
        assert KEY.encode() not in path.read_bytes()


# -- parsing of shapes the emulator does not produce --------------------------------------------


class _Canned:
    """Just enough of HttpClient for poll(): canned answers by path."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def get_json(self, path: str) -> Any:
        answer = self.answers[path]
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    def redact(self, text: str) -> str:
        return text


def _poll(record: dict[str, Any], links: Any = None) -> Any:
    answers = {"/tasks/t-1": {"code": 0, "message": "success", "data": record}}
    if links is not None:
        answers["/tasks/url/t-1"] = links
    return Triverse(_Canned(answers)).poll("t-1")  # type: ignore[arg-type]


def test_camel_case_output_and_download_fields_are_read() -> None:
    status = _poll(
        {
            "taskId": "t-1",
            "status": "SUCCESS",
            "output": {"geometryJobStatus": "COMPLETED", "texturedModelUrl": "https://c/t"},
        },
        {"code": "0", "data": {"downloadUrl": "https://c/d", "previewUrl": "https://c/p"}},
    )
    assert status.state == TaskState.SUCCEEDED
    assert [(a.url, a.role) for a in status.assets] == [
        ("https://c/d", "model"),
        ("https://c/p", "thumbnail"),
    ]


def test_progress_is_a_percentage_and_states_map() -> None:
    assert _poll({"status": "RUNNING", "progress": 1}).progress == pytest.approx(0.01)
    assert _poll({"status": "PENDING"}).state == TaskState.QUEUED
    cancelled = _poll({"status": "CANCELLED"})
    assert cancelled.state == TaskState.CANCELLED and "cancelled" in cancelled.message
    failed = _poll({"status": "FAILED", "error": {"message": "NSFW image"}})
    assert failed.state == TaskState.FAILED and failed.message.endswith("NSFW image")
    odd = _poll({"status": "WARMING_UP"})
    assert odd.state == TaskState.RUNNING and "WARMING_UP" in odd.message


def test_a_download_link_not_registered_and_no_url_yet_keeps_polling() -> None:
    record = {"status": "SUCCESS", "progress": 100, "output": {"geometry_job_status": "COMPLETED"}}
    status = _poll(record, ProviderError(ErrorKind.NOT_FOUND, "HTTP 404 Asset not found"))
    assert status.state == TaskState.RUNNING and status.message == "Waiting for the download link"


def test_a_success_without_any_model_url_is_a_bad_response() -> None:
    with pytest.raises(ProviderError) as caught:
        _poll({"status": "SUCCESS", "output": {}}, {"code": 0, "data": {"kind": "model"}})
    assert caught.value.kind == ErrorKind.BAD_RESPONSE


@pytest.mark.parametrize(
    ("code", "message", "during", "kind"),
    [
        (401, "whatever", "create", ErrorKind.AUTH),
        (403, "credits exhausted", "create", ErrorKind.CREDITS),
        (429, "slow down", "upload", ErrorKind.RATE_LIMIT),
        (10029, "Too many requests", "create", ErrorKind.RATE_LIMIT),
        (10404, "Task does not exist", "status", ErrorKind.NOT_FOUND),
        (503, "maintenance", "create", ErrorKind.SERVER),
        (40004, "image_file not found", "create", ErrorKind.BAD_REQUEST),
        (99999, "mystery", "create", ErrorKind.BAD_REQUEST),
        (99999, "mystery", "status", ErrorKind.SERVER),
        ("E_BAD", "mystery", "upload", ErrorKind.BAD_REQUEST),
    ],
)
def test_envelope_codes_map_to_kinds(code, message, during, kind) -> None:
    provider = Triverse(_Canned({}))  # type: ignore[arg-type]
    with pytest.raises(ProviderError) as caught:
        provider._data({"code": code, "message": message, "data": None}, during)
    assert caught.value.kind == kind and f"(code {code})" in str(caught.value)


def test_answers_without_data_are_bad_responses() -> None:
    provider = Triverse(_Canned({}))  # type: ignore[arg-type]
    for answer in ([], {"code": 0, "data": None}, {"code": 0, "data": "x"}):
        with pytest.raises(ProviderError) as caught:
            provider._data(answer, "create")
        assert caught.value.kind == ErrorKind.BAD_RESPONSE
