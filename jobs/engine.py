"""Worker threads that submit, poll and download jobs. No bpy: events go out on a queue.

Rules this module keeps (ARCHITECTURE.md):
- the journal is written before the create request and again the moment the task id is
  known, so a crash never costs a second paid generation;
- a create that may have reached the service is only re-sent with the same idempotency key,
  and only to services that honour one;
- polls follow the service's pace and rate limits, and transient failures wait and retry
  until a deadline; other errors end the job with the provider's one-line message;
- workers never touch bpy; only the main thread reads `events`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..providers.base import (
    Asset,
    ErrorKind,
    Provider,
    ProviderError,
    TaskState,
    TaskStatus,
)
from .journal import Journal
from .model import Job, JobEvent, JobState

__all__ = ["Engine", "JobEvent", "detect_format"]

MODEL_FORMATS = {"glb", "vox", "obj", "zip"}
_STOP = object()


def detect_format(head: bytes) -> str | None:
    """File type by content: services' URLs often have no (or a wrong) extension."""
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith(b"VOX "):
        return "vox"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    text = head[:512].decode("utf-8", "ignore")
    if "newmtl" in text:
        return "mtl"
    if any(
        line.startswith(("v ", "vt ", "vn ", "f ", "o ", "mtllib")) for line in text.splitlines()
    ):
        return "obj"
    return None


class JobCancelledError(Exception):
    pass


@dataclass
class _Gate:
    """Per-service pacing: a token bucket refilled at the service's advertised rate."""

    per_hour: float = 600.0
    burst: float = 10.0
    tokens: float = 10.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """0 and a token spent if one is free, else the seconds until one will be."""
        rate = self.per_hour / 3600.0
        if self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class Engine:
    def __init__(
        self,
        journal: Journal,
        provider_factory: Callable[[str], Provider],
        *,
        jobs_root: Path | str,
        max_workers: int = 4,
        poll_deadline: float = 900.0,
        max_poll_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.provider_factory = provider_factory
        self.jobs_root = Path(jobs_root)
        self.max_workers = max_workers
        self.poll_deadline = poll_deadline
        self.max_poll_interval = max_poll_interval
        self.clock = clock
        self.events: queue.Queue[JobEvent] = queue.Queue()
        self._work: queue.Queue[object] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._cancel: dict[str, threading.Event] = {}
        self._gates: dict[str, _Gate] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- public, main thread ------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Journal the job, then queue it; a worker sends the create request."""
        self.journal.save(job)
        self._enqueue(job)

    def resume(self, job: Job) -> None:
        """Continue a journaled job without paying again."""
        self._enqueue(job)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            flag = self._cancel.get(job_id)
        if flag is None:
            return False
        flag.set()
        return True

    def live_job_ids(self) -> set[str]:
        with self._lock:
            return set(self._cancel)

    def worker_count(self) -> int:
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker (event + sentinel + join); jobs stay resumable in the journal."""
        self._stopping.set()
        with self._lock:
            for flag in self._cancel.values():
                flag.set()
            threads = list(self._threads)
        for _ in threads:
            self._work.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]

    # -- workers ------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        if self._stopping.is_set():
            raise RuntimeError("engine is shut down")
        with self._lock:
            self._cancel[job.job_id] = threading.Event()
            if len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._worker, name=f"conjure-worker-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._work.put(job)

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            assert isinstance(item, Job)
            try:
                self._run(item)
            finally:
                with self._lock:
                    self._cancel.pop(item.job_id, None)

    def _run(self, job: Job) -> None:
        flag = self._cancel[job.job_id]
        try:
            provider = self.provider_factory(job.provider)
            if job.state in (JobState.DOWNLOADED, JobState.IMPORTING) and _files_exist(job):
                self._emit(job.evolve(state=JobState.DOWNLOADED))
                return
            if not job.task_id:
                job = self._submit(job, provider, flag)
            status = self._poll_until_done(job, provider, flag)
            job = self._download(job, provider, status, flag)
        except JobCancelledError:
            self._emit(job.evolve(state=JobState.CANCELLED, message="Cancelled"))
        except ProviderError as exc:
            if flag.is_set():  # a cancel interrupted a request or download mid-way
                if not self._stopping.is_set():
                    self._emit(job.evolve(state=JobState.CANCELLED, message="Cancelled"))
                return  # shutting down: leave the job resumable as journaled
            self._emit(job.evolve(state=JobState.FAILED, message=str(exc)))
        except Exception as exc:  # a bug must still end the job visibly, never hang it
            self._emit(
                job.evolve(
                    state=JobState.FAILED, message=f"Internal error: {type(exc).__name__}: {exc}"
                )
            )

    def _emit(self, job: Job) -> Job:
        if job.state == JobState.CANCELLED and self._stopping.is_set():
            return job  # interrupted by shutdown, not by the user: keep it resumable
        self.journal.save(job)
        self.events.put(
            JobEvent(job.job_id, job.state, job.progress, job.message, job.task_id, job.files)
        )
        return job

    def _pause(self, flag: threading.Event, seconds: float) -> None:
        if seconds > 0 and flag.wait(seconds):
            raise JobCancelledError
        if flag.is_set():
            raise JobCancelledError

    def _gate(self, job: Job, provider: Provider, flag: threading.Event) -> None:
        """Wait for the service's budget; re-checked often, so a learned limit applies at once."""
        rate = getattr(getattr(provider, "http", None), "rate", None)
        while True:
            with self._lock:
                gate = self._gates.setdefault(job.provider, _Gate())
                if rate is not None and rate.limit:
                    gate.per_hour = float(rate.limit)
                if rate is not None and rate.remaining == 0:
                    gate.tokens = min(gate.tokens, 0.0)
                wait = gate.take(self.clock())
            if wait <= 0:
                return
            self._pause(flag, min(wait, 0.5))

    def _submit(self, job: Job, provider: Provider, flag: threading.Event) -> Job:
        if job.state == JobState.SUBMITTING and not provider.supports_idempotency:
            raise ProviderError(
                ErrorKind.TIMEOUT,
                "the create request may have reached the service; check its dashboard "
                "before generating again",
            )
        job = self._emit(job.evolve(state=JobState.SUBMITTING, message="Submitting"))
        provider.check(job.request())
        for attempt in range(3):
            self._gate(job, provider, flag)
            try:
                task_id = provider.submit(job.request(), job.idempotency_key)
                break
            except ProviderError as exc:
                # With an idempotency key the same create can be sent again safely.
                if not (provider.supports_idempotency and exc.retryable) or attempt == 2:
                    raise
                self._pause(flag, max(exc.retry_after or 0.0, 1.0 + attempt))
        return self._emit(
            job.evolve(state=JobState.SUBMITTED, task_id=task_id, message="Submitted")
        )

    def _poll_until_done(self, job: Job, provider: Provider, flag: threading.Event) -> TaskStatus:
        assert job.task_id
        deadline = self.clock() + self.poll_deadline
        interval = provider.poll_interval
        failures = 0
        while True:
            self._pause(flag, 0)
            self._gate(job, provider, flag)
            try:
                status = provider.poll(job.task_id)
                failures = 0
            except ProviderError as exc:
                if not exc.retryable or self.clock() > deadline:
                    raise
                failures += 1
                self._pause(flag, max(exc.retry_after or 0.0, min(interval * failures, 30.0)))
                continue
            if status.state == TaskState.SUCCEEDED:
                return status
            if status.state in (TaskState.FAILED, TaskState.CANCELLED):
                raise ProviderError(
                    ErrorKind.BAD_REQUEST, status.message or f"task {status.state.value}"
                )
            if (status.progress, status.message) != (
                job.progress,
                job.message,
            ) or job.state != JobState.RUNNING:
                job = self._emit(
                    job.evolve(
                        state=JobState.RUNNING,
                        progress=status.progress,
                        message=status.message or "Generating",
                    )
                )
            if self.clock() > deadline:
                raise ProviderError(
                    ErrorKind.TIMEOUT,
                    f"no result after {self.poll_deadline / 60:.0f} minutes; resume later",
                )
            self._pause(flag, status.wait if status.wait is not None else interval)
            interval = min(interval * 1.25, provider.poll_interval * 4, self.max_poll_interval)

    def _download(
        self, job: Job, provider: Provider, status: TaskStatus, flag: threading.Event
    ) -> Job:
        job = self._emit(
            job.evolve(state=JobState.DOWNLOADING, progress=1.0, message="Downloading")
        )
        folder = self.jobs_root / job.job_id
        folder.mkdir(parents=True, exist_ok=True)
        http = getattr(provider, "http", None)
        if http is None:
            raise ProviderError(ErrorKind.BAD_RESPONSE, "provider has no HTTP client for downloads")
        files: list[str] = []
        for index, asset in enumerate(sorted(status.assets, key=lambda a: a.role != "model")):
            files.append(self._fetch(http, asset, folder, index, flag))
        if not any(Path(f).suffix.lstrip(".") in MODEL_FORMATS for f in files):
            raise ProviderError(ErrorKind.BAD_RESPONSE, "the service returned no 3D model file")
        return self._emit(
            job.evolve(state=JobState.DOWNLOADED, files=tuple(files), message="Downloaded")
        )

    def _fetch(self, http, asset: Asset, folder: Path, index: int, flag: threading.Event) -> str:
        raw = folder / f"asset-{index}.download"
        http.download(asset.url, str(raw), cancelled=flag.is_set)
        with open(raw, "rb") as f:
            kind = detect_format(f.read(512))
        if kind is None or (asset.role == "model" and kind not in MODEL_FORMATS):
            raw.unlink()
            raise ProviderError(
                ErrorKind.BAD_RESPONSE, f"the {asset.role} file is not a format Conjure can read"
            )
        final = folder / f"{asset.role}.{kind}"
        os.replace(raw, final)
        return str(final)


def _files_exist(job: Job) -> bool:
    return bool(job.files) and all(os.path.isfile(f) for f in job.files)
