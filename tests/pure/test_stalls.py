"""Paid jobs at the edges (issue #20, findings 9, 10 and 11), against the Trify3D emulator.

A paid job stalls on trouble that is not the service's answer, with a true one-line reason and
its next try, and goes on by itself once the trouble is gone: a full disk, a folder it may not
write, a job folder removed (9); a server that trickles a download, which the download's
deadlines cut short, while cancel and shutdown interrupt it at once (10). The service's
documented job lifetime ends it whatever its polls answer, failed ones included (11).
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from harness import SETTLED, EngineHarness, harness_fixture

from conjure_src.jobs.model import Job, JobState
from conjure_src.providers import get_provider, http, make_http
from conjure_src.providers.base import Provider
from emulators.trify3d import Trify3DEmulator

KEY = "trf_live_STALLS-secret-31"
POLL = "/api/v1/generations/"


class Harness(EngineHarness):
    """Trify3D jobs; `downloads` records when each download started and ended."""

    provider = "trify3d"

    def __init__(self, tmp_path: Path, url: str, deadlines=None, **kw: object) -> None:
        self.url, self.deadlines = url, deadlines
        self.downloads: list[tuple[float, float]] = []
        super().__init__(tmp_path, self._provider, **kw)

    def _provider(self, job: Job, on_rate) -> Provider:
        extra = {"deadlines": self.deadlines} if self.deadlines else {}
        provider = get_provider(
            "trify3d", make_http("trify3d", KEY, self.url, on_rate=on_rate, **extra)
        )
        download = provider.download

        def timed(url: str, dest: str, cancelled) -> int:
            started = time.monotonic()
            try:
                return download(url, dest, cancelled)
            finally:
                self.downloads.append((started, time.monotonic()))

        provider.download = timed  # type: ignore[method-assign]
        return provider


harness = harness_fixture(Harness, emulator="trify")


def _stalled(h: Harness, job_id: str, timeout: float = 10.0) -> Job:
    return h.wait(job_id, {JobState.STALLED} | SETTLED, timeout)


# -- 9. local disk trouble stalls a paid job with the true reason -----------------------------


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EACCES, errno.ENOENT], ids=["full", "forbidden", "removed"]
)
def test_disk_trouble_while_downloading_stalls_then_goes_on(
    harness, trify, tmp_path, monkeypatch, code
):
    trouble = threading.Event()
    trouble.set()

    def failing_open(file, mode="r", *args, **kw):
        if trouble.is_set() and "w" in mode and str(file).endswith(".part"):
            raise OSError(code, os.strerror(code), str(file))
        return open(file, mode, *args, **kw)

    monkeypatch.setattr(http, "open", failing_open, raising=False)
    h = harness()
    job_id = h.submit()
    job = _stalled(h, job_id)
    folder = tmp_path / "jobs" / job_id
    assert job.state == JobState.STALLED, job.message
    assert job.message.startswith(f"Cannot write the download to {folder}: {os.strerror(code)}")
    assert " — next try at " in job.message and "\n" not in job.message
    assert h.journal.get(job_id).state == JobState.STALLED
    trouble.clear()
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert trify.count("POST") == 1 and trify.charges == 1


def test_a_job_folder_that_cannot_be_made_stalls_then_goes_on(
    harness, trify, tmp_path, monkeypatch
):
    jobs_root, make = tmp_path / "jobs", Path.mkdir
    trouble = threading.Event()
    trouble.set()

    def mkdir(self: Path, *args, **kw) -> None:
        if trouble.is_set() and jobs_root in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        make(self, *args, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    h = harness()
    job_id = h.submit()
    job = _stalled(h, job_id)
    assert job.state == JobState.STALLED, job.message
    assert job.message.startswith(f"Cannot write the download to {jobs_root / job_id}: Permission")
    trouble.clear()
    assert h.wait(job_id).state == JobState.READY
    assert trify.count("POST") == 1


def test_a_job_folder_removed_while_downloading_stalls_then_goes_on(harness, trify, tmp_path):
    trify.inject(trickle=0.02, passthrough=True, method="GET", path="/files/", times=2)
    h = harness()
    job_id = h.submit()
    folder = tmp_path / "jobs" / job_id
    h.until(lambda: len(list(folder.glob("*.part"))) == 2, timeout=10)  # both on their way
    shutil.rmtree(folder)  # the user cleans up while the files arrive
    job = _stalled(h, job_id)
    assert job.state == JobState.STALLED, job.message
    assert job.message.startswith(f"Cannot write the download to {folder}: No such file")
    job = h.wait(job_id)
    assert job.state == JobState.READY and all(Path(f).is_file() for f in job.files)
    assert trify.count("POST") == 1


# -- 10. downloads have deadlines; cancel and shutdown interrupt them --------------------------


def _downloading(h: Harness, trify: Trify3DEmulator, job_id: str) -> None:
    h.until(lambda: trify.count("GET", "/files/") >= 2, timeout=10)
    time.sleep(0.3)  # the headers are in: the bodies are trickling


def test_a_trickling_download_hits_its_deadline_and_the_job_stalls_then_goes_on(harness, trify):
    trify.inject(trickle=0.2, passthrough=True, method="GET", path="/files/", times=2)
    h = harness(deadlines=http.Deadlines(idle=0.5))
    job_id = h.submit()
    job = _stalled(h, job_id)
    assert job.state == JobState.STALLED, job.message
    assert "the download made no progress for 0.5 s — next try at" in job.message
    assert all(end - start < 2.0 for start, end in h.downloads)  # 72 bytes would take 14 s
    job = h.wait(job_id)
    assert job.state == JobState.READY, job.message
    assert trify.count("POST") == 1


def test_cancel_interrupts_a_trickling_download_at_once(harness, trify):
    trify.inject(trickle=0.2, passthrough=True, method="GET", path="/files/", times=2)
    h = harness()
    job_id = h.submit()
    _downloading(h, trify, job_id)
    cancelled = time.monotonic()
    assert h.engine.cancel(job_id)
    assert h.wait(job_id, {JobState.CANCELLED}, 1.0).state == JobState.CANCELLED
    h.until(lambda: len(h.downloads) == 2, timeout=5)
    assert [end - cancelled < 1.0 for _, end in h.downloads] == [True, True]


def test_shutdown_is_not_held_by_a_trickling_download(harness, trify):
    trify.inject(trickle=0.2, passthrough=True, method="GET", path="/files/", times=2)
    h = harness()
    job_id = h.submit()
    _downloading(h, trify, job_id)
    stopped = time.monotonic()
    h.engine.shutdown(1.0)
    assert time.monotonic() - stopped < 1.5
    deadline = time.monotonic() + 5
    while (len(h.downloads) < 2 or h.engine.worker_count()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [end - stopped < 1.0 for _, end in h.downloads] == [True, True]  # workers freed
    assert h.engine.worker_count() == 0 and time.monotonic() - stopped < 2.0


# -- 11. the job lifetime holds whatever the polls answer ---------------------------------------


@pytest.mark.parametrize("trouble", ["502", "429", "unreachable"])
def test_polls_that_keep_failing_past_the_lifetime_end_the_job(harness, trify, trouble):
    task = trify.create_task("text_to_3d", {"prompt": "a chair"})
    if trouble == "unreachable":
        trify.stop()
    else:
        headers = {"Retry-After": "1"} if trouble == "429" else {}
        trify.inject(status=int(trouble), headers=headers, method="GET", path=POLL, times=10_000)
    h = harness()
    paid_at = time.time() - 3600  # an hour ago: past Trify3D's 10 minutes times 1.5, plus 1
    job = Job.new("trify3d", "TEXT", "a chair").evolve(
        task_id=task, paid_at=paid_at, step=1, state=JobState.RUNNING
    )
    h.journal.save(job)
    h.resume(job)
    done = h.wait(job.job_id, SETTLED, timeout=5)
    assert done.state == JobState.FAILED, done.message
    assert done.message == "No result within Trify3D's 10-minute job lifetime"
    assert h.journal.get(job.job_id).state == JobState.FAILED
