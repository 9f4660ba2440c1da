"""Every action on one job of the list (cancel, pick, import, import again, run again,
refine, open folder, remove), and Clear Finished Jobs. Each names its job by id, so the
same buttons work from the sidebar, a script and `blender -b`.
"""

from __future__ import annotations

import dataclasses
import functools

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty
from bpy.types import Operator

from .. import props, runtime, settings
from ..jobs.model import Job, JobState
from .generate import TIMEOUT, start_job


class _JobAction:
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty(name="Job")


class CONJURE_OT_cancel_job(_JobAction, Operator):
    """Stop a generation: nothing more is sent for it (work already started may be charged)"""

    bl_idname = "conjure.cancel_job"
    bl_label = "Cancel Job"

    def execute(self, context):
        if not runtime.get().cancel(self.job_id):
            self.report({"WARNING"}, "That job is not running")
            return {"CANCELLED"}
        return {"FINISHED"}


class CONJURE_OT_pick_candidate(_JobAction, Operator):
    """Continue a job with this candidate image (or a local image instead)"""

    bl_idname = "conjure.pick_candidate"
    bl_label = "Pick Candidate"
    index: IntProperty(name="Candidate", default=0, min=0)
    image_path: StringProperty(name="Image", subtype="FILE_PATH", description="Use this instead")
    sidebar_options: BoolProperty(
        name="Sidebar Options",
        description="Continue with the service options shown in the sidebar",
        default=False,
    )

    def execute(self, context):
        choice = bpy.path.abspath(self.image_path) if self.image_path else self.index
        rt = runtime.get()
        job = rt.latest(self.job_id)
        options, plan = None, None
        if self.sidebar_options and job is not None:
            sidebar = context.scene.conjure
            options = props.service_options(sidebar, job.provider, job.source, False)
            # Only how the result is built comes from the sidebar now; where it goes (its
            # compare slot, its batch row, its placement) stays as the job was started.
            mesh = props.import_plan(sidebar, job.provider).vox_mesh
            plan = dataclasses.replace(job.plan, vox_mesh=mesh)
        problem = rt.pick(self.job_id, choice, options, plan)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        return {"FINISHED"}


class CONJURE_OT_import_job(_JobAction, Operator):
    """Import a downloaded asset into this file now (switches to Object mode)"""

    bl_idname = "conjure.import_job"
    bl_label = "Import"

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


class CONJURE_OT_reimport_job(_JobAction, Operator):
    """Import this job's downloaded files again, as a new copy (nothing is sent or paid)"""

    bl_idname = "conjure.reimport_job"
    bl_label = "Import Again"

    def execute(self, context):
        rt = runtime.get()
        problem = rt.reimport(self.job_id)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        return bpy.ops.conjure.import_job(job_id=self.job_id)


class CONJURE_OT_rerun_job(_JobAction, Operator):
    """Ask the same service the same again: a new generation, paid again"""

    bl_idname = "conjure.rerun_job"
    bl_label = "Run Again"

    timeout: FloatProperty(name="Timeout", default=TIMEOUT, min=1.0)

    @classmethod
    def poll(cls, context):
        return settings.poll_online(cls)

    def invoke(self, context, event):
        job = runtime.get().latest(self.job_id)
        risk = "A new generation, paid again"
        if job is not None and job.state == JobState.UNSURE:
            risk = "The first request may already be charged: check the dashboard first"
        return context.window_manager.invoke_confirm(
            self, event, title=f"{self.bl_label}?", message=risk, confirm_text="Send"
        )

    def execute(self, context):
        return start_job(self, context, self._rerun, self.timeout, "running again")

    def _rerun(self) -> Job:
        return runtime.get().rerun(self.job_id)


class CONJURE_OT_open_job_folder(_JobAction, Operator):
    """Open the folder holding this job's downloaded files"""

    bl_idname = "conjure.open_job_folder"
    bl_label = "Open Folder"

    def execute(self, context):
        folder = runtime.get().folder(self.job_id)
        if not folder.is_dir():
            self.report({"ERROR"}, "This job has no files (cleared, or nothing downloaded)")
            return {"CANCELLED"}
        if bpy.app.background:
            self.report({"INFO"}, f"Job folder: {folder}")
        else:
            bpy.ops.wm.path_open(filepath=str(folder))
        return {"FINISHED"}


class CONJURE_OT_remove_job(_JobAction, Operator):
    """Forget this finished job: its line, its journal row and its downloaded files
    (what it imported stays in the scene)"""

    bl_idname = "conjure.remove_job"
    bl_label = "Remove Job"

    def execute(self, context):
        problem = runtime.get().remove(self.job_id)
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
        return settings.poll_online(cls)

    def execute(self, context):
        active = context.active_object
        job_id = self.job_id or (str(active.get("conjure_job_id", "")) if active else "")
        make = functools.partial(runtime.get().refinement, job_id)
        return start_job(self, context, make, self.timeout, "refining")


class CONJURE_OT_clear_finished_jobs(Operator):
    """Forget finished jobs (imported, failed, cancelled) in the list and the journal"""

    bl_idname = "conjure.clear_finished_jobs"
    bl_label = "Clear Finished Jobs"
    bl_options = {"REGISTER"}

    def execute(self, context):
        count = runtime.get().clear_finished()
        self.report({"INFO"}, f"Cleared {count} finished job(s)")
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    CONJURE_OT_cancel_job,
    CONJURE_OT_pick_candidate,
    CONJURE_OT_import_job,
    CONJURE_OT_reimport_job,
    CONJURE_OT_rerun_job,
    CONJURE_OT_open_job_folder,
    CONJURE_OT_remove_job,
    CONJURE_OT_refine,
    CONJURE_OT_clear_finished_jobs,
)
