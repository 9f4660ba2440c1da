"""The job engine: what each job does at each step, and the money rules that decide what
becomes of it when a step goes wrong (`rules.py`). No bpy. It runs on the `Scheduler`
(`scheduler.py`: the thread, the heap, commands, leases, journaling).

The money rules (docs/jobs.md):
- a job is journaled before anything is sent, each create request before it goes out, and
  its task id the moment it is known;
- a create is dispatched only for a job that is still wanted, and the worker checks the
  cancel flag again right before sending it;
- a create that may have reached the service is sent again only where that is safe (a free
  stage, or a documented idempotency key), at most a few times; otherwise the job is
  `unsure`, for the person to check;
- once paid, the network can only stall a job (visible reason, next try, back-off): only
  the service's own answer, the user's cancel or the service's documented job lifetime end it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from ..providers import filekind
from ..providers.base import Asset, Charge, Created, FlowStep, Step, TaskState, TaskStatus
from ..providers.errors import ErrorKind, ProviderError
from . import rules
from .journal import JournalWriteError
from .model import Answer, CreateSent, ImportPlan, Job, JobState, files_exist
from .rules import Act
from .scheduler import HELD_ELSEWHERE, LEASE_SECONDS, Scheduler
from .spend import Admit
from .steps import CancelledError, DiskError, Done, Live, StoppingError, fetch, last_poll

T = TypeVar("T")

MAX_STALL_DELAY = 300.0
MAX_RETRY_AFTER = 900.0

__all__ = ["HELD_ELSEWHERE", "LEASE_SECONDS", "Engine"]


class Engine(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cost_warned: set[str] = set()  # services whose charge was not understood

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
        if here.step == Step.CREATE and not self._within_spend_limit(live):
            return  # before the rate budget: a create held back spends none of it
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
            upload = self._leaving(live, live.provider.upload)
            self._dispatch(live, Step.UPLOAD, upload, job.request())
        else:
            poll = self._leaving(live, live.provider.poll)
            self._dispatch(live, Step.POLL, poll, job.task_id or "", here.stage)

    def _leaving(self, live: Live, send: Callable[..., T]) -> Callable[..., T]:
        """`send` on a worker, counted by the rate budget from the moment it goes until its
        answer (or failure) comes; the window runs from then."""
        limiter, bucket = self.limiter(live.job.provider), live.here.bucket

        def counted(*args: Any) -> T:
            stamp = limiter.leaving(bucket)
            try:
                return send(*args)
            finally:
                limiter.answered(bucket, stamp)

        return counted

    def _send_create(self, live: Live) -> None:
        job, here = live.job, live.here
        if job.state == JobState.SUBMITTING and not self._resendable(live):
            unsure = rules.unsure("its answer never came", live.provider.info.name)
            self._finish(live, JobState.UNSURE, unsure)
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
        create = self._leaving(live, live.provider.create)
        self._dispatch(live, Step.CREATE, self._create, live, create, key, here.stage)

    def _within_spend_limit(self, live: Live) -> bool:
        """A paid create goes only if the spending limit (if any) lets it: else the job waits
        to learn a price, or ends unsent."""
        limit, job = self.spend_limit, live.job
        if limit is None or live.here.stage in live.provider.info.free_stages:
            return True
        verdict, why = limit.admit(job)
        if verdict == Admit.WAIT:
            if job.message != why:
                self._update(live, message=why)
            self._schedule(live, 0.5)
        elif verdict == Admit.REFUSE:
            self._finish(live, JobState.FAILED, why)
        return verdict == Admit.GO

    def _resendable(self, live: Live) -> bool:
        """A create that may have arrived can go again: the service dedupes it, or it is free."""
        info = live.provider.info
        return info.idempotent_create or live.here.stage in info.free_stages

    def _create(self, live: Live, create: Callable[..., Created], key: str, stage: str) -> Created:
        """Worker: the last check that the job is still wanted, then the paid request."""
        request = live.job.request()
        live.provider.check(request)
        if live.cancel.is_set():
            raise CancelledError
        if self._stopping.is_set():
            raise StoppingError
        return create(request, key, stage)

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
                task_id=result.task_id,
                creates=live.job.answered(Answer.MADE, result.task_id),
                paid_at=paid_at,
                step=live.job.step + 1,
                message="Submitted",
                **self._priced(live.job, live.here.stage, result.charge),
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
            created: Created = future.result()
            stage = job.creates[-1].stage if job.creates else ""
            accepted = job.evolve(
                task_id=created.task_id,
                creates=job.answered(Answer.MADE, created.task_id),
                paid_at=time.time(),
                message="Cancelled, but the service had already accepted it",
                **self._priced(job, stage, created.charge),
            )
            try:
                self.journal.save(accepted, self.owner)
            except JournalWriteError as exc:
                self._journal_trouble = str(exc)

    def _on_status(self, live: Live, status: TaskStatus) -> None:
        live.polls += 1
        costed = self._priced(live.job, live.here.stage, status.charge)
        recosted = bool(costed) and costed["charges"] != live.job.charges
        if recosted:  # saved with the change below
            live.job = live.job.evolve(**costed)
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
        now = (job.state, job.progress, job.message)
        if recosted or now != (JobState.RUNNING, status.progress, message):
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
        """Apply the money rules (`rules.after_error`) to a step that failed."""
        if kind == Step.CREATE:  # saved with the change that follows
            live.job = live.job.evolve(creates=live.job.answered(rules.answer_of(exc)))
        job, info = live.job, live.provider.info
        verdict = rules.after_error(kind, exc, job, live.here.stage, info, live.refetches)
        match verdict.act:
            case Act.FAIL:
                self._finish(live, JobState.FAILED, verdict.message)
            case Act.UNSURE:
                self._finish(live, JobState.UNSURE, verdict.message)
            case Act.REFETCH:  # expired asset URLs: ask the service for fresh ones
                live.refetches += 1
                self._update(live, step=last_poll(live.flow, job.step), message=verdict.message)
                self._schedule(live)
            case Act.RETRY | Act.CONFIRM:
                delay = self._retry_delay(live, exc)
                if verdict.act == Act.CONFIRM:  # state stays SUBMITTING: same key next time
                    state, message = job.state, f"Confirming the request with {info.name}"
                    message += f" in {delay:.0f} s ({exc})"
                else:
                    state = JobState.QUEUED if kind == Step.CREATE else job.state
                    message = f"{exc} — retrying in {delay:.0f} s"
                self._update(live, state=state, message=message)
                self._schedule(live, delay)
            case Act.STALL:  # a job's lifetime holds whatever its polls answer
                if not (kind == Step.POLL and self._outlived(live)):
                    self._stall(live, exc)

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

    def _priced(self, job: Job, stage: str, charge: Charge | None) -> dict[str, Any]:
        """The changes that record what the service says `stage` costs (none if it said
        nothing); an amount written in a shape not understood leaves the cost unknown, with
        a warning on the first such job of each service (not on every row of a batch)."""
        if charge is None:
            return {}
        changes: dict[str, Any] = {"charges": job.charged(stage, charge)}
        if charge.note and job.provider not in self._cost_warned:
            self._cost_warned.add(job.provider)
            changes["warnings"] = (*job.warnings, f"{job.provider}: cost unknown ({charge.note})")
        return changes
