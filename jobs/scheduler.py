"""The scheduler under the job engine: one thread, a heap of due jobs, commands, leases, and
the one place job changes are journaled and shown. No bpy.

Each step of a job (upload, create, one poll, one download) is a short blocking call handed
to fixed pools of workers; its result comes back to the scheduler thread as a command. A job
that waits (poll pace, Retry-After, a rate budget, a stalled back-off, a user's pick) is only
an entry in a heap of (due time, job), so a hundred waiting jobs cost no thread, and a cancel
takes effect at once. What a job does at each step is the Engine's (`engine.py`).

A job's row is written only while this process holds its lease; a change the journal refuses
(after its retries) stops that job visibly, paid ones stalled, and `submit` refuses new work
until the journal takes writes again. Workers never touch the journal or bpy; only the
scheduler writes job states, and events (Job snapshots) go to the main thread on `events`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

from ..providers.base import Provider, RateRule, Step
from ..providers.errors import RateNote
from .journal import Journal, JournalWriteError
from .model import ImportPlan, Job, JobState
from .ratelimit import Budgets, ServiceLimiter
from .spend import PriceBook, SpendLimit
from .steps import Cancel, Cap, Command, Done, Limit, Live, Pick, Start, Workers

LEASE_SECONDS = 30.0
CREATE_GRACE = 1.8  # how long a quit waits for the answer of a create on the wire
HELD_ELSEWHERE = "Running in another Blender"

ProviderFactory = Callable[[Job, Callable[[RateNote], None]], Provider]


class Scheduler:
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
        self.spend_limit: SpendLimit | None = None  # the scheduler thread's; set by Cap

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

    def set_spend_limit(self, limit: float | None) -> None:
        """Hold what the jobs submitted from now on may cost under `limit` (None: no limit)."""
        self._post(Cap(limit, time.time()))

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
        # A worker stuck in a request keeps this engine alive past Python's end; it must not
        # keep the session (and through it bpy) too: bpy 4.5 hangs at exit when it outlives
        # the interpreter's teardown.
        self.provider_for = _stopped

    # -- what the job machine (the Engine) fills in -------------------------------------

    def _start(self, job: Job) -> None:
        raise NotImplementedError

    def _advance(self, live: Live) -> None:
        raise NotImplementedError

    def _on_pick(
        self,
        job_id: str,
        choice: int | str,
        extra: Mapping[str, object] | None = None,
        plan: ImportPlan | None = None,
    ) -> None:
        raise NotImplementedError

    def _on_done(self, done: Done) -> None:
        raise NotImplementedError

    def _settle_create(self, done: Done) -> None:
        raise NotImplementedError

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
            case Cap(limit, since):
                known = PriceBook(self.journal.recent(1_000_000)).last if limit is not None else {}
                self.spend_limit = SpendLimit(limit, since, known) if limit is not None else None
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

    def _dispatch(self, live: Live, step: Step, fn: Callable[..., Any], *args: object) -> None:
        if self._live.get(live.job.job_id) is not live:
            return  # its last change could not be journaled: nothing is sent for it
        live.busy = True
        self._workers.run(live.job.job_id, step, 0, fn, *args)

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
        if self.spend_limit is not None:
            self.spend_limit.observe(job)
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


def _stopped(job: Job, on_rate: Callable[[RateNote], None]) -> Provider:
    raise RuntimeError("the job engine has stopped")
