"""The job session on Blender's main thread: wiring, the event and import loops, and the one
instance (`get`, `current`, `shutdown`).

`jobs/session.py` decides (no bpy), `imports.py` builds the scene, `mirror.py` shows the
sidebar. Workers post Job snapshots on `engine.events`; only the main thread reads them, here:
a few at a time from the modal monitor (UI) or in a loop (`wait`: scripts and `blender -b`,
where timers never fire).
"""

from __future__ import annotations

import math
import os
import queue
import time
from collections.abc import Iterable
from pathlib import Path

import bpy

from . import imports, settings
from .jobs.journal import JournalClosedError
from .jobs.model import Job, JobState
from .jobs.session import ConjureError, Session
from .mirror import Mirror

ADDON_PACKAGE = __package__
POLL_ENV = "CONJURE_POLL_SECONDS"  # pipelines (and tests) may pace polling themselves


class Runtime(Session):
    def __init__(self, root: Path) -> None:
        super().__init__(
            root, settings.BlenderHost(), keep_days=settings.keep_days(), poll_interval=_poll()
        )
        self.mirror = Mirror()
        self.listeners.append(self.mirror.show)
        self._last_import = 0.0  # seconds the last import took: the next is expected so
        self._unapplied: dict[str, Job] = {}  # the newest snapshots a tick had no time for

    def take_notices(self) -> list[tuple[str, str]]:
        return self.mirror.take_notices()

    def drain(
        self, context: bpy.types.Context, budget: float = 0.0015, import_budget: float = 0.05
    ) -> int:
        """One monitor tick: take every waiting event (each a full snapshot, so only a job's
        newest counts), apply them for up to `budget` seconds (the rest on the next tick),
        then import ready jobs for up to `import_budget` (at least one: Blender's importers
        are main-thread by nature). Returns how many changes and imports it made."""
        while True:
            try:
                job = self.engine.events.get_nowait()
            except queue.Empty:
                break
            self._unapplied[job.job_id] = job
        applied = self._apply_taken(budget)
        return applied + self.import_waiting(context, import_budget)

    def _apply_taken(self, budget: float | None = None) -> int:
        """Apply the snapshots taken and not yet applied, oldest first, for up to `budget`
        seconds (at least one)."""
        deadline = time.perf_counter() + (budget if budget is not None else math.inf)
        applied = 0
        while self._unapplied and (not applied or time.perf_counter() < deadline):
            self.apply(self._unapplied.pop(next(iter(self._unapplied))))
            applied += 1
        return applied

    def is_busy(self) -> bool:
        return bool(self._unapplied) or super().is_busy()

    def catching_up(self) -> bool:
        """Changes or imports wait for the next tick, or downloads are about to bring some:
        the monitor then ticks quickly."""
        downloading = any(j.state == JobState.DOWNLOADING for j in self.jobs.values())
        return bool(self._unapplied) or downloading or self.import_pending()

    def wait(
        self, context: bpy.types.Context, job_ids: Iterable[str], timeout: float
    ) -> dict[str, Job]:
        """Run the main-thread side until the jobs end or `timeout` passes (jobs go on)."""
        ids = list(job_ids)
        deadline = time.monotonic() + timeout
        self._apply_taken()  # what the monitor's last tick left
        while True:
            self.import_waiting(context)
            remaining = deadline - time.monotonic()
            if not self.unsettled(ids) or remaining <= 0:
                break
            try:
                job = self.engine.events.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            self.apply(job)
        return {i: self.jobs.get(i) or self.journal.get(i) for i in ids}  # type: ignore[misc]

    def import_waiting(self, context: bpy.types.Context, budget: float | None = None) -> int:
        """Import ready jobs that may import now (their own file, Object mode), for up to
        `budget` seconds (None: all of them); the others wait for a click. The first always
        goes; another only if it should end in time, judged by how long the last one took.
        Returns how many it imported."""
        started = time.perf_counter()
        count = 0
        for job in self.ready():
            if not self.imports_now(job, context.mode == "OBJECT"):
                self.needs_click(job)
                continue
            used = time.perf_counter() - started
            if count and budget is not None and used + self._last_import > budget:
                break
            self.import_job(context, job.job_id)
            count += 1
        return count

    def import_job(self, context: bpy.types.Context, job_id: str) -> None:
        """Import a downloaded job now, as one undo step; a failure leaves nothing behind."""
        begun = self.jobs[job_id]
        job = begun.evolve(
            state=JobState.IMPORTING,
            message="Importing",
            needs_click=False,
            import_tries=begun.import_tries + 1,  # journaled first: a crash here is counted
        )
        self.record(job)
        started = time.perf_counter()
        try:
            landed = imports.import_job(context, job, str(self.folder(job_id)))
        except imports.ImportFailedError as exc:
            failed = f"Import failed: {exc}"
            self.record(job.evolve(state=JobState.FAILED, message=failed, import_tries=0))
            return
        done = job.evolve(
            import_tries=0,
            state=JobState.IMPORTED,
            message=landed.summary,
            objects=landed.names,
            warnings=(*job.warnings, *landed.warnings),
        )
        self.record(done)
        bpy.ops.ed.undo_push(message=f"Conjure: import {job.label}")
        self._last_import = time.perf_counter() - started

    def clear_finished(self) -> int:
        count = super().clear_finished()
        self.mirror.drop_finished()  # rows another Blender already cleared from the journal too
        return count

    def close(self, timeout: float = 1.0) -> None:
        super().close(timeout)
        self.mirror.close()


def _poll() -> float | None:
    try:
        value = float(os.environ.get(POLL_ENV, ""))
    except ValueError:
        return None
    return value if value > 0 else None


_current: Runtime | None = None


def get() -> Runtime:
    global _current
    if _current is None:
        root = Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="", create=True))
        try:
            _current = Runtime(root)
        except JournalClosedError as exc:  # one from a newer Conjure: left as it is
            raise ConjureError(f"Cannot open {root / 'journal.sqlite'}: {exc}") from None
        settings.concurrency_listener = _current.apply_concurrency
    return _current


def current() -> Runtime | None:
    """The runtime if one was started (panels and handlers must not start one)."""
    return _current


def shutdown(timeout: float = 1.0) -> None:
    global _current
    settings.concurrency_listener = None
    if _current is not None:
        _current.close(timeout)
        _current = None


__all__ = ["ConjureError", "Runtime", "current", "get", "shutdown"]
