"""The sidebar: every panel drawn in every state on a recording layout, compared with the
readable snapshots in docs/panels/ (UPDATE_PANEL_SNAPSHOTS=1 rewrites them), and every
action it offers run headless through its operator against the emulators."""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

import pytest
from panelrec import SNAPSHOTS, record
from services import api as _api
from services import service

from conftest import ADDON_ID, FIXTURES
from emulators.siray import SirayEmulator
from emulators.trify3d import Trify3DEmulator, tiny_png
from emulators.voxelai import VoxelAIEmulator

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
    for dialog in (bpy.types.CONJURE_OT_generate_text, bpy.types.CONJURE_OT_generate_image):
        lines.append(f"== Dialog {dialog.bl_label}")
        more, bad = record(dialog.draw, dialog)
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
    _prices(monkeypatch, _module("jobs.spend").PriceBook())  # none known unless a test says
    bpy.context.preferences.system.use_online_access = True
    jobs = bpy.context.window_manager.conjure.jobs
    jobs.clear()
    yield scene
    jobs.clear()
    bpy.context.preferences.system.use_online_access = True


def _prices(monkeypatch, book) -> None:
    """The prices and balances the panels and dialogs see."""
    for module in ("panels.main", "operators.generate"):
        monkeypatch.setattr(_module(module), "price_book", lambda: book)


def _book(*charged: tuple[str, float, str, float | None]):
    """Prices as if jobs of each (service, amount, unit, balance) were charged an hour
    before the drawing clock."""
    from dataclasses import replace

    model, base = _module("jobs.model"), _module("providers.base")
    book = _module("jobs.spend").PriceBook()
    for provider, amount, unit, balance in charged:
        job = model.Job.new(provider, "TEXT", "priced")
        said = base.Charge(amount, unit, base.ChargeState.CHARGED, balance)
        charges = tuple(replace(c, at=NOW - 3600) for c in job.charged("", said))
        book.learn(job.evolve(charges=charges))
    return book


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
    "generate-priced": dict(
        provider="trify3d", source="TEXT", prompt="a chair", key=True, priced=True
    ),
}


@pytest.mark.parametrize("state", sorted(GENERATE_STATES))
def test_generate_panel_snapshot(addon, fixed_ui, monkeypatch, state: str) -> None:
    import bpy

    spec = dict(GENERATE_STATES[state])
    settings = fixed_ui.conjure
    settings.provider, settings.source = spec["provider"], spec["source"]
    settings.prompt = spec.get("prompt", "")
    settings.show_options = settings.show_placement = settings.show_mesh = True
    settings.use_max_faces = bool(spec.get("priced"))  # one switch on, in one snapshot
    if spec.get("key"):
        monkeypatch.setenv(f"CONJURE_{spec['provider'].upper()}_API_KEY", "k")
    if spec["source"] == "MULTIVIEW":
        for name in ("front.png", "side.png"):
            settings.image_paths.add().name = name  # relative: shown as typed, not found
    if spec.get("offline"):
        bpy.context.preferences.system.use_online_access = False
    if spec.get("priced"):  # the last charges known: estimates on the buttons, the balance
        for var in KEY_VARS[1:]:
            monkeypatch.setenv(var, "k")
        book = _book(("trify3d", 5.0, "credits", 95.0), ("siray", 1.0, "generation", None))
        _prices(monkeypatch, book)
        monkeypatch.setattr(_module("settings"), "ask_above", lambda: 3.0)  # the dialogs ask
    _compare_snapshot(state, _draw_all(addon))


JOB_STATES = {
    "job-queued": dict(state="queued", message="Queued"),
    "job-running": dict(state="running", progress=0.4, message="Generating 40%"),
    "job-stalled": dict(
        state="stalled", message="Trify3D did not answer: trying again", next_try=NOW + 40
    ),
    "job-awaiting-pick": dict(
        state="awaiting_pick",
        provider="voxelai",
        message="Pick one of 3 candidates",
        candidates=(11, 12, 13),
    ),
    "job-ready": dict(state="ready", message="Ready — Import"),
    "job-imported": dict(
        state="imported", message="Imported 2 object(s)", thumbnail=7, cost="12 credits"
    ),
    "job-imported-preview": dict(
        state="imported", provider="ravenra", message="Imported 1 object(s)", can_refine=True
    ),
    "job-failed": dict(
        state="failed",
        provider="voxelai",
        message="Voxel-AI: the job failed",
        cost="0 tokens (refunded)",
    ),
    "job-cancelled": dict(state="cancelled", message="Cancelled"),
    "job-unsure": dict(
        state="unsure",
        message="The service did not answer in time: no answer from trify3d.com; the request "
        "may have reached Trify3D and may be charged: check its dashboard before generating "
        "again",
    ),
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


# -- actions, headless, against the emulators ------------------------------------------------


@pytest.fixture
def model_glb() -> Path:
    sample = FIXTURES / "gltf" / "BoxTextured.glb"
    if not sample.exists():
        pytest.skip(f"fixture {sample} not found")
    return sample


@pytest.fixture
def trify(model_glb, monkeypatch):
    emulator = Trify3DEmulator(model_glb, api_key=TRIFY_KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, TRIFY_KEY, cancel_live=True) as emu:
        yield emu


@pytest.fixture
def siray(monkeypatch):
    with service(monkeypatch, "siray", SirayEmulator(api_key=SIRAY_KEY), SIRAY_KEY) as emu:
        yield emu


def _settings(prompt: str, provider: str = "trify3d", **fields):
    import bpy

    settings = bpy.context.scene.conjure
    settings.provider, settings.source, settings.prompt = provider, "TEXT", prompt
    for name, value in fields.items():
        setattr(settings, name, value)
    return settings


def _job_of(prompt: str) -> dict:
    (job,) = [j for j in _api().jobs() if j["prompt"] == prompt]
    return job


def _bounds(objects) -> tuple:
    from mathutils import Vector

    corners = [o.matrix_world @ Vector(c) for o in objects if o.type == "MESH" for c in o.bound_box]
    low = [min(c[i] for c in corners) for i in range(3)]
    high = [max(c[i] for c in corners) for i in range(3)]
    return low, high


def test_generate_places_bottom_centre_on_the_cursor_at_a_height(scene, trify) -> None:
    import bpy

    scene.cursor.location = (3.0, 4.0, 1.0)
    _settings("a placed crate", origin_bottom=True, target_height=2.5)
    assert bpy.ops.conjure.sidebar_generate() == {"FINISHED"}
    assert trify.count("POST") == 1
    job = _job_of("a placed crate")
    objects = [bpy.data.objects[n] for n in job["objects"]]
    low, high = _bounds(objects)
    assert high[2] - low[2] == pytest.approx(2.5, abs=1e-4)
    assert low[2] == pytest.approx(1.0, abs=1e-4)
    assert (low[0] + high[0]) / 2 == pytest.approx(3.0, abs=1e-4)
    assert (low[1] + high[1]) / 2 == pytest.approx(4.0, abs=1e-4)
    roots = [o for o in objects if o.parent is None]
    assert len(roots) == 1  # one origin for the asset, on the cursor
    assert tuple(roots[0].matrix_world.translation) == pytest.approx((3.0, 4.0, 1.0), abs=1e-4)


def test_mark_as_asset_with_preview_catalog_and_prompt(scene, trify, tmp_path) -> None:
    import bpy

    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    _settings("an asset crate", mark_asset=True)
    assert bpy.ops.conjure.sidebar_generate() == {"FINISHED"}
    job = _job_of("an asset crate")
    collection = bpy.data.objects[job["objects"][0]].users_collection[0]
    data = collection.asset_data
    assert data is not None and data.description == "an asset crate"
    assert {t.name for t in data.tags} == {"Conjure", "Trify3D"}
    placement = _module("importers.placement")
    assert data.catalog_id == placement.catalog_id("Trify3D")
    cats = (tmp_path / "blender_assets.cats.txt").read_text()
    assert f"{data.catalog_id}:Conjure/Trify3D:Conjure-Trify3D" in cats
    preview = collection.preview
    assert preview is not None and tuple(preview.image_size) == (256, 256)


def test_compare_puts_labelled_results_side_by_side(scene, trify, siray) -> None:
    import bpy

    settings = _settings("a compared teapot", compare_spacing=3.0)
    settings.compare_services = {"trify3d", "siray"}
    assert bpy.ops.conjure.compare() == {"FINISHED"}
    assert trify.count("POST") == 1 and len(siray.bodies()) == 1
    centres = {}
    for pid, name in (("siray", "Siray"), ("trify3d", "Trify3D")):
        (job,) = [
            j for j in _api().jobs() if (j["provider"], j["prompt"]) == (pid, settings.prompt)
        ]
        objects = [bpy.data.objects[n] for n in job["objects"]]
        (label,) = [o for o in objects if o.type == "FONT"]
        assert label.data.body == name
        low, high = _bounds(objects)
        centres[pid] = (low[0] + high[0]) / 2
        assert label.location.x == pytest.approx(centres[pid], abs=1e-4)
    # The services' order in the sidebar is the order in the row, centred on the cursor.
    assert centres["siray"] == pytest.approx(-1.5, abs=1e-4)
    assert centres["trify3d"] == pytest.approx(1.5, abs=1e-4)


def test_compare_greyed_with_fewer_than_two_services(scene, trify) -> None:
    import bpy

    _settings("one service").compare_services = {"trify3d"}
    assert not bpy.ops.conjure.compare.poll()
    generate = _module("operators.generate")
    assert generate.compare_problem(bpy.context) == "Choose at least two services to compare"


def test_reimport_sends_nothing_and_rerun_pays_once_more(scene, trify) -> None:
    import bpy

    _settings("a crate twice")
    assert bpy.ops.conjure.sidebar_generate() == {"FINISHED"}
    job = _job_of("a crate twice")
    before = len(trify.requests)
    assert bpy.ops.conjure.reimport_job(job_id=job["job_id"]) == {"FINISHED"}
    assert len(trify.requests) == before  # from its files: nothing sent
    again = _api().status(job["job_id"])
    assert again["state"] == "imported" and set(again["objects"]).isdisjoint(job["objects"])
    assert bpy.ops.conjure.rerun_job(job_id=job["job_id"]) == {"FINISHED"}
    assert trify.count("POST") == 2
    assert [j["state"] for j in _api().jobs() if j["prompt"] == "a crate twice"] == [
        "imported", "imported",
    ]  # fmt: skip


def test_remove_and_open_folder(scene, trify) -> None:
    import bpy

    _settings("a crate to remove")
    assert bpy.ops.conjure.sidebar_generate() == {"FINISHED"}
    job = _job_of("a crate to remove")
    folder = Path(job["files"][0]).parent
    assert bpy.ops.conjure.open_job_folder(job_id=job["job_id"]) == {"FINISHED"}
    assert bpy.ops.conjure.remove_job(job_id=job["job_id"]) == {"FINISHED"}
    assert not folder.exists()
    assert all(j["job_id"] != job["job_id"] for j in _api().jobs())
    ids = [i.job_id for i in bpy.context.window_manager.conjure.jobs]
    assert job["job_id"] not in ids
    assert bpy.data.objects[job["objects"][0]]  # what it imported stays
    with pytest.raises(RuntimeError, match="This job has no files"):
        bpy.ops.conjure.open_job_folder(job_id=job["job_id"])


def test_a_running_job_is_not_removed(scene, model_glb, monkeypatch) -> None:
    import bpy

    emulator = Trify3DEmulator(model_glb, api_key=TRIFY_KEY, polls_to_complete=10_000)
    with service(monkeypatch, "trify3d", emulator, TRIFY_KEY, cancel_live=True, cancel_wait=5):
        job_id = _api().submit("trify3d", prompt="a slow crate")
        with pytest.raises(RuntimeError, match="Cancel it first"):
            bpy.ops.conjure.remove_job(job_id=job_id)
        assert _api().status(job_id)["state"] not in ("failed", "cancelled")


def test_image_from_an_image_editor_is_saved_for_the_job(scene) -> None:
    import bpy

    painted = bpy.data.images.new("painted ref", 8, 8)
    painted.generated_color = (0.2, 0.4, 0.6, 1.0)
    settings = _settings("")
    assert bpy.ops.conjure.use_editor_image(image_name=painted.name) == {"FINISHED"}
    assert settings.source == "IMAGE"
    path = Path(settings.image_path)
    root = Path(_module("runtime").get().root)
    assert path.is_file() and path.parent == root / "inputs"
    assert path.read_bytes().startswith(b"\x89PNG")
    settings.source = "MULTIVIEW"
    assert bpy.ops.conjure.use_editor_image(image_name=painted.name) == {"FINISHED"}
    assert len(settings.image_paths) == 1


def test_views_are_added_and_removed(scene, tmp_path) -> None:
    import bpy

    settings = _settings("")
    files = [{"name": "front.png"}, {"name": "back.png"}]
    assert bpy.ops.conjure.add_view(directory=str(tmp_path), files=files) == {"FINISHED"}
    assert [Path(i.name).name for i in settings.image_paths] == ["front.png", "back.png"]
    assert bpy.ops.conjure.remove_view() == {"FINISHED"}
    assert [Path(i.name).name for i in settings.image_paths] == ["front.png"]


def test_generate_text_from_f3_uses_the_sidebar_service(scene, trify) -> None:
    import bpy

    _settings("an f3 crate")
    assert bpy.ops.conjure.generate_text() == {"FINISHED"}
    assert _job_of("an f3 crate")["state"] == "imported"
    _settings("")
    with pytest.raises(RuntimeError, match="Enter a prompt"):
        bpy.ops.conjure.generate_text()


def test_reports_once_when_a_job_finishes(scene, trify) -> None:
    import bpy

    runtime = _module("runtime").get()
    runtime.take_notices()
    _settings("a reported crate")
    assert bpy.ops.conjure.sidebar_generate() == {"FINISHED"}
    notices = runtime.take_notices()
    assert ("INFO", "Conjure: Trify3D finished a reported crate") in notices
    assert runtime.take_notices() == []


def test_unfinished_jobs_appear_on_start_and_resume_without_paying(scene, model_glb, monkeypatch):
    import bpy

    runtime_mod = _module("runtime")
    emulator = Trify3DEmulator(model_glb, api_key=TRIFY_KEY, polls_to_complete=4)
    with service(monkeypatch, "trify3d", emulator, TRIFY_KEY, cancel_live=True) as emu:
        job_id = _api().submit("trify3d", prompt="a crate from last time")
        deadline = time.monotonic() + 10
        while _api().status(job_id)["state"] not in ("submitted", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        runtime_mod.shutdown()  # like quitting Blender with the job in flight
        bpy.context.window_manager.conjure.jobs.clear()
        shown = runtime_mod.get().show_history()
        assert shown == 1
        (item,) = [i for i in bpy.context.window_manager.conjure.jobs if i.job_id == job_id]
        assert item.held and item.message == _module("jobs.session").NOT_RUNNING
        _module("operators.monitor").show_jobs_on_start()  # auto-resume is on by default
        assert _api().wait(job_id, 15)[job_id]["state"] == "imported"
        assert emu.count("POST") == 1  # resumed by polling: never a second create
        assert not item.held


def test_pick_continues_with_the_sidebar_voxelize_options(scene, monkeypatch) -> None:
    import bpy

    emulator = VoxelAIEmulator(api_key=VOXEL_KEY, images_window=0.2, polls_to_complete=1)
    with service(monkeypatch, "voxelai", emulator, VOXEL_KEY, cancel_live=True) as emu:
        base = _module("providers.base")
        limiter = _module("runtime").get().engine.limiter("voxelai")
        limiter.rules = [base.RateRule(1, 0.2, "create:images")]
        time.sleep(0.3)
        settings = _settings("a sidebar voxel fox", provider="voxelai", mark_asset=True)
        with pytest.raises(RuntimeError, match="a sidebar voxel fox waits for a pick"):
            bpy.ops.conjure.sidebar_generate(timeout=10)
        job = _job_of("a sidebar voxel fox")
        assert job["state"] == "awaiting_pick" and emu.bodies("/api/generate/voxelize") == []
        with pytest.raises(_api().ConjureError, match="voxel_size must be a whole number"):
            _api().pick(job["job_id"], 0, {"voxel_size": 4})  # refused before anything is sent
        assert emu.bodies("/api/generate/voxelize") == []
        assert _api().status(job["job_id"])["state"] == "awaiting_pick"
        settings.options_voxelai.voxel_size = 64
        settings.options_voxelai.import_as = "GREEDY"
        assert bpy.ops.conjure.pick_candidate(
            job_id=job["job_id"], index=1, sidebar_options=True
        ) == {"FINISHED"}
        done = _api().wait(job["job_id"], 10)[job["job_id"]]
        assert done["state"] == "imported", done["message"]
        (sent,) = emu.bodies("/api/generate/voxelize")
        assert sent["voxel_size"] == 64 and sent["texturing"] == "textured"
        meshes = [bpy.data.objects[n] for n in done["objects"]]
        assert any(o.type == "MESH" and len(o.data.polygons) for o in meshes)  # a real mesh
        collection = meshes[0].users_collection[0]
        assert collection.asset_data is not None  # the picked candidate is its preview
        assert tuple(collection.preview.image_size) == (256, 256)


def test_a_pick_from_the_sidebar_keeps_where_the_job_goes(scene, monkeypatch) -> None:
    """The pick takes the sidebar's Import As; the job's compare slot and batch row stay (a
    batch re-run finds its row: nothing paid twice)."""
    import bpy

    emulator = VoxelAIEmulator(api_key=VOXEL_KEY, images_window=0.2, polls_to_complete=1)
    with service(monkeypatch, "voxelai", emulator, VOXEL_KEY, cancel_live=True):
        base = _module("providers.base")
        limiter = _module("runtime").get().engine.limiter("voxelai")
        limiter.rules = [base.RateRule(1, 0.2, "create:images")]
        time.sleep(0.3)
        notes = {"_compare": "g1", "_compare_slot": 1, "_compare_count": 2,
                 "_batch": "rows.csv", "_batch_row": "row-7", "_mark_asset": 1}  # fmt: skip
        api = _api()
        job_id = api.submit("voxelai", prompt="a kept voxel fox", options=notes)
        assert api.wait(job_id, 10)[job_id]["state"] == "awaiting_pick"
        _settings("", provider="voxelai").options_voxelai.import_as = "GREEDY"
        assert bpy.ops.conjure.pick_candidate(job_id=job_id, index=0, sidebar_options=True) == {
            "FINISHED"
        }
        done = api.wait(job_id, 10)[job_id]
        assert done["state"] == "imported", done["message"]
        assert done["plan"] == {"compare_group": "g1", "compare_slot": 1, "compare_count": 2,
                                "batch_id": "rows.csv", "batch_row": "row-7",
                                "mark_asset": True, "vox_mesh": "greedy"}  # fmt: skip
        assert {k: done["options"][k] for k in notes} == {**notes, "_mark_asset": True}


def test_generate_image_from_f3_sends_the_sidebar_image(scene, trify, tmp_path) -> None:
    import bpy

    image = tmp_path / "ref.png"
    image.write_bytes(tiny_png((9, 8, 7)))
    settings = _settings("")
    settings.image_path = str(image)
    assert bpy.ops.conjure.generate_image() == {"FINISHED"}
    (job,) = [j for j in _api().jobs() if j["image_paths"] == [str(image)]]
    assert job["state"] == "imported" and job["source"] == "IMAGE"
    assert trify.count("POST", "/api/v1/generations/image-to-3d") == 1
