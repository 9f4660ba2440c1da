"""The job monitor and Blender's handlers: what keeps jobs moving while the UI stays free.

In the UI a modal operator ticks on a timer, applies engine events and imports ready jobs;
after a file load it comes back; on enable the journal's jobs appear (and resume, if the
preference says so); on quit the engine stops so nothing new is sent.
"""

from __future__ import annotations

import atexit

import bpy
from bpy.app.handlers import persistent
from bpy.types import Operator

from .. import runtime, settings

MONITOR_INTERVAL = 0.1
IMPORT_INTERVAL = 0.02  # while downloaded assets wait for the main thread to import them


def tick_interval(rt: runtime.Runtime) -> float:
    """The monitor's pace: quick while changes or imports are queued or downloads finish
    (each tick applies changes for about 1.5 ms and imports for about 50 ms, then lets
    Blender draw), relaxed otherwise."""
    return IMPORT_INTERVAL if rt.catching_up() else MONITOR_INTERVAL


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


def ensure_monitor(context: bpy.types.Context) -> None:
    """Start the modal pump once; it stops itself when no job is live."""
    if not bpy.app.background and not CONJURE_OT_job_monitor.running and context.window:
        bpy.ops.conjure.job_monitor("INVOKE_DEFAULT")


def start_monitor() -> None:
    wm = bpy.context.window_manager
    if wm and wm.windows and not CONJURE_OT_job_monitor.running:
        with bpy.context.temp_override(window=wm.windows[0]):
            bpy.ops.conjure.job_monitor("INVOKE_DEFAULT")


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
    _ = rt.prices  # the journal's prices read here, not in the first draw of the sidebar
    allowed = settings.auto_resume() and not settings.online_access_problem()
    if waiting and allowed and rt.resume():
        start_monitor()


@persistent
def _quitting(*_args: object) -> None:
    """Quit: stop the engine so nothing new is sent; jobs stay in the journal to resume."""
    runtime.shutdown()


def _exit_handlers() -> list:
    """`exit_pre` where Blender has it (5.2); Python's atexit covers every version."""
    return getattr(bpy.app.handlers, "exit_pre", [])


def attach() -> None:
    bpy.app.handlers.load_post.append(restart_monitor_after_load)
    if not bpy.app.background:  # pipelines resume explicitly (`conjure resume`, api.resume)
        bpy.app.timers.register(show_jobs_on_start, first_interval=0.5)
    _exit_handlers().append(_quitting)
    atexit.register(_quitting)


def detach() -> None:
    """Undo attach() and stop anything live (timers, threads) so disable leaves nothing."""
    if restart_monitor_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(restart_monitor_after_load)
    for timer in (start_monitor, show_jobs_on_start):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    if _quitting in _exit_handlers():
        _exit_handlers().remove(_quitting)
    atexit.unregister(_quitting)
    CONJURE_OT_job_monitor.stop(bpy.context)
    runtime.shutdown()


CLASSES: tuple[type, ...] = (CONJURE_OT_job_monitor,)
