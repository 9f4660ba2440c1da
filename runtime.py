"""The one runtime object: engine, journal and live-job mirror, on Blender's main thread.

Operators, panels, `api.py` and the CLI are thin doors onto `get()`; jobs/ below it (engine,
journal, model, rate limits) stays free of bpy. Workers post Job snapshots; only the main
thread reads them, here: a few at a time from the modal monitor (UI) or in a loop (`wait`,
scripts and `blender -b`, where timers never fire).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import bpy
import bpy.utils.previews
from mathutils import Vector

from .importers import archive, gltf, obj, placement, scene, vox, voxfile
from .jobs.engine import Engine
from .jobs.journal import Journal, process_owner
from .jobs.model import (
    FINISHED,
    ImportPlan,
    Job,
    JobState,
    VoxMesh,
    key_fingerprint,
    split_notes,
)
from .jobs.ratelimit import RateNote
from .preferences import addon_preferences, network_settings, service_settings
from .providers import SERVICES, get_provider, make_http
from .providers.base import Capability, Provider, ProviderError, is_url
from .providers.http import HttpClient

ADDON_PACKAGE = __package__
POLL_ENV = "CONJURE_POLL_SECONDS"  # pipelines (and tests) may pace polling themselves
KEPT_FINISHED = 20  # finished jobs kept in the sidebar mirror; the journal keeps them all
LIVE_STATES = frozenset(JobState) - FINISHED
READY_TO_CLICK = "Ready — Import"
NOT_RUNNING = "Not running — Resume continues it (nothing is paid again)"
MODEL_SUFFIXES = (".glb", ".gltf", ".vox", ".obj", ".zip")
GLTF_NAMES = (".glb", ".gltf")
# What a bad file may raise while importing: one line for the user, nothing left behind.
IMPORT_ERRORS = (
    archive.ArchiveError,
    zipfile.BadZipFile,
    gltf.GltfImportError,
    obj.ObjImportError,
    voxfile.VoxFormatError,
    OSError,
    ValueError,
)


class ConjureError(Exception):
    """What a script or the UI is told: one line, never a key."""


@dataclass(frozen=True)
class _Access:
    """A job's key and network settings, captured on the main thread, used by workers."""

    api_key: str
    proxy: str
    ca_bundle: str


class Runtime:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = Journal(root / "journal.sqlite")
        self.owner = process_owner()
        self.jobs: dict[str, Job] = {}
        self.in_flight_floor = 0  # a batch raises it: all its rows run at once
        self._file_generation = 0  # +1 on every file load: a job imports into its own file
        self._born_in: dict[str, int] = {}  # job id → file generation it was started in
        self._access: dict[str, _Access] = {}
        self._previews: bpy.utils.previews.ImagePreviewCollection | None = None
        self.notices: list[tuple[str, str]] = []  # (report type, line) for the monitor
        self._noticed: dict[str, tuple[JobState, str]] = {}
        self._clients: dict[tuple[str, str, _Access], HttpClient] = {}
        prefs = addon_preferences()
        self.engine = Engine(
            self.journal,
            self._provider_for,
            jobs_root=root / "jobs",
            owner=self.owner,
            max_in_flight=prefs.max_concurrent_jobs if prefs else 8,
            poll_interval=_poll_seconds(),
        )
        self.prune(prefs.keep_days if prefs else 30)

    # -- starting (main thread) ------------------------------------------------------------

    def new_job(
        self,
        provider: str,
        source: str = "TEXT",
        prompt: str = "",
        image_paths: Sequence[str] = (),
        options: Mapping[str, object] | None = None,
        plan: ImportPlan | None = None,
    ) -> Job:
        """Validate a request and make its job; raises ConjureError with one line."""
        if provider not in SERVICES:
            raise ConjureError(f"Unknown service {provider!r}: use one of {', '.join(SERVICES)}")
        problem = request_problem(provider, source, prompt, image_paths)
        if problem:
            raise ConjureError(problem)
        settings = service_settings(provider)
        job = Job.new(
            provider,
            source,
            prompt.strip(),
            tuple(image_paths),
            {k: v for k, v in (options or {}).items() if v not in ("", None)},
            plan,
            key_fingerprint=key_fingerprint(settings.api_key),
            base_url=settings.base_url,
            blend_file=bpy.data.filepath,
        )
        try:  # the service's own rules (options, ranges, files): refused before journaling
            get_provider(provider, None).check(job.request())  # type: ignore[arg-type]
        except ProviderError as exc:
            raise ConjureError(str(exc)) from None
        return job

    def submit(self, job: Job) -> str:
        self._remember(job)
        self._born_in[job.job_id] = self._file_generation
        self.engine.submit(job)
        return job.job_id

    def file_loaded(self) -> None:
        """Another .blend replaced the open one: running jobs no longer import by themselves."""
        self._file_generation += 1

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
            if job.state == JobState.READY and _files_exist(job):
                if self.journal.claim(job.job_id, self.owner):  # downloaded: import here
                    self._hold(job, "Running in another Blender")
                    continue
                self._remember(job)
                self._emit_local(job)
                started.append(job.job_id)
                continue
            self._remember(job)
            reason = self.engine.resume(job)
            if reason:
                self._hold(job, reason)
                continue
            started.append(job.job_id)
        return started

    def _hold(self, job: Job, reason: str) -> None:
        """Shown with why it was not resumed; not journaled (the row is not ours to change)."""
        self.jobs[job.job_id] = job.evolve(message=reason)
        self._mirror(self.jobs[job.job_id], held=True)

    def show_history(self, limit: int = KEPT_FINISHED) -> int:
        """Put the journal's recent jobs in the sidebar: finished ones as they ended,
        unfinished ones not running here with Resume. Returns how many are unfinished."""
        waiting = 0
        live = self.engine.live_job_ids()
        for job in reversed(self.journal.recent(limit)):
            if job.job_id in self.jobs or job.job_id in live:
                continue
            held = job if job.finished else job.evolve(message=NOT_RUNNING)
            self._noticed[job.job_id] = (held.state, held.message)  # old news: no report
            self._mirror(held, held=not job.finished)
            waiting += 0 if job.finished else 1
        return waiting

    def _resume_problem(self, job: Job) -> str:
        settings = service_settings(job.provider)
        name = SERVICES[job.provider].name
        if not settings.api_key:
            return f"No API key for {name}: add one to resume this job"
        if job.key_fingerprint and job.key_fingerprint != key_fingerprint(settings.api_key):
            return f"Created with another {name} API key: set that key to resume this job"
        return ""

    def _remember(self, job: Job) -> None:
        settings = service_settings(job.provider)
        proxy, ca_bundle = network_settings()
        self._access[job.job_id] = _Access(settings.api_key, proxy, ca_bundle)
        if not job.base_url:
            job = job.evolve(base_url=settings.base_url)
        self.jobs[job.job_id] = job
        self.engine.set_max_in_flight(self._max_in_flight())
        self._mirror(job)

    def _max_in_flight(self) -> int:
        prefs = addon_preferences()
        return max(prefs.max_concurrent_jobs if prefs else 8, self.in_flight_floor)

    def _provider_for(self, job: Job, on_rate) -> Provider:
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

    def cancel(self, job_id: str) -> bool:
        if self.engine.cancel(job_id):
            return True
        job = self.jobs.get(job_id)
        if job is None or job.finished:
            return False
        holder = self.journal.holder(job_id)
        if holder and holder != self.owner:
            return False  # another Blender runs it: its row is not ours to change
        self._set(job, JobState.CANCELLED, "Cancelled")  # e.g. Ready, not imported yet
        return True

    def pick(self, job_id: str, choice: int | str, options: dict[str, object] | None = None) -> str:
        """Answer a job awaiting a pick, with the next stage's `options` (e.g. voxelize
        settings chosen after seeing the candidates); '' or why not."""
        job = self.latest(job_id)
        if job is None or job.state != JobState.AWAITING_PICK:
            return "That job is not waiting for a pick"
        if isinstance(choice, str) and not os.path.isfile(choice):
            return f"Image not found: {choice}"
        options, plan = split_notes(options or {}, job.plan)
        if options:
            try:
                merged = job.evolve(options={**job.options, **options})
                get_provider(job.provider, None).check(merged.request())  # type: ignore[arg-type]
            except ProviderError as exc:
                return str(exc)
        self.engine.pick(job_id, choice, options, plan)
        # Moving on from here: a script's wait() must not return before the engine answers.
        self.jobs[job_id] = job.evolve(state=JobState.RUNNING, message="Picked")
        self._mirror(self.jobs[job_id])
        return ""

    def refine_source(self, job_id: str, active: bpy.types.Object | None) -> Job:
        """The finished job to refine: by id, else the one that made the active object."""
        job_id = job_id or (str(active.get("conjure_job_id", "")) if active is not None else "")
        job = self.latest(job_id) if job_id else None
        if job is None:
            raise ConjureError("Select an asset Conjure imported, or name a job, to refine")
        if job.state != JobState.IMPORTED or not job.task_id:
            raise ConjureError(f"{job.label} has not finished; refine it once it is imported")
        if Capability.REFINE not in SERVICES[job.provider].capabilities:
            raise ConjureError(f"{SERVICES[job.provider].name} cannot refine a model")
        return job

    # -- main thread: events, imports ------------------------------------------------------

    def drain(
        self, context: bpy.types.Context, budget: float = 0.002, import_budget: float = 0.05
    ) -> int:
        """One monitor tick: take events for up to `budget` seconds (each is a full snapshot,
        so only a job's newest counts), mirror them, then import ready jobs for up to
        `import_budget` (at least one: Blender's importers are main-thread by nature)."""
        deadline = time.perf_counter() + budget
        newest: dict[str, Job] = {}
        taken = 0
        while time.perf_counter() < deadline:
            try:
                job = self.engine.events.get_nowait()
            except queue.Empty:
                break
            newest[job.job_id] = job
            taken += 1
        for job in newest.values():
            self.apply(job)
        self.import_waiting(context, import_budget)
        return taken

    def wait(
        self, context: bpy.types.Context, job_ids: Iterable[str], timeout: float
    ) -> dict[str, Job]:
        """Run the main-thread side until the jobs end or `timeout` passes (jobs go on)."""
        ids = list(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            self.import_waiting(context)
            # A job waiting for Object mode, a click or a pick cannot move while a script waits.
            pending = [
                i
                for i in ids
                if i in self.jobs
                and self.jobs[i].state in LIVE_STATES
                and self.jobs[i].message != READY_TO_CLICK
                and self.jobs[i].state != JobState.AWAITING_PICK
            ]
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            try:
                job = self.engine.events.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            self.apply(job)
        return {i: self.jobs.get(i) or self.journal.get(i) for i in ids}  # type: ignore[misc]

    def apply(self, job: Job) -> None:
        """Take a worker's snapshot of a job this session follows; imports come separately."""
        known = self.jobs.get(job.job_id)
        if known is None or known.finished:
            return
        self.jobs[job.job_id] = job
        self._mirror(job)

    def latest(self, job_id: str) -> Job | None:
        """The newest word on a job: the journal (written by the scheduler at every change)
        or this session's view (which also knows why a job was not resumed)."""
        known, journaled = self.jobs.get(job_id), self.journal.get(job_id)
        if known is None or journaled is None:
            return known or journaled
        return journaled if journaled.updated > known.updated else known

    def _emit_local(self, job: Job) -> None:
        self.engine.events.put(job)

    def _is_pending_import(self, job: Job) -> bool:
        known = self.jobs.get(job.job_id)
        return known is not None and known.state == JobState.READY

    def import_waiting(self, context: bpy.types.Context, budget: float | None = None) -> None:
        """Import READY jobs that may import now (their own file, Object mode), for up to
        `budget` seconds (None: all of them)."""
        deadline = time.perf_counter() + budget if budget is not None else None
        for job in [j for j in self.jobs.values() if j.state == JobState.READY]:
            if context.mode == "OBJECT" and self._in_its_file(job):
                if deadline is not None and time.perf_counter() > deadline:
                    break
                self.import_job(context, job.job_id)
            elif job.message != READY_TO_CLICK:
                self._set(job, JobState.READY, READY_TO_CLICK)

    def _in_its_file(self, job: Job) -> bool:
        born = self._born_in.get(job.job_id)
        if born is not None:
            return born == self._file_generation
        return bpy.data.filepath == job.blend_file  # resumed from an earlier session

    def import_job(self, context: bpy.types.Context, job_id: str) -> None:
        """Import a downloaded job's model into a new collection at the 3D cursor (one undo);
        a text→image result becomes an image kept in the file."""
        job = self._set(self.jobs[job_id], JobState.IMPORTING, "Importing")
        try:
            if _image_result(job.files):
                image = _load_image(_image_result(job.files), f"Conjure {job.label}")
                objects, targets, warnings = [], [image], []
            else:
                objects, collection, warnings = self._import_files(context, job)
                targets = [collection, *objects]
        except IMPORT_ERRORS as exc:
            self._set(job, JobState.FAILED, f"Import failed: {exc}")
            return
        except Exception as exc:  # never a traceback in the UI or a job stuck importing
            self._set(job, JobState.FAILED, f"Import failed: {type(exc).__name__}: {exc}")
            return
        for target in targets:
            for key, value in _provenance(job).items():
                target[key] = value
        if objects:
            roots = [o for o in objects if o.parent is None]
            scene.select_only(context, objects, roots[0] if roots else objects[0])
        names = tuple(t.name for t in (objects or targets))
        job = job.evolve(objects=names, warnings=(*job.warnings, *warnings))
        done = f"Imported {len(objects)} object(s)" if objects else f"Image {names[0]}"
        self._set(job, JobState.IMPORTED, done)
        bpy.ops.ed.undo_push(message=f"Conjure: import {job.label}")

    def _import_files(self, context: bpy.types.Context, job: Job):
        model = _model_file(job.files)
        folder = str(self.root / "jobs" / job.job_id)
        location = context.scene.cursor.location.copy()
        before = scene.snapshot()
        try:
            collection = scene.new_collection(context, f"Conjure {job.label}")
            pad = 0.0
            if model.endswith(".vox"):
                data = voxfile.read_file(model)
                options = _vox_options(job)
                result = vox.build(data, job.label, collection, options, location)
                objects, warnings = [result.root, *result.objects], []
                pad = 0.0 if options.merge else options.voxel_size / 2
            else:
                model = _unbundled_gltf(model, folder) or model
                importer = obj.import_obj if model.endswith((".obj", ".zip")) else gltf.import_gltf
                imported = importer(model, collection, location, folder)
                objects, warnings = imported.objects, imported.warnings
            objects, more = _arrange(job, objects, collection, location, pad)
            warnings = [*warnings, *more]
        except BaseException:
            scene.rollback(before)  # nothing half-imported: objects, data, the collection
            raise
        return objects, collection, warnings

    def reuse(self, job_ids: Iterable[str]) -> None:
        """Jobs a batch re-run finds in the journal: imported ones are imported again from
        their files (or, if those are gone, fetched again by polling: never a new create);
        unfinished ones are resumed."""
        for job_id in job_ids:
            job = self.latest(job_id)
            if job is None or job.job_id in self.engine.live_job_ids():
                continue
            if job.state == JobState.IMPORTED:
                job = job.evolve(state=JobState.READY, objects=(), message="Importing again")
            self._remember(job)
            self._born_in[job.job_id] = self._file_generation
            if job.state == JobState.READY and _files_exist(job):
                self._set(job, JobState.READY, job.message)
            elif self.engine.resume(job):
                self._hold(job, "Running in another Blender")

    def reimport(self, job_id: str) -> str:
        """Import a finished job's files again (a new copy; nothing is sent); '' or why not."""
        job = self.latest(job_id)
        if job is None or job.state != JobState.IMPORTED:
            return "Only an imported job can be imported again"
        if not _files_exist(job):
            return "Its downloaded files are gone (cleared); Re-run generates it again"
        self._remember(job.evolve(state=JobState.READY, message="Importing again"))
        self._born_in[job_id] = self._file_generation
        return ""

    def rerun(self, job_id: str) -> Job:
        """A new job asking the same of the same service (a new, paid generation)."""
        job = self.latest(job_id)
        if job is None:
            raise ConjureError("That job is no longer in the journal")
        return self.new_job(
            job.provider, job.source, job.prompt, job.image_paths, job.options, job.plan
        )

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
        self._drop_from_mirror({job_id})
        return ""

    def folder(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    # -- housekeeping ----------------------------------------------------------------------

    def clear_finished(self) -> int:
        """Forget every finished job: rows and folders (imports keep their data packed)."""
        count = self._forget(self.journal.finished_before(time.time() + 1))
        self._prune_mirror(keep=0)
        return count

    def prune(self, keep_days: float) -> int:
        """Remove finished jobs (rows and folders) older than `keep_days`."""
        return self._forget(self.journal.finished_before(time.time() - keep_days * 86400))

    def _forget(self, jobs: list[Job]) -> int:
        for job in jobs:
            shutil.rmtree(self.root / "jobs" / job.job_id, ignore_errors=True)
            self.jobs.pop(job.job_id, None)
        self.journal.delete(j.job_id for j in jobs)
        return len(jobs)

    def close(self, timeout: float = 1.0) -> None:
        """Stop workers, then close the journal; unfinished jobs stay in it."""
        self.engine.shutdown(timeout)
        self.journal.close()
        if self._previews is not None:
            with contextlib.suppress(Exception):  # at exit, Blender may have freed them
                bpy.utils.previews.remove(self._previews)
            self._previews = None

    def is_busy(self) -> bool:
        return bool(self.engine.live_job_ids()) or not self.engine.events.empty()

    def import_pending(self) -> bool:
        """Downloaded jobs the next ticks will import (not those waiting for the user)."""
        return any(
            j.state == JobState.READY and j.message != READY_TO_CLICK for j in self.jobs.values()
        )

    def has_ready(self) -> bool:
        """Jobs downloaded but waiting for Object mode, their file, or a click."""
        return any(j.state == JobState.READY for j in self.jobs.values())

    # -- mirror -----------------------------------------------------------------------------

    def _set(self, job: Job, state: JobState, message: str) -> Job:
        job = job.evolve(state=state, message=message)
        self.jobs[job.job_id] = job
        self.journal.save(job)
        self._mirror(job)
        return job

    def _mirror(self, job: Job, held: bool = False) -> None:
        """Show `job` in the sidebar; `held`: in the journal but not running here."""
        self._notice(job)
        wm = bpy.context.window_manager
        if wm is None or not hasattr(wm, "conjure"):
            return
        items = wm.conjure.jobs
        item = next((i for i in items if i.job_id == job.job_id), None)
        if item is None:
            item = items.add()
            item.job_id, item.label, item.provider = job.job_id, job.label, job.provider
        item.state, item.progress, item.message = job.state.value, job.progress, job.message
        item.warnings = "\n".join(job.warnings)
        item.prompt, item.created, item.updated = job.prompt, int(job.created), int(job.updated)
        item.next_try = int(job.next_try) if job.state == JobState.STALLED else 0
        item.held = held
        item.can_refine = _can_refine(job)
        item.compare = job.plan.compare_group
        item.compare_slot = job.plan.compare_slot
        if not item.thumbnail:
            item.thumbnail = self._preview_icon(f"{job.job_id}:thumb", _thumbnail(job))
        icons = self._candidate_icons(job) if job.state == JobState.AWAITING_PICK else []
        if [c.icon for c in item.candidates] != icons:
            item.candidates.clear()
            for icon in icons:
                item.candidates.add().icon = icon
        if job.finished:
            self._prune_mirror(KEPT_FINISHED)

    def _candidate_icons(self, job: Job) -> list[int]:
        """Preview icons of a job's candidate images (loaded once, on the main thread)."""
        return [self._preview_icon(f"{job.job_id}:{i}", p) for i, p in enumerate(job.candidates)]

    def _preview_icon(self, key: str, path: str) -> int:
        """A downloaded image as an icon (0 when there is none); Blender reads it lazily."""
        if not path or not os.path.isfile(path):
            return 0
        if self._previews is None:
            self._previews = bpy.utils.previews.new()
        preview = self._previews.get(key) or self._previews.load(key, path, "IMAGE")
        return preview.icon_id

    def _notice(self, job: Job) -> None:
        """Remember what a person should hear about (the monitor reports it once)."""
        before = self._noticed.get(job.job_id)
        now = (job.state, job.message)
        if before == now:
            return
        self._noticed[job.job_id] = now
        del self.notices[:-50]  # nobody reads them headless: keep only the latest
        name = SERVICES[job.provider].name
        if job.state == JobState.IMPORTED:
            self.notices.append(("INFO", f"Conjure: {name} finished {job.label}"))
        elif job.state == JobState.FAILED:
            self.notices.append(("ERROR", f"Conjure: {name}: {job.message}"))
        elif job.state == JobState.AWAITING_PICK:
            self.notices.append(("INFO", f"Conjure: {job.label} — pick a candidate in the sidebar"))
        elif job.state == JobState.READY and job.message == READY_TO_CLICK:
            self.notices.append(("INFO", f"Conjure: {job.label} is ready — Import it"))

    def take_notices(self) -> list[tuple[str, str]]:
        """What happened since the last call, once each (the UI monitor reports it)."""
        notices, self.notices = self.notices, []
        return notices

    def _prune_mirror(self, keep: int) -> None:
        wm = bpy.context.window_manager
        if wm is None or not hasattr(wm, "conjure"):
            return
        done = {s.value for s in FINISHED}
        finished = [item.job_id for item in wm.conjure.jobs if item.state in done]
        self._drop_from_mirror(set(finished[: max(len(finished) - keep, 0)]))

    def _drop_from_mirror(self, job_ids: set[str]) -> None:
        wm = bpy.context.window_manager
        if wm is None or not hasattr(wm, "conjure"):
            return
        items = wm.conjure.jobs
        for index in reversed(range(len(items))):
            job_id = items[index].job_id
            if job_id in job_ids:
                items.remove(index)
                wm.conjure.jobs_index = min(wm.conjure.jobs_index, max(len(items) - 1, 0))
                if job_id in self.jobs and self.jobs[job_id].finished:
                    del self.jobs[job_id]


def request_problem(provider: str, source: str, prompt: str, image_paths: Sequence[str]) -> str:
    """'' when the request can be sent, else the one line that says what to fix."""
    info = SERVICES[provider]
    if not service_settings(provider).api_key:
        return f"No API key for {info.name}: add one in preferences or set {info.env_key}"
    if source not in ("TEXT", "IMAGE", "MULTIVIEW"):
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


def import_local(context: bpy.types.Context, path: str) -> list[str]:
    """A file from disk (`conjure import FILE`): .vox, .glb/.gltf, .obj or a .zip bundle,
    into a new collection at the 3D cursor; the names of the objects made."""
    name = os.path.splitext(os.path.basename(path))[0]
    location = context.scene.cursor.location.copy()
    before = scene.snapshot()
    try:
        collection = scene.new_collection(context, name)
        if path.lower().endswith(".vox"):
            built = vox.build(voxfile.read_file(path), name, collection, vox.VoxOptions(), location)
            objects = [built.root, *built.objects]
        elif path.lower().endswith((".obj", ".zip", *GLTF_NAMES)):
            model = _unbundled_gltf(path, get().root / "imports" / name) or path
            gltf_file = model.lower().endswith(GLTF_NAMES)
            importer = gltf.import_gltf if gltf_file else obj.import_obj
            objects = importer(model, collection, location, os.path.dirname(model)).objects
        else:
            kind = os.path.splitext(path)[1] or "this file"
            raise ValueError(f"cannot import {kind}: use .vox, .glb, .gltf, .obj or .zip")
    except IMPORT_ERRORS as exc:
        scene.rollback(before)
        raise ValueError(f"Import failed: {exc}") from None
    except BaseException:
        scene.rollback(before)
        raise
    return [o.name for o in objects]


def export_objects(objects: Sequence[bpy.types.Object], path: str) -> None:
    """Write `objects` (with their children) as .glb or .obj with Blender's own exporters."""
    for selected in bpy.context.view_layer.objects.selected:
        selected.select_set(False)
    for item in objects:
        item.select_set(True)
        for child in item.children_recursive:
            child.select_set(True)
    if path.endswith(".glb"):
        bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True)
    else:
        bpy.ops.wm.obj_export(filepath=path, export_selected_objects=True)


def _vox_options(job: Job) -> vox.VoxOptions:
    """How a job's .vox is built: instanced cubes, or a mesh as its import choice says."""
    mesh = job.plan.vox_mesh
    return vox.VoxOptions(
        merge=mesh != VoxMesh.INSTANCES,
        greedy=mesh in (VoxMesh.GREEDY, VoxMesh.WATERTIGHT),
        watertight=mesh == VoxMesh.WATERTIGHT,
    )


def _arrange(
    job: Job,
    objects: list[bpy.types.Object],
    collection: bpy.types.Collection,
    cursor: Vector,
    pad: float,
) -> tuple[list[bpy.types.Object], list[str]]:
    """Placement the job asked for (the sidebar's choices; scripts get the importer's own):
    bottom centre on the cursor, a height, a compare slot with a label, an asset."""
    plan = job.plan
    slot, count, spacing = plan.compare_slot, plan.compare_count, plan.compare_spacing
    target = cursor + Vector(((slot - (count - 1) / 2) * spacing, 0.0, 0.0))
    origin_bottom, height = plan.origin_bottom, plan.target_height
    if origin_bottom or height > 0 or count > 1:
        where = placement.Placement(target, origin_bottom, height, pad)
        objects = placement.place(objects, collection, where)
    warnings: list[str] = []
    name = SERVICES[job.provider].name
    if count > 1:
        front = target + Vector((0.0, -0.35 * spacing, 0.0))
        objects = [*objects, placement.add_label(collection, name, front, 0.12 * spacing)]
    if plan.mark_asset:
        preview = _preview_file(job)
        warnings += placement.mark_asset(
            collection, service=name, prompt=job.prompt, preview=preview
        )
    return objects, warnings


def _preview_file(job: Job) -> str:
    """The picture that best shows a job's result: the service's thumbnail, else the image
    it was made from (a picked candidate, or the user's own), else ''."""
    thumbnail = _thumbnail(job)
    picked = job.picked_path
    images = [p for p in job.image_paths if not is_url(p)]
    for path in (thumbnail, picked, *images[:1]):
        if path and os.path.isfile(path):
            return path
    return ""


def _unbundled_gltf(model: str, folder: str | Path) -> str:
    """A zipped model holding glTF rather than OBJ: extracted safely, the glTF's path."""
    if not model.endswith(".zip"):
        return ""
    with zipfile.ZipFile(model) as bundle:
        names = [n.lower() for n in bundle.namelist()]
    if any(n.endswith(".obj") for n in names) or not any(n.endswith(GLTF_NAMES) for n in names):
        return ""
    files = archive.extract_zip(model, os.path.join(folder, "model-files"))
    return next(f for f in sorted(files) if f.lower().endswith(GLTF_NAMES))


def _provenance(job: Job) -> dict[str, str]:
    """Custom properties on what a job made: where it came from, never a secret."""
    tags = {
        "conjure_provider": job.provider,
        "conjure_task_id": job.task_id or "",
        "conjure_job_id": job.job_id,
        "conjure_prompt": job.prompt,
    }
    parent = job.options.get("parent_task_id") or job.previous_task_id
    if parent:
        tags["conjure_parent_task_id"] = str(parent)
    return tags


def _image_result(files: Iterable[str]) -> str:
    """The picture of a text→image job ('' when the job made a model)."""
    return next((f for f in files if os.path.basename(f).startswith("image.")), "")


def _load_image(path: str, name: str) -> bpy.types.Image:
    """Packed, so the .blend keeps it after the job folder is pruned; kept even if unused."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        image.name = name
        image.pack()
        image.use_fake_user = True
        image.preview_ensure()
    except BaseException:
        bpy.data.images.remove(image)
        raise
    return image


def _model_file(files: Iterable[str]) -> str:
    for path in files:
        is_model = os.path.basename(path).startswith("model")  # named by role, see the engine
        if is_model and path.endswith(MODEL_SUFFIXES) and os.path.isfile(path):
            return path
    raise ValueError("the service returned no model file this add-on can import")


def _thumbnail(job: Job) -> str:
    return next((f for f in job.files if os.path.basename(f).startswith("thumbnail")), "")


def _can_refine(job: Job) -> bool:
    """A finished Ravenra-style preview: the service refines it into a textured model."""
    refines = Capability.REFINE in SERVICES[job.provider].capabilities
    preview = str(job.options.get("mode", "")) == "preview"
    return refines and preview and job.state == JobState.IMPORTED and bool(job.task_id)


def _files_exist(job: Job) -> bool:
    return bool(job.files) and all(os.path.isfile(f) for f in job.files)


def _poll_seconds() -> float | None:
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
        _current = Runtime(root)
    return _current


def current() -> Runtime | None:
    """The runtime if one was started (panels and handlers must not start one)."""
    return _current


def shutdown(timeout: float = 1.0) -> None:
    global _current
    if _current is not None:
        _current.close(timeout)
        _current = None


__all__ = ["ConjureError", "RateNote", "Runtime", "current", "get", "request_problem", "shutdown"]
