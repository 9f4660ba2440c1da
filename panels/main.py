"""The Conjure sidebar: what to generate, and the live jobs."""

from __future__ import annotations

import bpy
from bpy.types import Panel

LIVE_STATES = {
    "queued", "uploading", "submitting", "submitted", "running", "stalled", "awaiting_pick",
    "downloading",
}  # fmt: skip


class _ConjurePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Conjure"


class VIEW3D_PT_conjure_generate(_ConjurePanel, Panel):
    bl_label = "Generate"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.conjure
        layout.prop(settings, "provider")
        layout.prop(settings, "source", expand=True)
        if settings.source == "TEXT":
            layout.prop(settings, "prompt")
        elif settings.source == "IMAGE":
            layout.prop(settings, "image_path")
            layout.prop(settings, "prompt", text="Hint")
        else:
            layout.template_list(
                "UI_UL_list",
                "conjure_views",
                settings,
                "image_paths",
                settings,
                "image_paths_index",
                rows=3,
            )
        layout.operator("conjure.generate", icon="PLAY")


class VIEW3D_PT_conjure_jobs(_ConjurePanel, Panel):
    bl_label = "Jobs"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        jobs = context.window_manager.conjure.jobs
        if not jobs:
            layout.label(text="No jobs yet")
        for job in jobs:
            box = layout.box()
            row = box.row()
            row.label(text=job.label or job.job_id[:8])
            row.label(text=job.state)
            if job.state in LIVE_STATES or job.state == "ready":
                row.operator("conjure.cancel_job", text="", icon="X").job_id = job.job_id
            if job.state == "ready":
                box.operator("conjure.import_job", icon="IMPORT").job_id = job.job_id
            elif job.state == "awaiting_pick":
                box.label(text=job.message)
                grid = box.grid_flow(columns=len(job.candidates) or 1, even_columns=True)
                for index, candidate in enumerate(job.candidates):
                    cell = grid.column(align=True)
                    cell.template_icon(icon_value=candidate.icon, scale=4.0)
                    op = cell.operator("conjure.pick_candidate", text=f"Use {index + 1}")
                    op.job_id, op.index = job.job_id, index
            elif job.state in LIVE_STATES:
                box.prop(job, "progress", text=job.message or "Working", slider=True)
            elif job.message:
                box.label(text=job.message)
            for line in job.warnings.splitlines():
                box.label(text=line, icon="ERROR")
        row = layout.row(align=True)
        row.operator("conjure.resume_jobs", icon="FILE_REFRESH")
        row.operator("conjure.clear_finished_jobs", text="", icon="TRASH")


CLASSES: tuple[type, ...] = (VIEW3D_PT_conjure_generate, VIEW3D_PT_conjure_jobs)
