"""Engine v2 without Blender: the scheduler, money rules, stalls, leases, flows, the journal.

Each test reproduces a finding from the engine review (issue 9) against the Trify3D emulator
and counts what the service saw.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from harness import SETTLED, EngineHarness, harness_fixture

from conftest import ROOT
from conjure_src.jobs.journal import HOST, SCHEMA_VERSION, Journal
from conjure_src.jobs.model import Answer, ImportPlan, Job, JobState, VoxMesh
from conjure_src.jobs.ratelimit import ServiceLimiter, margin
from conjure_src.providers import get_provider, make_http
from conjure_src.providers.base import (
    STANDARD_FLOW,
    Asset,
    Capability,
    Created,
    FlowStep,
    GenerationRequest,
    Provider,
    RateRule,
    ServiceInfo,
    Step,
    TaskState,
    TaskStatus,
)
from emulators.trify3d import tiny_png

KEY = "trf_live_ENGINE-secret-77"
CREATE = "/api/v1/generations/"


class Harness(EngineHarness):
    """An engine on a journal in tmp_path, talking to one emulator; collects its events.

    Unlike the single-service modules, jobs go in and come out in lists, and `seen` keeps
    only each event's state."""

    def __init__(self, tmp_path: Path, url: str, **kw: object) -> None:
        self.url = url
        self.extra_providers: dict[str, type[Provider]] = {}
        super().__init__(tmp_path, self._provider, **kw)

    def _provider(self, job: Job, on_rate) -> Provider:
        http = make_http("trify3d", KEY, self.url, on_rate=on_rate)
        cls = self.extra_providers.get(job.provider)
        return cls(http) if cls else get_provider(job.provider, http)

    def record(self, job: Job) -> JobState:
        return job.state

    def submit(self, count: int = 1, prompt: str = "a chair", provider: str = "trify3d"):
        return [self.add(Job.new(provider, "TEXT", f"{prompt} {i}")) for i in range(count)]

    def wait(self, ids: Iterable[str], states=SETTLED, timeout: float = 10.0) -> list[Job]:
        ids = list(ids)
        self.until(lambda: all(self.jobs[i].state in states for i in ids), timeout)
        return [self.jobs[i] for i in ids]


harness = harness_fixture(Harness, emulator="trify")


def test_a_job_runs_to_ready_with_model_and_thumbnail(harness, trify) -> None:
    h = harness()
    (job,) = h.wait(h.submit())
    assert job.state == JobState.READY and job.paid and job.task_id in trify.tasks
    assert [Path(f).name for f in job.files] == ["model.glb", "thumbnail-1.png"]
    assert h.journal.get(job.job_id).state == JobState.READY
    assert trify.count("POST") == 1


# -- 1. "Remaining: 0" no longer blocks a service for the rest of the session -------------


def test_remaining_zero_waits_then_probes_once_and_continues(tmp_path, trify, harness) -> None:
    trify.rate_limit, trify.rate_window = 3, 1.5
    h = harness(probe_after=0.5, rate_rules={"trify3d": [RateRule(3, 1.5)]})
    ids = h.submit(2)  # 2 creates + polls + ... needs more than 3 requests: two windows
    jobs = h.wait(ids, timeout=15)
    assert [j.state for j in jobs] == [JobState.READY] * 2
    assert trify.refused <= 1  # one probe may meet a 429 (it carries Retry-After), never a storm


@pytest.mark.parametrize(("window", "room"), [(0.5, 0.005), (15.0, 0.075), (3600.0, 18.0)])
def test_the_margin_on_a_rate_window_is_a_share_of_it(window: float, room: float) -> None:
    """A short window does not lose a fixed slice of its rate; a long one keeps more room."""
    assert margin(window) == pytest.approx(room)
    now = [100.0]
    limiter = ServiceLimiter([RateRule(2, window)], clock=lambda: now[0])
    assert limiter.reserve("create") == limiter.reserve("poll") == 0.0
    assert limiter.reserve("poll") == pytest.approx(window + room)
    now[0] += window
    assert limiter.reserve("poll") == pytest.approx(room)
    now[0] += room
    assert limiter.reserve("poll") == 0.0


def test_a_send_is_counted_from_when_it_goes_not_from_when_it_was_reserved() -> None:
    """A request that waited in the workers' queue reaches the service later than it was
    reserved: the window runs from when it went. One that never went ages out as reserved."""
    now = [0.0]
    limiter = ServiceLimiter([RateRule(2, 10.0)], clock=lambda: now[0])
    span = 10.0 + margin(10.0)
    assert limiter.reserve("a") == limiter.reserve("b") == 0.0  # both at 0
    now[0] = 3.0
    limiter.leaving("a")  # the first went at 3 s; the second was cancelled before it went
    assert limiter.reserve("c") == pytest.approx(span - 3.0)  # the cancelled one frees first
    now[0] = span
    assert limiter.reserve("c") == 0.0
    assert limiter.reserve("d") == pytest.approx(3.0)  # the one that went counts from 3 s
    now[0] = 3.0 + span
    assert limiter.reserve("d") == 0.0


def test_a_send_counts_until_its_answer_comes() -> None:
    """The service counted it when it arrived, somewhere before its answer (the send's own
    time may be early: a worker waits for the GIL while the main thread imports): the window
    runs from the answer, also for one that took longer than a window."""
    now = [0.0]
    limiter = ServiceLimiter([RateRule(1, 10.0)], clock=lambda: now[0])
    span = 10.0 + margin(10.0)
    assert limiter.reserve("a") == 0.0
    now[0] = 1.0
    stamp = limiter.leaving("a")
    assert limiter.reserve("b") == pytest.approx(span)  # in flight: it holds its place
    now[0] = 1.3
    limiter.answered("a", stamp)
    now[0] = 1.0 + span
    assert limiter.reserve("b") == pytest.approx(0.3)  # not free one window after it left
    now[0] = 1.3 + span
    assert limiter.reserve("b") == 0.0
    stamp = limiter.leaving("b")
    now[0] += 3 * span  # a slow upload: its stamp aged out on the way
    limiter.answered("b", stamp)
    assert limiter.reserve("c") == pytest.approx(span)


# -- 2. cancel, disable and quit send nothing new and return at once ----------------------


def test_cancelled_queued_jobs_send_no_create(harness, trify) -> None:
    h = harness(max_in_flight=1)
    trify.polls_to_complete = 50
    ids = h.submit(6)
    h.wait(ids[:1], states={JobState.RUNNING})
    started = time.monotonic()
    for job_id in ids[1:]:
        assert h.engine.cancel(job_id)
    assert time.monotonic() - started < 1.0
    jobs = h.wait(ids[1:], states={JobState.CANCELLED})
    assert all(j.state == JobState.CANCELLED for j in jobs)
    time.sleep(0.3)
    assert trify.count("POST") == 1  # only the job that was already running paid
    assert {h.journal.get(i).state for i in ids[1:]} == {JobState.CANCELLED}


def test_shutdown_with_queued_jobs_sends_nothing_and_keeps_them(harness, trify) -> None:
    h = harness(max_in_flight=1)
    trify.polls_to_complete = 50
    ids = h.submit(8)
    h.wait(ids[:1], states={JobState.RUNNING})
    started = time.monotonic()
    h.engine.shutdown(1.0)
    assert time.monotonic() - started < 1.0
    posts = trify.count("POST")
    time.sleep(0.5)
    assert posts == trify.count("POST") == 1
    rows = {i: h.journal.get(i) for i in ids}
    assert rows[ids[0]].state == JobState.RUNNING and rows[ids[0]].task_id
    assert all(rows[i].state == JobState.QUEUED and not rows[i].task_id for i in ids[1:])
    assert h.journal.holder(ids[0]) == ""  # lease released: another Blender may take over


# -- 3. long Retry-After waits are bounded, cancellable, and shutdown is orderly -----------


def test_retry_after_wait_is_cancellable(harness, trify) -> None:
    trify.inject(status=429, headers={"Retry-After": "600"}, method="POST", times=5)
    h = harness()
    (job_id,) = h.submit()
    h.wait([job_id], states={JobState.QUEUED}, timeout=2)
    h.drain(0.3)
    assert "retrying in" in h.jobs[job_id].message
    started = time.monotonic()
    h.engine.cancel(job_id)
    (job,) = h.wait([job_id], states={JobState.CANCELLED}, timeout=1.0)
    assert job.state == JobState.CANCELLED and time.monotonic() - started < 1.0
    assert trify.count("POST") == 1


def test_shutdown_during_requests_leaves_a_readable_journal(harness, trify) -> None:
    trify.inject(delay=2.0, passthrough=True, method="GET", times=20)
    h = harness()
    ids = h.submit(4)
    h.wait(ids, states={JobState.SUBMITTED, JobState.RUNNING}, timeout=3)
    started = time.monotonic()
    h.engine.shutdown(1.0)
    h.journal.close()  # while workers may still be inside a request
    assert time.monotonic() - started < 1.5
    time.sleep(2.2)  # the stragglers come back to a closed journal: nothing raises
    journal = Journal(h.journal.path)
    try:
        assert all(journal.get(i).task_id for i in ids)  # every paid job kept its task id
    finally:
        journal.close()


def test_retry_after_is_capped_at_fifteen_minutes(harness, trify) -> None:
    trify.inject(status=429, headers={"Retry-After": "86400"}, method="POST")
    h = harness()
    (job_id,) = h.submit()
    h.wait([job_id], states={JobState.QUEUED}, timeout=2)
    h.drain(0.3)
    assert h.engine.limiter("trify3d").blocked_for() <= 15 * 60


# -- 4. thumbnails are extras -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, b"gone", "thumbnail not downloaded"),
        (200, b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 32, None),
        (200, b"GIF89a" + b"\x00" * 32, "GIF"),
    ],
    ids=["404", "webp", "gif"],
)
def test_thumbnail_trouble_is_a_warning_not_a_failed_job(harness, trify, status, body, expected):
    trify.thumbnail = (status, body)
    h = harness()
    (job,) = h.wait(h.submit())
    assert job.state == JobState.READY and any(f.endswith(".glb") for f in job.files)
    if expected:
        assert any(expected in w for w in job.warnings)
    else:
        assert any(f.endswith(".webp") for f in job.files) and not job.warnings


def test_model_that_is_no_known_format_fails_naming_what_it_got(harness, trify) -> None:
    trify.model_bytes = b"<!DOCTYPE html><html><body>Access denied</body></html>"
    h = harness()
    (job,) = h.wait(h.submit())
    assert job.state == JobState.FAILED
    assert "not a format Conjure can read: got an HTML page" in job.message
    assert "\n" not in job.message


# -- 5. paid jobs stall, never fail, through the network ------------------------------------


@pytest.mark.parametrize("status", [502, 503, 500, 429])
def test_paid_job_stalls_on_trouble_and_continues_by_itself(harness, trify, status) -> None:
    trify.inject(status=status, headers={"Retry-After": "1"}, method="GET", path=CREATE, times=3)
    h = harness()
    (job_id,) = h.submit()
    (job,) = h.wait([job_id], timeout=20)
    assert job.state == JobState.READY
    assert JobState.STALLED in h.seen[job_id]
    assert trify.count("POST") == 1


def test_unreachable_service_after_create_stalls_with_reason_and_next_try(tmp_path, trify):
    h = Harness(tmp_path, trify.url)
    try:
        trify.polls_to_complete = 100
        (job_id,) = h.submit()
        h.wait([job_id], states={JobState.RUNNING})
        trify.stop()  # the network goes away after the create was paid for
        (job,) = h.wait([job_id], states={JobState.STALLED}, timeout=5)
        assert job.state == JobState.STALLED and job.next_try > time.time() - 1
        assert "next try at" in job.message and "Could not reach" in job.message
        assert h.journal.get(job_id).state == JobState.STALLED
    finally:
        h.close()


def test_service_lifetime_ends_a_job_that_never_finishes(harness, trify) -> None:
    trify.polls_to_complete = 10_000
    h = harness()
    (job_id,) = h.submit()
    h.wait([job_id], states={JobState.RUNNING})
    live = h.engine._live[job_id]
    live.job = live.job.evolve(paid_at=time.time() - 3600)  # an hour past its 10 minutes
    (job,) = h.wait([job_id], timeout=5)
    assert job.state == JobState.FAILED and "10-minute job lifetime" in job.message


# -- 8. jobs are not capped by threads -------------------------------------------------------


def test_twenty_jobs_on_four_workers_all_submitted(harness, trify) -> None:
    trify.polls_to_complete = 4
    h = harness(workers=4, max_in_flight=100)
    ids = h.submit(20)
    jobs = h.wait(ids, timeout=20)
    assert all(j.state == JobState.READY for j in jobs)
    assert trify.count("POST") == 20 and len(trify.tasks) == 20
    assert h.engine.worker_count() <= 9  # 4 step + 4 download workers + the scheduler


def test_hundred_jobs_in_flight_hold_no_thread_while_waiting(harness, trify) -> None:
    trify.polls_to_complete = 10_000
    h = harness(workers=4, max_in_flight=100, poll_interval=0.5)
    ids = h.submit(100)
    h.wait(ids, states={JobState.RUNNING, JobState.SUBMITTED}, timeout=20)
    assert sum(h.jobs[i].paid for i in ids) == 100
    assert h.engine.worker_count() <= 9


def test_concurrency_limit_applies_live(harness, trify) -> None:
    trify.polls_to_complete = 10_000
    h = harness(max_in_flight=2)
    h.submit(6)
    h.drain(0.5)
    assert trify.count("POST") == 2
    h.engine.set_max_in_flight(5)
    h.drain(0.5)
    assert trify.count("POST") == 5


# -- 9. one journal, many Blenders -------------------------------------------------------------


def test_a_job_leased_by_a_live_process_is_not_taken_over(tmp_path, trify) -> None:
    a = Harness(tmp_path, trify.url)
    b = Harness(tmp_path, trify.url)
    try:
        trify.polls_to_complete = 10_000
        (job_id,) = a.submit()
        a.wait([job_id], states={JobState.RUNNING})
        assert b.engine.resume(b.journal.get(job_id)) == "Running in another Blender"
        polls = trify.count("GET")
        a.drain(0.3)
        assert b.engine.live_job_ids() == set()
        assert trify.count("GET") > polls  # a keeps polling, b does not
    finally:
        a.close()
        b.close()


def test_a_job_whose_process_is_gone_is_taken_over(tmp_path, trify) -> None:
    h = Harness(tmp_path, trify.url)
    try:
        job = Job.new("trify3d", "TEXT", "orphan")
        h.journal.save(job)
        # A lease held by a process that no longer exists (pid 2**22 + 7 is never live here).
        assert h.journal.claim(job.job_id, f"{HOST}/{2**22 + 7}/dead", 3600) == ""
        assert h.engine.resume(job) == ""
        h.jobs[job.job_id] = job
        (done,) = h.wait([job.job_id])
        assert done.state == JobState.READY
    finally:
        h.close()


# -- 12. the journal migrates forward ----------------------------------------------------------


V1_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (job_id, provider, source, prompt, image_paths, options, "
    "state, task_id, progress, message, files, idempotency_key, created, updated, "
    "PRIMARY KEY (job_id))"
)


def _v1_row(job_id: str, state: str, task_id: str | None, message: str = "") -> tuple:
    now = time.time()
    return (job_id, "trify3d", "TEXT", f"v1 {job_id}", "[]", "{}", state, task_id, 0.5,
            message, "[]", f"conjure-{job_id}", now, now)  # fmt: skip


def test_a_version_1_journal_is_migrated_and_its_jobs_resume(tmp_path, trify) -> None:
    path = tmp_path / "journal.sqlite"
    # Two paid tasks on the service, one written as "running", one that v1 gave up on.
    task_a = trify.create_task("text_to_3d", {"prompt": "a"})
    task_b = trify.create_task("text_to_3d", {"prompt": "b"})
    db = sqlite3.connect(path)
    db.execute(V1_SCHEMA)
    db.executemany(
        "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            _v1_row("a", "running", task_a),
            _v1_row("b", "failed", task_b, "no result after 15 minutes; resume later"),
            _v1_row("c", "imported", "t-old"),
        ],
    )
    db.commit()
    db.close()
    h = Harness(tmp_path, trify.url)
    try:
        unfinished = h.journal.unfinished()
        assert [j.job_id for j in unfinished] == ["a", "b"]
        assert all(j.paid and j.step == 1 for j in unfinished)
        assert h.journal.get("b").state == JobState.STALLED
        for job in unfinished:
            h.resume(job)
        jobs = h.wait(["a", "b"])
        assert [j.state for j in jobs] == [JobState.READY] * 2
        assert trify.count("POST") == 0  # resumed by polling, never by paying again
        version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION == 4
    finally:
        h.close()


V2_COLUMNS = (
    "step INTEGER DEFAULT 0", "paid_at REAL DEFAULT 0", "key_fingerprint TEXT DEFAULT ''",
    "base_url TEXT DEFAULT ''", "blend_file TEXT DEFAULT ''", "warnings TEXT DEFAULT '[]'",
    "next_try REAL DEFAULT 0", "candidates TEXT DEFAULT '[]'", "objects TEXT DEFAULT '[]'",
    "owner TEXT DEFAULT ''", "lease_until REAL DEFAULT 0",
)  # fmt: skip


def test_a_version_2_journal_moves_notes_into_typed_fields_and_resumes(tmp_path, trify) -> None:
    """v2 kept the add-on's notes and the engine's findings in options; v3 has fields."""
    path = tmp_path / "journal.sqlite"
    task = trify.create_task("text_to_3d", {"prompt": "a"})
    placed = {"_compare": "g1", "_compare_slot": 2, "_compare_count": 3, "_origin_bottom": True,
              "_target_height": 1.5, "_batch": "b9", "_batch_row": "4", "mode": "preview"}
    learned = {"pick": 1, "picked_path": "/j/candidate-1.png", "file_key": "uploads/k.png",
               "previous_task_id": "t-prev", "_vox_mesh": "greedy"}  # fmt: skip
    db = sqlite3.connect(path)
    db.execute(V1_SCHEMA)
    for column in V2_COLUMNS:
        db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
    rows = [
        ("a", "running", task, json.dumps(placed), ""),
        ("b", "ready", "t-b", json.dumps(learned), "Ready — Import"),
        ("c", "ready", "t-c", "{}", "Downloaded"),
        ("d", "failed", None, "{}", "HTTP 504; the request may have reached Trify3D: check its "
                                    "dashboard before generating again"),
    ]
    for job_id, state, task_id, options, message in rows:
        row = list(_v1_row(job_id, state, task_id, message))
        row[5] = options
        db.execute("INSERT INTO jobs (job_id, provider, source, prompt, image_paths, options, "
                   "state, task_id, progress, message, files, idempotency_key, created, updated,"
                   " step, paid_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,?)",
                   (*row, time.time()))  # fmt: skip
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    h = Harness(tmp_path, trify.url)
    try:
        a, b, c, d = (h.journal.get(i) for i in "abcd")
        assert d.state == JobState.UNSURE and d.finished  # a charge to check, not a failure
        assert dict(a.options) == {"mode": "preview"}
        assert a.plan == ImportPlan(origin_bottom=True, target_height=1.5, compare_group="g1",
                                    compare_slot=2, compare_count=3, batch_id="b9",
                                    batch_row="4")  # fmt: skip
        assert dict(b.options) == {} and b.plan == ImportPlan(vox_mesh=VoxMesh.GREEDY)
        assert (b.upload_ref, b.picked_path, b.previous_task_id) == (
            "uploads/k.png", "/j/candidate-1.png", "t-prev")  # fmt: skip
        assert b.needs_click and not c.needs_click and not a.needs_click
        h.resume(a)
        (done,) = h.wait(["a"])
        assert done.state == JobState.READY, done.message
        assert trify.count("POST") == 0  # nothing paid again
        assert h.journal.get("a").plan == a.plan  # the plan survives the engine's saves
        assert h.journal.get("a").credits == 5  # v4: what the polls said it cost is kept
        version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION == 4
    finally:
        h.close()


def test_journal_never_holds_the_key(harness, trify, tmp_path) -> None:
    h = harness()
    h.wait(h.submit())
    h.engine.shutdown(1.0)
    for file in tmp_path.glob("journal.sqlite*"):
        assert KEY.encode() not in file.read_bytes()


# -- 13. a flow is steps a provider declares: the engine knows no service ---------------------


class Staged(Provider):
    """A made-up service: upload → create images → poll → pick → create model → poll → download."""

    info = ServiceInfo(
        "trify3d",  # its emulator serves the HTTP; the flow is what is tested
        "Staged",
        "",
        "",
        "",
        capabilities=frozenset({Capability.TEXT}),
        rate_rules=(RateRule(1, 0.2, "create:images"),),
    )
    calls: list[str] = []

    def flow(self, request: GenerationRequest):
        return (
            FlowStep(Step.UPLOAD),
            FlowStep(Step.CREATE, "images"),
            FlowStep(Step.POLL, "images"),
            FlowStep(Step.PICK),
            FlowStep(Step.CREATE, "model"),
            FlowStep(Step.POLL, "model"),
            FlowStep(Step.DOWNLOAD),
        )

    def upload(self, request):
        self.calls.append("upload")
        return "fk-1"

    def create(self, request, idempotency_key, stage=""):
        self.calls.append(f"create:{stage}:{request.upload_ref}")
        if stage == "model":
            self.calls.append(f"picked:{Path(request.picked_path).stem}")
        return Created(f"task-{stage}")

    def poll(self, task_id, stage=""):
        self.calls.append(f"poll:{stage}")
        base = self.http.base_url
        if stage == "images":
            return TaskStatus(
                TaskState.SUCCEEDED,
                candidates=tuple(Asset(f"{base}/files/x/thumb", "candidate") for _ in range(3)),
            )
        return TaskStatus(TaskState.SUCCEEDED, assets=(Asset(f"{base}/r/x", "model"),))


def test_engine_runs_any_declared_flow_including_a_pick(harness, trify) -> None:
    trify.create_task("text_to_3d", {"prompt": "staged"}, task_id="x")
    h = harness()
    h.extra_providers["staged"] = Staged
    Staged.calls = []
    job = Job.new("staged", "TEXT", "a fox")
    h.add(job)
    (job,) = h.wait([job.job_id], states={JobState.AWAITING_PICK} | SETTLED)
    assert job.state == JobState.AWAITING_PICK and len(job.candidates) == 3
    assert all(Path(c).read_bytes() == tiny_png() for c in job.candidates)
    h.engine.pick(job.job_id, 2)
    (job,) = h.wait([job.job_id])
    assert job.state == JobState.READY and job.files[0].endswith("model.glb")
    assert Staged.calls == [
        "upload", "create:images:fk-1", "poll:images", "create:model:fk-1", "picked:candidate-2",
        "poll:model",
    ]  # fmt: skip


def test_provider_module_declares_its_own_facts() -> None:
    from conjure_src.providers import SERVICES, trify3d

    info = SERVICES["trify3d"]
    assert info is trify3d.INFO and not info.idempotent_create and info.job_lifetime == 600
    assert info.rate_rules == (RateRule(600, 3600.0),)
    source = Path(trify3d.__file__).with_name("__init__.py").read_text()
    assert "trify3d.com" not in source  # facts are not duplicated in the registry


def test_engine_never_reaches_into_a_provider() -> None:
    source = (ROOT / "jobs" / "engine.py").read_text()
    assert ".http" not in source.replace("providers.http", "")
    assert "trify" not in source.lower()


def test_cancel_between_dispatch_and_send_sends_nothing(harness, trify) -> None:
    """The worker re-checks the cancel flag right before the paid request."""
    gate = threading.Event()
    h = harness()
    original = h._provider

    def slow_provider(job, on_rate):
        provider = original(job, on_rate)
        check = provider.check

        def held_check(request):
            gate.wait(2)
            return check(request)

        provider.check = held_check
        return provider

    h.engine.provider_for = slow_provider
    (job_id,) = h.submit()
    h.wait([job_id], states={JobState.SUBMITTING})
    h.engine.cancel(job_id)
    gate.set()
    (job,) = h.wait([job_id], states={JobState.CANCELLED})
    time.sleep(0.2)
    assert job.state == JobState.CANCELLED and trify.count("POST") == 0


def test_journal_rows_are_json_clean(harness) -> None:
    h = harness()
    (job,) = h.wait(h.submit())
    files, warnings, options = (
        sqlite3.connect(h.journal.path)
        .execute("SELECT files, warnings, options FROM jobs WHERE job_id = ?", (job.job_id,))
        .fetchone()
    )
    assert json.loads(files) == list(job.files) and json.loads(warnings) == []
    assert json.loads(options) == {}


# -- carried over from engine v1: the journal first, idempotent re-sends, secrets, cancels -----


def test_journal_records_intent_before_the_create_is_sent(harness, trify) -> None:
    trify.inject(delay=0.5, passthrough=True, method="POST")
    h = harness()
    (job_id,) = h.submit()
    time.sleep(0.25)  # the create is on the wire now
    seen = h.journal.get(job_id)
    assert seen.state == JobState.SUBMITTING and seen.task_id is None
    assert h.wait([job_id])[0].state == JobState.READY


def test_a_resumed_unsure_submit_is_not_resent_though_a_key_was_sent(harness, trify) -> None:
    """Trify3D gets an Idempotency-Key, but its page does not promise to honour one."""
    h = harness()
    job = Job.new("trify3d", "TEXT", "a duck")
    http = make_http("trify3d", KEY, trify.url)
    get_provider("trify3d", http).create(job.request(), job.idempotency_key)  # answer lost
    job = job.evolve(state=JobState.SUBMITTING)
    h.journal.save(job)
    h.resume(job)
    (done,) = h.wait([job.job_id])
    assert done.state == JobState.UNSURE and "check its dashboard" in done.message
    assert trify.count("POST") == 1 and trify.charges == 1  # the lost one only


class NotIdempotent(Provider):
    info = ServiceInfo("trify3d", "Plain", "", "", "", capabilities=frozenset({Capability.TEXT}))

    def create(self, request, idempotency_key, stage=""):
        return get_provider("trify3d", self.http).create(request, "")

    def poll(self, task_id, stage=""):
        return get_provider("trify3d", self.http).poll(task_id)


def test_unsure_submit_without_idempotency_is_not_resent(harness, trify) -> None:
    h = harness()
    h.extra_providers["plain"] = NotIdempotent
    job = Job.new("plain", "TEXT", "a duck").evolve(state=JobState.SUBMITTING)
    h.journal.save(job)
    h.jobs[job.job_id] = job
    h.engine.resume(job)
    (done,) = h.wait([job.job_id])
    assert done.state == JobState.UNSURE and "dashboard" in done.message
    assert trify.count("POST") == 0


def test_create_timeout_without_idempotency_fails_asking_to_check(harness, trify) -> None:
    trify.inject(status=504, method="POST")
    h = harness()
    h.extra_providers["plain"] = NotIdempotent
    job = Job.new("plain", "TEXT", "a duck")
    h.add(job)
    (done,) = h.wait([job.job_id])
    assert done.state == JobState.UNSURE and "check its dashboard" in done.message
    assert trify.count("POST") == 1


class Idempotent(NotIdempotent):
    """A service whose page documents that a re-sent key returns the same task."""

    info = ServiceInfo(
        "trify3d", "Keyed", "", "", "", capabilities=frozenset({Capability.TEXT}),
        idempotent_create=True,
    )  # fmt: skip

    def create(self, request, idempotency_key, stage=""):
        return get_provider("trify3d", self.http).create(request, idempotency_key)


def test_create_timeout_with_idempotency_confirms_with_the_same_key(harness, trify) -> None:
    trify.inject(status=504, method="POST")
    h = harness()
    h.extra_providers["keyed"] = Idempotent
    job_id = h.add(Job.new("keyed", "TEXT", "a duck"))
    (done,) = h.wait([job_id], timeout=15)
    keys = {r.headers.get("Idempotency-Key") for r in trify.requests if r.method == "POST"}
    assert done.state == JobState.READY and trify.count("POST") == 2 and len(keys) == 1


def test_a_create_confirmed_again_and_again_stops_at_the_cap(harness, trify) -> None:
    """#20 finding 2: even a service that dedupes is not asked forever."""
    trify.inject(status=504, method="POST", times=100)
    h = harness(backoff_base=0.01)
    h.extra_providers["keyed"] = Idempotent
    job_id = h.add(Job.new("keyed", "TEXT", "a duck"))
    (done,) = h.wait([job_id], timeout=15)
    assert done.state == JobState.UNSURE and "5 tries" in done.message
    assert trify.count("POST") == 5


def test_every_create_is_journaled_before_it_goes_and_with_its_answer(harness, trify) -> None:
    """#20 finding 2: a per-stage record of each create: key, time sent, answer, task id."""
    trify.inject(status=429, headers={"Retry-After": "1"}, method="POST")
    h = harness()
    (job_id,) = h.submit()
    (done,) = h.wait([job_id], timeout=15)
    refused, made = h.journal.get(job_id).creates
    assert (refused.answer, refused.task_id) == (Answer.NOT_MADE, "")
    assert (made.answer, made.task_id) == (Answer.MADE, done.task_id)
    assert refused.key == made.key == done.idempotency_key and made.sent_at >= refused.sent_at
    lost = Job.new("trify3d", "TEXT", "a lost duck")
    trify.inject(status=504, method="POST")
    h.add(lost)
    (unsure,) = h.wait([lost.job_id])
    (sent,) = h.journal.get(lost.job_id).creates
    assert unsure.state == JobState.UNSURE and sent.answer == Answer.UNKNOWN


def test_no_secret_in_logs_or_journal(harness, trify, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="conjure")
    trify.inject(status=401, body={"error": f"key {KEY} revoked"}, method="POST")
    h = harness()
    (done,) = h.wait(h.submit())
    h.engine.shutdown(1.0)
    assert done.state == JobState.FAILED and "***" in done.message
    assert KEY not in caplog.text and KEY not in done.message
    for path in tmp_path.glob("journal.sqlite*"):
        assert KEY.encode() not in path.read_bytes()


def test_cancel_during_download_ends_cancelled_with_no_partial_files(harness, trify, tmp_path):
    trify.polls_to_complete = 1
    trify.inject(delay=1.0, passthrough=True, method="GET", path="/files/", times=2)
    h = harness()
    (job_id,) = h.submit()
    deadline = time.monotonic() + 5
    while not trify.count("GET", "/files/") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert h.engine.cancel(job_id)
    (done,) = h.wait([job_id])
    assert done.state == JobState.CANCELLED
    time.sleep(1.2)
    assert not list((tmp_path / "jobs").rglob("*.part"))


def test_a_bug_in_one_job_fails_it_and_the_engine_goes_on(harness, trify) -> None:
    h = harness()
    original = h._provider

    def flaky(job, on_rate):
        if job.prompt == "boom 0":
            provider = original(job, on_rate)
            provider.flow = lambda request: (None,)  # a broken flow: no step at all
            return provider
        return original(job, on_rate)

    h.engine.provider_for = flaky
    bad, good = h.submit(2, prompt="boom")
    jobs = h.wait([bad, good])
    assert jobs[0].state == JobState.FAILED and "Internal error" in jobs[0].message
    assert jobs[1].state == JobState.READY


# -- a stop while a create is on the wire (issue #20, finding 1) --------------------------------


def test_a_create_answered_while_the_engine_stops_is_journaled_then_polled(harness, trify):
    """Disable or quit while a create is on the wire: its answer (1.5 s late) is awaited and
    journaled, so a resume polls that task; a create still queued is marked not sent."""
    trify.inject(delay=1.5, passthrough=True, method="POST")
    h = harness(workers=1)
    on_wire, queued = h.submit(2)  # one worker: the second create waits behind the first
    h.until(lambda: trify.count("POST") == 1)
    started = time.monotonic()
    h.close()
    assert time.monotonic() - started <= 2.0
    journal = Journal(h.journal_path)
    paid, unsent = journal.get(on_wire), journal.get(queued)
    journal.close()
    assert paid.state == JobState.SUBMITTED and paid.task_id in trify.tasks and paid.paid
    assert unsent.state == JobState.QUEUED and not unsent.task_id and "Not sent" in unsent.message
    again = harness()
    again.resume(paid)
    again.resume(unsent)
    assert [j.state for j in again.wait([on_wire, queued])] == [JobState.READY] * 2
    assert trify.count("POST") == 2 and trify.charges == 2  # one paid task per job


class Reflowed(NotIdempotent):
    """A service whose steps a later release of the add-on changes."""

    steps: tuple[FlowStep, ...] = STANDARD_FLOW

    def flow(self, request):
        return type(self).steps


def test_a_resumed_paid_job_keeps_the_steps_it_started_with(harness, trify) -> None:
    """#20 finding 2: a release that adds a stage must not make a paid job create again."""
    trify.polls_to_complete = 10**6
    h = harness()
    h.extra_providers["reflowed"] = Reflowed
    Reflowed.steps = STANDARD_FLOW
    job_id = h.add(Job.new("reflowed", "TEXT", "a duck"))
    h.wait([job_id], states={JobState.RUNNING})
    h.close()
    Reflowed.steps = (FlowStep(Step.CREATE, "draft"), FlowStep(Step.POLL, "draft"), *STANDARD_FLOW)
    trify.polls_to_complete = 1
    later = harness()
    later.extra_providers["reflowed"] = Reflowed
    later.resume(job_id)
    (done,) = later.wait([job_id])
    assert done.state == JobState.READY and done.flow == STANDARD_FLOW
    assert trify.count("POST") == 1  # the task it paid for, polled to the end
