"""Check Services: `conjure doctor` in the sidebar. Each service's key, base URL and network,
and a live check that costs nothing, reported in a popup and the Info log. From the UI the
checks run on a thread (a service that does not answer never freezes Blender); from a
script they block."""

from __future__ import annotations

import threading

import bpy
from bpy.types import Operator

from .. import settings
from ..jobs.doctor import Checkup, examine
from ..providers import SERVICES

ICONS = {"ok": "CHECKMARK", "no_key": "INFO"}


def check_all() -> list[Checkup]:
    network = settings.doctor_network()
    return [examine(settings.service_settings(s), settings.base_url_source(s), network)
            for s in SERVICES]  # fmt: skip


class CONJURE_OT_check_services(Operator):
    """Check each service from here: its key, address, proxy and certificates, and whether it
    answers (one read of a task that does not exist: nothing is created or charged)"""

    bl_idname = "conjure.check_services"
    bl_label = "Check Services"
    bl_options = {"REGISTER"}

    def invoke(self, context, event):
        self._done: list[Checkup] = []
        self._thread = threading.Thread(
            target=lambda: self._done.extend(check_all()), name="conjure-doctor", daemon=True
        )
        self._thread.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        self.report({"INFO"}, "Conjure: checking the services…")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or self._thread.is_alive():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._show(context, self._done)

    def execute(self, context):
        return self._show(context, check_all())

    def _show(self, context, checkups: list[Checkup]) -> set[str]:
        for checkup in checkups:
            level = "WARNING" if checkup.needs_attention else "INFO"
            self.report({level}, f"Conjure: {checkup.line()}")
        if not bpy.app.background:  # a popup needs a window a person looks at

            def draw(menu, _context) -> None:
                for c in checkups:
                    menu.layout.label(text=c.line(), icon=ICONS.get(c.status.value, "ERROR"))

            context.window_manager.popup_menu(draw, title="Conjure: services", icon="WORLD")
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (CONJURE_OT_check_services,)
