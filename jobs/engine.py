"""The job engine: one scheduler thread owns every job's state machine. No bpy.

Each step of a job (upload, create, one poll, one download) is a short blocking call handed
to a small fixed pool of workers; its result comes back to the scheduler as a command. A job
that waits (poll pace, Retry-After, a rate budget, a stalled back-off, a user's pick) is only
an entry in a heap of (due time, job), so a hundred waiting jobs cost no thread, and a cancel
takes effect at once. The money rules (docs/jobs.md):
- a job is journaled before anything is sent, and its task id the moment it is known;
- a create is dispatched only for a job that is still wanted, and the worker checks the
  cancel flag again right before sending it;
- a create that may have reached the service is re-sent only with the same idempotency key
  to a service that honours one; otherwise the job fails asking the user to check;
- once paid, the network can only stall a job (visible reason, next try, back-off): only
  the service's own answer, the user's cancel or the service's documented job lifetime end it;
- a job's row is written only while this engine holds its lease; a change the journal
  refuses (after its retries) stops that job visibly, paid ones stalled, and `submit`
  refuses new work until the journal takes writes again.
Workers never touch the journal or bpy; only the scheduler writes job states, and events (Job
snapshots) go to the main thread on `events`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..providers import filekind
from ..providers.base import (
    Asset,
    FlowStep,
    Provider,
    RateRule,
    Step,
    TaskState,
    TaskStatus,
)
from ..providers.errors import ErrorKind, ProviderError, RateNote
from .journal import Journal, JournalWriteError
from .model import Answer, CreateSent, ImportPlan, Job, JobState, files_exist
from .ratelimit import Budgets, ServiceLimiter
from .steps import (
    Cancel,
    CancelledError,
    Command,
    DiskError,
    Done,
    Limit,
    Live,
    Pick,
    Start,
    StoppingError,
    Workers,
    fetch,
    last_poll,
)

MAX_STALL_DELAY = 300.0
MAX_RETRY_AFTER = 900.0
LEASE_SECONDS = 30.0
CREATE_GRACE = 1.8  # how long a quit waits for the answer of a create on the wire
MAX_CREATE_SENDS = 5  # a create that may have arrived goes at most this often, even when safe
# Besides timeouts and transient errors, the answers to a create after which a task may
# exist (and be charged) although none came back.
MAYBE_MADE = frozenset({ErrorKind.SERVER, ErrorKind.BAD_RESPONSE})
HELD_ELSEWHERE = "Running in another Blender"

ProviderFactory = Callable[[Job, Callable[[RateNote], None]], Provider]


class Engine:
    def __init__(
        self,
        journal: Journal,
        provider_for: ProviderFactory,
        *,
        jobs_root: Path | str,
        owner: str,
        workers: int = 4,
        max_in_flight: int = 8,
        poll_interval: float | None = None,
        rate_rules: Mapping[str, Sequence[RateRule]] | None = None,
        probe_after: float = 30.0,
        backoff_base: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.provider_for = provider_for
        self.jobs_root = Path(jobs_root)
        self.owner = owner
        self.max_in_flight = max_in_flight
        self.poll_interval = poll_interval
        self.events: queue.Queue[Job] = queue.Queue()
        self.budgets = Budgets(rate_rules, probe_after=probe_after, clock=clock)
        self._backoff_base = backoff_base  # first retry after trouble; doubles up to 5 min
        self._clock = clock
        self._tag = f"{id(self) & 0xFFFF:04x}"  # in thread names: whose threads they are
        self._workers = Workers(workers, f"conjure-step-{self._tag}", self._post)
        self._scheduler: threading.Thread | None = None
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._live: dict[str, Live] = {}
        self._waiting: deque[str] = deque()  # jobs held back by max_in_flight
        self._lock = threading.Lock()  # guards _live's key set for readers on other threads
        self._next_renew = 0.0
        self._journal_trouble = ""  # why the journal took no write lately ("" when it does)

    # -- public: any thread --------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Journal the job, leased to this engine in the same transaction (before anything
        is sent), and hand it to the scheduler. JournalWriteError (one line) while the
        journal takes no writes: no new work then."""
        self._check_running()
        if self._journal_trouble:
            raise JournalWriteError(self._journal_trouble)
        self.journal.insert_claimed(job, self.owner, LEASE_SECONDS)
        self._post(Start(job))

    def resume(self, job: Job) -> str:
        """Continue a journaled job without paying again; "" or why it cannot be taken."""
        self._check_running()
        try:
            holder = self.journal.claim(job.job_id, self.owner, LEASE_SECONDS)
        except JournalWriteError as exc:
            return str(exc)
        self._journal_trouble = ""  # it takes writes again
        if holder:
            return HELD_ELSEWHERE
        self._post(Start(job))
        return ""

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            live = self._live.get(job_id)
        if live is None:
            return False
        live.cancel.set()  # seen by a worker about to send a create, and by downloads
        self._post(Cancel(job_id))
        return True

    def pick(
        self,
        job_id: str,
        choice: int | str,
        options: Mapping[str, object] | None = None,
        plan: ImportPlan | None = None,
    ) -> None:
        """Answer a job awaiting a pick: a candidate's index, or a local image's path, with
        options for the stages that follow (already checked by the caller) and a new plan."""
        self._post(Pick(job_id, choice, dict(options or {}), plan))

    def set_max_in_flight(self, count: int) -> None:
        self._post(Limit(max(1, int(count))))

    def share_budgets(self, fraction: float) -> None:
        """Use `fraction` of every service's documented budget (farm shards split it)."""
        self.budgets.share(fraction)

    def live_job_ids(self) -> set[str]:
        with self._lock:
            return set(self._live)

    def limiter(self, service: str) -> ServiceLimiter:
        return self.budgets.limiter(service)

    def worker_count(self) -> int:
        """This engine's threads (the scheduler and the step workers) that are alive."""
        mine = (f"conjure-step-{self._tag}", f"conjure-scheduler-{self._tag}")
        return sum(t.is_alive() and t.name.startswith(mine) for t in threading.enumerate())

    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop: nothing new is sent; jobs stay in the journal, resumable.

        A create already on the wire may be charged for: its answer is awaited until
        CREATE_GRACE after the stop began and journaled (the task id), so a resume polls the
        task instead of leaving it unknown; a create that never went out is queued again.
        Polls and downloads in flight are abandoned (they write nothing). Then the leases
        are released so another Blender may take the jobs over at once."""
        started = time.monotonic()
        self._stopping.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout)
        unsent, running = self._workers.stop()
        answered = [c for c in _drain(self._commands) if isinstance(c, Done)]
        creates = [d for d in running if d.step == Step.CREATE]
        futures.wait([d.future for d in creates], started + CREATE_GRACE - time.monotonic())
        for done in (*unsent, *answered, *creates):
            if done.step == Step.CREATE and done.future.done():
                self._guarded(self._settle_create, done)
        with contextlib.suppress(JournalWriteError):  # else the leases lapse by themselves
            self.journal.release(self.owner)
        with self._lock:
            self._live.clear()

    def _settle_create(self, done: Done) -> None:
        """At shutdown: journal what became of a create (its task id, or that it never went
        out), as the scheduler would have."""
        live = self._live.get(done.job_id)
        if live is None:
            return
        if done.future.cancelled():
            self._not_sent(live)
        else:
            self._on_done(done)

    def _not_sent(self, live: Live) -> None:
        creates = live.job.answered(Answer.NOT_MADE)
        message = "Not sent: Conjure stopped first"
        self._update(live, state=JobState.QUEUED, message=message, creates=creates)

    # -- scheduler thread ----------------------------------------------------------------

    def _check_running(self) -> None:
        if self._stopping.is_set():
            raise RuntimeError("the job engine is shut down")
        with self._lock:
            if self._scheduler is None:
                self._workers.start()
                self._scheduler = threading.Thread(
                    target=self._loop, name=f"conjure-scheduler-{self._tag}", daemon=True
                )
                self._scheduler.start()

    def _post(self, command: Command) -> None:
        if not self._stopping.is_set():
            self._commands.put(command)
            self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                self._guarded(self._handle, command)
                if self._stopping.is_set():
                    return
            now = self._clock()
            for live in self._due(now):
                if self._stopping.is_set():
                    break
                self._guarded(self._advance, live)
            self._renew_leases(now)
            timeout = self._heap[0][0] - self._clock() if self._heap else LEASE_SECONDS / 3
            self._wake.wait(min(max(timeout, 0.0), LEASE_SECONDS / 3))

    def _due(self, now: float) -> list[Live]:
        """Jobs due now (within 10 ms), creates first, then the least-polled: when a rate
        budget frees a few slots, new jobs start and no job falls a window behind."""
        due: list[Live] = []
        while self._heap and self._heap[0][0] <= now + 0.01:
            _, _, job_id, token = heapq.heappop(self._heap)
            live = self._live.get(job_id)
            if live is not None and live.token == token:
                due.append(live)
        due.sort(key=lambda live: (live.job.step, live.polls, live.job.created))
        return due

    def _guarded(self, step: Callable[[Any], None], arg: Live | Command) -> None:
        """A bug in one job's handling fails that job visibly; the scheduler keeps going."""
        try:
            step(arg)
        except Exception as exc:
            message = f"Internal error: {type(exc).__name__}: {exc}"
            target = arg.job if isinstance(arg, Live | Start) else getattr(arg, "job_id", "")
            job_id = target.job_id if isinstance(target, Job) else target
            live = self._live.get(job_id)
            if live is not None:
                live.busy = False
                self._finish(live, JobState.FAILED, message)
            elif isinstance(target, Job):
                self._emit_final(target.evolve(state=JobState.FAILED, message=message))

    def _handle(self, command: Command) -> None:
        match command:
            case Start(job):
                self._start(job)
            case Cancel(job_id):
                live = self._live.get(job_id)
                if live is not None:
                    self._finish(live, JobState.CANCELLED, "Cancelled")
            case Pick(job_id, choice, options, plan):
                self._on_pick(job_id, choice, options, plan)
            case Limit(count):
                self.max_in_flight = count
                self._release_waiting()
            case Done():
                self._on_done(command)

    def _schedule(self, live: Live, delay: float = 0.0) -> None:
        live.token += 1
        due = self._clock() + max(delay, 0.0)
        heapq.heappush(self._heap, (due, next(self._seq), live.job.job_id, live.token))

    def _renew_leases(self, now: float) -> None:
        if now >= self._next_renew and self._live:
            self._next_renew = now + LEASE_SECONDS / 3
            try:
                self.journal.renew(self.owner, list(self._live), LEASE_SECONDS)
            except JournalWriteError as exc:  # jobs go on; a write of theirs that fails stops them
                self._journal_trouble = str(exc)

    # -- job life -------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        if job.job_id in self._live:
            return
        limiter = self.limiter(job.provider)
        try:
            provider = self.provider_for(job, limiter.observe)
            flow = job.flow or tuple(provider.flow(job.request()))
        except ProviderError as exc:  # e.g. a missing CA bundle: the settings need a fix
            if job.paid:  # never end a paid job over settings; it resumes once they are fixed
                message = f"{exc} — fix it, then Resume Unfinished Jobs"
                self._emit(job.evolve(state=JobState.STALLED, message=message))
            else:
                self._emit_final(job.evolve(state=JobState.FAILED, message=str(exc)))
            return
        if not flow or not all(isinstance(s, FlowStep) for s in flow):
            raise TypeError(f"{provider.info.name} declares no valid steps")  # a bug: fails it
        live = Live(job, provider, flow)
        with self._lock:
            self._live[job.job_id] = live
        if not job.flow:  # kept with the job from its first start on
            self._update(live, flow=flow)
        if job.state == JobState.READY and not files_exist(job.files):
            # Downloaded files vanished: ask the service again for the asset URLs.
            self._update(live, step=last_poll(flow, len(flow)), state=JobState.RUNNING)
        self._schedule(live)

    def _advance(self, live: Live) -> None:
        job = live.job
        if live.busy or job.finished:
            return
        if job.step >= len(live.flow) or (job.state == JobState.READY and files_exist(job.files)):
            self._hand_over(live)
            return
        here = live.here
        if here.step == Step.PICK:
            self._advance_pick(live)
            return
        if here.step == Step.DOWNLOAD:
            self._download(live, live.assets, here.stage or "model")
            return
        if here.step == Step.CREATE and not job.paid and self._in_flight() >= self.max_in_flight:
            if job.job_id not in self._waiting:
                self._waiting.append(job.job_id)
            return
        wait = self.limiter(job.provider).reserve(here.bucket)
        if wait > 0:
            if here.step == Step.CREATE and job.state == JobState.QUEUED:
                message = f"Waiting for {live.provider.info.name}'s rate limit"
                if job.message != message:
                    self._update(live, message=message)
            self._schedule(live, wait)
            return
        if here.step == Step.CREATE:
            self._send_create(live)
        elif here.step == Step.UPLOAD:
            self._update(live, state=JobState.UPLOADING, message="Uploading")
            self._dispatch(live, Step.UPLOAD, live.provider.upload, job.request())
        else:
            self._dispatch(live, Step.POLL, live.provider.poll, job.task_id or "", here.stage)

    def _send_create(self, live: Live) -> None:
        job, here = live.job, live.here
        if job.state == JobState.SUBMITTING and not self._resendable(live):
            self._unsure(live, "its answer never came")
            return
        key = job.idempotency_key + (f"-{here.stage}" if job.step else "")
        # A later stage builds on the earlier task (e.g. refine a preview).
        previous = job.task_id or job.previous_task_id
        sent = CreateSent(here.stage, key, time.time())  # journaled before it goes out
        self._update(
            live,
            state=JobState.SUBMITTING,
            message="Submitting",
            previous_task_id=previous,
            creates=(*job.creates, sent),
        )
        self._dispatch(live, Step.CREATE, self._create, live, key, here.stage)

    def _resendable(self, live: Live) -> bool:
        """A create that may have arrived can go again: the service dedupes it, or it is free."""
        info = live.provider.info
        return info.idempotent_create or live.here.stage in info.free_stages

    def _create(self, live: Live, key: str, stage: str) -> str:
        """Worker: the last check that the job is still wanted, then the paid request."""
        request = live.job.request()
        live.provider.check(request)
        if live.cancel.is_set():
            raise CancelledError
        if self._stopping.is_set():
            raise StoppingError
        return live.provider.create(request, key, stage)

    def _dispatch(self, live: Live, step: Step, fn: Callable[..., Any], *args: object) -> None:
        if self._live.get(live.job.job_id) is not live:
            return  # its last change could not be journaled: nothing is sent for it
        live.busy = True
        self._workers.run(live.job.job_id, step, 0, fn, *args)

    def _on_done(self, done: Done) -> None:
        live = self._live.get(done.job_id)
        kind, future = done.step, done.future
        if live is None:
            self._note_late_result(done.job_id, kind, future)
            return
        if kind == Step.DOWNLOAD:
            self._on_fetched(live, done.tag, future)
            return
        live.busy = False
        try:
            result = future.result()
        except CancelledError:  # cancelled before it was sent
            live.job = live.job.evolve(creates=live.job.answered(Answer.NOT_MADE))
            self._finish(live, JobState.CANCELLED, "Cancelled")
            return
        except StoppingError:
            self._not_sent(live)
            return
        except ProviderError as exc:
            self._on_error(live, kind, exc)
            return
        except Exception as exc:  # a bug must end the job visibly, never hang it
            self._finish(live, JobState.FAILED, f"Internal error: {type(exc).__name__}: {exc}")
            return
        live.failures = 0
        if kind == Step.CREATE:
            free = live.here.stage in live.provider.info.free_stages
            paid_at = live.job.paid_at or (0.0 if free else time.time())
            self._update(
                live,
                state=JobState.SUBMITTED,
                task_id=str(result),
                creates=live.job.answered(Answer.MADE, str(result)),
                paid_at=paid_at,
                step=live.job.step + 1,
                message="Submitted",
            )
            self._schedule(live, self._poll_delay(live))
        elif kind == Step.UPLOAD:
            self._update(live, upload_ref=str(result), step=live.job.step + 1)
            self._schedule(live)
        else:
            self._on_status(live, result)

    def _note_late_result(self, job_id: str, kind: Step, future: Future[Any]) -> None:
        """A create answered after its job was cancelled: journal the task id (it was paid)."""
        if kind != Step.CREATE or future.exception() is not None:
            return
        job = self.journal.get(job_id)
        if job is not None and not job.task_id:
            task_id = str(future.result())
            accepted = job.evolve(
                task_id=task_id,
                creates=job.answered(Answer.MADE, task_id),
                paid_at=time.time(),
                message="Cancelled, but the service had already accepted it",
            )
            try:
                self.journal.save(accepted, self.owner)
            except JournalWriteError as exc:
                self._journal_trouble = str(exc)

    def _on_status(self, live: Live, status: TaskStatus) -> None:
        live.polls += 1
        job = live.job
        if status.state == TaskState.SUCCEEDED:
            live.assets, live.candidates = status.assets, status.candidates
            self._update(
                live,
                warnings=(*job.warnings, *status.warnings), state=JobState.RUNNING, progress=1.0,
                message=status.message or "Done on the service",
                step=job.step + 1,
            )  # fmt: skip
            self._schedule(live)
            return
        if status.state in (TaskState.FAILED, TaskState.CANCELLED):
            self._finish(live, JobState.FAILED, status.message or f"task {status.state.value}")
            return
        if self._outlived(live):
            return
        message = status.message or "Generating"
        if (job.state, job.progress, job.message) != (JobState.RUNNING, status.progress, message):
            self._update(live, state=JobState.RUNNING, progress=status.progress, message=message)
        self._schedule(live, status.wait if status.wait is not None else self._poll_delay(live))

    def _outlived(self, live: Live) -> bool:
        """Ends a paid job with no result 1.5 times the service's documented job lifetime + 1 min
        after paying, whatever its polls answer or fail to answer."""
        lifetime, job = live.provider.info.job_lifetime, live.job
        if not (lifetime and job.paid and time.time() - job.paid_at > lifetime * 1.5 + 60):
            return False
        name, minutes = live.provider.info.name, lifetime / 60
        self._finish(
            live, JobState.FAILED, f"No result within {name}'s {minutes:.0f}-minute job lifetime"
        )
        return True

    def _poll_delay(self, live: Live) -> float:
        if self.poll_interval is not None:
            return self.poll_interval
        return live.provider.poll_delay(live.polls)

    def _on_error(self, live: Live, kind: Step, exc: ProviderError) -> None:
        if kind == Step.CREATE:  # saved with the change that follows
            made = Answer.UNKNOWN if exc.retryable or exc.kind in MAYBE_MADE else Answer.NOT_MADE
            if exc.kind in (ErrorKind.NOT_SENT, ErrorKind.RATE_LIMIT):
                made = Answer.NOT_MADE
            live.job = live.job.evolve(creates=live.job.answered(made))
        job = live.job
        if kind in (Step.CREATE, Step.UPLOAD) and not job.paid:
            self._on_unpaid_error(live, kind, exc)
            return
        if kind == Step.CREATE:  # a later, paid stage's create: same care, but never fail blindly
            if exc.kind in (ErrorKind.RATE_LIMIT, ErrorKind.NOT_SENT):
                self._stall(live, exc)
                return
            self._on_unpaid_error(live, kind, exc)
            return
        if kind == Step.POLL and exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.BAD_REQUEST):
            self._finish(live, JobState.FAILED, str(exc))  # the service's own answer
            return
        expired = exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.AUTH)
        if kind == Step.DOWNLOAD and expired and live.refetches < 3:
            # expired asset URLs: ask the service for fresh ones
            live.refetches += 1
            self._update(live, step=last_poll(live.flow, job.step), message="Refreshing")
            self._schedule(live)
            return
        if kind == Step.DOWNLOAD and exc.kind == ErrorKind.BAD_RESPONSE:
            self._finish(live, JobState.FAILED, str(exc))
            return
        if kind == Step.POLL and self._outlived(live):
            return
        self._stall(live, exc)

    def _on_unpaid_error(self, live: Live, kind: Step, exc: ProviderError) -> None:
        name = live.provider.info.name
        if exc.kind == ErrorKind.NOT_FOUND:  # no task exists yet: it is the address
            base = live.job.base_url or live.provider.info.default_base_url
            message = f"{name} has no such endpoint ({exc.detail}): check its base URL, {base}"
            self._finish(live, JobState.FAILED, message)
        elif exc.kind in (ErrorKind.RATE_LIMIT, ErrorKind.NOT_SENT):
            # Certainly not created: safe to send again once the service lets us.
            delay = self._retry_delay(live, exc)
            state = JobState.QUEUED if kind == Step.CREATE and not live.job.paid else live.job.state
            self._update(live, state=state, message=f"{exc} — retrying in {delay:.0f} s")
            self._schedule(live, delay)
        elif kind == Step.CREATE and (exc.retryable or exc.kind in MAYBE_MADE):
            if self._resendable(live) and live.job.maybe_made(live.here.stage) >= MAX_CREATE_SENDS:
                tries = f"{exc} ({MAX_CREATE_SENDS} tries)"
                if live.here.stage in live.provider.info.free_stages:
                    self._finish(live, JobState.FAILED, f"{tries}; nothing was charged")
                else:
                    self._unsure(live, tries)
            elif self._resendable(live):
                delay = self._retry_delay(live, exc)
                self._update(
                    live, message=f"Confirming the request with {name} in {delay:.0f} s ({exc})"
                )
                self._schedule(live, delay)  # state stays SUBMITTING: same key next time
            else:
                self._unsure(live, str(exc))
        elif kind == Step.UPLOAD and exc.retryable:
            delay = self._retry_delay(live, exc)
            self._update(live, message=f"{exc} — retrying in {delay:.0f} s")
            self._schedule(live, delay)
        else:
            self._finish(live, JobState.FAILED, str(exc))

    def _unsure(self, live: Live, why: str) -> None:
        """A create that may have reached the service is never sent again by itself."""
        name = live.provider.info.name
        self._finish(
            live,
            JobState.UNSURE,
            f"{why}; the request may have reached {name} and may be charged: check its "
            "dashboard before generating again",
        )

    def _retry_delay(self, live: Live, exc: ProviderError | DiskError) -> float:
        live.failures += 1
        backoff = min(self._backoff_base * 2.0 ** (live.failures - 1), MAX_STALL_DELAY)
        backoff *= 0.5 + random.random() / 2  # jitter: a hundred jobs must not retry as one
        limiter_wait = self.limiter(live.job.provider).blocked_for()
        return max(min(exc.retry_after or 0.0, MAX_RETRY_AFTER), limiter_wait, backoff)

    def _stall(self, live: Live, exc: ProviderError | DiskError) -> None:
        """Paid and in trouble (the network's, the service's or the disk's): visible, retried
        with back-off, resumable after a restart."""
        delay = self._retry_delay(live, exc)
        when = time.time() + delay
        clock = time.strftime("%H:%M:%S", time.localtime(when))
        self._update(
            live, state=JobState.STALLED, next_try=when, message=f"{exc} — next try at {clock}"
        )
        self._schedule(live, delay)

    # -- picks and downloads --------------------------------------------------------------

    def _advance_pick(self, live: Live) -> None:
        job = live.job
        chosen = job.options.get("candidate")
        if job.picked_path:
            self._update(live, step=job.step + 1)
            self._schedule(live)
        elif not (job.candidates and files_exist(job.candidates)):
            self._download(live, live.candidates, "candidate")
        elif isinstance(chosen, int):  # chosen up front (scripts)
            self._on_pick(job.job_id, chosen)
        elif job.state != JobState.AWAITING_PICK:
            self._update(live, state=JobState.AWAITING_PICK, message="Pick a candidate")

    def _on_pick(
        self,
        job_id: str,
        choice: int | str,
        extra: Mapping[str, object] | None = None,
        plan: ImportPlan | None = None,
    ) -> None:
        live = self._live.get(job_id)
        if live is None or live.busy or live.here.step != Step.PICK:
            return
        candidates = live.job.candidates
        if isinstance(choice, int) and 0 <= choice < len(candidates):
            path = candidates[choice]
        elif isinstance(choice, str) and filekind.kind_of_file(choice) in filekind.IMAGE_KINDS:
            path = choice
        else:  # a wrong answer does not end a job: it keeps waiting for a right one
            last = len(candidates) - 1
            message = f"No candidate {choice!r}: pick 0 to {last} or a PNG, JPEG or WebP file"
            self._update(live, state=JobState.AWAITING_PICK, message=message)
            return
        job = live.job
        self._update(
            live,
            options={**job.options, **(extra or {})},
            plan=plan or job.plan,
            picked_path=path,
            state=JobState.RUNNING,
            message="Picked",
        )
        self._schedule(live)

    def _download(self, live: Live, assets: Sequence[Asset], required: str) -> None:
        """All assets in parallel; `required` is the role that must arrive (others optional)."""
        if not any(a.role == required for a in assets):
            if live.refetches < 3:  # e.g. resumed: the URLs come from a poll
                live.refetches += 1
                self._update(live, step=last_poll(live.flow, live.job.step))
                self._schedule(live)
            else:
                self._finish(live, JobState.FAILED, f"The service returned no {required} file")
            return
        folder = self.jobs_root / live.job.job_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a full disk, no permission: the user's to fix, then it goes on
            self._stall(live, DiskError(folder, exc))
            return
        self._update(live, state=JobState.DOWNLOADING, message="Downloading")
        live.busy, live.fetched = True, {}
        live.fetching, live.required = tuple(assets), required
        def stop() -> bool:  # the user cancelled, or the add-on is shutting down
            return live.cancel.is_set() or self._stopping.is_set()

        for index, asset in enumerate(assets):
            args = (live.provider, asset, folder, index, stop)
            self._workers.run(live.job.job_id, Step.DOWNLOAD, index, fetch, *args)

    def _on_fetched(self, live: Live, index: int, future: Future[Any]) -> None:
        try:
            live.fetched[index] = future.result()
        except (ProviderError, DiskError) as exc:
            live.fetched[index] = exc
        except Exception as exc:
            live.fetched[index] = ProviderError(ErrorKind.BAD_RESPONSE, f"{type(exc).__name__}")
        assets, required = live.fetching, live.required
        if len(live.fetched) < len(assets):
            return
        live.busy = False
        files, warnings = [], []
        for i, asset in enumerate(assets):
            outcome = live.fetched[i]
            if isinstance(outcome, str):
                files.append(outcome)
            elif asset.role != required:  # thumbnails and previews are extras: a warning
                warnings.append(f"{asset.role} not downloaded: {outcome}")
            elif isinstance(outcome, DiskError):  # local trouble: stalled until it is fixed
                self._stall(live, outcome)
                return
            else:
                self._on_error(live, Step.DOWNLOAD, outcome)
                return
        job = live.job
        all_warnings = (*job.warnings, *warnings)
        if required == "candidate":
            self._update(live, candidates=tuple(files), warnings=all_warnings)
        else:
            self._update(
                live, files=tuple(files), warnings=all_warnings, step=job.step + 1,
                state=JobState.READY, message="Downloaded",
            )  # fmt: skip
        self._schedule(live)

    def _hand_over(self, live: Live) -> None:
        """Downloaded: the engine's part is done; the main thread imports."""
        if live.job.state != JobState.READY:
            self._update(live, state=JobState.READY, message="Downloaded")
        self._forget(live)

    # -- state changes --------------------------------------------------------------------

    def _update(self, live: Live, **changes: object) -> None:
        live.job = live.job.evolve(**changes)
        self._emit(live.job)

    def _finish(self, live: Live, state: JobState, message: str) -> None:
        live.job = live.job.evolve(state=state, message=message)
        self._emit(live.job)
        self._forget(live)

    def _emit_final(self, job: Job) -> None:
        self._emit(job)
        self._release_waiting()

    def _emit(self, job: Job) -> None:
        """Journal a change, then show it. Only the lease holder writes a row: a job another
        Blender took over, or whose change the journal refused, stops here."""
        try:
            ours = self.journal.save(job, self.owner)
        except JournalWriteError as exc:
            self._journal_trouble = str(exc)
            state = JobState.STALLED if job.paid else JobState.FAILED  # paid: never dropped
            message = f"{exc} — fix it, then Resume Unfinished Jobs"
            self._drop(job, job.evolve(state=state, message=message))
            return
        if not ours:
            try:
                theirs = self.journal.get(job.job_id) or job
            except sqlite3.Error:
                theirs = job
            self._drop(job, theirs.evolve(message=HELD_ELSEWHERE))
            return
        self._journal_trouble = ""
        self.events.put(job)

    def _drop(self, job: Job, shown: Job) -> None:
        """Stop working on a job here (nothing more is sent for it) and show it as `shown`."""
        live = self._live.get(job.job_id)
        if live is not None:
            live.cancel.set()  # a create or download about to start stays unsent
            self._forget(live)
        self.events.put(shown)

    def _forget(self, live: Live) -> None:
        live.token += 1  # stale heap entries
        with self._lock:
            self._live.pop(live.job.job_id, None)
        self._release_waiting()

    def _in_flight(self) -> int:
        return sum(
            1
            for live in self._live.values()
            if live.job.paid or live.job.state == JobState.SUBMITTING
        )

    def _release_waiting(self) -> None:
        """Room may have opened: let held-back jobs look again (each re-checks the cap)."""
        if self._waiting and self._in_flight() < self.max_in_flight:
            while self._waiting:
                live = self._live.get(self._waiting.popleft())
                if live is not None:
                    self._schedule(live)


def _drain(commands: queue.SimpleQueue[Command]) -> list[Command]:
    taken = []
    while True:
        try:
            taken.append(commands.get_nowait())
        except queue.Empty:
            return taken
