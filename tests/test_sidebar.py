"""The sidebar: every panel drawn in every state on a recording layout, compared with the
readable snapshots in docs/panels/ (UPDATE_PANEL_SNAPSHOTS=1 rewrites them), and every
action it offers run headless through its operator against the emulators."""

from __future__ import annotations

import importlib
import os

import pytest
from panelrec import SNAPSHOTS, record

from conftest import ADDON_ID

TRIFY_KEY = "trf_live_sidebar-S3CRET-1"
SIRAY_KEY = "sk-siray-sidebar-S3CRET-2"
VOXEL_KEY = "vxl-sidebar-S3CRET-3"
NOW = 1_800_000_000  # the clock panels draw with in snapshots
KEY_VARS = [f"CONJURE_{p.upper()}_API_KEY" for p in
            ("ravenra", "siray", "voxelai", "trify3d", "triverse")]  # fmt: skip


def _module(name: str):
    return importlib.import_module(f"{ADDON_ID}.{name}")


# -- snapshots ------------------------------------------------------------------------------


def _draw_all(addon) -> list[str]:
    """Every panel, the Add menu and the status bar, as text; fails on any bad reference."""
    import bpy

    panels = _module("panels.main")
    lines: list[str] = []
    problems: list[str] = []
    drawn = [c for c in addon.CLASSES if issubclass(c, (bpy.types.Panel, bpy.types.Menu))]
    for cls in drawn:
        lines.append(f"== {cls.bl_label} ({cls.__name__})")
        more, bad = record(cls.draw)
        lines += more
        problems += bad
    lines.append("== Status bar")
    more, bad = record(panels.draw_status)
    lines += more
    problems += bad
    assert problems == []
    return lines


def _compare_snapshot(name: str, lines: list[str]) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    text = "\n".join(lines) + "\n"
    if os.environ.get("UPDATE_PANEL_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path.name}: run with UPDATE_PANEL_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs from the panel"


@pytest.fixture
def fixed_ui(addon, scene, monkeypatch):
    """A known state: no keys (unless a test sets one), online access on, a fixed clock."""
    import bpy

    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(_module("panels.main"), "now", lambda: NOW)
    bpy.context.preferences.system.use_online_access = True
    jobs = bpy.context.window_manager.conjure.jobs
    jobs.clear()
    yield scene
    jobs.clear()
    bpy.context.preferences.system.use_online_access = True


def _job(state: str, **fields):
    import bpy

    wm = bpy.context.window_manager.conjure
    item = wm.jobs.add()
    item.job_id = f"job-{len(wm.jobs)}"
    item.provider = fields.pop("provider", "trify3d")
    item.label = item.prompt = fields.pop("prompt", "a mossy stone lantern")
    item.state = state
    item.created, item.updated = NOW - 125, NOW - 5
    for name, value in fields.items():
        if name == "candidates":
            for icon in value:
                item.candidates.add().icon = icon
        else:
            setattr(item, name, value)
    wm.jobs_index = len(wm.jobs) - 1
    return item


GENERATE_STATES = {
    "generate-no-key": dict(provider="trify3d", source="TEXT", prompt="a chair"),
    "generate-offline": dict(provider="trify3d", source="TEXT", prompt="a chair", offline=True),
    "generate-empty-prompt": dict(provider="siray", source="TEXT", prompt="", key=True),
    "generate-ready-text": dict(provider="ravenra", source="TEXT", prompt="a chair", key=True),
    "generate-no-image": dict(provider="voxelai", source="IMAGE", key=True),
    "generate-multiview": dict(provider="trify3d", source="MULTIVIEW", key=True),
    "generate-source-not-offered": dict(provider="siray", source="MULTIVIEW", key=True),
}


@pytest.mark.parametrize("state", sorted(GENERATE_STATES))
def test_generate_panel_snapshot(addon, fixed_ui, monkeypatch, state: str) -> None:
    import bpy

    spec = dict(GENERATE_STATES[state])
    settings = fixed_ui.conjure
    settings.provider, settings.source = spec["provider"], spec["source"]
    settings.prompt = spec.get("prompt", "")
    settings.show_options = settings.show_placement = True
    if spec.get("key"):
        monkeypatch.setenv(f"CONJURE_{spec['provider'].upper()}_API_KEY", "k")
    if spec["source"] == "MULTIVIEW":
        for name in ("front.png", "side.png"):
            settings.image_paths.add().name = name  # relative: shown as typed, not found
    if spec.get("offline"):
        bpy.context.preferences.system.use_online_access = False
    _compare_snapshot(state, _draw_all(addon))


JOB_STATES = {
    "job-queued": dict(state="queued", message="Queued"),
    "job-running": dict(state="running", progress=0.4, message="Generating 40%"),
    "job-stalled": dict(
        state="stalled", message="Trify3D did not answer: trying again", next_try=NOW + 40
    ),
    "job-awaiting-pick": dict(
        state="awaiting_pick", provider="voxelai", message="Pick one of 3 candidates",
        candidates=(11, 12, 13),
    ),
    "job-ready": dict(state="ready", message="Ready — Import"),
    "job-imported": dict(state="imported", message="Imported 2 object(s)", thumbnail=7),
    "job-imported-preview": dict(
        state="imported", provider="ravenra", message="Imported 1 object(s)", can_refine=True
    ),
    "job-failed": dict(state="failed", message="Trify3D: not enough credits"),
    "job-cancelled": dict(state="cancelled", message="Cancelled"),
    "job-held": dict(state="submitted", held=True, message="Not running — Resume continues it"),
    "job-warnings": dict(
        state="imported", message="Imported 1 object(s)", warnings="thumbnail not downloaded"
    ),
}


@pytest.mark.parametrize("state", sorted(JOB_STATES))
def test_jobs_panel_snapshot(addon, fixed_ui, state: str) -> None:
    _job("imported", prompt="an older job")
    _job(**JOB_STATES[state])
    _compare_snapshot(state, _draw_all(addon))


def test_compare_in_progress_snapshot(addon, fixed_ui, monkeypatch) -> None:
    for var in KEY_VARS[1:]:
        monkeypatch.setenv(var, "k")
    fixed_ui.conjure.prompt = "a brass teapot"
    for slot, (pid, state) in enumerate((("siray", "running"), ("trify3d", "imported"))):
        _job(state, provider=pid, prompt="a brass teapot", compare="c1", compare_slot=slot)
    _compare_snapshot("compare-in-progress", _draw_all(addon))


def test_snapshots_on_disk_all_have_a_test() -> None:
    names = {*GENERATE_STATES, *JOB_STATES, "compare-in-progress"}
    assert {p.stem for p in SNAPSHOTS.glob("*.txt")} == names
