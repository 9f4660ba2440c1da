"""conjure.generate and the job operators: cancel, resume, import, clear, and the monitor.

One rule for blocking, as Blender's own extension operators have: invoked from the UI an
operator returns at once and the monitor carries the jobs on; executed (a script, `blender
-b`, the API) it blocks until its jobs end, importing on the way.
"""

from __future__ import annotations

from collections.abc import Callable

import bpy
from bpy.app.handlers import persistent
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    StringProperty,
)
from bpy.types import Operator

from .. import props, runtime
from ..jobs.model import Job, JobState
from ..preferences import addon_preferences, online_access_problem
from ..providers import SERVICES
from ..providers.base import is_url

MONITOR_INTERVAL = 0.1
IMPORT_INTERVAL = 0.02  # while downloaded assets wait for the main thread to import them


def tick_interval(rt: runtime.Runtime) -> float:
    """The monitor's pace: quick while imports are queued (each tick imports for at most
    50 ms, then lets Blender draw), relaxed otherwise."""
    return IMPORT_INTERVAL if rt.import_pending() else MONITOR_INTERVAL


def _network_poll(cls, context) -> bool:
    problem = online_access_problem()
    if problem:
        cls.poll_message_set(problem)
    return not problem


def _report_outcome(op: Operator, jobs: list[Job], timeout: float) -> set[str]:
    """FINISHED only if every job was imported; one line for each that was not."""
    ok = [j for j in jobs if j.state == JobState.IMPORTED]
    for job in jobs:
        name = SERVICES[job.provider].name
        if job.state == JobState.IMPORTED:
            op.report({"INFO"}, f"{job.label}: {job.message}")
        elif job.finished:
            op.report({"ERROR"}, f"{name}: {job.message}")
        elif job.state == JobState.AWAITING_PICK:
            op.report({"ERROR"}, f"{name}: {job.label} waits for a pick (scripts: candidate=N)")
        elif job.state == JobState.READY:
            op.report({"ERROR"}, f"{name}: {job.label} is ready: import it in Object mode")
        else:
            op.report(
                {"ERROR"},
                f"{name}: {job.label} is still {job.state.value} after {timeout:.0f} s; "
                "it goes on (Resume Unfinished Jobs continues it later)",
            )
    return {"FINISHED"} if len(ok) == len(jobs) else {"CANCELLED"}


def run_jobs(op: Operator, context, job_ids: list[str], timeout: float, started: str) -> set[str]:
    """The blocking rule: invoked from the UI, report `started` and let the monitor carry the
    jobs; executed (a script), wait for them, importing, and report how each ended."""
    if op.options.is_invoke:
        ensure_monitor(context)
        op.report({"INFO"}, started)
        return {"FINISHED"}
    done = runtime.get().wait(context, job_ids, timeout)
    return _report_outcome(op, list(done.values()), timeout)


def start_job(
    op: Operator, context, make: Callable[[], Job], timeout: float, doing: str = "started"
) -> set[str]:
    """Make a job (its ConjureError reported in one line), submit it, and follow it by the
    blocking rule: "Conjure: <doing> <label> on <service>" when invoked from the UI."""
    try:
        job = make()
    except runtime.ConjureError as exc:
        op.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    runtime.get().submit(job)
    started = f"Conjure: {doing} {job.label} on {SERVICES[job.provider].name}"
    return run_jobs(op, context, [job.job_id], timeout, started)


def request_images(holder, source: str) -> tuple[str, ...]:
    """The images of `holder` (the operator's or the sidebar's image_path / image_paths) for
    `source`: local paths made absolute (// is the .blend's folder), URLs kept as given."""
    if source == "IMAGE":
        paths = [holder.image_path] if holder.image_path else []
    elif source == "MULTIVIEW":
        paths = [item.name for item in holder.image_paths if item.name]
    else:
        paths = []
    return tuple(p if is_url(p) else bpy.path.abspath(p) for p in paths)


def ensure_monitor(context: bpy.types.Context) -> None:
    """Start the modal pump once; it stops itself when no job is live."""
    if not bpy.app.background and not CONJURE_OT_job_monitor.running and context.window:
        bpy.ops.conjure.job_monitor("INVOKE_DEFAULT")


class CONJURE_OT_generate(Operator):
    """Generate a 3D asset from a prompt or images with a cloud service"""

    bl_idname = "conjure.generate"
    bl_label = "Generate 3D Asset"
    bl_options = {"REGISTER"}

    provider: EnumProperty(name="Service", items=props.PROVIDER_ITEMS, default="trify3d")
    source: EnumProperty(name="Source", items=props.SOURCE_ITEMS, default="TEXT")
    prompt: StringProperty(name="Prompt", description="What to generate")
    image_path: StringProperty(name="Image", subtype="FILE_PATH")
    image_paths: CollectionProperty(type=props.ConjurePathItem)
    model: StringProperty(name="Model", description="Service model id (empty: default)")
    mode: StringProperty(name="Mode", description="Service quality mode (empty: default)")
    candidate: IntProperty(
        name="Candidate",
        description="Services that offer candidates (Voxel-AI): pick this one (0-based) "
        "without waiting for a person; -1 = choose in the sidebar",
        default=-1,
        min=-1,
        max=2,
    )
    timeout: FloatProperty(
        name="Timeout",
        description="When run from a script: seconds to wait for the asset (the job goes on)",
        default=1800.0,
        min=1.0,
    )

    @classmethod
    def poll(cls, context):
        return _network_poll(cls, context)

    def invoke(self, context, event):
        """From the panel or F3: take what the caller did not set from the sidebar inputs."""
        settings = context.scene.conjure
        for name in ("provider", "source", "prompt", "image_path"):
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(settings, name))
        if not self.properties.is_property_set("image_paths"):
            for item in settings.image_paths:
                self.image_paths.add().name = item.name
        # The sidebar's service options and placement too; model/mode given here win.
        self._sidebar = {
            **props.service_options(settings, self.provider, self.source),
            **props.placement_options(settings),
        }
        return self.execute(context)

    def execute(self, context):
        return start_job(self, context, self._job, self.timeout)

    def _job(self) -> Job:
        problem = online_access_problem()
        if problem:
            raise runtime.ConjureError(problem)
        images = request_images(self, self.source)
        return runtime.get().new_job(
            self.provider, self.source, self.prompt, images, self._options()
        )

    def _options(self) -> dict[str, object]:
        """The job's options: the sidebar's when invoked from the UI, then this call's."""
        options = dict(getattr(self, "_sidebar", {}))
        given = {"model": self.model, "mode": self.mode}
        options.update({k: v for k, v in given.items() if v})
        if self.candidate >= 0:
            options["candidate"] = self.candidate
        return options


class CONJURE_OT_cancel_job(Operator):
    """Stop a generation: nothing more is sent for it (work already started may be charged)"""

    bl_idname = "conjure.cancel_job"
    bl_label = "Cancel Job"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty()

    def execute(self, context):
        if not runtime.get().cancel(self.job_id):
            self.report({"WARNING"}, "That job is not running")
            return {"CANCELLED"}
        return {"FINISHED"}


class CONJURE_OT_resume_jobs(Operator):
    """Continue every unfinished job from the journal without paying again"""

    bl_idname = "conjure.resume_jobs"
    bl_label = "Resume Unfinished Jobs"
    bl_options = {"REGISTER"}

    timeout: FloatProperty(name="Timeout", default=1800.0, min=1.0)

    @classmethod
    def poll(cls, context):
        return _network_poll(cls, context)

    def execute(self, context):
        started = runtime.get().resume()
        if not started:
            self.report({"INFO"}, "No unfinished jobs to resume")
            return {"FINISHED"}
        return run_jobs(self, context, started, self.timeout, f"Resuming {len(started)} job(s)")


class CONJURE_OT_pick_candidate(Operator):
    """Continue a job with this candidate image (or a local image instead)"""

    bl_idname = "conjure.pick_candidate"
    bl_label = "Pick Candidate"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty()
    index: IntProperty(name="Candidate", default=0, min=0)
    image_path: StringProperty(name="Image", subtype="FILE_PATH", description="Use this instead")
    sidebar_options: BoolProperty(
        name="Sidebar Options",
        description="Continue with the service options shown in the sidebar",
        default=False,
    )

    def execute(self, context):
        choice = bpy.path.abspath(self.image_path) if self.image_path else self.index
        options = None
        if self.sidebar_options:
            rt = runtime.get()
            job = rt.latest(self.job_id)
            if job is not None:
                settings = context.scene.conjure
                options = props.service_options(settings, job.provider, job.source, False)
        problem = runtime.get().pick(self.job_id, choice, options)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        return {"FINISHED"}


class CONJURE_OT_refine(Operator):
    """Refine a finished preview into a textured model (the selected asset, or a job)"""

    bl_idname = "conjure.refine"
    bl_label = "Refine"
    bl_options = {"REGISTER"}

    job_id: StringProperty(name="Job", description="A finished job (empty: the active object)")
    timeout: FloatProperty(name="Timeout", default=1800.0, min=1.0)

    @classmethod
    def poll(cls, context):
        return _network_poll(cls, context)

    def execute(self, context):
        def refinement() -> Job:
            rt = runtime.get()
            parent = rt.refine_source(self.job_id, context.active_object)
            options = {"mode": "refine", "parent_task_id": parent.task_id}
            return rt.new_job(parent.provider, "TEXT", parent.prompt, options=options)

        return start_job(self, context, refinement, self.timeout, "refining")


class CONJURE_OT_import_job(Operator):
    """Import a downloaded asset into this file now (switches to Object mode)"""

    bl_idname = "conjure.import_job"
    bl_label = "Import"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty()

    def execute(self, context):
        rt = runtime.get()
        job = rt.jobs.get(self.job_id)
        if job is None or job.state != JobState.READY:
            self.report({"WARNING"}, "That job has nothing ready to import")
            return {"CANCELLED"}
        if context.mode != "OBJECT" and bpy.ops.object.mode_set.poll():
            bpy.ops.object.mode_set(mode="OBJECT")
        rt.import_job(context, self.job_id)
        job = rt.jobs[self.job_id]
        if job.state != JobState.IMPORTED:
            self.report({"ERROR"}, job.message)
            return {"CANCELLED"}
        return {"FINISHED"}


class CONJURE_OT_clear_finished_jobs(Operator):
    """Forget finished jobs (imported, failed, cancelled) in the list and the journal"""

    bl_idname = "conjure.clear_finished_jobs"
    bl_label = "Clear Finished Jobs"
    bl_options = {"REGISTER"}

    def execute(self, context):
        count = runtime.get().clear_finished()
        self.report({"INFO"}, f"Cleared {count} finished job(s)")
        return {"FINISHED"}


class CONJURE_OT_job_monitor(Operator):
    """Apply job progress and import finished assets while Blender stays responsive"""

    bl_idname = "conjure.job_monitor"
    bl_label = "Conjure Job Monitor"
    bl_options = {"INTERNAL"}

    running = False
    _timer = None

    def invoke(self, context, event):
        cls = type(self)
        if cls.running:
            return {"CANCELLED"}
        cls.running = True
        cls._retime(context, MONITOR_INTERVAL)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or event.timer is not type(self)._timer:
            return {"PASS_THROUGH"}
        rt = runtime.get()
        for kind, line in rt.take_notices():
            self.report({kind}, line)
        if rt.drain(context):
            for area in context.screen.areas if context.screen else ():
                if area.type == "VIEW_3D":
                    area.tag_redraw()
        if not rt.is_busy() and not rt.has_ready():
            self.stop(context)
            return {"FINISHED"}
        type(self)._retime(context, tick_interval(rt))
        return {"PASS_THROUGH"}

    @classmethod
    def _retime(cls, context, interval: float) -> None:
        if cls._timer is not None and abs(cls._timer.time_step - interval) < 1e-6:
            return
        if cls._timer is not None:
            context.window_manager.event_timer_remove(cls._timer)
        cls._timer = context.window_manager.event_timer_add(interval, window=context.window)

    def cancel(self, context):
        self.stop(context)  # e.g. a file load ended the modal; load_post starts a new one

    @classmethod
    def stop(cls, context) -> None:
        if cls._timer is not None:
            context.window_manager.event_timer_remove(cls._timer)
            cls._timer = None
        cls.running = False


@persistent
def restart_monitor_after_load(_file) -> None:
    """Loading a file ends modal operators; jobs still running need their pump back."""
    rt = runtime.current()
    if rt is not None:
        rt.file_loaded()
    if rt is not None and (rt.is_busy() or rt.has_ready()):
        bpy.app.timers.register(start_monitor, first_interval=0.2)


def show_jobs_on_start() -> None:
    """Timer, once after enable in the UI: the journal's recent jobs appear in the sidebar;
    unfinished ones resume when the preference says so and online access is allowed."""
    rt = runtime.get()
    waiting = rt.show_history()
    prefs = addon_preferences()
    allowed = prefs is not None and prefs.auto_resume and not online_access_problem()
    if waiting and allowed and rt.resume():
        start_monitor()


def start_monitor() -> None:
    wm = bpy.context.window_manager
    if wm and wm.windows and not CONJURE_OT_job_monitor.running:
        with bpy.context.temp_override(window=wm.windows[0]):
            bpy.ops.conjure.job_monitor("INVOKE_DEFAULT")


CLASSES: tuple[type, ...] = (
    CONJURE_OT_generate,
    CONJURE_OT_cancel_job,
    CONJURE_OT_resume_jobs,
    CONJURE_OT_pick_candidate,
    CONJURE_OT_refine,
    CONJURE_OT_import_job,
    CONJURE_OT_clear_finished_jobs,
    CONJURE_OT_job_monitor,
)
