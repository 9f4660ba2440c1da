"""One Blender session's jobs, without Blender: request checks, submit, resume, cancel, pick,
re-import, re-run, reuse, remove, housekeeping, and the keys and HTTP clients workers use.

The program around it (Blender: `runtime.py`) passes in a `Host` that reads settings and
names the open file, applies engine events on its main thread and imports ready jobs. Every
change a person may see goes out once, as a `Change`, to `listeners` (the sidebar's mirror).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..providers import SERVICES, get_provider, make_http
from ..providers.base import Capability, GenerationRequest, Provider, is_url
from ..providers.errors import ProviderError, RateNote
from ..providers.http import HttpClient
from .engine import HELD_ELSEWHERE, Engine
from .journal import Journal, JournalWriteError, process_owner
from .model import (
    LIVE,
    ImportPlan,
    Job,
    JobState,
    files_exist,
    key_fingerprint,
    split_notes,
)
from .spend import PriceBook

KEPT_FINISHED = 20  # finished jobs the sidebar keeps showing; the journal keeps them all
NOT_RUNNING = "Not running — Resume continues it (nothing is paid again)"
READY_TO_CLICK = "Ready — Import"  # the message of a job that `needs_click`
SOURCES = ("TEXT", "IMAGE", "MULTIVIEW")


class ConjureError(Exception):
    """What a script or the UI is told: one line, never a key."""


@dataclass(frozen=True)
class ServiceSettings:
    """What a worker needs to talk to one service: plain values, safe to hand to threads."""

    provider: str
    api_key: str
    base_url: str
    key_source: str  # "environment", "preferences" or "" when missing

    def __repr__(self) -> str:  # never let the key reach a log through repr()
        return (
            f"ServiceSettings(provider={self.provider!r}, base_url={self.base_url!r}, "
            f"key_source={self.key_source!r})"
        )


class Host(Protocol):
    """What a session asks of the program it runs in, on its main thread."""

    def service(self, provider: str) -> ServiceSettings: ...

    def network(self) -> tuple[str, str]:
        """(proxy URL, CA bundle path), '' when unset."""
        ...

    def max_concurrent_jobs(self) -> int: ...

    def open_file(self) -> str:
        """The open .blend ('' when unsaved): a job imports by itself only into its own."""
        ...


@dataclass(frozen=True)
class Change:
    """A job as a person should now see it."""

    job: Job
    held: bool = False  # in the journal, but not running in this Blender
    news: bool = True  # worth a report (history shown at start is not)
    gone: bool = False  # forgotten: its line goes


@dataclass(frozen=True)
class _Access:
    """A job's key and network settings, captured on the main thread, used by workers."""

    api_key: str
    proxy: str
    ca_bundle: str

    def __repr__(self) -> str:  # no key (nor a proxy's password) in a log or a message
        proxy = "<set>" if self.proxy else ""
        return f"_Access(api_key=<hidden>, proxy={proxy!r}, ca_bundle={self.ca_bundle!r})"


def request_problem(settings: ServiceSettings, request: GenerationRequest) -> str:
    """'' when the request can be sent, else the one line that says what to fix."""
    info = SERVICES[settings.provider]
    source, prompt, image_paths = request.source, request.prompt, request.image_paths
    if not settings.api_key:
        return f"No API key for {info.name}: add one in preferences or set {info.env_key}"
    if source not in SOURCES:
        return f"Unknown source {source!r}: use TEXT, IMAGE or MULTIVIEW"
    if source == "TEXT" and not prompt.strip():
        return "Enter a prompt describing what to generate"
    if source == "IMAGE" and len(image_paths) != 1:
        return "Choose an image to generate from"
    if source == "MULTIVIEW" and len(image_paths) < 2:
        return "Multiview needs at least two images"
    for path in image_paths:
        if is_url(path) and info.image_input == "file":
            return f"{info.name} needs a local image file, not a URL: {path[:80]}"
        if not is_url(path) and info.image_input == "url":
            return f"{info.name} takes an image URL (https://…), not a local file: {path}"
        if not is_url(path) and not os.path.isfile(path):
            return f"Image not found: {path}"
    return ""


def server_face_limit(
    provider: str, options: dict[str, object], plan: ImportPlan | None
) -> dict[str, object]:
    """`options`, with the service's own face limit set to the plan's face budget when the
    service has one that takes it (and the request did not set it): the service makes the
    model that small, rather than Decimate afterwards."""
    name = SERVICES[provider].face_limit_option
    spec = next((s for s in SERVICES[provider].options if s.name == name), None)
    budget = plan.max_faces if plan is not None else 0
    if spec is None or not budget or name in options or not spec.lo <= budget <= spec.hi:
        return options
    return {**options, name: budget}


def refinable(job: Job) -> bool:
    """A finished job whose service can refine it into a better model (a new paid job)."""
    done = job.state == JobState.IMPORTED and bool(job.task_id)
    return done and _rules(job.provider).can_refine(job.request())


def parent_task(job: Job) -> str:
    """The task a job's result grew from: its own earlier stage, or what it refines."""
    return job.previous_task_id or _rules(job.provider).parent_task(job.request())


def _waits_for_click(job: Job) -> bool:
    return job.state == JobState.READY and job.needs_click


def _after_a_crash(job: Job) -> Job:
    """A job left importing: Blender ended during its import, perhaps because of it. It
    waits for the person's Import rather than crashing every start."""
    if job.state != JobState.IMPORTING:
        return job
    message = f"Blender closed while importing this ({job.import_tries}x): Import to try again"
    return job.evolve(state=JobState.READY, needs_click=True, message=message)


def _rules(provider: str) -> Provider:
    """A service's checks, which send nothing: no HTTP client needed."""
    return get_provider(provider, None)  # type: ignore[arg-type]


class Session:
    def __init__(
        self,
        root: Path,
        host: Host,
        *,
        keep_days: float = 30.0,
        poll_interval: float | None = None,
    ) -> None:
        self.root = root
        self.host = host
        self.journal = Journal(root / "journal.sqlite")
        self.owner = process_owner()
        self.jobs: dict[str, Job] = {}  # the jobs this session follows, newest word on each
        self.held: dict[str, Job] = {}  # in the journal, not run here; shown with why
        self.listeners: list[Callable[[Change], None]] = []
        self.in_flight_floor = 0  # a batch raises it: all its rows run at once
        self._file_generation = 0  # +1 on every file load: a job imports into its own file
        self._born_in: dict[str, int] = {}  # job id → file generation it was started in
        self._access: dict[str, _Access] = {}
        self._clients: dict[tuple[str, str, _Access], HttpClient] = {}
        self._prices: PriceBook | None = None
        self.engine = Engine(
            self.journal,
            self._provider_for,
            jobs_root=root / "jobs",
            owner=self.owner,
            max_in_flight=host.max_concurrent_jobs(),
            poll_interval=poll_interval,
        )
        self.prune(keep_days)

    # -- starting ------------------------------------------------------------------------------

    def new_job(
        self, provider: str, request: GenerationRequest, plan: ImportPlan | None = None
    ) -> Job:
        """Check a request and make its job; raises ConjureError with one line. Options
        left empty are the service's defaults: not sent."""
        if provider not in SERVICES:
            raise ConjureError(f"Unknown service {provider!r}: use one of {', '.join(SERVICES)}")
        settings = self.host.service(provider)
        problem = request_problem(settings, request)
        if problem:
            raise ConjureError(problem)
        options = {k: v for k, v in request.options.items() if v not in ("", None)}
        job = Job.new(
            provider,
            request.source,
            request.prompt.strip(),
            tuple(request.image_paths),
            server_face_limit(provider, options, plan),
            plan,
            key_fingerprint=key_fingerprint(settings.api_key),
            base_url=settings.base_url,
            blend_file=self.host.open_file(),
        )
        try:  # the service's own rules (options, ranges, files): refused before journaling
            _rules(provider).check(job.request())
        except ProviderError as exc:
            raise ConjureError(str(exc)) from None
        return job

    def submit(self, job: Job) -> str:
        self._follow(job)
        try:
            self.engine.submit(job)
        except JournalWriteError as exc:  # not journaled, so nothing is sent for it
            self._unfollow(job)
            raise ConjureError(f"{exc}: no new jobs until it is fixed") from None
        return job.job_id

    def refinement(self, job_id: str) -> Job:
        """A new job refining finished job `job_id` into a better model (paid again)."""
        job = self.latest(job_id) if job_id else None
        if job is None:
            raise ConjureError("Select an asset Conjure imported, or name a job, to refine")
        if job.state != JobState.IMPORTED or not job.task_id:
            raise ConjureError(f"{job.label} has not finished; refine it once it is imported")
        if Capability.REFINE not in SERVICES[job.provider].capabilities:
            raise ConjureError(f"{SERVICES[job.provider].name} cannot refine a model")
        options = _rules(job.provider).refine_options(job.task_id)
        request = GenerationRequest("TEXT", job.prompt, options=options)
        return self.new_job(job.provider, request)

    def rerun(self, job_id: str) -> Job:
        """A new job asking the same of the same service (a new, paid generation)."""
        job = self.latest(job_id)
        if job is None:
            raise ConjureError("That job is no longer in the journal")
        asked = GenerationRequest(job.source, job.prompt, job.image_paths, job.options)
        return self.new_job(job.provider, asked, job.plan)

    def resume(self) -> list[str]:
        """Continue every unfinished job of the journal that this Blender may take."""
        started = []
        for job in self.journal.unfinished():
            if job.job_id in self.engine.live_job_ids() or self._is_pending_import(job):
                continue
            reason = self._resume_problem(job)
            if reason:
                self._hold(job, reason)
                continue
            if job.state in (JobState.READY, JobState.IMPORTING) and files_exist(job.files):
                try:  # downloaded: import here
                    reason = HELD_ELSEWHERE if self.journal.claim(job.job_id, self.owner) else ""
                except JournalWriteError as exc:
                    reason = str(exc)
                if reason:
                    self._hold(job, reason)
                    continue
                self._remember(_after_a_crash(job))
                started.append(job.job_id)
                continue
            self._remember(job)
            reason = self.engine.resume(job)
            if reason:
                self._hold(job, reason)
                continue
            started.append(job.job_id)
        return started

    def reuse(self, job_ids: Iterable[str]) -> None:
        """Jobs a batch re-run finds in the journal: imported ones are imported again from
        their files (or, if those are gone, fetched again by polling: never a new create);
        unfinished ones are resumed."""
        for job_id in job_ids:
            job = self.latest(job_id)
            if job is None or job.job_id in self.engine.live_job_ids():
                continue
            if job.finished and job.state != JobState.IMPORTED:
                continue  # it ended so (an unsure create above all): never sent again here
            if job.state == JobState.IMPORTED:
                job = job.evolve(state=JobState.READY, objects=(), message="Importing again")
            self._follow(job)
            if job.state == JobState.READY and files_exist(job.files):
                self.record(job)
            elif self.engine.resume(job):
                self._hold(job, HELD_ELSEWHERE)

    def reimport(self, job_id: str) -> str:
        """Import a finished job's files again (a new copy; nothing is sent); '' or why not."""
        job = self.latest(job_id)
        if job is None or job.state != JobState.IMPORTED:
            return "Only an imported job can be imported again"
        if not files_exist(job.files):
            return "Its downloaded files are gone (cleared); Re-run generates it again"
        self._follow(job.evolve(state=JobState.READY, message="Importing again"))
        return ""

    def file_loaded(self) -> None:
        """Another .blend replaced the open one: running jobs no longer import by themselves."""
        self._file_generation += 1

    def show_history(self, limit: int = KEPT_FINISHED) -> int:
        """Show the journal's recent jobs: finished ones as they ended, unfinished ones not
        running here with Resume (old news: nothing reported). Returns how many are unfinished."""
        waiting = 0
        live = self.engine.live_job_ids()
        for job in reversed(self.journal.recent(limit)):
            if job.job_id in self.jobs or job.job_id in live:
                continue
            shown = job if job.finished else job.evolve(message=NOT_RUNNING)
            self._notify(Change(shown, held=not job.finished, news=False))
            waiting += 0 if job.finished else 1
        return waiting

    @property
    def prices(self) -> PriceBook:
        """The last charge of each kind of job and each service's last balance (read from
        the journal when first asked, then kept current by every job this session follows)."""
        if self._prices is None:
            self._prices = PriceBook(self.journal.recent(1_000_000))
        return self._prices

    # -- while jobs run ------------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        if self.engine.cancel(job_id):
            return True
        job = self.jobs.get(job_id)
        if job is None or job.finished:
            return False
        holder = self.journal.holder(job_id)
        if holder and holder != self.owner:
            return False  # another Blender runs it: its row is not ours to change
        self.record(job.evolve(state=JobState.CANCELLED, message="Cancelled"))  # e.g. Ready
        return True

    def pick(
        self,
        job_id: str,
        choice: int | str,
        options: Mapping[str, object] | None = None,
        plan: ImportPlan | None = None,
    ) -> str:
        """Answer a job awaiting a pick, with the next stage's `options` and `plan` (e.g.
        voxelize settings and a mesh kind chosen after seeing the candidates); '' or why not."""
        job = self.latest(job_id)
        if job is None or job.state != JobState.AWAITING_PICK:
            return "That job is not waiting for a pick"
        if isinstance(choice, str) and not os.path.isfile(choice):
            return f"Image not found: {choice}"
        options, plan = split_notes(options or {}, plan or job.plan)
        if options:
            try:
                _rules(job.provider).check(job.evolve(options={**job.options, **options}).request())
            except ProviderError as exc:
                return str(exc)
        self.engine.pick(job_id, choice, options, plan)
        # Moving on from here: a script's wait() must not return before the engine answers.
        self.apply(job.evolve(state=JobState.RUNNING, message="Picked"))
        return ""

    def apply(self, job: Job) -> None:
        """Take the engine's newest snapshot of a job this session follows."""
        known = self.jobs.get(job.job_id)
        if known is not None and not known.finished:
            self._store(job)
            self._notify(Change(job))

    def record(self, job: Job) -> Job:
        """A change made here, on the main thread (imports, a cancel the engine did not
        hold): journaled and shown."""
        self._store(job)
        self.journal.save(job)
        self._notify(Change(job))
        return job

    def latest(self, job_id: str) -> Job | None:
        """The newest word on a job: the journal (written by the scheduler at every change)
        or this session's view (which also knows why a job was not resumed)."""
        known = self.jobs.get(job_id) or self.held.get(job_id)
        journaled = self.journal.get(job_id)
        if known is None or journaled is None:
            return known or journaled
        return journaled if journaled.updated > known.updated else known

    def apply_concurrency(self) -> None:
        """The preference changed, or a batch needs all its rows at once: the larger wins."""
        self.engine.set_max_in_flight(max(self.host.max_concurrent_jobs(), self.in_flight_floor))

    # -- imports (the host builds the scene; the session decides and records) -------------------

    def ready(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == JobState.READY]

    def imports_now(self, job: Job, object_mode: bool) -> bool:
        """Whether a ready job imports by itself now: in Object mode, into its own file, and
        not after an import of it crashed Blender (then only the person's click does)."""
        return object_mode and not job.import_tries and self.in_its_file(job)

    def in_its_file(self, job: Job) -> bool:
        """Started in the open file (or, resumed from an earlier session, saved as it)."""
        born = self._born_in.get(job.job_id)
        if born is not None:
            return born == self._file_generation
        return self.host.open_file() == job.blend_file

    def needs_click(self, job: Job) -> None:
        """Not its file or not Object mode: it waits for the Import button."""
        if not job.needs_click:
            self.record(job.evolve(needs_click=True, message=READY_TO_CLICK))

    def unsettled(self, job_ids: Iterable[str]) -> list[str]:
        """The jobs that may still move without a person (a pick or a click)."""
        return [
            i
            for i in job_ids
            if i in self.jobs
            and self.jobs[i].state in LIVE - {JobState.AWAITING_PICK}
            and not _waits_for_click(self.jobs[i])
        ]

    def is_busy(self) -> bool:
        return bool(self.engine.live_job_ids()) or not self.engine.events.empty()

    def import_pending(self) -> bool:
        """Downloaded jobs the next ticks will import (not those waiting for the user)."""
        return any(not _waits_for_click(j) for j in self.ready())

    def has_ready(self) -> bool:
        """Jobs downloaded but waiting for Object mode, their file, or a click."""
        return bool(self.ready())

    # -- housekeeping --------------------------------------------------------------------------

    def folder(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def remove(self, job_id: str) -> str:
        """Forget a job that is not running: its row, its files, its line in the sidebar."""
        job = self.latest(job_id)
        if job is None:
            return "That job is not in the journal"
        if not job.finished or job_id in self.engine.live_job_ids():
            return "Cancel it first: it has not finished"
        holder = self.journal.holder(job_id)
        if holder and holder != self.owner:
            return "Another Blender runs that job"
        self._forget([job])
        return ""

    def clear_finished(self) -> int:
        """Forget every finished job: rows and folders (imports keep their data packed)."""
        return self._forget(self.journal.finished_before(time.time() + 1))

    def prune(self, keep_days: float) -> int:
        """Remove finished jobs (rows and folders) older than `keep_days`."""
        return self._forget(self.journal.finished_before(time.time() - keep_days * 86400))

    def close(self, timeout: float = 1.0) -> None:
        """Stop workers, then close the journal; unfinished jobs stay in it."""
        self.engine.shutdown(timeout)
        self.journal.close()

    # -- inside --------------------------------------------------------------------------------

    def _follow(self, job: Job) -> None:
        """This session follows `job`, started (or restarted) in the open file."""
        self._remember(job)
        self._born_in[job.job_id] = self._file_generation

    def _remember(self, job: Job) -> None:
        settings = self.host.service(job.provider)
        self._access[job.job_id] = _Access(settings.api_key, *self.host.network())
        if not job.base_url:
            job = job.evolve(base_url=settings.base_url)
        self.held.pop(job.job_id, None)
        self._store(job)
        self.apply_concurrency()
        self._notify(Change(job))

    def _unfollow(self, job: Job) -> None:
        """A job that never started: its line goes."""
        for known in (self.jobs, self._access, self._born_in):
            known.pop(job.job_id, None)
        self._notify(Change(job, gone=True))

    def _hold(self, job: Job, reason: str) -> None:
        """Shown with why it was not resumed; never imported, run or journaled here (the row
        is not ours to change)."""
        held = job.evolve(message=reason)
        self.jobs.pop(job.job_id, None)
        self.held[job.job_id] = held
        self._notify(Change(held, held=True))

    def _resume_problem(self, job: Job) -> str:
        settings = self.host.service(job.provider)
        name = SERVICES[job.provider].name
        if not settings.api_key:
            return f"No API key for {name}: add one to resume this job"
        if job.key_fingerprint and job.key_fingerprint != key_fingerprint(settings.api_key):
            return f"Created with another {name} API key: set that key to resume this job"
        return ""

    def _store(self, job: Job) -> None:
        """Follow `job`'s newest word; of finished jobs only the latest few stay here."""
        self.jobs[job.job_id] = job
        if self._prices is not None:
            self._prices.learn(job)
        if job.finished:
            finished = [i for i, j in self.jobs.items() if j.finished]
            for job_id in finished[:-KEPT_FINISHED]:
                del self.jobs[job_id]

    def _is_pending_import(self, job: Job) -> bool:
        known = self.jobs.get(job.job_id)
        return known is not None and known.state == JobState.READY

    def _provider_for(self, job: Job, on_rate: Callable[[RateNote], None]) -> Provider:
        """Scheduler thread: only plain values captured on the main thread.

        One HTTP client per service, base URL and access: its jobs share one session."""
        access = self._access[job.job_id]
        key = (job.provider, job.base_url, access)
        http = self._clients.get(key)
        if http is None:
            http = make_http(
                job.provider,
                access.api_key,
                job.base_url or SERVICES[job.provider].default_base_url,
                on_rate=on_rate,
                proxy=access.proxy,
                ca_bundle=access.ca_bundle,
            )
            self._clients[key] = http
        return get_provider(job.provider, http)

    def _forget(self, jobs: list[Job]) -> int:
        for job in jobs:
            shutil.rmtree(self.folder(job.job_id), ignore_errors=True)
            self.jobs.pop(job.job_id, None)
            self._notify(Change(job, gone=True))
        self.journal.delete(j.job_id for j in jobs)
        return len(jobs)

    def _notify(self, change: Change) -> None:
        for listener in self.listeners:
            listener(change)
