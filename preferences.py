"""Add-on preferences: one API key and base URL per service, with environment overrides.

Environment variables win over preferences so headless pipelines and tests can point the
add-on anywhere without touching the user's saved settings. Values are never shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences

from .providers import PROVIDER_IDS, SERVICES
from .providers.http import normalize_proxy

ADDON_ID = __package__


@dataclass(frozen=True)
class ServiceSettings:
    """What a worker needs to talk to one service: plain values, safe to hand to threads."""

    provider: str
    api_key: str
    base_url: str
    key_source: str  # "environment", "preferences" or "" when missing

    def __repr__(self) -> str:  # never let the key reach a log through repr()
        return (
            f"ServiceSettings(provider={self.provider!r}, base_url={self.base_url!r}, "
            f"key_source={self.key_source!r})"
        )


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


def _apply_concurrency(count: int) -> None:
    """The engine takes a changed limit at once (jobs already paid for keep running)."""
    from . import runtime

    live = runtime.current()
    if live is not None:
        live.engine.set_max_in_flight(count)


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
            update=lambda prefs, _context: _apply_concurrency(prefs.max_concurrent_jobs),
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
        "show_advanced": BoolProperty(name="Advanced", default=False),
    }

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        for pid in PROVIDER_IDS:
            info = SERVICES[pid]
            settings = service_settings(pid, self)
            box = layout.box()
            row = box.row()
            row.label(text=info.name, icon="WORLD")
            row.label(text=info.description)
            row.operator("wm.url_open", text="Get a Key", icon="URL").url = info.key_page_url
            box.prop(self, f"{pid}_api_key")
            if settings.key_source == "environment":
                box.label(text=f"Key set from {info.env_key} (overrides this)", icon="CHECKMARK")
            elif settings.key_source:
                box.label(text="Key set in preferences", icon="CHECKMARK")
            else:
                box.label(text=f"No key: paste one above or set {info.env_key}", icon="ERROR")
        layout.prop(self, "max_concurrent_jobs")
        layout.prop(self, "keep_days")
        layout.prop(self, "auto_resume")
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


def addon_preferences(context: bpy.types.Context | None = None) -> ConjurePreferences | None:
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon else None


def service_settings(provider: str, prefs: ConjurePreferences | None = None) -> ServiceSettings:
    """Resolve key and base URL for one service: environment first, then preferences."""
    info = SERVICES[provider]
    prefs = prefs if prefs is not None else addon_preferences()
    env_key = os.environ.get(info.env_key, "").strip()
    pref_key = (getattr(prefs, f"{provider}_api_key", "") if prefs else "").strip()
    env_url = os.environ.get(info.env_base_url, "").strip()
    pref_url = (getattr(prefs, f"{provider}_base_url", "") if prefs else "").strip()
    if env_key:
        key, source = env_key, "environment"
    elif pref_key:
        key, source = pref_key, "preferences"
    else:
        key, source = "", ""
    base = (env_url or pref_url or info.default_base_url).rstrip("/")
    return ServiceSettings(provider, key, base, source)


def network_settings(prefs: ConjurePreferences | None = None) -> tuple[str, str]:
    """(proxy URL with a scheme, CA bundle path), both '' when unset."""
    prefs = prefs if prefs is not None else addon_preferences()
    if prefs is None:
        return "", ""
    ca_bundle = prefs.ca_bundle.strip()
    return normalize_proxy(prefs.proxy), bpy.path.abspath(ca_bundle) if ca_bundle else ""


def online_access_problem() -> str:
    """The one gate every network action passes: '' when allowed, else a one-line reason."""
    if bpy.app.online_access:
        return ""
    if bpy.app.background:
        return (
            "Online access is disabled: run Blender with --online-mode "
            "(or enable it in Preferences > System > Network)"
        )
    return "Online access is disabled: enable it in Preferences > System > Network"


CLASSES: tuple[type, ...] = (ConjurePreferences,)
