"""Operators that start new jobs: conjure.generate, the sidebar's Generate and its F3
dialogs, Compare, Resume; and the blocking rule they (and jobs.py) share.

One rule for blocking, as Blender's own extension operators have: invoked from the UI an
operator returns at once and the monitor carries the jobs on; executed (a script, `blender
-b`, the API) it blocks until its jobs end, importing on the way.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    StringProperty,
)
from bpy.types import Operator

from .. import placeholders, props, runtime, settings
from ..jobs.model import Job, JobState
from ..jobs.session import ConjureError, request_problem, server_face_limit
from ..jobs.spend import Estimate, PriceBook, Request, estimate_words, totals
from ..providers import PROVIDER_IDS, SERVICES
from ..providers.base import GenerationRequest, is_url
from .monitor import ensure_monitor

TIMEOUT = 1800.0
SOURCE_WORDS = {"TEXT": "text", "IMAGE": "an image", "MULTIVIEW": "several views"}


def price_book() -> PriceBook | None:
    """The running session's prices and balances (None before it runs: panels never start it)."""
    rt = runtime.current()
    return rt.prices if rt is not None else None


def sidebar_estimate(
    context, book: PriceBook | None, providers: Iterable[str], source: str = ""
) -> list[Estimate]:
    """What the sidebar's request would cost on each of `providers`: the last charges of
    the same kind of job in `book` (an estimate; [] while nothing is known)."""
    if book is None:
        return []
    sidebar = context.scene.conjure
    source = source or sidebar.source
    wanted = []
    for p in providers:
        options = props.service_options(sidebar, p, source)
        sent = server_face_limit(p, options, props.import_plan(sidebar, p))  # as it will go
        wanted.append(Request(p, source, sent))
    return book.quote(wanted)


def spend_question(estimates: list[Estimate]) -> str:
    """Why to ask before sending: the known estimate, in some unit, is over the "Ask Before
    Spending More Than" preference ('' when it is not, or the preference is 0)."""
    limit = settings.ask_above()
    if limit <= 0 or all(v <= limit for v in totals(estimates).values()):
        return ""
    return f"This may spend {estimate_words(estimates)}, more than {limit:g} at once"


class _AsksFirst:
    """Spends over the "Ask Before Spending More Than" preference only when agreed to: from
    the UI it asks first; run by a script it refuses in one line unless confirmed=True."""

    confirmed: BoolProperty(
        name="Confirmed",
        description="Send even when the estimate is over the 'Ask Before Spending More Than' "
        "preference (scripts)",
        options={"HIDDEN", "SKIP_SAVE"},
    )

    def estimate(self, context) -> list[Estimate]:
        raise NotImplementedError

    def question(self, context) -> str:
        """What to ask ('' when nothing): Repeat Last never reuses an earlier answer."""
        agreed = self.confirmed and not self.options.is_repeat
        if agreed or settings.ask_above() <= 0:
            return ""
        return spend_question(self.estimate(context))

    def ask_first(self, context, event, title: str):
        question = self.question(context)
        if question and bpy.app.background:
            return self.execute(context)  # nobody to ask: refused as for a script
        self.confirmed = True  # nothing to ask (execute need not weigh it again), or agreed
        if not question:
            return self.execute(context)
        return context.window_manager.invoke_confirm(
            self, event, title=title, message=question, confirm_text="Send", icon="WARNING"
        )

    def refused(self, context) -> bool:
        """Executed over the preference without a confirmation: one line, nothing sent."""
        question = self.question(context)
        if question:
            self.report({"ERROR"}, f"Not sent: {question} (confirm it, or pass confirmed=True)")
        return bool(question)


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
        runtime.get().submit(job)  # refused in one line while the journal cannot be written
    except ConjureError as exc:
        op.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
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


class CONJURE_OT_generate(_AsksFirst, Operator):
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
        return settings.poll_online(cls)

    def invoke(self, context, event):
        """From the panel or F3: take what the caller did not set from the sidebar inputs."""
        sidebar = context.scene.conjure
        for name in ("provider", "source", "prompt", "image_path"):
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(sidebar, name))
        if not self.properties.is_property_set("image_paths"):
            for item in sidebar.image_paths:
                self.image_paths.add().name = item.name
        # The sidebar's service options and placement too; model/mode given here win.
        self._sidebar = props.service_options(sidebar, self.provider, self.source)
        self._plan = props.import_plan(sidebar, self.provider)
        return self.ask_first(context, event, "Generate?")

    def execute(self, context):
        if self.refused(context):
            return {"CANCELLED"}
        return start_job(self, context, self._job, self.timeout)

    def estimate(self, context) -> list[Estimate]:
        return runtime.get().prices.quote([Request(self.provider, self.source, self._options())])

    def _job(self) -> Job:
        problem = settings.online_access_problem()
        if problem:
            raise ConjureError(problem)
        images = request_images(self, self.source)
        plan = getattr(self, "_plan", None)
        request = GenerationRequest(self.source, self.prompt, images, self._options())
        return runtime.get().new_job(self.provider, request, plan)

    def _options(self) -> dict[str, object]:
        """The job's options: the sidebar's when invoked from the UI, then this call's."""
        options = dict(getattr(self, "_sidebar", {}))
        given = {"model": self.model, "mode": self.mode}
        options.update({k: v for k, v in given.items() if v})
        if self.candidate >= 0:
            options["candidate"] = self.candidate
        return options


def service_problem(context, provider: str, source: str) -> str:
    """Why `provider` cannot take the sidebar's request now ('' when it can)."""
    info = SERVICES[provider]
    if source not in info.sources:
        return f"{info.name} cannot generate from {SOURCE_WORDS[source]}"
    sidebar = context.scene.conjure
    images = request_images(sidebar, source)
    request = GenerationRequest(source, sidebar.prompt, images)
    return request_problem(settings.service_settings(provider), request)


def sidebar_problem(context, source: str = "") -> str:
    """Why the Generate button is greyed out, in one line ('' when it is not)."""
    sidebar = context.scene.conjure
    return settings.online_access_problem() or service_problem(
        context, sidebar.provider, source or sidebar.source
    )


def compare_problem(context) -> str:
    if len(context.scene.conjure.compare_services) < 2:
        return "Choose at least two services to compare"
    problem = settings.online_access_problem()
    if problem:
        return problem
    ready, problems = compare_services(context)
    return "" if ready else problems[0]


def compare_services(context) -> tuple[list[str], list[str]]:
    """The services chosen to compare that can take the sidebar's request, and why the
    others cannot."""
    sidebar = context.scene.conjure
    chosen = [pid for pid in PROVIDER_IDS if pid in sidebar.compare_services]
    problems = {pid: service_problem(context, pid, sidebar.source) for pid in chosen}
    return [p for p in chosen if not problems[p]], [w for w in problems.values() if w]


def _sidebar_job(context, provider: str, source: str, **compare: object) -> Job:
    """A job from the sidebar's inputs; `compare` sets its slot in a comparison's row."""
    sidebar = context.scene.conjure
    options = props.service_options(sidebar, provider, source)
    plan = replace(props.import_plan(sidebar, provider), **compare)
    images = request_images(sidebar, source)
    request = GenerationRequest(source, sidebar.prompt, images, options)
    return runtime.get().new_job(provider, request, plan)


class _FromSidebar(_AsksFirst):
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
        return settings.poll_unless(cls, sidebar_problem(context, cls.fixed_source))

    def invoke(self, context, event):
        return self.ask_first(context, event, "Generate?")

    def execute(self, context):
        if self.refused(context):
            return {"CANCELLED"}
        sidebar = context.scene.conjure
        source = self.fixed_source or sidebar.source
        make = functools.partial(_sidebar_job, context, sidebar.provider, source)
        return start_job(self, context, make, self.timeout)

    def estimate(self, context) -> list[Estimate]:
        provider = context.scene.conjure.provider
        return sidebar_estimate(context, runtime.get().prices, [provider], self.fixed_source)


class CONJURE_OT_sidebar_generate(_FromSidebar, Operator):
    """Generate with the service, source and options chosen in the Conjure sidebar"""

    bl_idname = "conjure.sidebar_generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "INTERNAL"}  # F3 has Generate 3D from Text / from Image


class _Dialog(_FromSidebar):
    """From F3 or Add > Conjure: a small dialog with the service and the input first."""

    def invoke(self, context, event):
        self.confirmed = True  # the dialog shows what it may spend: its OK agrees to it
        return context.window_manager.invoke_props_dialog(self, width=420)

    def draw(self, context):
        sidebar = context.scene.conjure
        layout = self.layout
        layout.prop(sidebar, "provider")
        if self.fixed_source == "TEXT":
            layout.prop(sidebar, "prompt")
        else:
            layout.prop(sidebar, "image_path")
        problem = sidebar_problem(context, self.fixed_source)
        if problem:
            layout.label(text=problem, icon="ERROR")
        asked = sidebar_estimate(context, price_book(), [sidebar.provider], self.fixed_source)
        question = spend_question(asked)
        if question:
            layout.label(text=question, icon="ERROR")

    @classmethod
    def poll(cls, context):  # the dialog is where the missing input is entered
        return settings.poll_online(cls)

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


class CONJURE_OT_compare(_AsksFirst, Operator):
    """Send the same prompt or image to several services at once; the results land side by
    side, each labelled with its service"""

    bl_idname = "conjure.compare"
    bl_label = "Compare Services"
    bl_options = {"REGISTER"}

    timeout: FloatProperty(name="Timeout", default=TIMEOUT, min=1.0)

    @classmethod
    def poll(cls, context):
        return settings.poll_unless(cls, compare_problem(context))

    def invoke(self, context, event):
        return self.ask_first(context, event, "Compare Services?")

    def estimate(self, context) -> list[Estimate]:
        return sidebar_estimate(context, runtime.get().prices, compare_services(context)[0])

    def execute(self, context):
        if self.refused(context):
            return {"CANCELLED"}
        sidebar = context.scene.conjure
        ready, problems = compare_services(context)
        for problem in problems:
            self.report({"WARNING"}, problem)
        group = uuid.uuid4().hex[:8]
        jobs = []
        try:
            for slot, pid in enumerate(ready):
                job = _sidebar_job(
                    context, pid, sidebar.source, compare_group=group, compare_slot=slot,
                    compare_count=len(ready), compare_spacing=sidebar.compare_spacing,
                )  # fmt: skip
                jobs.append(job)
        except ConjureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not jobs:
            self.report({"ERROR"}, compare_problem(context) or "No service can take this")
            return {"CANCELLED"}
        try:
            for job in jobs:
                runtime.get().submit(job)
        except ConjureError as exc:  # the journal cannot be written: nothing more is sent
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        names = ", ".join(SERVICES[j.provider].name for j in jobs)
        started = f"Conjure: comparing {names}"
        return run_jobs(self, context, [j.job_id for j in jobs], self.timeout, started)


def placeholder_problem(context) -> str:
    """Why Generate for Selected is greyed out, in one line ('' when it is not)."""
    provider = context.scene.conjure.provider
    info = SERVICES[provider]
    if "TEXT" not in info.sources:
        return f"{info.name} cannot generate from text"
    if not context.selected_objects:
        return "Select the placeholders to generate for"
    request = GenerationRequest("TEXT", "a placeholder")  # each gives its own prompt
    return settings.online_access_problem() or request_problem(
        settings.service_settings(provider), request
    )


class CONJURE_OT_generate_for_selected(_AsksFirst, Operator):
    """Generate an asset for each selected object (its conjure_prompt, else its name) with the
    sidebar's service; each result is fitted into its placeholder's box, which is then hidden"""

    bl_idname = "conjure.generate_for_selected"
    bl_label = "Generate for Selected"
    bl_options = {"REGISTER"}

    timeout: FloatProperty(
        name="Timeout",
        description="When run from a script: seconds to wait for the assets (the jobs go on)",
        default=TIMEOUT,
        min=1.0,
    )

    @classmethod
    def poll(cls, context):
        return settings.poll_unless(cls, placeholder_problem(context))

    def invoke(self, context, event):
        return self.ask_first(context, event, "Generate for Selected?")

    def estimate(self, context) -> list[Estimate]:
        provider = context.scene.conjure.provider
        count = len(placeholders.usable(context.selected_objects)[0])
        return sidebar_estimate(context, runtime.get().prices, [provider] * count, "TEXT")

    def execute(self, context):
        if self.refused(context):
            return {"CANCELLED"}
        kept, skipped = placeholders.usable(context.selected_objects)
        for line in skipped:
            self.report({"WARNING"}, line)
        if not kept:
            self.report({"ERROR"}, "No placeholder to generate for")
            return {"CANCELLED"}
        sidebar = context.scene.conjure
        options = props.service_options(sidebar, sidebar.provider, "TEXT")
        plan = props.import_plan(sidebar, sidebar.provider)
        rt = runtime.get()
        try:
            jobs = placeholders.new_jobs(rt, sidebar.provider, kept, options, plan)
            for job in jobs:
                rt.submit(job)
        except ConjureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        started = f"Conjure: generating for {len(jobs)} placeholder(s)"
        return run_jobs(self, context, [j.job_id for j in jobs], self.timeout, started)


class CONJURE_OT_resume_jobs(Operator):
    """Continue every unfinished job from the journal without paying again"""

    bl_idname = "conjure.resume_jobs"
    bl_label = "Resume Unfinished Jobs"
    bl_options = {"REGISTER"}

    timeout: FloatProperty(name="Timeout", default=1800.0, min=1.0)

    @classmethod
    def poll(cls, context):
        return settings.poll_online(cls)

    def execute(self, context):
        started = runtime.get().resume()
        if not started:
            self.report({"INFO"}, "No unfinished jobs to resume")
            return {"FINISHED"}
        return run_jobs(self, context, started, self.timeout, f"Resuming {len(started)} job(s)")


CLASSES: tuple[type, ...] = (
    CONJURE_OT_generate,
    CONJURE_OT_sidebar_generate,
    CONJURE_OT_generate_text,
    CONJURE_OT_generate_image,
    CONJURE_OT_compare,
    CONJURE_OT_generate_for_selected,
    CONJURE_OT_resume_jobs,
)
