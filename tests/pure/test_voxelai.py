"""Voxel-AI without Blender: the provider and the engine against the emulator (seed 002).

Text → 3 candidates → a pick → voxelize → model.vox; options checked before anything is sent;
the images rate window; the page's errors; refunds; resumes that never pay twice.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import SETTLED, EngineHarness, harness_fixture

from conjure_src.importers import voxfile
from conjure_src.jobs.journal import Journal
from conjure_src.jobs.model import Job, JobState
from conjure_src.providers import make_http
from conjure_src.providers.base import (
    Capability,
    GenerationRequest,
    RateRule,
    Step,
    TaskState,
)
from conjure_src.providers.errors import ErrorKind, ProviderError
from conjure_src.providers.voxelai import INFO, VoxelAI, decode_data_url
from emulators.trify3d import tiny_png
from emulators.voxelai import IMAGES_PATH, STATUS_PATH, VOXELIZE_PATH, VoxelAIEmulator, vox_for

KEY = "vxl_live_VOXEL-secret-42"


@pytest.fixture
def voxel():
    emu = VoxelAIEmulator(api_key=KEY, polls_to_complete=3).start()
    yield emu
    emu.stop()


class Harness(EngineHarness):
    """An engine on a journal in tmp_path, talking to the emulator; collects its events."""

    provider = "voxelai"
    prompt = "a red fox"

    def __init__(self, tmp_path: Path, url: str, key: str = KEY, **kw: object) -> None:
        self.url, self.key = url, key
        kw.setdefault("rate_rules", {"voxelai": INFO.rate_rules})
        super().__init__(tmp_path, self._provider, **kw)

    def _provider(self, job: Job, on_rate) -> VoxelAI:
        return VoxelAI(make_http("voxelai", self.key, self.url, on_rate=on_rate))


harness = harness_fixture(Harness, emulator="voxel")


def _png(tmp_path: Path, name: str = "photo.png", rgb=(10, 120, 200)) -> Path:
    path = tmp_path / name
    path.write_bytes(tiny_png(rgb))
    return path


def _sent_image(voxel: VoxelAIEmulator) -> bytes:
    (body,) = voxel.bodies(VOXELIZE_PATH)
    return base64.b64decode(body["image_base64"].partition(",")[2])


def _voxels(path: str) -> int:
    return sum(len(i.xyz) for i in voxfile.read_file(path).instances)


def _one_line_failure(job: Job, *needles: str) -> None:
    assert job.state == JobState.FAILED, job.message
    assert "\n" not in job.message and KEY not in job.message
    for needle in needles:
        assert needle in job.message


# -- the flows --------------------------------------------------------------------------------


def test_flows_and_facts_are_declared_by_the_module() -> None:
    provider = VoxelAI(make_http("voxelai", KEY, "http://127.0.0.1:9"))
    text = [(s.step, s.stage) for s in provider.flow(GenerationRequest("TEXT", "a fox"))]
    image = [(s.step, s.stage) for s in provider.flow(GenerationRequest("IMAGE", "", ("a",)))]
    assert text == [
        (Step.CREATE, "images"), (Step.POLL, "images"), (Step.PICK, ""),
        (Step.CREATE, "voxelize"), (Step.POLL, "voxelize"), (Step.DOWNLOAD, ""),
    ]  # fmt: skip
    assert image == text[3:]
    assert INFO.capabilities == {Capability.TEXT, Capability.IMAGE, Capability.CANDIDATES}
    assert INFO.rate_rules == (RateRule(1, 15.0, "create:images"),)
    assert not INFO.idempotent_create and INFO.image_input == "file"


def test_text_pauses_for_a_pick_then_voxelizes_the_chosen_candidate(harness, voxel) -> None:
    h = harness()
    job_id = h.submit()
    job = h.wait(job_id, {JobState.AWAITING_PICK} | SETTLED)
    assert job.state == JobState.AWAITING_PICK and len(job.candidates) == 3
    # Served in reverse order: the files follow the service's `index`.
    assert [Path(c).read_bytes() for c in job.candidates] == voxel.candidate_pngs
    assert voxel.count("POST", VOXELIZE_PATH) == 0  # nothing paid before the pick
    h.engine.pick(job_id, 1)
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert [Path(f).name for f in job.files] == ["model.vox"]
    assert _sent_image(voxel) == voxel.candidate_pngs[1]
    assert _voxels(job.files[0]) == 32 // 8  # the documented default voxel_size
    assert voxel.count("POST", IMAGES_PATH) == voxel.count("POST", VOXELIZE_PATH) == 1
    assert voxel.balance() == 4


def test_a_candidate_chosen_up_front_runs_without_a_pause(harness, voxel) -> None:
    h = harness()
    job_id = h.submit(candidate=2, voxel_size=64, seed=7)
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert JobState.AWAITING_PICK not in h.states(job_id)
    assert _sent_image(voxel) == voxel.candidate_pngs[2]
    assert voxel.bodies(IMAGES_PATH) == [{"prompt": "a red fox", "seed": 7}]
    (body,) = voxel.bodies(VOXELIZE_PATH)
    del body["image_base64"]
    assert body == {
        "voxel_size": 64, "palette_size": 32, "texturing": "textured", "color": "surface",
        "fill": False,
    }  # fmt: skip
    assert _voxels(job.files[0]) == 64 // 8


def test_image_flow_voxelizes_a_local_png_with_every_setting(harness, voxel, tmp_path) -> None:
    png = _png(tmp_path)
    h = harness()
    options = {"texturing": "gray", "fill": True, "color": "vertex", "palette_size": 8}
    job = h.wait(h.submit("IMAGE", "", [png], voxel_size=128, **options))
    assert job.state == JobState.READY, job.message
    assert voxel.count("POST", IMAGES_PATH) == 0
    (body,) = voxel.bodies(VOXELIZE_PATH)
    assert body["image_base64"].startswith("data:image/png;base64,")
    assert _sent_image(voxel) == png.read_bytes()
    assert {k: body[k] for k in options} == options and body["voxel_size"] == 128
    assert Path(job.files[0]).read_bytes() == vox_for(128)


def test_pick_by_a_local_image_path(harness, voxel, tmp_path) -> None:
    mine = _png(tmp_path, "mine.png", (1, 2, 3))
    h = harness()
    job_id = h.submit()
    h.wait(job_id, {JobState.AWAITING_PICK} | SETTLED)
    h.engine.pick(job_id, str(mine))
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert _sent_image(voxel) == mine.read_bytes()


def test_candidates_with_a_data_prefix_are_accepted(harness, voxel) -> None:
    voxel.prefixed_images = True
    h = harness()
    job = h.wait(h.submit(candidate=0))
    assert job.state == JobState.READY, job.message
    assert [Path(c).read_bytes() for c in job.candidates] == voxel.candidate_pngs


# -- checked before anything is sent -----------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "options", "needle"),
    [
        ("a fox", {"voxel_size": 7}, "voxel_size must be a whole number from 8 to 128, got 7"),
        ("a fox", {"voxel_size": 129}, "voxel_size must be a whole number from 8 to 128"),
        ("a fox", {"voxel_size": "big"}, "voxel_size must be a whole number from 8 to 128"),
        ("a fox", {"palette_size": 1}, "palette_size must be a whole number from 2 to 256"),
        ("a fox", {"palette_size": 257}, "palette_size must be a whole number from 2 to 256"),
        ("a fox", {"texturing": "grey"}, 'texturing must be "textured" or "gray"'),
        ("a fox", {"color": "face"}, 'color must be "surface" or "vertex"'),
        ("a fox", {"fill": "maybe"}, "fill must be true or false"),
        ("a fox", {"seed": -1}, "seed must be a whole number from 0"),
        ("a fox", {"candidate": 3}, "candidate must be 0, 1 or 2, got 3"),
        ("a fox", {"candidate": True}, "candidate must be 0, 1 or 2"),
        ("", {}, "prompt is empty"),
        ("   ", {}, "prompt is empty"),
        ("x" * 501, {}, "prompt is 501 characters; Voxel-AI accepts at most 500"),
        ("🦊" * 251, {}, "prompt is 502 characters"),  # UTF-16 units, as a JS server counts
    ],
)
def test_bad_input_fails_in_one_line_before_anything_is_sent(
    harness, voxel, prompt, options, needle
) -> None:
    h = harness()
    job = h.wait(h.submit(prompt=prompt, **options))
    _one_line_failure(job, "refused the request", needle)
    assert voxel.requests == []


def test_a_file_that_is_no_image_is_refused_before_anything_is_sent(
    harness, voxel, tmp_path
) -> None:
    fake = tmp_path / "photo.png"
    fake.write_text("not an image")
    h = harness()
    _one_line_failure(h.wait(h.submit("IMAGE", "", [fake])), "not a PNG, JPEG or WebP image")
    _one_line_failure(h.wait(h.submit("IMAGE", "", [])), "needs an image")
    assert voxel.requests == []


def test_prompt_of_exactly_500_characters_is_sent(harness, voxel) -> None:
    h = harness()
    job = h.wait(h.submit(prompt="x" * 500, candidate=0))
    assert job.state == JobState.READY, job.message


# -- the images rate window --------------------------------------------------------------------


def test_a_second_prompt_waits_for_the_images_window(harness, voxel) -> None:
    voxel.images_window = 1.5
    h = harness(rate_rules={"voxelai": (RateRule(1, 1.5, "create:images"),)})
    first, second = h.submit(prompt="a fox", candidate=0), h.submit(prompt="a cat", candidate=1)
    jobs = [h.wait(first, timeout=15), h.wait(second, timeout=15)]
    assert [j.state for j in jobs] == [JobState.READY] * 2
    assert voxel.refused == 0
    a, b = voxel.images_accepted
    assert b - a >= 1.5
    assert voxel.balance() == 3


def test_a_429_from_the_service_is_waited_out_visibly(harness, voxel) -> None:
    """Another client (the website) took the window: the job says so and tries again."""
    voxel.images_window, voxel.retry_after = 1.0, 1
    voxel.use_images_window()
    h = harness(rate_rules={"voxelai": (RateRule(1, 1.0, "create:images"),)})
    job_id = h.submit(candidate=0)
    job = h.wait(job_id, timeout=15)
    assert job.state == JobState.READY, job.message
    assert voxel.refused == 1 and voxel.count("POST", IMAGES_PATH) == 2
    assert any("rate limiting" in m and "retrying in" in m for m in h.messages(job_id))


def test_a_429_without_retry_after_waits_the_documented_window(voxel) -> None:
    voxel.use_images_window()
    provider = VoxelAI(make_http("voxelai", KEY, voxel.url))
    with pytest.raises(ProviderError) as info:
        provider.create(GenerationRequest("TEXT", "a fox"), "", "images")
    assert info.value.kind == ErrorKind.RATE_LIMIT and info.value.retry_after == 15.0


# -- the page's errors -------------------------------------------------------------------------


def test_a_wrong_key_fails_in_one_line(tmp_path, voxel) -> None:
    h = Harness(tmp_path, voxel.url, key="vxl_live_wrong")
    try:
        job = h.wait(h.submit())
        _one_line_failure(job, "rejected the API key", "HTTP 401")
        assert voxel.jobs == {}
    finally:
        h.close()


def test_out_of_tokens_fails_with_credits_and_nothing_is_charged(harness, voxel, tmp_path):
    voxel.balances["alice"] = 0
    h = harness()
    job = h.wait(h.submit("IMAGE", "", [_png(tmp_path)]))
    _one_line_failure(job, "Not enough credits", "HTTP 402")
    assert voxel.balance() == 0 and voxel.jobs == {}


def test_no_balance_record_is_a_credits_failure_not_a_key_problem(harness, voxel, tmp_path):
    voxel.balances["alice"] = None
    h = harness()
    job = h.wait(h.submit("IMAGE", "", [_png(tmp_path)]))
    _one_line_failure(job, "Not enough credits", "HTTP 403", "no token balance")
    assert "API key" not in job.message


def _journaled_poll(h: Harness, task_id: str, tmp_path: Path) -> str:
    """A paid IMAGE job whose voxelize was sent by an earlier session: resumes by polling."""
    job = Job.new("voxelai", "IMAGE", "", (str(_png(tmp_path)),)).evolve(
        state=JobState.RUNNING, task_id=task_id, step=1, paid_at=time.time()
    )
    h.journal.save(job)
    h.resume(job.job_id)
    return job.job_id


def test_an_unknown_job_fails_in_one_line(harness, voxel, tmp_path) -> None:
    h = harness()
    job = h.wait(_journaled_poll(h, "no-such-job", tmp_path))
    _one_line_failure(job, "does not know this task", "HTTP 404")
    assert voxel.count("POST") == 0


def test_another_accounts_job_stalls_with_the_reason_and_is_not_lost(harness, voxel, tmp_path):
    """Polling someone else's job (the key was changed): the paid job waits for the right key."""
    task_id = voxel.create_job("voxelize", owner="bob")
    h = harness()
    job_id = _journaled_poll(h, task_id, tmp_path)
    job = h.wait(job_id, {JobState.STALLED} | SETTLED)
    assert job.state == JobState.STALLED and "\n" not in job.message
    assert "HTTP 403" in job.message and "another account" in job.message
    assert h.journal.get(job_id).task_id == task_id


def test_transient_502_while_polling_keeps_polling_to_ready(harness, voxel, tmp_path) -> None:
    voxel.transient(times=2)
    h = harness()
    job_id = h.submit("IMAGE", "", [_png(tmp_path)])
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert JobState.STALLED in h.states(job_id)
    assert voxel.count("POST", VOXELIZE_PATH) == 1 and voxel.balance() == 4


def test_a_voxelize_whose_answer_was_lost_is_never_sent_again(harness, voxel, tmp_path) -> None:
    """No idempotency key on this service: the job fails asking the user to check."""
    voxel.inject(status=504, body={"error": "Gateway timeout"}, method="POST", path=VOXELIZE_PATH)
    h = harness()
    job = h.wait(h.submit("IMAGE", "", [_png(tmp_path)]))
    assert job.state == JobState.UNSURE and "\n" not in job.message
    assert "may have reached Voxel-AI" in job.message and "check its dashboard" in job.message
    assert voxel.count("POST", VOXELIZE_PATH) == 1


def test_a_failed_voxelize_says_refunded_and_the_balance_is_back(harness, voxel) -> None:
    voxel.fail_voxelize = True
    h = harness()
    job = h.wait(h.submit(candidate=1))
    _one_line_failure(job, "Worker ran out of GPU memory", "the token is refunded")
    assert voxel.balance() == 5
    provider = VoxelAI(make_http("voxelai", KEY, voxel.url))
    (task,) = [j for j in voxel.jobs.values() if j.kind == "voxelize"]
    assert provider.poll(task.job_id, "voxelize").state == TaskState.FAILED
    assert voxel.balance() == 5  # refunded once, however often it is polled


# -- hostile answers, visible balance ------------------------------------------------------------


def test_the_server_filename_is_never_used_as_a_path(harness, voxel, tmp_path) -> None:
    assert voxel.filename == "../../evil.vox"
    h = harness()
    job = h.wait(h.submit(candidate=0))
    assert job.state == JobState.READY, job.message
    folder = tmp_path / "jobs" / job.job_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "candidate-1.png", "candidate-2.png", "candidate.png", "model.vox",
    ]  # fmt: skip
    assert not list(tmp_path.rglob("*evil*"))  # nothing written under any name it gave
    assert all("evil" not in m for m in h.messages(job.job_id))


def test_balance_and_charge_are_visible_while_voxelizing(harness, voxel, tmp_path) -> None:
    voxel.polls_to_complete = 4
    h = harness()
    job_id = h.submit("IMAGE", "", [_png(tmp_path)])
    assert h.wait(job_id).state == JobState.READY
    running = [m for m in h.messages(job_id) if m.startswith("Voxelizing")]
    assert running and all("balance 4 tokens, 1 token charged" in m for m in running)
    assert any("waiting for a worker (2 s so far)" in m for m in running)
    assert any("running 2 s" in m for m in running)


# -- restarts ------------------------------------------------------------------------------------


def _journal_row(tmp_path: Path, job_id: str) -> Job:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        job = journal.get(job_id)
    finally:
        journal.close()
    assert job is not None
    return job


def test_restarts_during_both_jobs_resume_by_polling_and_pay_once(tmp_path, voxel) -> None:
    voxel.held = {"images", "voxelize"}

    def at(step: int) -> Callable[[Job], bool]:
        return lambda j: j.step == step and j.state == JobState.RUNNING

    first = Harness(tmp_path, voxel.url)
    job_id = first.submit(candidate=1)
    first.wait_for(job_id, at(1))
    first.close()  # Blender quits while the images job runs
    row = _journal_row(tmp_path, job_id)
    images_task = row.task_id
    assert row.step == 1 and voxel.jobs[images_task].kind == "images"

    voxel.held = {"voxelize"}
    second = Harness(tmp_path, voxel.url)
    second.resume(job_id)
    second.wait_for(job_id, at(4))
    second.close()  # and again while the voxelize job runs
    row = _journal_row(tmp_path, job_id)
    assert row.step == 4 and voxel.jobs[row.task_id].kind == "voxelize"

    voxel.held = set()
    third = Harness(tmp_path, voxel.url)
    try:
        third.resume(job_id)
        job = third.wait(job_id)
        assert job.state == JobState.READY, job.message
    finally:
        third.close()
    assert voxel.count("POST", IMAGES_PATH) == 1
    assert voxel.count("POST", VOXELIZE_PATH) == 1 and voxel.balance() == 4
    assert voxel.count("GET", f"{STATUS_PATH}?jobId={images_task}") >= 2
    assert _sent_image(voxel) == voxel.candidate_pngs[1]


# -- the provider alone ----------------------------------------------------------------------------


def test_inline_files_are_decoded_bounded_and_written_via_part(voxel, tmp_path) -> None:
    provider = VoxelAI(make_http("voxelai", KEY, voxel.url))
    payload = vox_for(16)
    url = "data:application/octet-stream;base64," + base64.b64encode(payload).decode()
    dest = tmp_path / "asset.download"
    assert provider.download(url, str(dest), lambda: False) == len(payload)
    assert dest.read_bytes() == payload and not (tmp_path / "asset.download.part").exists()
    with pytest.raises(ProviderError, match="cancelled"):
        provider.download(url, str(tmp_path / "x"), lambda: True)
    for bad, needle in [
        ("data:application/octet-stream;base64,@@@@", "not valid base64"),
        ("data:text/plain,hello", "not base64 data"),
        ("data:application/octet-stream;base64,", "empty"),
    ]:
        with pytest.raises(ProviderError, match=needle) as info:
            provider.download(bad, str(tmp_path / "y"), lambda: False)
        assert info.value.kind == ErrorKind.BAD_RESPONSE
    with pytest.raises(ProviderError, match="byte limit"):
        decode_data_url(url, max_bytes=len(payload) - 1)
    assert list(tmp_path.iterdir()) == [dest]


def test_unknown_shapes_are_one_line_bad_responses(voxel) -> None:
    provider = VoxelAI(make_http("voxelai", KEY, voxel.url))
    voxel.inject(status=200, body={"state": "exploded"}, method="GET")
    with pytest.raises(ProviderError, match="unknown job state 'exploded'") as info:
        provider.poll("x", "images")
    assert info.value.kind == ErrorKind.BAD_RESPONSE
    voxel.inject(status=200, body={"ok": True}, method="POST")
    with pytest.raises(ProviderError, match="no jobId"):
        provider.create(GenerationRequest("TEXT", "a fox"), "", "images")
    voxel.inject(status=200, body=json.dumps({"state": "IN_PROGRESS"}), method="GET")
    assert provider.poll("x", "voxelize").state == TaskState.RUNNING  # RunPod's own names
