"""conjure.generate and the job operators: cancel, resume, and the modal event pump."""

from __future__ import annotations

import os

import bpy
from bpy.app.handlers import persistent
from bpy.props import CollectionProperty, EnumProperty, FloatProperty, StringProperty
from bpy.types import Operator

from .. import props
from ..jobs import pump
from ..jobs.model import Job, JobState
from ..preferences import online_access_problem, service_settings
from ..providers import SERVICES

MONITOR_INTERVAL = 0.1


def _network_poll(cls, context) -> bool:
    problem = online_access_problem()
    if problem:
        cls.poll_message_set(problem)
    return not problem


def _finish_blocking(op: Operator, jobs: list[Job]) -> set[str]:
    """Background mode result: FINISHED only if every job was imported; report each failure."""
    failed = [j for j in jobs if j.state != JobState.IMPORTED]
    for job in failed:
        op.report({"ERROR"}, f"{SERVICES[job.provider].name}: {job.message}")
    for job in jobs:
        if job.state == JobState.IMPORTED:
            op.report({"INFO"}, f"{job.label}: {job.message}")
    return {"CANCELLED"} if failed else {"FINISHED"}


def ensure_monitor(context: bpy.types.Context) -> None:
    """Start the modal pump once; it stops itself when no job is live."""
    if not bpy.app.background and not CONJURE_OT_job_monitor.running:
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
    timeout: FloatProperty(
        name="Timeout",
        description="Background mode: seconds to wait for the asset",
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
        return self.execute(context)

    def execute(self, context):
        problem = online_access_problem() or self._input_problem()
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        job = Job.new(
            provider=self.provider,
            source=self.source,
            prompt=self.prompt.strip(),
            image_paths=self._images(),
            options={k: v for k, v in (("model", self.model), ("mode", self.mode)) if v},
        )
        pump.start(job)
        if bpy.app.background:
            done = pump.wait(context, [job.job_id], self.timeout)
            return _finish_blocking(self, list(done.values()))
        ensure_monitor(context)
        self.report({"INFO"}, f"Conjure: started {job.label} on {SERVICES[job.provider].name}")
        return {"FINISHED"}

    def _images(self) -> tuple[str, ...]:
        if self.source == "IMAGE":
            return (bpy.path.abspath(self.image_path),)
        if self.source == "MULTIVIEW":
            return tuple(bpy.path.abspath(i.name) for i in self.image_paths if i.name)
        return ()

    def _input_problem(self) -> str:
        info = SERVICES[self.provider]
        if not service_settings(self.provider).api_key:
            return f"No API key for {info.name}: add one in the add-on preferences"
        if self.source == "TEXT" and not self.prompt.strip():
            return "Enter a prompt describing what to generate"
        images = self._images()
        if self.source == "IMAGE" and not self.image_path:
            return "Choose an image to generate from"
        if self.source == "MULTIVIEW" and len(images) < 2:
            return "Multiview needs at least two images"
        missing = [p for p in images if not os.path.isfile(p)]
        if missing:
            return f"Image not found: {missing[0]}"
        return ""


class CONJURE_OT_cancel_job(Operator):
    """Stop a running generation (the service may still charge for work it started)"""

    bl_idname = "conjure.cancel_job"
    bl_label = "Cancel Job"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty()

    def execute(self, context):
        if not pump.cancel(self.job_id):
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
        jobs = pump.runtime().journal.unfinished()
        if not jobs:
            self.report({"INFO"}, "No unfinished jobs")
            return {"FINISHED"}
        for job in jobs:
            if job.job_id in pump.runtime().jobs:
                continue
            pump.start(job, resume=True)
        if bpy.app.background:
            done = pump.wait(context, [j.job_id for j in jobs], self.timeout)
            return _finish_blocking(self, list(done.values()))
        ensure_monitor(context)
        self.report({"INFO"}, f"Resuming {len(jobs)} job(s)")
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
        cls._timer = context.window_manager.event_timer_add(MONITOR_INTERVAL, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if pump.drain(context):
            for area in context.screen.areas if context.screen else ():
                if area.type == "VIEW_3D":
                    area.tag_redraw()
        if not pump.is_running() and not pump.has_pending_events():
            self.stop(context)
            return {"FINISHED"}
        return {"PASS_THROUGH"}

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
    if pump.is_running() or pump.has_pending_events():
        bpy.app.timers.register(start_monitor, first_interval=0.2)


def start_monitor() -> None:
    wm = bpy.context.window_manager
    if wm and wm.windows and not CONJURE_OT_job_monitor.running:
        with bpy.context.temp_override(window=wm.windows[0]):
            bpy.ops.conjure.job_monitor("INVOKE_DEFAULT")


CLASSES: tuple[type, ...] = (
    CONJURE_OT_generate,
    CONJURE_OT_cancel_job,
    CONJURE_OT_resume_jobs,
    CONJURE_OT_job_monitor,
)
