"""The job session without Blender: a real engine and journal, a Trify3D emulator, and a
host that plays Blender's part (settings, the open file). What the runtime used to decide
inside Blender is asserted here on plain values: request checks, what imports by itself and
what waits for a click, resume refusals, picks, re-imports, removal, the changes a sidebar
would show, and the concurrency a batch needs."""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

import pytest

from conjure_src.jobs.model import ImportPlan, Job, JobState
from conjure_src.jobs.session import (
    NOT_RUNNING,
    READY_TO_CLICK,
    Change,
    ConjureError,
    ServiceSettings,
    Session,
    refinable,
)
from conjure_src.providers.base import GenerationRequest

KEY = "trf_live_SESSION-secret-5"


class Host:
    """Blender's part: a key per service, the network, Concurrent Jobs, the open file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key = KEY
        self.concurrent = 8
        self.file = "/work/scene.blend"

    def service(self, provider: str) -> ServiceSettings:
        key = self.key if provider == "trify3d" else ""
        return ServiceSettings(provider, key, self.url, "environment" if key else "")

    def network(self) -> tuple[str, str]:
        return "", ""

    def max_concurrent_jobs(self) -> int:
        return self.concurrent

    def open_file(self) -> str:
        return self.file


@pytest.fixture
def host(trify) -> Host:
    return Host(trify.url)


@pytest.fixture
def session(tmp_path: Path, host: Host):
    made: list[Session] = []

    def make() -> Session:
        s = Session(tmp_path / "conjure", host, poll_interval=0.02)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _text(prompt: str, **options: object) -> GenerationRequest:
    return GenerationRequest("TEXT", prompt, (), options)


def _until_settled(s: Session, job_ids: list[str], timeout: float = 10.0) -> None:
    """What the runtime's wait() does, minus the import: apply events until no job moves."""
    deadline = time.monotonic() + timeout
    while s.unsettled(job_ids) and not all(s.jobs[i].state == JobState.READY for i in job_ids):
        assert time.monotonic() < deadline, [s.jobs[i].state for i in job_ids]
        s.apply(s.engine.events.get(timeout=1.0))


def test_requests_are_checked_before_a_job_exists(session, host, tmp_path) -> None:
    s = session()
    with pytest.raises(ConjureError, match="Enter a prompt"):
        s.new_job("trify3d", _text("   "))
    with pytest.raises(ConjureError, match="No API key for Ravenra"):
        s.new_job("ravenra", _text("a chair"))
    with pytest.raises(ConjureError, match="Image not found"):
        s.new_job("trify3d", GenerationRequest("IMAGE", "", (str(tmp_path / "none.png"),)))
    with pytest.raises(ConjureError, match="Unknown service"):
        s.new_job("nope", _text("a chair"))
    job = s.new_job("trify3d", _text(" a chair ", _origin_bottom=True, x=""))
    assert job.prompt == "a chair" and dict(job.options) == {}
    assert job.plan == ImportPlan(origin_bottom=True) and job.blend_file == host.file
    assert s.journal.get(job.job_id) is None  # checked, not yet journaled


def test_a_job_runs_to_ready_and_every_change_is_told(session, trify) -> None:
    s = session()
    changes: list[Change] = []
    s.listeners.append(changes.append)
    job_id = s.submit(s.new_job("trify3d", _text("a told chair")))
    _until_settled(s, [job_id])
    assert s.jobs[job_id].state == JobState.READY and s.import_pending()
    states = [c.job.state for c in changes if c.job.job_id == job_id]
    assert states[0] == JobState.QUEUED and states[-1] == JobState.READY
    assert all(c.news and not c.held for c in changes)
    assert trify.count("POST") == 1


def test_only_its_own_file_imports_by_itself_else_it_needs_a_click(session, host) -> None:
    s = session()
    job_id = s.submit(s.new_job("trify3d", _text("a chair for this file")))
    _until_settled(s, [job_id])
    job = s.jobs[job_id]
    assert s.in_its_file(job)
    s.file_loaded()  # another .blend was opened
    assert not s.in_its_file(job)
    s.needs_click(job)
    held = s.journal.get(job_id)
    assert held.needs_click and held.message == READY_TO_CLICK  # journaled: a flag, not text
    assert s.unsettled([job_id]) == [] and not s.import_pending() and s.has_ready()


def test_resume_is_refused_for_another_key_and_held_with_why(session, host, trify) -> None:
    s = session()
    trify.polls_to_complete = 10**6
    job_id = s.submit(s.new_job("trify3d", _text("a chair from before")))
    deadline = time.monotonic() + 10
    while not (s.journal.get(job_id) or Job("", "", "")).task_id:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    s.close()
    host.key = "trf_live_another"
    later = session()
    changes: list[Change] = []
    later.listeners.append(changes.append)
    assert later.resume() == []
    (change,) = [c for c in changes if c.job.job_id == job_id]
    assert change.held and "another Trify3D API key" in change.job.message
    assert trify.count("POST") == 1  # nothing sent again


def test_history_is_shown_held_and_is_no_news(session, trify) -> None:
    s = session()
    trify.polls_to_complete = 10**6
    s.submit(s.new_job("trify3d", _text("an unfinished chair")))
    s.close()
    later = session()
    changes: list[Change] = []
    later.listeners.append(changes.append)
    assert later.show_history() == 1
    (change,) = changes
    assert change.held and not change.news and change.job.message == NOT_RUNNING


def test_reimport_needs_files_and_remove_forgets_row_and_folder(session, trify) -> None:
    s = session()
    job_id = s.submit(s.new_job("trify3d", _text("a chair to forget")))
    _until_settled(s, [job_id])
    assert s.reimport(job_id) == "Only an imported job can be imported again"
    assert s.remove(job_id) == "Cancel it first: it has not finished"
    imported = s.record(s.jobs[job_id].evolve(state=JobState.IMPORTED))  # as the runtime does
    assert s.reimport(job_id) == ""
    assert s.jobs[job_id].state == JobState.READY and trify.count("POST") == 1
    s.record(imported)
    gone: list[Change] = []
    s.listeners.append(gone.append)
    assert s.folder(job_id).is_dir()
    assert s.remove(job_id) == ""
    assert not s.folder(job_id).exists() and s.journal.get(job_id) is None
    assert [c.gone for c in gone] == [True]


def test_cancel_of_a_ready_job_is_journaled_here(session) -> None:
    s = session()
    job_id = s.submit(s.new_job("trify3d", _text("a chair nobody wants")))
    _until_settled(s, [job_id])
    assert s.cancel(job_id)
    assert s.journal.get(job_id).state == JobState.CANCELLED
    assert not s.cancel(job_id)


def test_rerun_keeps_options_and_plan_and_refine_needs_a_refining_service(session) -> None:
    s = session()
    plan = ImportPlan(target_height=2.0, mark_asset=True)
    first = s.new_job("trify3d", _text("a chair again", mode="fast"), plan)
    s.submit(first)
    _until_settled(s, [first.job_id])
    again = s.rerun(first.job_id)
    assert again.job_id != first.job_id and again.plan == plan
    assert dict(again.options) == {"mode": "fast"}
    with pytest.raises(ConjureError, match="has not finished"):
        s.refinement(first.job_id)
    s.record(s.jobs[first.job_id].evolve(state=JobState.IMPORTED))
    with pytest.raises(ConjureError, match="cannot refine"):
        s.refinement(first.job_id)
    assert not refinable(s.jobs[first.job_id])
    with pytest.raises(ConjureError, match="Select an asset"):
        s.refinement("")


def test_a_preview_is_refinable_and_its_refinement_names_the_parent() -> None:
    preview = Job.new("ravenra", "TEXT", "a chair", options={"mode": "preview"})
    done = preview.evolve(state=JobState.IMPORTED, task_id="t-1")
    assert refinable(done) and not refinable(preview)
    textured = done.evolve(options={"mode": "textured"})
    assert not refinable(textured)


def test_a_batch_floor_outlives_a_changed_preference(session, host) -> None:
    s = session()
    s.in_flight_floor = 40
    s.apply_concurrency()
    host.concurrent = 3  # the person edits Concurrent Jobs while the batch runs
    s.apply_concurrency()
    s.submit(s.new_job("trify3d", _text("a chair in a batch")))  # the engine takes commands
    deadline = time.monotonic() + 5
    while s.engine.max_in_flight != 40:
        assert time.monotonic() < deadline, s.engine.max_in_flight
        time.sleep(0.01)


def test_a_job_held_by_another_blender_is_shown_never_imported_here(session) -> None:
    """#20 finding 7: a downloaded job whose lease another Blender holds stays its own."""
    mine = session()
    job_id = mine.submit(mine.new_job("trify3d", _text("a chair of another Blender")))
    _until_settled(mine, [job_id])
    other = session()  # a second Blender on the same journal
    changes: list[Change] = []
    other.listeners.append(changes.append)
    assert other.resume() == []
    assert other.ready() == [] and not other.has_ready() and not other.import_pending()
    assert not other.cancel(job_id)  # its row is not ours to change
    assert other.latest(job_id).message == "Running in another Blender"
    assert [c.held for c in changes if c.job.job_id == job_id] == [True]
    assert mine.journal.get(job_id).state == JobState.READY


def test_an_import_that_ended_blender_waits_for_a_click_next_time(session, trify) -> None:
    """#20 finding 13: a model whose import crashed Blender must not crash every start."""
    first = session()
    job_id = first.submit(first.new_job("trify3d", _text("a chair that crashes Blender")))
    _until_settled(first, [job_id])
    assert first.imports_now(first.jobs[job_id], object_mode=True)
    first.record(first.jobs[job_id].evolve(state=JobState.IMPORTING, import_tries=1))
    first.close()  # … and Blender is gone in the middle of that import
    later = session()
    assert later.resume() == [job_id]
    (job,) = later.ready()
    assert job.needs_click and "closed while importing" in job.message
    assert not later.imports_now(job, object_mode=True) and not later.import_pending()
    assert trify.count("POST") == 1


def test_status_options_read_as_they_always_did() -> None:
    """api.status / `conjure jobs --json`: the add-on's notes and what the engine learned
    still show in `options` under their old names; a script's own "_" note stays, unsent."""
    notes = {"_origin_bottom": "true", "_target_height": "1.5", "_batch_row": "r1", "_mine": 3}
    job = Job.new("voxelai", "TEXT", "a fox", options={"resolution": 32, **notes})
    assert job.plan == ImportPlan(origin_bottom=True, target_height=1.5, batch_row="r1")
    assert dict(job.request().options) == {"resolution": 32}  # notes never leave the machine
    job = job.evolve(candidates=("/j/c-0.png", "/j/c-1.png"), picked_path="/j/c-1.png",
                     previous_task_id="t-9")  # fmt: skip
    assert job.status()["options"] == {
        "resolution": 32, "_origin_bottom": True, "_target_height": 1.5, "_batch_row": "r1",
        "_mine": 3, "pick": 1, "picked_path": "/j/c-1.png", "previous_task_id": "t-9",
    }  # fmt: skip


# -- issue #20: secrets and a journal that cannot be written ------------------------------------


def test_access_never_shows_its_key() -> None:
    from conjure_src.jobs.session import _Access

    access = _Access(KEY, "http://me:proxy-pass@proxy:3128", "/etc/ca.pem")
    assert KEY not in repr(access) and KEY not in str(access) and "proxy-pass" not in repr(access)
    built = KeyError(("trify3d", "https://trify3d.com", access))  # as a missing client says
    assert KEY not in str(built) and KEY not in f"no client for {access}"
    assert "/etc/ca.pem" in repr(access)


def test_submit_refuses_in_one_line_while_the_journal_cannot_be_written(session, trify) -> None:
    s = session()
    trify.polls_to_complete = 200
    changes: list[Change] = []
    s.listeners.append(changes.append)
    first = s.submit(s.new_job("trify3d", _text("a chair before the disk filled")))
    deadline = time.monotonic() + 10
    while s.jobs[first].state not in (JobState.RUNNING, JobState.STALLED):
        assert time.monotonic() < deadline
        s.apply(s.engine.events.get(timeout=1.0))
    with s.journal._lock:
        s.journal._db.execute("PRAGMA query_only = ON")  # as a read-only folder would
    while s.jobs[first].state != JobState.STALLED:
        assert time.monotonic() < deadline, s.jobs[first]
        s.apply(s.engine.events.get(timeout=1.0))
    assert "journal" in s.jobs[first].message
    job = s.new_job("trify3d", _text("one more chair"))
    with pytest.raises(ConjureError) as refused:
        s.submit(job)
    assert "journal" in str(refused.value) and "\n" not in str(refused.value)
    assert job.job_id not in s.jobs and changes[-1].gone  # not shown as if it were running
    assert trify.count("POST") == 1


def test_a_request_left_hanging_at_close_keeps_nothing_of_the_session(tmp_path, host, trify):
    """A worker stuck in a request outlives Python's teardown. bpy 4.5 hangs at exit when it
    outlives it too, and a session reaches bpy through its host: so once closed, nothing a
    worker holds (stuck or idle) may reach the session."""
    trify.inject(delay=5.0, passthrough=True, method="GET")
    s = Session(tmp_path / "conjure", host, poll_interval=0.02)
    s.submit(s.new_job("trify3d", _text("a stuck lamp")))
    deadline = time.monotonic() + 10
    while trify.count("GET") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    s.close()
    gone = weakref.ref(s)
    del s
    gc.collect()
    assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
