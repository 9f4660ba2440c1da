"""Siray without Blender: the provider and a real engine against the emulator (seed 001).

Every model and source to a ready model file told by its bytes; the create bodies exactly as
the page shows them (read back from the emulator's log); every status word; the envelope's
`code != "success"` on HTTP 200 before and after a task exists; options refused before
anything is sent; the HTTP errors before a create (one-line failure) and after (stall, then
recover); and the key nowhere but in the Authorization header.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from harness import EngineHarness, StubHttp, harness_fixture
from harness import files_by_role as _files

from conjure_src.importers import gltfcheck
from conjure_src.jobs.model import Job, JobState
from conjure_src.providers import make_http
from conjure_src.providers.base import (
    Capability,
    GenerationRequest,
    TaskState,
)
from conjure_src.providers.errors import ErrorKind, ProviderError
from conjure_src.providers.filekind import kind_of
from conjure_src.providers.siray import INFO, Siray
from emulators.siray import (
    GENERATIONS_PATH,
    HUNYUAN_IMAGE,
    HUNYUAN_TEXT,
    TRIPO_IMAGE,
    SirayEmulator,
    envelope,
    tiny_glb,
)
from emulators.trify3d import tiny_png

KEY = "sk-siray-SECRET-7070"
IMAGE_URL = "https://images.example.com/chair.png"
PNG = tiny_png((90, 120, 200))
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode("ascii")


@pytest.fixture
def emu():
    server = SirayEmulator(api_key=KEY).start()
    yield server
    server.stop()


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "chair.png"
    path.write_bytes(PNG)
    return path


def _provider(url: str, key: str = KEY) -> Siray:
    return Siray(make_http("siray", key, url))


class Harness(EngineHarness):
    """An Engine on a journal in tmp_path whose every job talks to one Siray emulator."""

    provider = "siray"

    def __init__(self, tmp_path: Path, url: str, key: str = KEY, **kw: Any) -> None:
        self.url, self.key = url, key
        super().__init__(tmp_path, self._provider, **kw)

    def _provider(self, job: Job, on_rate) -> Siray:
        return Siray(make_http("siray", self.key, self.url, on_rate=on_rate))


harness = harness_fixture(Harness)


def _one_line_failure(job: Job) -> None:
    assert job.state == JobState.FAILED, job.message
    assert job.message and "\n" not in job.message


# ---------------------------------------------------------------------- models and sources


@pytest.mark.parametrize(
    ("source", "options", "output", "body"),
    [
        ("TEXT", {}, "glb", {"model": HUNYUAN_TEXT, "prompt": "a chair"}),
        (
            "TEXT",
            {"model": "hunyuan", "pbr_enable": False, "texture_enable": True},
            "zip",
            {
                "model": HUNYUAN_TEXT,
                "prompt": "a chair",
                "pbr_enable": False,
                "texture_enable": True,
            },
        ),
        ("url", {}, "obj", {"model": HUNYUAN_IMAGE, "image": IMAGE_URL}),
        (
            "file",
            {"model": HUNYUAN_IMAGE, "texture_enable": "false"},
            "glb",
            {"model": HUNYUAN_IMAGE, "image": PNG_DATA_URL, "texture_enable": False},
        ),
        ("url", {"model": TRIPO_IMAGE}, "zip", {"model": TRIPO_IMAGE, "image": IMAGE_URL}),
        (
            "file",
            {"model": "tripo", "seed": 42},
            "obj",
            {"model": TRIPO_IMAGE, "image": PNG_DATA_URL, "seed": 42},
        ),
    ],
)
def test_each_model_and_source_runs_to_a_ready_model_file(
    harness, emu, png_file, source, options, output, body
) -> None:
    emu.output = output
    h = harness()
    if source == "TEXT":
        job = h.run("TEXT", "a chair", **options)
    else:
        image = IMAGE_URL if source == "url" else png_file
        job = h.run("IMAGE", "ignored by image models", (image,), **options)
    assert job.state == JobState.READY, job.message
    files = _files(job)
    assert set(files) == {"model"}
    assert files["model"].name == f"model.{output}"
    assert kind_of(files["model"].read_bytes()[:512]) == output
    assert files["model"].read_bytes() == emu.files[output]
    assert emu.bodies() == [body]  # exactly: no prompt for image models, nothing extra
    assert emu.tasks[job.task_id].model == body["model"]
    assert emu.count("POST") == 1


def test_tripo_options_are_sent_as_documented_json_types(harness, emu) -> None:
    options = {
        "face_limit": "5000",  # from the CLI: digits
        "pbr_enable": "true",
        "quad": 1,
        "seed": -1,
        "texture_enable": True,
        "texture_quality": "hd",
        "texture_alignment": "Geometry",
        "texture_seed": 7.0,
        "auto_size": False,
        "candidate": 2,  # engine bookkeeping: never sent
    }
    job = harness().run("IMAGE", "", (IMAGE_URL,), model=TRIPO_IMAGE, **options)
    assert job.state == JobState.READY, job.message
    sent = emu.bodies()[0]
    want = {
        "model": TRIPO_IMAGE,
        "image": IMAGE_URL,
        "face_limit": 5000,
        "pbr_enable": True,
        "quad": True,
        "seed": -1,
        "texture_enable": True,
        "texture_quality": "HD",
        "texture_alignment": "geometry",
        "texture_seed": 7,
        "auto_size": False,
    }
    assert sent == want
    assert {k: type(v) for k, v in sent.items()} == {k: type(v) for k, v in want.items()}


def test_a_local_image_goes_as_a_data_url_and_a_url_as_given(harness, emu, png_file) -> None:
    h = harness()
    assert h.run("IMAGE", "", (png_file,)).state == JobState.READY
    assert h.run("IMAGE", "", (IMAGE_URL,)).state == JobState.READY
    local, remote = (b["image"] for b in emu.bodies())
    header, _, payload = local.partition(",")
    assert header == "data:image/png;base64" and base64.b64decode(payload) == PNG
    assert remote == IMAGE_URL


def test_bearer_key_and_json_on_the_wire(emu) -> None:
    _provider(emu.url).create(GenerationRequest("TEXT", " a lamp "), "idem-1")
    (seen,) = emu.requests
    assert seen.method == "POST" and seen.path == GENERATIONS_PATH
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in seen.headers  # none documented
    assert json.loads(seen.body) == {"model": HUNYUAN_TEXT, "prompt": "a lamp"}


# ------------------------------------------------------------------------- status handling


def test_every_documented_status_in_order_with_progress(emu) -> None:
    provider = _provider(emu.url)
    task = provider.create(GenerationRequest("TEXT", "a chair"), "k").task_id
    statuses = [provider.poll(task) for _ in range(5)]
    assert [s.state for s in statuses] == [
        TaskState.QUEUED,
        TaskState.QUEUED,
        TaskState.QUEUED,
        TaskState.RUNNING,
        TaskState.SUCCEEDED,
    ]
    assert [s.progress for s in statuses] == [0.0, 0.0, 0.0, 0.45, 1.0]
    assert "not started" in statuses[0].message
    assert "submitted" in statuses[1].message and "queued" in statuses[2].message
    assert [a.role for a in statuses[4].assets] == ["model"]
    assert statuses[4].assets[0].url == f"{emu.url}/redirect/{task}/model"  # no extension


def test_progress_and_waiting_words_reach_the_job(harness, emu) -> None:
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    seen = h.seen[job_id]
    assert any(j.progress == pytest.approx(0.45) and j.message == "Generating" for j in seen)
    messages = [j.message for j in seen]
    order = [
        "Siray: accepted, not started yet",
        "Siray: submitted, waiting for the queue",
        "Siray: queued for compute",
        "Generating",
    ]
    assert [messages.index(m) for m in order] == sorted(messages.index(m) for m in order)
    assert emu.tasks[job.task_id].polls == 5


@pytest.mark.parametrize("word", ["FAILURE", "FAILED", "ERROR", "failure", "CANCELLED"])
def test_failure_words_fail_the_job_with_fail_reason(harness, emu, word) -> None:
    emu.fail = (word, "No object found in the\ninput image")
    job = harness().run()
    _one_line_failure(job)
    assert "No object found in the input image" in job.message
    assert job.paid and emu.count("POST") == 1


def test_failure_without_a_reason_says_so(emu) -> None:
    emu.fail = ("FAILURE", "")
    emu.steps = (("SUCCESS", "100%"),)
    provider = _provider(emu.url)
    status = provider.poll(emu.create_task())
    assert status.state == TaskState.FAILED and "no reason given" in status.message


def test_unknown_status_word_keeps_polling_and_shows_it(harness, emu) -> None:
    emu.steps = (("NOT_START", "0%"), ("PAUSED", "10%"), ("PAUSED", "10%"), ("SUCCESS", "100%"))
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert "Generating (Siray: PAUSED)" in [j.message for j in h.seen[job_id]]


def test_success_without_outputs_waits_for_them(harness, emu) -> None:
    emu.output_names = []
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id, {JobState.RUNNING})
    h.drain(0.4)
    assert h.jobs[job_id].state == JobState.RUNNING
    assert "waiting for outputs" in h.jobs[job_id].message
    emu.tasks[job.task_id].outputs = ["model"]
    assert h.wait(job_id).state == JobState.READY


def test_an_image_looking_output_becomes_a_thumbnail(harness, emu) -> None:
    emu.output_names = ["preview.png", "model", "other"]
    job = harness().run()
    assert job.state == JobState.READY, job.message
    files = _files(job)
    assert set(files) == {"model", "thumbnail"}
    assert files["model"].name == "model.glb" and files["thumbnail"].suffix == ".png"
    assert not any("other" in r.path for r in emu.requests)  # a third output is left alone


def _stub(answer: Any) -> Siray:
    return Siray(StubHttp(answer))  # type: ignore[arg-type]


def _roles(outputs: Any) -> list[tuple[str, str]]:
    status = _stub(envelope({"status": "SUCCESS", "outputs": outputs})).poll("t")
    return [(a.role, a.url.rsplit("/", 1)[1]) for a in status.assets]


def test_which_output_is_the_model() -> None:
    cdn = "https://cdn.example.com/"
    assert _roles([cdn + "a"]) == [("model", "a")]
    assert _roles([cdn + "a", cdn + "b"]) == [("model", "a")]
    assert _roles([cdn + "p.png", cdn + "m.glb"]) == [("model", "m.glb"), ("thumbnail", "p.png")]
    assert _roles([cdn + "x", cdn + "m.zip?sig=1"]) == [("model", "m.zip?sig=1")]
    assert _roles([cdn + "p.JPG", cdn + "r"]) == [("model", "r"), ("thumbnail", "p.JPG")]
    assert _roles(["file:///etc/passwd", cdn + "r"]) == [("model", "r")]
    assert _roles(cdn + "lone") == [("model", "lone")]
    assert _roles([{"url": cdn + "d"}]) == [("model", "d")]
    assert _roles([cdn + "only.png"]) == [("model", "only.png")]  # the engine will judge it


def test_answer_shapes() -> None:
    no_code = _stub({"data": {"status": "in progress", "progress": "12.5%"}}).poll("t")
    assert no_code.state == TaskState.RUNNING and no_code.progress == pytest.approx(0.125)
    for answer in (envelope(None), envelope({"progress": "5%"}), ["x"]):
        with pytest.raises(ProviderError) as err:
            _stub(answer).poll("t")
        assert err.value.kind == ErrorKind.BAD_RESPONSE
    created = _stub(envelope({"task_id": "3d_abc"})).create(GenerationRequest("TEXT", "x"), "k")
    assert created.task_id == "3d_abc"
    with pytest.raises(ProviderError) as err:
        _stub(envelope({})).create(GenerationRequest("TEXT", "x"), "k")
    assert err.value.kind == ErrorKind.BAD_RESPONSE  # the engine never sends it again


def test_service_facts() -> None:
    assert INFO.id == "siray" and INFO.default_base_url == "https://api.siray.ai"
    assert INFO.capabilities == frozenset({Capability.TEXT, Capability.IMAGE})
    assert INFO.image_input == "both" and not INFO.idempotent_create
    assert INFO.rate_rules == () and INFO.job_lifetime is None
    assert (INFO.auth_header, INFO.auth_scheme) == ("Authorization", "Bearer")
    provider = _stub({})
    assert provider.poll_delay(0) == 5.0 and provider.poll_delay(11) == 5.0
    assert provider.poll_delay(12) == 10.0 and provider.poll_delay(500) == 10.0


# ---------------------------------------------------------- code != "success" on HTTP 200


def test_refused_create_fails_in_one_line_and_makes_no_task(harness, emu) -> None:
    emu.refuse("model_unavailable", "model is\nbusy, try later")
    job = harness().run()
    _one_line_failure(job)
    assert job.message.startswith("The service refused the request")
    assert "model_unavailable" in job.message and "model is busy, try later" in job.message
    assert job.task_id is None and not job.paid
    assert emu.tasks == {} and emu.count("POST") == 1


def test_refused_create_for_credits_reads_as_credits(harness, emu) -> None:
    emu.credits, emu.credit_status = 0, 200
    job = harness().run()
    _one_line_failure(job)
    assert job.message.startswith("Not enough credits") and "quota" in job.message
    assert emu.tasks == {} and not job.paid


def test_refused_create_for_the_key_reads_as_auth(harness, emu) -> None:
    emu.refuse("invalid_api_key", "")
    job = harness().run()
    _one_line_failure(job)
    assert job.message.startswith("The service rejected the API key")


def test_refused_poll_stalls_then_recovers(harness, emu) -> None:
    """The page: code/message describe the *polling request*; the task's fate is its status.
    A failed query is no answer about the paid task, so the job stalls and asks again."""
    emu.refuse("get_task_failed", "database busy", method="GET", times=2)
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id, timeout=15)
    assert job.state == JobState.READY, job.message
    stalled = [j for j in h.seen[job_id] if j.state == JobState.STALLED]
    assert stalled and "database busy" in stalled[0].message
    assert emu.count("POST") == 1


def test_refused_poll_saying_the_task_does_not_exist_ends_the_job(harness, emu) -> None:
    emu.refuse("task_not_exist", "task_not_exist", method="GET")
    job = harness().run()
    _one_line_failure(job)
    assert "does not know this task" in job.message and emu.count("POST") == 1


# ------------------------------------------------------------------ checks before sending


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (
            GenerationRequest("TEXT", "x", options={"model": "nope/x"}),
            "unknown Siray model 'nope/x'",
        ),
        (
            GenerationRequest("TEXT", "x", options={"model": HUNYUAN_IMAGE}),
            f"{HUNYUAN_IMAGE} makes 3D from an image, not from text",
        ),
        (
            GenerationRequest("IMAGE", "", (IMAGE_URL,), {"model": HUNYUAN_TEXT}),
            f"{HUNYUAN_TEXT} makes 3D from text, not from an image",
        ),
        (
            GenerationRequest("TEXT", "x", options={"model": "tripo"}),
            f"{TRIPO_IMAGE} makes 3D from an image",
        ),
        (GenerationRequest("TEXT", "x", options={"face_limit": 9}), "has no option 'face_limit'"),
        (GenerationRequest("TEXT", "x", options={"mode": "quality"}), "has no option 'mode'"),
        (
            GenerationRequest(
                "IMAGE", "", (IMAGE_URL,), {"model": "tripo", "texture_quality": "4k"}
            ),
            'texture_quality must be "standard" or "HD"',
        ),
        (
            GenerationRequest(
                "IMAGE", "", (IMAGE_URL,), {"model": "tripo", "texture_alignment": 1}
            ),
            "texture_alignment must be",
        ),
        (
            GenerationRequest("IMAGE", "", (IMAGE_URL,), {"model": "tripo", "face_limit": 0}),
            "face_limit must be a whole number",
        ),
        (
            GenerationRequest("IMAGE", "", (IMAGE_URL,), {"model": "tripo", "face_limit": "many"}),
            "face_limit",
        ),
        (
            GenerationRequest("IMAGE", "", (IMAGE_URL,), {"model": "tripo", "face_limit": 2.5}),
            "face_limit",
        ),
        (
            GenerationRequest("IMAGE", "", (IMAGE_URL,), {"model": "tripo", "seed": -2}),
            "seed must be",
        ),
        (
            GenerationRequest("IMAGE", "", (IMAGE_URL,), {"model": "tripo", "seed": 10**10}),
            "seed must be",
        ),
        (
            GenerationRequest("IMAGE", "", (IMAGE_URL,), {"model": "tripo", "quad": "yes"}),
            "quad must be true or false",
        ),
        (
            GenerationRequest("TEXT", "x", options={"pbr_enable": 2}),
            "pbr_enable must be true or false",
        ),
        (GenerationRequest("TEXT", "  "), "a prompt is required"),
        (GenerationRequest("IMAGE", ""), "exactly one image"),
        (
            GenerationRequest("MULTIVIEW", "", (IMAGE_URL, IMAGE_URL)),
            "cannot generate from multiview",
        ),
        (GenerationRequest("IMAGE", "", ("/nowhere/chair.png",)), "cannot read image"),
    ],
)
def test_check_refuses_before_anything_is_sent(emu, request_, words) -> None:
    with pytest.raises(ProviderError) as err:
        _provider(emu.url).create(request_, "key")
    assert err.value.kind == ErrorKind.BAD_REQUEST
    assert words in str(err.value) and "\n" not in str(err.value)
    assert emu.requests == []


def test_a_file_that_is_not_an_image_is_refused(emu, tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(ProviderError, match="not a PNG, JPEG or WebP"):
        _provider(emu.url).check(GenerationRequest("IMAGE", "", (str(path),)))
    assert emu.requests == []


def test_a_bad_option_fails_the_job_with_nothing_sent(harness, emu) -> None:
    job = harness().run("IMAGE", "", (IMAGE_URL,), model="tripo", texture_quality="ultra")
    _one_line_failure(job)
    assert "texture_quality" in job.message and not job.paid
    assert emu.requests == []


# ------------------------------------------------------------------- errors before a create


def test_wrong_key_fails_in_one_line_without_repeating_it(harness, emu) -> None:
    wrong = "sk-siray-WRONG-1234"
    job = harness(key=wrong).run()
    _one_line_failure(job)
    assert job.message.startswith("The service rejected the API key")
    assert wrong not in job.message and job.task_id is None
    assert emu.tasks == {}


@pytest.mark.parametrize("status", [402, 403])
def test_out_of_credits_reads_as_credits(harness, emu, status) -> None:
    emu.credits, emu.credit_status = 0, status
    job = harness().run()
    _one_line_failure(job)
    assert job.message.startswith("Not enough credits"), job.message
    assert emu.tasks == {} and not job.paid


def test_forbidden_without_credit_words_reads_as_auth(harness, emu) -> None:
    emu.inject(status=403, body=envelope(None, "forbidden", "key disabled"), method="POST")
    job = harness().run()
    _one_line_failure(job)
    assert (
        job.message.startswith("The service rejected the API key") and "key disabled" in job.message
    )


def test_404_on_create_names_the_base_url(harness, emu) -> None:
    emu.inject(status=404, body=envelope(None, "not_found", "Not found"), method="POST")
    job = harness().run()
    _one_line_failure(job)
    assert job.message.startswith("The service refused the request") and "base URL" in job.message
    assert emu.tasks == {}


def test_invalid_body_fails_with_the_services_words(harness, emu) -> None:
    emu.inject(status=400, body=envelope(None, "invalid_request", "prompt too long"), method="POST")
    job = harness().run()
    _one_line_failure(job)
    assert "prompt too long" in job.message


def test_429_on_create_waits_for_retry_after_then_creates_once(harness, emu) -> None:
    emu.inject(
        status=429, body=envelope(None, "rate_limit", "slow down"), headers={"Retry-After": "1"},
        method="POST",
    )  # fmt: skip
    h = harness()
    job_id = h.submit()
    started = time.monotonic()
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert time.monotonic() - started >= 0.9  # Retry-After was honoured
    assert any("retrying in" in j.message for j in h.seen[job_id])
    assert emu.count("POST") == 2 and len(emu.tasks) == 1


def test_rate_window_answers_429_and_the_job_still_completes(harness, emu) -> None:
    emu.rate = (3, 1.0)
    job = harness().run()
    assert job.state == JobState.READY, job.message
    assert len(emu.tasks) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_on_create_is_never_resent(harness, emu, status) -> None:
    emu.inject(status=status, method="POST")
    job = harness().run()
    assert job.state == JobState.UNSURE and "check its dashboard" in job.message
    time.sleep(0.2)
    assert emu.count("POST") == 1  # no idempotency key: a second create could pay twice


def test_unreadable_create_answer_fails_and_says_to_check(harness, emu) -> None:
    emu.inject(status=200, body="<html>gateway</html>", method="POST")
    job = harness().run()
    assert job.state == JobState.UNSURE and "\n" not in job.message
    assert "check its dashboard" in job.message and emu.count("POST") == 1


# ------------------------------------------------------------------- errors after a create


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (401, envelope(None, "unauthorized", "Invalid token"), {}),
        (402, envelope(None, "insufficient_user_quota", "quota"), {}),
        (403, envelope(None, "insufficient_user_quota", "quota"), {}),
        (429, envelope(None, "rate_limit", "slow"), {"Retry-After": "1"}),
        (500, envelope(None, "internal", "boom"), {}),
        (502, "bad gateway", {}),
        (503, envelope(None, "unavailable", "no provider"), {}),
    ],
)
def test_poll_errors_after_a_create_stall_then_recover(harness, emu, status, body, headers) -> None:
    emu.inject(
        status=status, body=body, headers=headers, method="GET", path=GENERATIONS_PATH, times=2
    )
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id, timeout=15)
    assert job.state == JobState.READY, job.message
    states = [j.state for j in h.seen[job_id]]
    assert JobState.STALLED in states and JobState.FAILED not in states
    assert emu.count("POST") == 1


@pytest.mark.parametrize("status", [404, 400])
def test_unknown_task_on_poll_ends_the_job(harness, emu, status) -> None:
    """404 as PROVIDERS.md lists, or 400 task_not_exist: the service's own answer."""
    emu.unknown_task_status = status
    emu.steps = (("IN_PROGRESS", "10%"),)
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id, {JobState.RUNNING})
    emu.tasks.pop(job.task_id)
    job = h.wait(job_id)
    _one_line_failure(job)
    assert "task_not_exist" in job.message


def test_expired_output_url_is_fetched_again(harness, emu) -> None:
    emu.inject(status=404, body="gone", method="GET", path="/cdn/")
    job = harness().run()
    assert job.state == JobState.READY, job.message
    assert emu.tasks[job.task_id].polls >= 6  # asked once more for fresh URLs


def test_a_paid_job_resumes_by_polling_without_paying_again(harness, emu) -> None:
    task_id = emu.create_task()
    h = harness()
    job = Job.new("siray", "TEXT", "earlier").evolve(
        task_id=task_id, paid_at=time.time(), step=1, state=JobState.SUBMITTED
    )
    h.journal.save(job)
    h.resume(job)
    done = h.wait(job.job_id)
    assert done.state == JobState.READY, done.message
    assert emu.count("POST") == 0


# ---------------------------------------------------------------------------- the key


def test_key_goes_in_the_bearer_header_and_nowhere_else(emu, caplog, tmp_path) -> None:
    caplog.set_level(logging.DEBUG)
    emu.inject(status=500, method="GET", path=GENERATIONS_PATH)  # an error on the way
    h = Harness(tmp_path, emu.url)
    try:
        job = h.run()
    finally:
        h.close()
    assert job.state == JobState.READY, job.message
    api = [r for r in emu.requests if r.path.startswith(GENERATIONS_PATH)]
    assert api and all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in api)
    assert all(KEY not in r.path and KEY.encode() not in r.body for r in emu.requests)
    assert KEY not in caplog.text
    assert not any(KEY in j.message or KEY in str(j.status()) for j in h.seen[job.job_id])
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*"))
    assert stored and KEY.encode() not in stored


def test_an_echoed_key_is_redacted(emu) -> None:
    """The emulator's 401 repeats the token it got, as some services do."""
    wrong = "sk-siray-ECHOED-5555"
    with pytest.raises(ProviderError) as err:
        _provider(emu.url, wrong).create(GenerationRequest("TEXT", "x"), "k")
    assert err.value.kind == ErrorKind.AUTH and wrong not in str(err.value)


# --------------------------------------------------------------------- the emulator's GLB


def test_the_emulator_glb_is_a_valid_glb(tmp_path: Path) -> None:
    data = tiny_glb()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON" and json_len % 4 == 0
    doc = json.loads(data[20 : 20 + json_len])
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
    assert (
        bin_type == b"BIN\x00" and bin_len % 4 == 0 and bin_len == doc["buffers"][0]["byteLength"]
    )
    for view in doc["bufferViews"]:
        assert view["byteOffset"] + view["byteLength"] <= bin_len
    binary = data[28 + json_len :]
    assert struct.unpack_from("<3H", binary, doc["bufferViews"][1]["byteOffset"]) == (0, 1, 2)
    path = tmp_path / "model.glb"
    path.write_bytes(data)
    assert gltfcheck.confine(str(path), str(tmp_path)) == (str(path), [])
