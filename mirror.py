"""What the sidebar shows of the jobs: one WindowManager row per job, preview icons of
thumbnails and candidates, and the reports the job monitor makes once each.

It only listens: the session calls `show()` with every change (main thread).
"""

from __future__ import annotations

import contextlib
import os

import bpy
import bpy.utils.previews

from .imports import thumbnail
from .jobs.model import FINISHED, Job, JobState
from .jobs.session import KEPT_FINISHED, Change, refinable
from .jobs.spend import cost_words
from .providers import SERVICES

MAX_NOTICES = 50  # nobody reads them headless: keep only the latest
_FINISHED_VALUES = {s.value for s in FINISHED}


class Mirror:
    def __init__(self) -> None:
        self._previews: bpy.utils.previews.ImagePreviewCollection | None = None
        self._notices: list[tuple[str, str]] = []  # (report type, line) for the monitor
        self._noticed: dict[str, tuple[JobState, str]] = {}

    def show(self, change: Change) -> None:
        job = change.job
        if change.gone:
            self._drop({job.job_id})
            return
        self._notice(job, change.news)
        items = _items()
        if items is None:
            return
        item = next((i for i in items if i.job_id == job.job_id), None)
        if item is None:
            item = items.add()
            item.job_id, item.label, item.provider = job.job_id, job.label, job.provider
        item.state, item.progress, item.message = job.state.value, job.progress, job.message
        item.warnings = "\n".join(job.warnings)
        item.prompt, item.created, item.updated = job.prompt, int(job.created), int(job.updated)
        item.next_try = int(job.next_try) if job.state == JobState.STALLED else 0
        item.held = change.held
        item.can_refine = refinable(job)
        item.cost = cost_words(job)
        item.compare = job.plan.compare_group
        item.compare_slot = job.plan.compare_slot
        if not item.thumbnail:
            item.thumbnail = self._icon(f"{job.job_id}:thumb", thumbnail(job))
        icons = self._candidate_icons(job) if job.state == JobState.AWAITING_PICK else []
        if [c.icon for c in item.candidates] != icons:
            item.candidates.clear()
            for icon in icons:
                item.candidates.add().icon = icon
        if job.finished:
            finished = [i.job_id for i in items if i.state in _FINISHED_VALUES]
            self._drop(set(finished[: max(len(finished) - KEPT_FINISHED, 0)]))

    def drop_finished(self) -> None:
        items = _items()
        if items is not None:
            self._drop({i.job_id for i in items if i.state in _FINISHED_VALUES})

    def take_notices(self) -> list[tuple[str, str]]:
        """What happened since the last call, once each (the UI monitor reports it)."""
        notices, self._notices = self._notices, []
        return notices

    def close(self) -> None:
        if self._previews is not None:
            with contextlib.suppress(Exception):  # at exit, Blender may have freed them
                bpy.utils.previews.remove(self._previews)
            self._previews = None

    def _candidate_icons(self, job: Job) -> list[int]:
        return [self._icon(f"{job.job_id}:{i}", p) for i, p in enumerate(job.candidates)]

    def _icon(self, key: str, path: str) -> int:
        """A downloaded image as an icon (0 when there is none); Blender reads it lazily."""
        if not path or not os.path.isfile(path):
            return 0
        if self._previews is None:
            self._previews = bpy.utils.previews.new()
        preview = self._previews.get(key) or self._previews.load(key, path, "IMAGE")
        return preview.icon_id

    def _notice(self, job: Job, news: bool) -> None:
        """Remember what a person should hear about (the monitor reports it once)."""
        now = (job.state, job.message)
        if self._noticed.get(job.job_id) == now:
            return
        self._noticed[job.job_id] = now
        line = _news(job) if news else None
        if line is not None:
            del self._notices[:-MAX_NOTICES]
            self._notices.append(line)

    def _drop(self, job_ids: set[str]) -> None:
        wm = bpy.context.window_manager
        items = _items()
        if items is None or not job_ids:
            return
        for index in reversed(range(len(items))):
            if items[index].job_id in job_ids:
                items.remove(index)
                wm.conjure.jobs_index = min(wm.conjure.jobs_index, max(len(items) - 1, 0))


def _items() -> bpy.types.bpy_prop_collection | None:
    wm = bpy.context.window_manager
    return wm.conjure.jobs if wm is not None and hasattr(wm, "conjure") else None


def _news(job: Job) -> tuple[str, str] | None:
    name = SERVICES[job.provider].name
    if job.state == JobState.IMPORTED:
        return "INFO", f"Conjure: {name} finished {job.label}"
    if job.state == JobState.FAILED:
        return "ERROR", f"Conjure: {name}: {job.message}"
    if job.state == JobState.AWAITING_PICK:
        return "INFO", f"Conjure: {job.label} — pick a candidate in the sidebar"
    if job.state == JobState.READY and job.needs_click:
        return "INFO", f"Conjure: {job.label} is ready — Import it"
    return None
