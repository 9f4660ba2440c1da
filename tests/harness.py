"""One engine harness for the pure engine tests: a real Engine on a Journal in tmp_path, its
jobs made by a provider factory (usually one talking HTTP to an emulator), and its events
collected as they come.

Each test module subclasses `EngineHarness` with its service's provider and defaults, and
gets its `harness` fixture from `harness_fixture`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from conjure_src.jobs.engine import Engine
from conjure_src.jobs.journal import Journal, process_owner
from conjure_src.jobs.model import FINISHED, Job, JobState
from conjure_src.providers.base import Provider

SETTLED = FINISHED | {JobState.READY}

ProviderFactory = Callable[[Job, Any], Provider]


class EngineHarness:
    """An engine on a journal in tmp_path whose jobs get their provider from a factory
    `(job, on_rate) -> Provider`; `jobs` holds each job's latest event, `seen` all of them."""

    provider = ""  # the service name `submit` gives its jobs
    prompt = "a chair"  # the prompt `submit` uses when none is given

    def __init__(self, tmp_path: Path, provider_factory: ProviderFactory, **kw: Any) -> None:
        self.journal_path = tmp_path / "journal.sqlite"
        self.journal = Journal(self.journal_path)
        kw.setdefault("poll_interval", 0.02)
        kw.setdefault("backoff_base", 0.05)
        self.engine = Engine(
            self.journal,
            provider_factory,
            jobs_root=tmp_path / "jobs",
            owner=kw.pop("owner", None) or process_owner(),
            **kw,
        )
        self.jobs: dict[str, Job] = {}
        self.seen: dict[str, list[Any]] = {}
        self._closed = False

    # -- sending ----------------------------------------------------------------------------

    def add(self, job: Job) -> str:
        """Submit a job already made; its events are collected from now on."""
        self.jobs[job.job_id] = job
        self.engine.submit(job)
        return job.job_id

    def submit(self, source: str = "TEXT", prompt: str | None = None, images=(), **options) -> str:
        prompt = self.prompt if prompt is None else prompt
        images = tuple(str(p) for p in images)
        return self.add(Job.new(self.provider, source, prompt, images, options))

    def run(self, source: str = "TEXT", prompt: str | None = None, images=(), **options) -> Job:
        return self.wait(self.submit(source, prompt, images, **options))

    def resume(self, job: Job | str) -> None:
        """Resume a job (or the journal's copy of a job id); the engine must take it."""
        if isinstance(job, str):
            found = self.journal.get(job)
            assert found is not None
            job = found
        self.jobs[job.job_id] = job
        assert self.engine.resume(job) == ""

    # -- watching ---------------------------------------------------------------------------

    def record(self, job: Job) -> Any:
        """What `seen` keeps of each event (the job itself, unless a module wants less)."""
        return job

    def drain(self, seconds: float = 0.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                job = self.engine.events.get(timeout=max(deadline - time.monotonic(), 0.001))
            except Exception:
                return
            self.jobs[job.job_id] = job
            self.seen.setdefault(job.job_id, []).append(self.record(job))

    def until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done():
            self.drain(0.02)

    def wait_for(self, job_id: str, done: Callable[[Job], bool], timeout: float = 10.0) -> Job:
        self.until(lambda: done(self.jobs[job_id]), timeout)
        return self.jobs[job_id]

    def wait(self, job_id: str, states: Iterable[JobState] = SETTLED, timeout=10.0) -> Job:
        wanted = set(states)
        return self.wait_for(job_id, lambda j: j.state in wanted, timeout)

    def states(self, job_id: str) -> list[JobState]:
        return [j.state for j in self.seen.get(job_id, [])]

    def messages(self, job_id: str) -> list[str]:
        return [j.message for j in self.seen.get(job_id, [])]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.engine.shutdown(1.0)
            self.journal.close()


def files_by_role(job: Job) -> dict[str, Path]:
    """The job's files by role (the engine names them `<role>[-n].<format>`)."""
    return {Path(f).stem.split("-")[0]: Path(f) for f in job.files}


class StubHttp:
    """Answers every call with one body, to test shapes an emulator does not make."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def get_json(self, path: str) -> Any:
        return self.answer

    def post_json(self, path: str, body: dict, idempotency_key: str | None = None) -> Any:
        return self.answer

    def redact(self, text: str) -> str:
        return text


def harness_fixture(make: Callable[..., EngineHarness], emulator: str = "emu"):
    """A `harness` fixture: a factory `harness(**kw)` building `make(tmp_path, url, **kw)`
    against the emulator fixture named `emulator`; every harness made is closed after."""

    @pytest.fixture
    def harness(tmp_path: Path, request: pytest.FixtureRequest):
        url = request.getfixturevalue(emulator).url
        made: list[EngineHarness] = []

        def build(**kw: Any) -> EngineHarness:
            h = make(tmp_path, url, **kw)
            made.append(h)
            return h

        yield build
        for h in made:
            h.close()

    return harness
