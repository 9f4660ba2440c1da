"""Where settings come from: the environment first, then the add-on's preferences.

Read on the main thread by the runtime, the operators, the panels and the preferences' own
draw; imports none of them, so none of them import each other to read a setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import bpy

from .jobs.doctor import Network
from .jobs.session import ServiceSettings
from .providers import SERVICES
from .providers.http import normalize_proxy

ADDON_ID = __package__
DEFAULT_CONCURRENT_JOBS = 8
DEFAULT_KEEP_DAYS = 30
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")  # requests reads them

# The running session's reaction to a changed Concurrent Jobs (set by the runtime).
concurrency_listener: Callable[[], None] | None = None


def addon_preferences(
    context: bpy.types.Context | None = None,
) -> bpy.types.AddonPreferences | None:
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon else None


def service_settings(provider: str, prefs: object | None = None) -> ServiceSettings:
    """Key and base URL for one service: environment first, then preferences."""
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


def network_settings() -> tuple[str, str]:
    """(proxy URL with a scheme, CA bundle path), both '' when unset."""
    prefs = addon_preferences()
    if prefs is None:
        return "", ""
    ca_bundle = prefs.ca_bundle.strip()
    return normalize_proxy(prefs.proxy), bpy.path.abspath(ca_bundle) if ca_bundle else ""


def base_url_source(provider: str) -> str:
    """Where a service's base URL comes from: environment, preferences or default."""
    info = SERVICES[provider]
    if os.environ.get(info.env_base_url, "").strip():
        return "environment"
    prefs = addon_preferences()
    chosen = (getattr(prefs, f"{provider}_base_url", "") if prefs else "").strip().rstrip("/")
    return "preferences" if chosen and chosen != info.default_base_url else "default"


def doctor_network() -> Network:
    """Online access, proxy and CA bundle as every service check sees them."""
    proxy, ca_bundle = network_settings()
    system = any(os.environ.get(v) for v in PROXY_VARIABLES)
    return Network(online_access_problem(), proxy, ca_bundle, system)


def max_concurrent_jobs() -> int:
    prefs = addon_preferences()
    return prefs.max_concurrent_jobs if prefs else DEFAULT_CONCURRENT_JOBS


def keep_days() -> int:
    prefs = addon_preferences()
    return prefs.keep_days if prefs else DEFAULT_KEEP_DAYS


def auto_resume() -> bool:
    prefs = addon_preferences()
    return bool(prefs and prefs.auto_resume)


def ask_above() -> float:
    """Credits one click may spend without asking first (0: never ask)."""
    prefs = addon_preferences()
    return float(prefs.ask_above) if prefs else 0.0


def concurrency_changed() -> None:
    """Concurrent Jobs was edited: the running session applies it at once."""
    if concurrency_listener is not None:
        concurrency_listener()


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


def poll_online(cls: type) -> bool:
    """An operator's poll() for network actions: greyed out, with the reason as tooltip."""
    return poll_unless(cls, online_access_problem())


def poll_unless(cls: type, problem: str) -> bool:
    """An operator's poll(): True, or False with `problem` as the greyed-out tooltip."""
    if problem:
        cls.poll_message_set(problem)  # type: ignore[attr-defined]
    return not problem


class BlenderHost:
    """What the job session asks of Blender (`jobs.session.Host`)."""

    def service(self, provider: str) -> ServiceSettings:
        return service_settings(provider)

    def network(self) -> tuple[str, str]:
        return network_settings()

    def max_concurrent_jobs(self) -> int:
        return max_concurrent_jobs()

    def open_file(self) -> str:
        return bpy.data.filepath
