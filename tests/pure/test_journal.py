"""The journal at the edges (issue #20): two Blenders on one file, a journal that cannot be
written, owner checks on every platform, and the writes that record money synced to disk.

Pure: real engines and journals on one SQLite file, the Trify3D emulator, and fakes for
what another platform would answer.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from harness import SETTLED, EngineHarness

from conjure_src.jobs import journal as journal_module
from conjure_src.jobs import scheduler as scheduler_module
from conjure_src.jobs.journal import HOST, Journal, owner_alive
from conjure_src.jobs.model import Job, JobState
from conjure_src.providers import get_provider, make_http
from conjure_src.providers.base import Provider

KEY = "trf_live_JOURNAL-secret-31"
ELSEWHERE = "Running in another Blender"


class Harness(EngineHarness):
    provider = "trify3d"

    def __init__(self, tmp_path: Path, url: str, **kw: object) -> None:
        self.url = url
        super().__init__(tmp_path, self._provider, **kw)

    def _provider(self, job: Job, on_rate) -> Provider:
        return get_provider(job.provider, make_http("trify3d", KEY, self.url, on_rate=on_rate))


@pytest.fixture
def harness(tmp_path: Path, trify):
    made: list[Harness] = []

    def build(**kw: object) -> Harness:
        h = Harness(tmp_path, trify.url, **kw)
        made.append(h)
        return h

    yield build
    for h in made:
        h.close()


def _read_only(journal: Journal, on: bool = True) -> None:
    """SQLite refuses every write from now on, as with a read-only folder."""
    with journal._lock:
        journal._db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def _scheduler_alive(h: Harness) -> bool:
    name = f"conjure-scheduler-{h.engine._tag}"
    return any(t.name == name and t.is_alive() for t in threading.enumerate())


# -- finding 3: two Blenders, one create -------------------------------------------------------


def test_a_resume_racing_a_submit_never_sends_a_second_create(harness, trify, monkeypatch):
    """Another Blender's Resume lands right after the submitting Blender's first journal
    write: the row must already be leased, so only one of them sends the create."""
    a, b = harness(), harness()
    job = Job.new("trify3d", "TEXT", "raced")
    other_said: list[str] = []

    def wrap(write):
        def hooked(*args, **kw):
            result = write(*args, **kw)
            if not other_said:  # the other Blender resumes between this write and the next
                other_said.append(b.engine.resume(b.journal.get(job.job_id)))
            return result

        return hooked

    for name in ("save", "insert_claimed"):
        if hasattr(a.journal, name):
            monkeypatch.setattr(a.journal, name, wrap(getattr(a.journal, name)))
    a.add(job)
    done = a.wait(job.job_id)
    b.drain(0.5)
    assert trify.count("POST") == 1 and trify.charges == 1
    assert done.state == JobState.READY and other_said == [ELSEWHERE]


def test_a_blender_that_lost_the_lease_never_writes_the_row_again(harness, trify):
    """A row taken over by another Blender (its lease had expired) is not overwritten by the
    old holder: that one stops the job, sends nothing more, and shows it as elsewhere."""
    trify.polls_to_complete = 200  # progress moves every other poll: a write each time
    a = harness()
    job_id = a.submit()
    a.wait(job_id, {JobState.RUNNING})
    other = "otherhost/123/?/t0k3n"
    with a.journal._lock:
        a.journal._db.execute(
            "UPDATE jobs SET owner = ?, lease_until = ?, message = 'theirs' WHERE job_id = ?",
            (other, time.time() + 3600, job_id),
        )
    shown = a.wait_for(job_id, lambda j: j.message == ELSEWHERE, timeout=5)
    polls = trify.count("GET", "/api/")
    a.drain(0.4)
    row = a.journal.get(job_id)
    assert row.message == "theirs" and a.journal.holder(job_id) == other
    assert shown.job_id not in a.engine.live_job_ids()
    assert trify.count("GET", "/api/") <= polls + 1  # at most the poll already on the wire
    assert not a.engine.cancel(job_id)


def test_the_main_thread_still_writes_jobs_this_blender_holds(harness) -> None:
    h = harness()
    job = Job.new("trify3d", "TEXT", "held here")
    h.journal.save(job)
    assert h.journal.claim(job.job_id, h.engine.owner) == ""
    h.journal.save(job.evolve(state=JobState.CANCELLED, message="Cancelled"))
    assert h.journal.get(job.job_id).state == JobState.CANCELLED


# -- finding 4: a journal that cannot be written -----------------------------------------------


def test_a_journal_write_error_stops_jobs_visibly_and_the_scheduler_lives(harness, trify):
    trify.polls_to_complete = 200
    h = harness(max_in_flight=1)
    paid, queued = h.submit(), h.submit()  # one at a time: the second waits its turn
    h.wait(paid, {JobState.RUNNING})
    _read_only(h.journal)
    stalled = h.wait(paid, {JobState.STALLED, JobState.FAILED}, timeout=5)
    failed = h.wait(queued, SETTLED | {JobState.STALLED}, timeout=5)
    assert _scheduler_alive(h)
    assert stalled.state == JobState.STALLED and stalled.task_id  # paid: never dropped
    assert failed.state == JobState.FAILED and not failed.task_id
    for job in (stalled, failed):
        assert "journal" in job.message and "readonly" in job.message
        assert "\n" not in job.message
    assert trify.count("POST") == 1  # the queued job's create was never sent unjournaled
    assert h.journal.get(queued).state == JobState.QUEUED  # as last journaled: resumable
    with pytest.raises(Exception) as refused:
        h.engine.submit(Job.new("trify3d", "TEXT", "more"))
    assert "journal" in str(refused.value) and "\n" not in str(refused.value)
    assert trify.count("POST") == 1
    # Fixed: a resume finds the journal writable again, and new work is taken.
    _read_only(h.journal, on=False)
    h.resume(queued)
    assert h.wait(queued).state == JobState.READY
    h.submit()


def test_a_failed_lease_renewal_leaves_the_scheduler_running(harness, trify, monkeypatch):
    monkeypatch.setattr(scheduler_module, "LEASE_SECONDS", 0.3)  # renewals every 0.1 s
    trify.polls_to_complete = 10_000  # progress moves every 100 polls: few job writes
    h = harness()
    job_id = h.submit()
    h.wait(job_id, {JobState.RUNNING})
    _read_only(h.journal)
    time.sleep(1.0)  # several renewals meet the read-only journal
    assert _scheduler_alive(h)
    with pytest.raises(Exception) as refused:
        h.engine.submit(Job.new("trify3d", "TEXT", "more"))
    assert "journal" in str(refused.value) and "\n" not in str(refused.value)
    polls = trify.count("GET", "/api/")
    time.sleep(1.0)  # each failed renewal holds the scheduler ~0.4 s (its retries)
    assert trify.count("GET", "/api/") > polls  # the paid job is still followed


def test_journal_writes_are_retried_before_they_fail(tmp_path, monkeypatch) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    real = journal._db
    failures = [2]

    class Flaky:
        """The connection, but its first two writes meet a busy database."""

        def execute(self, sql: str, args: tuple = ()):
            if sql.startswith(("INSERT", "UPDATE")) and failures[0]:
                failures[0] -= 1
                raise journal_module.sqlite3.OperationalError("database is locked")
            return real.execute(sql, args)

        def __getattr__(self, name: str):
            return getattr(real, name)

    journal._db = Flaky()
    job = Job.new("trify3d", "TEXT", "busy")
    journal.save(job)
    assert journal.get(job.job_id) is not None and failures == [0]
    journal._db = real
    journal.close()


# -- finding 6: owner checks on every platform ---------------------------------------------------


class FakeKernel32:
    """What Windows' kernel32 answers, for processes given as pid → (exit code, created)."""

    ERROR_INVALID_PARAMETER, ERROR_ACCESS_DENIED = 87, 5

    def __init__(self, processes: dict[int, tuple[int, int]], denied: tuple[int, ...] = ()):
        self.processes, self.denied = processes, denied
        self.error = 0
        self.open_handles: set[int] = set()

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        if pid in self.denied:
            self.error = self.ERROR_ACCESS_DENIED
            return 0
        if pid not in self.processes:
            self.error = self.ERROR_INVALID_PARAMETER
            return 0
        self.open_handles.add(pid + 10_000)
        return pid + 10_000

    def GetLastError(self) -> int:
        return self.error

    def GetExitCodeProcess(self, handle: int, code) -> int:
        code._obj.value = self.processes[handle - 10_000][0]
        return 1

    def GetProcessTimes(self, handle: int, created, exited, kernel, user) -> int:
        created._obj.value = self.processes[handle - 10_000][1]
        return 1

    def CloseHandle(self, handle: int) -> int:
        self.open_handles.discard(handle)
        return 1


def _no_kill(pid: int, sig: int) -> None:
    raise AssertionError("os.kill on Windows sends the process a Ctrl+C")


def test_windows_owner_checks_ask_kernel32_and_never_os_kill(monkeypatch) -> None:
    still_active = 259
    kernel = FakeKernel32({4242: (still_active, 1337), 4343: (0, 99)}, denied=(4444,))
    monkeypatch.setattr(journal_module, "PLATFORM", "win32", raising=False)
    monkeypatch.setattr(journal_module, "_kernel32", lambda: kernel, raising=False)
    monkeypatch.setattr(os, "kill", _no_kill)
    assert owner_alive(f"{HOST}/4242/1337/t") is True
    assert owner_alive(f"{HOST}/4242/1000/t") is False  # the pid was reused
    assert owner_alive(f"{HOST}/4343/99/t") is False  # exited (a handle keeps it listed)
    assert owner_alive(f"{HOST}/4545/7/t") is False  # no such process
    assert owner_alive(f"{HOST}/4444/7/t") is True  # another user's: it exists
    assert not kernel.open_handles  # every handle opened is closed
    assert journal_module.process_facts(4242) == (True, "1337")


def test_windows_without_kernel32_lets_the_lease_decide(monkeypatch, tmp_path) -> None:
    def missing():
        raise OSError("no kernel32 here")

    monkeypatch.setattr(journal_module, "PLATFORM", "win32", raising=False)
    monkeypatch.setattr(journal_module, "_kernel32", missing, raising=False)
    monkeypatch.setattr(os, "kill", _no_kill)
    owner = f"{HOST}/{os.getpid()}/1/t"
    assert owner_alive(owner) is None
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        live, lapsed = Job.new("trify3d", "TEXT", "live"), Job.new("trify3d", "TEXT", "lapsed")
        for job, lease in ((live, 3600.0), (lapsed, -1.0)):
            journal.save(job)
            assert journal.claim(job.job_id, owner, lease) == ""
        assert journal.claim(live.job_id, "me/1/1/x") == owner  # its lease still runs
        assert journal.claim(lapsed.job_id, "me/1/1/x") == ""  # lapsed: taken over
    finally:
        journal.close()


def test_macos_reads_the_start_time_from_ps(monkeypatch) -> None:
    started = {os.getpid(): "Mon_Jun__3_10:11:12_2024"}
    monkeypatch.setattr(journal_module, "PLATFORM", "darwin", raising=False)
    monkeypatch.setattr(
        journal_module, "_ps_start", lambda pid: started.get(pid, "?"), raising=False
    )
    me = os.getpid()
    assert owner_alive(f"{HOST}/{me}/Mon_Jun__3_10:11:12_2024/t") is True
    assert owner_alive(f"{HOST}/{me}/Tue_Jun__4_09:00:00_2024/t") is False  # pid reused
    assert owner_alive(f"{HOST}/{2**22 + 7}/Mon_Jun__3_10:11:12_2024/t") is False  # gone
    started.clear()  # ps could not tell: the pid alone says it lives
    assert owner_alive(f"{HOST}/{me}/Mon_Jun__3_10:11:12_2024/t") is True
    assert journal_module.process_owner().split("/")[2] == "?"


def test_macos_ps_is_asked_in_one_locale_and_time_zone(monkeypatch) -> None:
    calls = []

    def fake_run(argv, **kw):
        calls.append((argv, kw.get("env", {})))

        class Done:
            stdout = "Mon Jun  3 10:11:12 2024\n"

        return Done()

    monkeypatch.setattr(journal_module.subprocess, "run", fake_run)
    assert journal_module._ps_start(4242) == "Mon_Jun_3_10:11:12_2024"
    ((argv, env),) = calls
    assert argv[-2:] == ["-p", "4242"] and env.get("LC_ALL") == "C" and env.get("TZ") == "UTC0"


def test_linux_checks_pid_and_start_time(monkeypatch) -> None:
    monkeypatch.setattr(journal_module, "PLATFORM", "linux", raising=False)
    me = journal_module.process_owner()
    host, pid, started, _ = me.split("/")
    assert (host, pid) == (HOST, str(os.getpid())) and started.isdigit()
    assert owner_alive(me) is True
    assert owner_alive(f"{HOST}/{pid}/{int(started) + 1}/t") is False  # pid reused
    assert owner_alive(f"{HOST}/{2**22 + 7}/1/t") is False
    assert owner_alive(f"elsewhere/{pid}/{started}/t") is None  # another machine: its lease


# -- finding 14: writes that record money reach the disk ----------------------------------------


def test_writes_that_record_money_are_synced_and_others_are_not(harness, trify) -> None:
    h = harness()
    statements: list[str] = []
    h.journal._db.set_trace_callback(statements.append)
    job = h.wait(h.submit())
    h.journal._db.set_trace_callback(None)
    assert job.state == JobState.READY and job.task_id

    def synced(index: int) -> bool:
        before = [s for s in statements[:index] if s.startswith("PRAGMA synchronous")]
        return bool(before) and before[-1].upper().endswith("FULL")

    writes = [i for i, s in enumerate(statements) if s.startswith(("INSERT", "UPDATE jobs SET"))]
    insert = next(i for i in writes if statements[i].startswith("INSERT"))
    task = next(i for i in writes if job.task_id in statements[i])
    assert synced(insert) and synced(task)
    assert not all(synced(i) for i in writes)  # progress and state alone stay cheap
