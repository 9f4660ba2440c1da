"""The Conjure sidebar (3D Viewport > N > Conjure): Generate, Compare and Jobs; the Add >
Conjure menu; the status-bar progress. Everything here only draws: operators act."""

from __future__ import annotations

import time

import bpy
from bpy.types import Menu, Panel, UIList

from ..jobs.model import LIVE, JobState
from ..jobs.spend import amount_words, estimate_words
from ..operators.generate import compare_services, price_book, sidebar_estimate
from ..providers import PROVIDER_IDS, SERVICES
from ..providers.base import Capability
from ..settings import ADDON_ID, service_settings

now = time.time  # the clock elapsed times are drawn with (tests fix it)

# Job states with work still going on (Ready waits for the person, not for a service).
WORKING_STATES = {s.value for s in LIVE - {JobState.READY}}
STATE_WORDS = {
    "queued": "Queued",
    "uploading": "Uploading",
    "submitting": "Submitting",
    "submitted": "Submitted",
    "running": "Running",
    "stalled": "Stalled",
    "awaiting_pick": "Pick a candidate",
    "downloading": "Downloading",
    "ready": "Ready",
    "importing": "Importing",
    "imported": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "unsure": "May be charged",
}
STATE_ICONS = {
    "stalled": "TIME",
    "awaiting_pick": "IMAGE_DATA",
    "ready": "IMPORT",
    "imported": "CHECKMARK",
    "failed": "ERROR",
    "cancelled": "CANCEL",
    "unsure": "QUESTION",
}
SOURCE_LABELS = {"TEXT": "Text", "IMAGE": "Image", "MULTIVIEW": "Multiview"}
EXTRA_MODES = {
    Capability.REFINE: "Refine",
    Capability.TEXT_TO_IMAGE: "Text to Image",
    Capability.CANDIDATES: "Candidates",
}


def elapsed(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def excerpt(text: str, length: int = 28) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def modes_line(pid: str) -> str:
    info = SERVICES[pid]
    words = [SOURCE_LABELS[s] for s in info.sources]
    words += [w for cap, w in EXTRA_MODES.items() if cap in info.capabilities]
    return " · ".join(words)


def is_live(job) -> bool:
    return job.state in WORKING_STATES and not job.held


class _ConjurePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Conjure"


def draw_service(layout, settings) -> None:
    """The service, what it can do, and whether its key is set (with a way to set it)."""
    layout.prop(settings, "provider")
    info = SERVICES[settings.provider]
    col = layout.column(align=True)
    col.label(text=modes_line(settings.provider), icon="INFO")
    key = service_settings(settings.provider).key_source
    if key:
        where = "environment" if key == "environment" else "preferences"
        col.label(text=f"API key set in {where}", icon="CHECKMARK")
    else:
        row = col.row(align=True)
        row.label(text=f"No {info.name} API key", icon="ERROR")
        row.operator("preferences.addon_show", text="Add Key", icon="PREFERENCES").module = ADDON_ID
    col.operator("conjure.check_services", icon="WORLD")
    book = price_book()
    balance = book.balances.get(settings.provider) if book is not None else None
    if balance is not None:
        seen = elapsed(now() - balance.at)
        col.label(text=f"Balance {amount_words(balance.amount, balance.unit)}, seen {seen} ago")


def with_estimate(label: str, context, providers: list[str]) -> str:
    """A sending button's label with what it may cost, when earlier charges tell."""
    words = estimate_words(sidebar_estimate(context, price_book(), providers))
    return f"{label} ({words})" if words else label


def draw_source(layout, settings) -> None:
    """Only the sources the service offers; then that source's inputs."""
    info = SERVICES[settings.provider]
    row = layout.row(align=True)
    for source in info.sources:
        row.prop_enum(settings, "source", source)
    if settings.source not in info.sources:
        layout.label(text=f"{info.name} has no {SOURCE_LABELS[settings.source]}", icon="ERROR")
        return
    if settings.source == "TEXT":
        layout.prop(settings, "prompt", text="")
    elif settings.source == "IMAGE":
        layout.prop(settings, "image_path", text="")
        layout.operator("conjure.use_editor_image", icon="IMAGE_DATA")
    else:
        row = layout.row()
        row.template_list(
            "UI_UL_list", "conjure_views", settings, "image_paths", settings,
            "image_paths_index", rows=3,
        )  # fmt: skip
        buttons = row.column(align=True)
        buttons.operator("conjure.add_view", text="", icon="ADD")
        buttons.operator("conjure.remove_view", text="", icon="REMOVE")
        layout.operator("conjure.use_editor_image", icon="IMAGE_DATA")


def draw_options(layout, settings, provider: str, source: str) -> None:
    """The service's own options for this source (e.g. model, mode, resolution)."""
    group = getattr(settings, f"options_{provider}")
    shown = [spec for spec in SERVICES[provider].options if source in spec.sources]
    for spec in shown:
        layout.prop(group, spec.name)
    if hasattr(group, "import_as"):
        layout.prop(group, "import_as")
    if not shown and not hasattr(group, "import_as"):
        layout.label(text="No options for this source")


def draw_foldout(layout, settings, flag: str, label: str):
    """A collapsible box; returns its column when open, else None."""
    box = layout.box()
    shown = getattr(settings, flag)
    icon = "DISCLOSURE_TRI_DOWN" if shown else "DISCLOSURE_TRI_RIGHT"
    box.prop(settings, flag, text=label, icon=icon, emboss=False)
    return box.column() if shown else None


MESH_SWITCHES = (
    ("use_max_faces", "max_faces"),
    ("use_lods", "lods"),
    ("use_merge", "merge_distance"),
    ("use_smooth", "smooth_angle"),
)


def draw_mesh(layout, settings) -> None:
    """The clean-up every result gets on import: a face budget, LODs, merge, smooth."""
    col = draw_foldout(layout, settings, "show_mesh", "Mesh")
    if col is None:
        return
    col.use_property_split = True
    for switch, value in MESH_SWITCHES:
        row = col.row(heading=settings.bl_rna.properties[switch].name)
        row.prop(settings, switch, text="")
        sub = row.row()
        sub.active = getattr(settings, switch)
        sub.prop(settings, value, text="")
    col.prop(settings, "apply_transforms")


def draw_placement(layout, settings) -> None:
    col = draw_foldout(layout, settings, "show_placement", "Placement")
    if col is None:
        return
    col.use_property_split = True
    col.prop(settings, "origin_bottom")
    col.prop(settings, "target_height")
    col.prop(settings, "mark_asset")


class VIEW3D_PT_conjure_generate(_ConjurePanel, Panel):
    bl_label = "Generate"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.conjure
        draw_service(layout, settings)
        draw_source(layout, settings)
        options = draw_foldout(layout, settings, "show_options", "Service Options")
        if options is not None:
            options.use_property_split = True
            draw_options(options, settings, settings.provider, settings.source)
        draw_placement(layout, settings)
        draw_mesh(layout, settings)
        label = with_estimate("Generate", context, [settings.provider])
        layout.operator("conjure.sidebar_generate", text=label, icon="PLAY")
        layout.operator("conjure.generate_for_selected", icon="MOD_SHRINKWRAP")


class VIEW3D_PT_conjure_compare(_ConjurePanel, Panel):
    bl_label = "Compare"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.conjure
        layout.label(text=f"Same {SOURCE_LABELS[settings.source].lower()} to:")
        grid = layout.grid_flow(columns=2, even_columns=True, align=True)
        for pid in PROVIDER_IDS:
            grid.prop_enum(settings, "compare_services", pid)
        layout.prop(settings, "compare_spacing")
        label = with_estimate("Compare Services", context, compare_services(context)[0])
        layout.operator("conjure.compare", text=label, icon="SEQ_SPLITVIEW")
        group = latest_compare(context)
        if group:
            col = layout.column(align=True)
            for job in group:
                row = col.row()
                row.label(text=SERVICES[job.provider].name)
                row.label(text=STATE_WORDS.get(job.state, job.state))


def latest_compare(context) -> list:
    """The jobs of the newest comparison, in their row order (from the job list)."""
    jobs = [j for j in context.window_manager.conjure.jobs if j.compare]
    if not jobs:
        return []
    newest = max(jobs, key=lambda j: j.created).compare
    return sorted((j for j in jobs if j.compare == newest), key=lambda j: j.compare_slot)


class CONJURE_UL_jobs(UIList):
    """One line per job: picture, service and prompt, state or progress."""

    def draw_item(
        self, context, layout, data, item, icon, active_data, active_prop, index=0, flt_flag=0
    ):
        row = layout.row(align=True)
        if item.thumbnail:
            row.label(text="", icon_value=item.thumbnail)
        else:
            row.label(text="", icon=STATE_ICONS.get(item.state, "SORTTIME"))
        service = SERVICES[item.provider].name if item.provider in SERVICES else item.provider
        row.label(text=f"{service}: {excerpt(item.label)}")
        if item.cost:
            row.label(text=item.cost)
        if is_live(item) and item.state not in ("awaiting_pick", "stalled"):
            row.progress(factor=item.progress, type="RING", text="")
        else:
            word = "Not running" if item.held else STATE_WORDS.get(item.state, item.state)
            row.label(text=word)
        ready_here = item.state == "ready" and not item.held
        if ready_here:  # the two things a row asks for at once; more when selected
            row.operator("conjure.import_job", text="", icon="IMPORT").job_id = item.job_id
        if is_live(item) or ready_here:
            row.operator("conjure.cancel_job", text="", icon="X").job_id = item.job_id


class VIEW3D_PT_conjure_jobs(_ConjurePanel, Panel):
    bl_label = "Jobs"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        wm = context.window_manager.conjure
        if not wm.jobs:
            layout.label(text="No jobs yet")
        else:
            layout.template_list("CONJURE_UL_jobs", "", wm, "jobs", wm, "jobs_index", rows=4)
            if 0 <= wm.jobs_index < len(wm.jobs):
                draw_job(layout.box(), context, wm.jobs[wm.jobs_index])
        row = layout.row(align=True)
        row.operator("conjure.resume_jobs", icon="FILE_REFRESH")
        row.operator("conjure.clear_finished_jobs", text="", icon="TRASH")


def draw_job(box, context, job) -> None:
    """The selected job: what it is, where it stands, and what can be done with it."""
    service = SERVICES[job.provider].name if job.provider in SERVICES else job.provider
    end = now() if job.state in WORKING_STATES and not job.held else job.updated
    head = box.row()
    head.label(text=f"{service} · {STATE_WORDS.get(job.state, job.state)}")
    head.label(text=elapsed(end - job.created), icon="TIME")
    if job.prompt:
        box.label(text=excerpt(job.prompt, 60))
    if job.cost:
        box.label(text=f"Cost: {job.cost}, as {service} reported it")
    if job.held:
        box.label(text=job.message, icon="PAUSE")
        row = box.row(align=True)
        row.operator("conjure.resume_jobs", text="Resume", icon="PLAY")
        row.operator("conjure.cancel_job", text="Cancel", icon="X").job_id = job.job_id
    elif job.state == "awaiting_pick":
        draw_pick(box, context, job)
    elif job.state == "stalled":
        box.label(text=job.message, icon="TIME")
        if job.next_try:
            box.label(text=f"Next try in {elapsed(job.next_try - now())}")
        box.operator("conjure.cancel_job", text="Cancel", icon="X").job_id = job.job_id
    elif job.state in WORKING_STATES:
        box.progress(factor=job.progress, type="BAR", text=job.message or "Working")
        box.operator("conjure.cancel_job", text="Cancel", icon="X").job_id = job.job_id
    elif job.state == "ready":
        box.label(text=job.message)
        row = box.row(align=True)
        row.operator("conjure.import_job", icon="IMPORT").job_id = job.job_id
        row.operator("conjure.cancel_job", text="", icon="X").job_id = job.job_id
    else:
        draw_finished(box, job)
    for line in job.warnings.splitlines():
        box.label(text=line, icon="ERROR")


def draw_pick(box, context, job) -> None:
    """The candidates, large, each with its button; then the next stage's options."""
    box.label(text=job.message or "Pick the candidate to continue with")
    grid = box.grid_flow(columns=max(len(job.candidates), 1), even_columns=True)
    for index, candidate in enumerate(job.candidates):
        cell = grid.column(align=True)
        cell.template_icon(icon_value=candidate.icon, scale=6.0)
        op = cell.operator("conjure.pick_candidate", text=f"Use {index + 1}")
        op.job_id, op.index, op.sidebar_options = job.job_id, index, True
    options = box.column()
    options.use_property_split = True
    draw_options(options, context.scene.conjure, job.provider, "IMAGE")
    box.operator("conjure.cancel_job", text="Cancel", icon="X").job_id = job.job_id


def draw_finished(box, job) -> None:
    if job.state in ("failed", "unsure"):
        box.label(text=job.message, icon="ERROR")
    elif job.message:
        box.label(text=job.message)
    row = box.row(align=True)
    if job.state == "unsure":  # it may exist and be charged: the person decides, after a look
        again = row.operator("conjure.rerun_job", text="Send Again", icon="FILE_REFRESH")
        again.job_id = job.job_id
        row.operator("conjure.remove_job", text="Forget", icon="TRASH").job_id = job.job_id
        return
    if job.state == "imported":
        row.operator("conjure.reimport_job", icon="IMPORT").job_id = job.job_id
    if job.can_refine:
        row.operator("conjure.refine", icon="SHADING_TEXTURE").job_id = job.job_id
    row.operator("conjure.rerun_job", icon="FILE_REFRESH").job_id = job.job_id
    row = box.row(align=True)
    row.operator("conjure.open_job_folder", icon="FILE_FOLDER").job_id = job.job_id
    row.operator("conjure.remove_job", icon="TRASH").job_id = job.job_id


class VIEW3D_MT_conjure_add(Menu):
    bl_label = "Conjure"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.operator("conjure.generate_text", icon="FONT_DATA")
        layout.operator("conjure.generate_image", icon="IMAGE_DATA")
        layout.operator("conjure.compare", icon="SEQ_SPLITVIEW")
        layout.separator()
        layout.operator("conjure.import_vox", icon="IMPORT")


def draw_add_menu(self, context: bpy.types.Context) -> None:
    self.layout.menu("VIEW3D_MT_conjure_add", icon="OUTLINER_OB_POINTCLOUD")


def draw_object_menu(self, context: bpy.types.Context) -> None:
    self.layout.separator()
    self.layout.operator("conjure.generate_for_selected", icon="MOD_SHRINKWRAP")


def draw_status(self, context: bpy.types.Context) -> None:
    """Status bar: how many jobs run and how far they are, while any does."""
    state = getattr(context.window_manager, "conjure", None)
    live = [j for j in state.jobs if is_live(j)] if state is not None else []
    if not live:
        return
    row = self.layout.row(align=True)
    row.label(text=f"Conjure: {len(live)} job{'s' if len(live) > 1 else ''}")
    row.progress(factor=sum(j.progress for j in live) / len(live), type="RING", text="")


CLASSES: tuple[type, ...] = (
    CONJURE_UL_jobs,
    VIEW3D_PT_conjure_generate,
    VIEW3D_PT_conjure_compare,
    VIEW3D_PT_conjure_jobs,
    VIEW3D_MT_conjure_add,
)


def attach() -> None:
    bpy.types.VIEW3D_MT_add.append(draw_add_menu)
    bpy.types.VIEW3D_MT_object.append(draw_object_menu)
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def detach() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    bpy.types.VIEW3D_MT_object.remove(draw_object_menu)
    bpy.types.VIEW3D_MT_add.remove(draw_add_menu)
