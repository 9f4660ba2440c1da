"""Main-thread side of the engine: owns it, mirrors its events into the UI, imports assets.

This is the only module under jobs/ that touches bpy. Workers post events to a queue; only
the main thread reads it, here, either a few at a time from a modal timer (interactive) or
in a blocking loop (background mode, where timers never fire).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..importers import gltf, scene, vox, voxfile
from ..preferences import ServiceSettings, addon_preferences, service_settings
from ..providers import get_provider, make_http
from ..providers.base import Provider
from ..providers.http import HttpClient
from .engine import Engine
from .journal import Journal
from .model import FINISHED, Job, JobEvent, JobState

ADDON_PACKAGE = __package__.rpartition(".")[0]
POLL_ENV = "CONJURE_POLL_SECONDS"  # pipelines (and tests) may pace polling themselves


@dataclass
class Runtime:
    """Engine + journal + the service settings snapshotted on the main thread."""

    root: Path
    journal: Journal
    engine: Engine
    settings: dict[str, ServiceSettings] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    clients: dict[ServiceSettings, HttpClient] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def provider_for(self, provider_id: str) -> Provider:
        """Called on worker threads: only plain values captured on the main thread.

        One HTTP client per service and settings: its jobs share one session and one view of
        the service's rate limit."""
        settings = self.settings[provider_id]
        with self.lock:
            http = self.clients.get(settings)
            if http is None:
                http = make_http(provider_id, settings.api_key, settings.base_url)
                self.clients[settings] = http
        provider = get_provider(provider_id, http)
        if _poll_seconds():
            provider.poll_interval = _poll_seconds()
        return provider


_runtime: Runtime | None = None


def data_root() -> Path:
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="", create=True))


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        root = data_root()
        journal = Journal(root / "journal.sqlite")
        prefs = addon_preferences()
        workers = prefs.max_concurrent_jobs if prefs else 4
        holder: dict[str, Runtime] = {}
        engine = Engine(
            journal,
            lambda pid: holder["rt"].provider_for(pid),
            jobs_root=root / "jobs",
            max_workers=workers,
        )
        holder["rt"] = _runtime = Runtime(root, journal, engine)
    return _runtime


def _poll_seconds() -> float:
    try:
        return max(float(os.environ.get(POLL_ENV, "0")), 0.0)
    except ValueError:
        return 0.0


def shutdown(timeout: float = 5.0) -> None:
    """Stop workers and forget the runtime; unfinished jobs stay in the journal."""
    global _runtime
    if _runtime is not None:
        _runtime.engine.shutdown(timeout)
        _runtime.journal.close()
        _runtime = None


def is_running() -> bool:
    return _runtime is not None and bool(_runtime.engine.live_job_ids())


def has_pending_events() -> bool:
    return _runtime is not None and not _runtime.engine.events.empty()


# ---------------------------------------------------------------------------- starting


def start(job: Job, *, resume: bool = False) -> None:
    rt = runtime()
    rt.settings[job.provider] = service_settings(job.provider)
    rt.jobs[job.job_id] = job
    _mirror(job.job_id, job.state.value, job.progress, job.message, job.label)
    if resume:
        rt.engine.resume(job)
    else:
        rt.engine.submit(job)


def cancel(job_id: str) -> bool:
    return _runtime is not None and _runtime.engine.cancel(job_id)


# ------------------------------------------------------------------------------ draining


def drain(context: bpy.types.Context, budget: float = 0.004, max_events: int = 64) -> int:
    """Apply queued events until the time budget is used; returns how many were applied."""
    if _runtime is None:
        return 0
    deadline = time.perf_counter() + budget
    applied = 0
    while applied < max_events and time.perf_counter() < deadline:
        try:
            event = _runtime.engine.events.get_nowait()
        except queue.Empty:
            break
        apply_event(context, event)
        applied += 1
    return applied


def wait(context: bpy.types.Context, job_ids: Iterable[str], timeout: float) -> dict[str, Job]:
    """Background mode: apply events until every job given is finished (or time runs out)."""
    rt = runtime()
    pending = set(job_ids)
    deadline = time.monotonic() + timeout
    while pending:
        pending = {j for j in pending if rt.jobs[j].state not in FINISHED}
        if not pending:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            for job_id in pending:
                rt.engine.cancel(job_id)
                _finish(job_id, JobState.FAILED, f"Timed out after {timeout:.0f} s; resume later")
            break
        try:
            event = rt.engine.events.get(timeout=min(remaining, 0.25))
        except queue.Empty:
            continue
        apply_event(context, event)
    return {j: rt.jobs[j] for j in job_ids}


def apply_event(context: bpy.types.Context, event: JobEvent) -> None:
    rt = runtime()
    job = rt.jobs.get(event.job_id)
    if job is None:
        return
    job = job.with_event(event)
    rt.jobs[job.job_id] = job
    _mirror(job.job_id, job.state.value, job.progress, job.message, job.label)
    if job.state == JobState.DOWNLOADED:
        import_job(context, job)


# ------------------------------------------------------------------------------- importing


def import_job(context: bpy.types.Context, job: Job) -> None:
    """Import a downloaded job's model into a new collection at the 3D cursor (one undo step)."""
    _finish(job.job_id, JobState.IMPORTING, "Importing")
    try:
        created, collection = _import_files(context, job)
    except (gltf.GltfImportError, voxfile.VoxFormatError, OSError, ValueError) as exc:
        _finish(job.job_id, JobState.FAILED, f"Import failed: {exc}")
        return
    except Exception as exc:  # never a traceback in the UI or a job stuck importing
        _finish(job.job_id, JobState.FAILED, f"Import failed: {type(exc).__name__}: {exc}")
        return
    provenance = {
        "conjure_provider": job.provider,
        "conjure_task_id": job.task_id or "",
        "conjure_job_id": job.job_id,
        "conjure_prompt": job.prompt,
    }
    for target in (collection, *created):
        for key, value in provenance.items():
            target[key] = value
    roots = [o for o in created if o.parent is None]
    scene.select_only(context, created, roots[0] if roots else created[0])
    _finish(job.job_id, JobState.IMPORTED, f"Imported {len(created)} object(s)")
    bpy.ops.ed.undo_push(message=f"Conjure: import {job.label}")


def _import_files(context: bpy.types.Context, job: Job):
    model = _model_file(job.files)
    location = context.scene.cursor.location.copy()
    collection = scene.new_collection(context, f"Conjure {job.label}")
    try:
        if model.endswith(".vox"):
            data = voxfile.read_file(model)
            result = vox.build(data, job.label, collection, vox.VoxOptions(), location)
            created = [result.root, *result.objects]
        else:
            created = gltf.import_glb(model, collection, location)
    except BaseException:  # leave nothing half-imported behind
        for obj in list(collection.all_objects):
            bpy.data.objects.remove(obj, do_unlink=True)
        bpy.data.collections.remove(collection)
        raise
    return created, collection


def _model_file(files: Iterable[str]) -> str:
    for path in files:
        if path.endswith((".glb", ".gltf", ".vox")) and os.path.isfile(path):
            return path
    raise ValueError("the service returned no model file this add-on can import")


# ------------------------------------------------------------------------------- UI mirror


def _finish(job_id: str, state: JobState, message: str) -> None:
    rt = runtime()
    job = rt.jobs[job_id].evolve(state=state, message=message)
    rt.jobs[job_id] = job
    rt.journal.save(job)
    _mirror(job_id, state.value, job.progress, message, job.label)


def _mirror(job_id: str, state: str, progress: float, message: str, label: str) -> None:
    wm = bpy.context.window_manager
    if wm is None or not hasattr(wm, "conjure"):
        return
    items = wm.conjure.jobs
    item = next((i for i in items if i.job_id == job_id), None)
    if item is None:
        item = items.add()
        item.job_id, item.label = job_id, label
    item.state, item.progress, item.message = state, progress, message
