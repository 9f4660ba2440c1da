"""The extension as Blender sees it: build, install, register, preferences, purity."""

from __future__ import annotations

import importlib
import threading
import zipfile
from pathlib import Path

from conftest import ADDON_ID


def _live_leftovers() -> dict[str, list[str]]:
    """Handlers, timers and threads that belong to the add-on's package."""
    import bpy

    handlers = [
        f"{name}:{fn.__module__}"
        for name in dir(bpy.app.handlers)
        if not name.startswith("_") and isinstance(getattr(bpy.app.handlers, name), list)
        for fn in getattr(bpy.app.handlers, name)
        if "conjure" in getattr(fn, "__module__", "")
    ]
    threads = [t.name for t in threading.enumerate() if "conjure" in t.name.lower()]
    return {"handlers": handlers, "threads": threads}


def test_enable_disable_enable_leaves_nothing_behind(addon) -> None:
    import addon_utils
    import bpy

    classes = addon.CLASSES
    assert classes, "the add-on registers no classes"
    assert all(cls.is_registered for cls in classes)
    assert hasattr(bpy.types.Scene, "conjure")

    addon_utils.disable(ADDON_ID)
    try:
        assert not any(cls.is_registered for cls in classes)
        assert not hasattr(bpy.types.Scene, "conjure")
        assert not hasattr(bpy.types.WindowManager, "conjure")
        assert _live_leftovers() == {"handlers": [], "threads": []}
    finally:
        addon_utils.enable(ADDON_ID, default_set=True)

    import importlib

    reloaded = importlib.import_module(ADDON_ID)
    assert all(cls.is_registered for cls in reloaded.CLASSES)
    assert [c.__name__ for c in reloaded.CLASSES] == [c.__name__ for c in classes]
    assert bpy.context.preferences.addons[ADDON_ID].preferences is not None


def test_preferences_found_by_package_and_env_wins(addon, monkeypatch) -> None:
    import bpy

    prefs_mod = importlib.import_module(f"{ADDON_ID}.settings")
    prefs = bpy.context.preferences.addons[ADDON_ID].preferences
    assert type(prefs).bl_idname == ADDON_ID
    assert prefs.trify3d_base_url == "https://trify3d.com"

    prefs.trify3d_api_key = "pref-key"
    prefs.siray_base_url = "http://127.0.0.1:9/siray/"
    try:
        got = prefs_mod.service_settings("trify3d")
        assert (got.api_key, got.key_source) == ("pref-key", "preferences")
        assert prefs_mod.service_settings("siray").base_url == "http://127.0.0.1:9/siray"

        monkeypatch.setenv("CONJURE_TRIFY3D_API_KEY", "env-key")
        monkeypatch.setenv("CONJURE_TRIFY3D_BASE_URL", "http://127.0.0.1:1/")
        got = prefs_mod.service_settings("trify3d")
        assert (got.api_key, got.key_source) == ("env-key", "environment")
        assert got.base_url == "http://127.0.0.1:1"
        assert "env-key" not in repr(got)

        missing = prefs_mod.service_settings("ravenra")
        assert (missing.api_key, missing.key_source) == ("", "")
        assert missing.base_url == "https://api.ravenra.io"
    finally:
        prefs.trify3d_api_key = ""
        prefs.siray_base_url = "https://api.siray.ai"


def test_every_service_has_key_and_url_preferences(addon) -> None:
    import bpy

    prefs = bpy.context.preferences.addons[ADDON_ID].preferences
    for pid in ("ravenra", "siray", "voxelai", "trify3d", "triverse"):
        key_prop = prefs.bl_rna.properties[f"{pid}_api_key"]
        assert key_prop.subtype == "PASSWORD"
        assert getattr(prefs, f"{pid}_base_url").startswith("https://")


def test_online_access_gate_says_why(addon) -> None:
    import bpy

    prefs_mod = importlib.import_module(f"{ADDON_ID}.settings")
    bpy.context.preferences.system.use_online_access = False
    try:
        reason = prefs_mod.online_access_problem()
        assert "--online-mode" in reason and "\n" not in reason
    finally:
        bpy.context.preferences.system.use_online_access = True
    assert prefs_mod.online_access_problem() == ""


def test_built_zip_holds_only_the_addon(built_zip: Path) -> None:
    with zipfile.ZipFile(built_zip) as zf:
        names = zf.namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    banned = ("tests/", "tools/", ".ci/", ".git", "__pycache__", "Makefile", "pyproject.toml")
    assert not [n for n in names if n.startswith(banned) or "__pycache__" in n]
    assert all(n.endswith((".py", ".toml")) for n in names), names


def test_preferences_show_where_a_key_comes_from_never_the_key(addon, monkeypatch) -> None:
    import bpy
    from panelrec import record

    monkeypatch.setenv("CONJURE_SIRAY_API_KEY", "siray-secret-value")
    prefs = bpy.context.preferences.addons[ADDON_ID].preferences
    prefs.trify3d_api_key = "pref-secret-value"
    try:
        lines, problems = record(type(prefs).draw, prefs)
    finally:
        prefs.trify3d_api_key = ""
    assert problems == []
    labels = " | ".join(line for line in lines if "label" in line)
    assert "Key set from CONJURE_SIRAY_API_KEY" in labels and "Key set in preferences" in labels
    assert "No key" in labels and "secret-value" not in "\n".join(lines)
