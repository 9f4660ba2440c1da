"""Add-on preferences: one API key and base URL per service, with environment overrides.

Environment variables win over preferences so headless pipelines and tests can point the
add-on anywhere without touching the user's saved settings. Values are never shown.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences

from . import settings
from .providers import PROVIDER_IDS, SERVICES

ADDON_ID = __package__


def _service_annotations() -> dict[str, object]:
    annotations: dict[str, object] = {}
    for pid in PROVIDER_IDS:
        info = SERVICES[pid]
        annotations[f"{pid}_api_key"] = StringProperty(
            name=f"{info.name} API Key",
            description=f"Secret key for {info.name}; {info.env_key} overrides it",
            subtype="PASSWORD",
        )
        annotations[f"{pid}_base_url"] = StringProperty(
            name="Base URL",
            description=f"API root for {info.name}; {info.env_base_url} overrides it",
            default=info.default_base_url,
        )
    return annotations


class ConjurePreferences(AddonPreferences):
    bl_idname = ADDON_ID

    __annotations__ = {
        **_service_annotations(),
        "max_concurrent_jobs": IntProperty(
            name="Concurrent Jobs",
            description="How many generations may be in progress on the services at once "
            "(more wait in the queue; applies at once)",
            default=8,
            min=1,
            max=100,
            update=lambda _prefs, _context: settings.concurrency_changed(),
        ),
        "keep_days": IntProperty(
            name="Keep Finished Jobs (Days)",
            description="Finished jobs and their downloaded files older than this are removed",
            default=30,
            min=1,
            max=3650,
        ),
        "proxy": StringProperty(
            name="Proxy",
            description="Proxy for every service, e.g. proxy.studio.lan:3128 "
            "(empty: the system's HTTP_PROXY / HTTPS_PROXY)",
        ),
        "ca_bundle": StringProperty(
            name="CA Bundle",
            description="Certificate bundle (.pem) of a proxy that inspects HTTPS "
            "(empty: the usual certificates)",
            subtype="FILE_PATH",
        ),
        "auto_resume": BoolProperty(
            name="Resume Jobs on Start",
            description="When Conjure starts with unfinished jobs in its journal, continue "
            "them (only with online access allowed; nothing is paid again)",
            default=True,
        ),
        "ask_above": FloatProperty(
            name="Ask Before Spending More Than",
            description="Credits (or tokens, or generations) one click may spend without "
            "asking first, by the estimate from earlier charges; scripts that run the sidebar's "
            "operators are refused instead unless they pass confirmed=True (0: never ask)",
            default=0.0,
            min=0.0,
            precision=0,
        ),
        "show_advanced": BoolProperty(name="Advanced", default=False),
    }

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        for pid in PROVIDER_IDS:
            info = SERVICES[pid]
            service = settings.service_settings(pid, self)
            box = layout.box()
            row = box.row()
            row.label(text=info.name, icon="WORLD")
            row.label(text=info.description)
            row.operator("wm.url_open", text="Get a Key", icon="URL").url = info.key_page_url
            box.prop(self, f"{pid}_api_key")
            if service.key_source == "environment":
                box.label(text=f"Key set from {info.env_key} (overrides this)", icon="CHECKMARK")
            elif service.key_source:
                box.label(text="Key set in preferences", icon="CHECKMARK")
            else:
                box.label(text=f"No key: paste one above or set {info.env_key}", icon="ERROR")
        layout.prop(self, "max_concurrent_jobs")
        layout.prop(self, "keep_days")
        layout.prop(self, "auto_resume")
        layout.prop(self, "ask_above")
        layout.prop(self, "show_advanced", icon="PREFERENCES")
        if self.show_advanced:
            adv = layout.box()
            adv.prop(self, "proxy")
            adv.prop(self, "ca_bundle")
            for pid in PROVIDER_IDS:
                info = SERVICES[pid]
                row = adv.row()
                row.label(text=info.name)
                row.prop(self, f"{pid}_base_url", text="")
                if os.environ.get(info.env_base_url):
                    adv.label(text=f"Overridden by {info.env_base_url}", icon="INFO")


CLASSES: tuple[type, ...] = (ConjurePreferences,)
