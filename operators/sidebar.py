"""What the sidebar's buttons do: generate and compare from its inputs, fetch an image from an
Image Editor, manage multiview images, and act on one job of the list.

Each operator reads the sidebar (Scene.conjure) when it runs, so the same buttons work from
a script or `blender -b` through `bpy.ops.conjure.*`, blocking there as conjure.generate does.
"""

from __future__ import annotations

import functools
import os
import re
import uuid

import bpy
from bpy.props import BoolProperty, CollectionProperty, FloatProperty, StringProperty
from bpy.types import Operator, OperatorFileListElement

from .. import props, runtime
from ..jobs.model import Job
from ..preferences import online_access_problem
from ..providers import PROVIDER_IDS, SERVICES
from .generate import request_images, run_jobs, start_job

TIMEOUT = 1800.0
SOURCE_WORDS = {"TEXT": "text", "IMAGE": "an image", "MULTIVIEW": "several views"}


def service_problem(context, provider: str, source: str) -> str:
    """Why `provider` cannot take the sidebar's request now ('' when it can)."""
    info = SERVICES[provider]
    if source not in info.sources:
        return f"{info.name} cannot generate from {SOURCE_WORDS[source]}"
    settings = context.scene.conjure
    images = request_images(settings, source)
    return runtime.request_problem(provider, source, settings.prompt, images)


def sidebar_problem(context, source: str = "") -> str:
    """Why the Generate button is greyed out, in one line ('' when it is not)."""
    settings = context.scene.conjure
    return online_access_problem() or service_problem(
        context, settings.provider, source or settings.source
    )


def compare_problem(context) -> str:
    settings = context.scene.conjure
    chosen = [pid for pid in PROVIDER_IDS if pid in settings.compare_services]
    if len(chosen) < 2:
        return "Choose at least two services to compare"
    problem = online_access_problem()
    if problem:
        return problem
    problems = [service_problem(context, pid, settings.source) for pid in chosen]
    if all(problems):
        return problems[0]
    return ""


def _sidebar_job(context, provider: str, source: str, extra: dict[str, object]) -> Job:
    settings = context.scene.conjure
    options = {
        **props.service_options(settings, provider, source),
        **props.placement_options(settings),
        **extra,
    }
    images = request_images(settings, source)
    return runtime.get().new_job(provider, source, settings.prompt, images, options)


class _FromSidebar:
    """Generate from the sidebar's inputs; subclasses fix the source for F3 and menus."""

    bl_options = {"REGISTER"}
    fixed_source = ""

    timeout: FloatProperty(
        name="Timeout",
        description="When run from a script: seconds to wait for the asset (the job goes on)",
        default=TIMEOUT,
        min=1.0,
    )

    @classmethod
    def poll(cls, context):
        problem = sidebar_problem(context, cls.fixed_source)
        if problem:
            cls.poll_message_set(problem)
        return not problem

    def execute(self, context):
        settings = context.scene.conjure
        source = self.fixed_source or settings.source
        make = functools.partial(_sidebar_job, context, settings.provider, source, {})
        return start_job(self, context, make, self.timeout)


class CONJURE_OT_sidebar_generate(_FromSidebar, Operator):
    """Generate with the service, source and options chosen in the Conjure sidebar"""

    bl_idname = "conjure.sidebar_generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "INTERNAL"}  # F3 has Generate 3D from Text / from Image


class _Dialog(_FromSidebar):
    """From F3 or Add > Conjure: a small dialog with the service and the input first."""

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, width=420)

    def draw(self, context):
        settings = context.scene.conjure
        layout = self.layout
        layout.prop(settings, "provider")
        if self.fixed_source == "TEXT":
            layout.prop(settings, "prompt")
        else:
            layout.prop(settings, "image_path")
        problem = sidebar_problem(context, self.fixed_source)
        if problem:
            layout.label(text=problem, icon="ERROR")

    @classmethod
    def poll(cls, context):  # the dialog is where the missing input is entered
        problem = online_access_problem()
        if problem:
            cls.poll_message_set(problem)
        return not problem

    def execute(self, context):
        problem = sidebar_problem(context, self.fixed_source)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        return super().execute(context)


class CONJURE_OT_generate_text(_Dialog, Operator):
    """Generate a 3D asset from a text prompt with the sidebar's service"""

    bl_idname = "conjure.generate_text"
    bl_label = "Generate 3D from Text"
    fixed_source = "TEXT"


class CONJURE_OT_generate_image(_Dialog, Operator):
    """Generate a 3D asset from one image with the sidebar's service"""

    bl_idname = "conjure.generate_image"
    bl_label = "Generate 3D from Image"
    fixed_source = "IMAGE"


class CONJURE_OT_compare(Operator):
    """Send the same prompt or image to several services at once; the results land side by
    side, each labelled with its service"""

    bl_idname = "conjure.compare"
    bl_label = "Compare Services"
    bl_options = {"REGISTER"}

    timeout: FloatProperty(name="Timeout", default=TIMEOUT, min=1.0)

    @classmethod
    def poll(cls, context):
        problem = compare_problem(context)
        if problem:
            cls.poll_message_set(problem)
        return not problem

    def execute(self, context):
        settings = context.scene.conjure
        chosen = [pid for pid in PROVIDER_IDS if pid in settings.compare_services]
        problems = {pid: service_problem(context, pid, settings.source) for pid in chosen}
        ready = [pid for pid in chosen if not problems[pid]]
        for problem in filter(None, problems.values()):
            self.report({"WARNING"}, problem)
        group = uuid.uuid4().hex[:8]
        jobs = []
        try:
            for slot, pid in enumerate(ready):
                layout = {
                    "_compare": group,
                    "_compare_slot": slot,
                    "_compare_count": len(ready),
                    "_compare_spacing": settings.compare_spacing,
                }
                jobs.append(_sidebar_job(context, pid, settings.source, layout))
        except runtime.ConjureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not jobs:
            self.report({"ERROR"}, compare_problem(context) or "No service can take this")
            return {"CANCELLED"}
        rt = runtime.get()
        for job in jobs:
            rt.submit(job)
        names = ", ".join(SERVICES[j.provider].name for j in jobs)
        started = f"Conjure: comparing {names}"
        return run_jobs(self, context, [j.job_id for j in jobs], self.timeout, started)


def editor_image(context) -> bpy.types.Image | None:
    """The image shown in an Image Editor of any open window (the active one first)."""
    windows = [context.window] if context.window else []
    windows += [w for w in context.window_manager.windows if w not in windows]
    for window in windows:
        for area in window.screen.areas if window.screen else ():
            if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None:
                return area.spaces.active.image
    return None


def image_file(image: bpy.types.Image, folder: str) -> str:
    """A file holding `image` as it looks now: its own file when saved and unchanged, else
    a PNG copy written into `folder` (generated, packed or painted images)."""
    path = bpy.path.abspath(image.filepath) if image.filepath else ""
    if path and os.path.isfile(path) and not image.is_dirty and not image.packed_file:
        return path
    os.makedirs(folder, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", image.name).strip("._") or "image"
    copy = os.path.join(folder, f"{safe}-{uuid.uuid4().hex[:6]}.png")
    image.save_render(copy)
    return copy


class CONJURE_OT_use_editor_image(Operator):
    """Generate from the image open in an Image Editor (unsaved images are saved as a copy)"""

    bl_idname = "conjure.use_editor_image"
    bl_label = "Use Image Editor's Image"
    bl_options = {"REGISTER", "UNDO"}

    image_name: StringProperty(name="Image", description="This image (empty: the editor's)")

    @classmethod
    def poll(cls, context):  # headless, scripts name the image
        if not bpy.app.background and editor_image(context) is None:
            cls.poll_message_set("Open an image in an Image Editor first")
            return False
        return True

    def execute(self, context):
        image = bpy.data.images.get(self.image_name) if self.image_name else None
        image = image or editor_image(context)
        if image is None:
            self.report({"ERROR"}, "No image: open one in an Image Editor")
            return {"CANCELLED"}
        settings = context.scene.conjure
        try:
            path = image_file(image, str(runtime.get().root / "inputs"))
        except (RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"Cannot use {image.name}: {exc}")
            return {"CANCELLED"}
        if settings.source == "MULTIVIEW":
            settings.image_paths.add().name = path
        else:
            settings.source, settings.image_path = "IMAGE", path
        return {"FINISHED"}


class CONJURE_OT_add_view(Operator):
    """Add images of the same object seen from other sides (Multiview)"""

    bl_idname = "conjure.add_view"
    bl_label = "Add Views"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    files: CollectionProperty(type=OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        paths = [os.path.join(self.directory, f.name) for f in self.files if f.name]
        paths = paths or ([self.filepath] if self.filepath else [])
        views = context.scene.conjure.image_paths
        for path in paths:
            views.add().name = path
        context.scene.conjure.image_paths_index = len(views) - 1
        return {"FINISHED"}


class CONJURE_OT_remove_view(Operator):
    """Remove the selected view image"""

    bl_idname = "conjure.remove_view"
    bl_label = "Remove View"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    def execute(self, context):
        settings = context.scene.conjure
        if 0 <= settings.image_paths_index < len(settings.image_paths):
            settings.image_paths.remove(settings.image_paths_index)
            settings.image_paths_index = max(settings.image_paths_index - 1, 0)
        return {"FINISHED"}


# -- one job of the list ------------------------------------------------------------------


class _JobAction:
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty(name="Job")


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
        problem = online_access_problem()
        if problem:
            cls.poll_message_set(problem)
        return not problem

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

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


CLASSES: tuple[type, ...] = (
    CONJURE_OT_sidebar_generate,
    CONJURE_OT_generate_text,
    CONJURE_OT_generate_image,
    CONJURE_OT_compare,
    CONJURE_OT_use_editor_image,
    CONJURE_OT_add_view,
    CONJURE_OT_remove_view,
    CONJURE_OT_reimport_job,
    CONJURE_OT_rerun_job,
    CONJURE_OT_open_job_folder,
    CONJURE_OT_remove_job,
)
