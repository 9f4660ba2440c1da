"""`blender -c conjure …` through `cli.main(argv)` (the bpy module has no blender binary)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from services import service
from test_generate import KEY, model_glb  # noqa: F401  (fixture)

from conftest import ADDON_ID, fixture_path
from emulators.trify3d import Trify3DEmulator


@pytest.fixture
def trify(model_glb: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    emulator = Trify3DEmulator(model_glb, api_key=KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, KEY) as emu:
        yield emu


def _cli():
    return importlib.import_module(f"{ADDON_ID}.cli")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = _cli().main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_registered_as_a_blender_cli_command(addon) -> None:
    assert _cli()._handle is not None


@pytest.mark.parametrize("command", ["", "generate", "batch", "jobs", "resume", "import"])
def test_help_explains_every_subcommand(scene, capsys, command) -> None:
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == 0 and "usage: blender -c conjure" in out
    if command == "generate":
        for flag in ("--service", "--source", "--prompt", "--image", "--option", "--output",
                     "--export"):  # fmt: skip
            assert flag in out


def test_generate_imports_saves_and_exports(scene, trify, capsys, tmp_path) -> None:
    blend = tmp_path / "out" / "crate.blend"
    code, out, err = run(
        capsys, "generate", "--service", "trify3d", "--prompt", "a cli crate",
        "--option", "mode=quality", "--output", str(blend), "--export", "glb",
    )  # fmt: skip
    assert code == 0, err
    assert "imported" in out and blend.exists()
    assert (tmp_path / "out" / "crate.glb").read_bytes()[:4] == b"glTF"
    assert json.loads(trify.requests[0].body) == {"prompt": "a cli crate", "mode": "quality"}


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["generate", "--service", "nope", "--prompt", "x"], 2, "Unknown service"),
        (["generate", "--service", "trify3d"], 2, "Enter a prompt"),
        (["generate", "--prompt", "x"], 2, "--service"),
        (["generate", "--service", "trify3d", "--prompt", "x", "--option", "oops"], 2, "KEY=VALUE"),
        (["batch", "/nonexistent/rows.csv"], 2, "No such file"),
        (["import", "/nonexistent/model.vox"], 2, "no such file"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(scene, trify, capsys, argv, code, words) -> None:
    got, _, err = run(capsys, *argv)
    assert got == code and words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert trify.requests == []


def test_a_failed_job_exits_1(scene, trify, capsys) -> None:
    trify.credits = 0
    code, out, err = run(capsys, "generate", "--service", "trify3d", "--prompt", "a costly one")
    assert code == 1 and "Not enough credits" in out and "Traceback" not in out + err


def test_jobs_json_is_one_list_on_stdout(scene, trify, capsys) -> None:
    run(capsys, "generate", "--service", "trify3d", "--prompt", "a listed chair")
    code, out, _ = run(capsys, "jobs", "--json")
    rows = json.loads(out)
    assert code == 0 and isinstance(rows, list)
    assert any(r["prompt"] == "a listed chair" and r["state"] == "imported" for r in rows)
    assert KEY not in out


def test_resume_continues_an_unfinished_job(scene, trify, capsys) -> None:
    import addon_utils

    api = importlib.import_module(f"{ADDON_ID}.api")
    trify.polls_to_complete = 10_000
    job_id = api.submit("trify3d", prompt="a job left running")
    api.wait(job_id, 1)
    addon_utils.disable(ADDON_ID)  # like quitting: the job stays in the journal
    addon_utils.enable(ADDON_ID, default_set=True)
    trify.polls_to_complete = 0
    code, out, err = run(capsys, "resume")
    assert code == 0, out + err
    assert "a job left running" in out and trify.count("POST") == 1
    assert run(capsys, "resume")[1].strip() == "no unfinished jobs to resume"


def test_import_a_vox_and_save(scene, capsys, tmp_path) -> None:
    import bpy

    vox = fixture_path("vox", "chr_knight.vox")
    code, _, err = run(capsys, "import", str(vox), "--output", str(tmp_path / "k.blend"))
    assert code == 0, err
    assert "chr_knight" in bpy.data.objects and (tmp_path / "k.blend").exists()


def test_import_a_glb(scene, capsys, model_glb) -> None:  # noqa: F811
    import bpy

    before = len(bpy.data.objects)
    code, out, err = run(capsys, "import", str(model_glb))
    assert code == 0, err
    assert len(bpy.data.objects) > before and "imported" in out


def test_import_a_broken_file_is_one_line(scene, capsys, tmp_path) -> None:
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    code, _, err = run(capsys, "import", str(bad))
    assert code == 2 and "Import failed" in err and "\n" not in err.strip()


# -- batch -------------------------------------------------------------------------------------


def _csv(tmp_path: Path, prompts: list[str]) -> Path:
    path = tmp_path / "rows.csv"
    lines = ["prompt,service,mode"] + [f"{p},trify3d,quality" for p in prompts]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_batch_runs_rows_summarises_and_saves(scene, trify, capsys, tmp_path) -> None:
    rows = _csv(tmp_path, ["a batch stool", "please fail", "a batch lamp"])
    code, out, _ = run(capsys, "batch", str(rows), "--output-dir", str(tmp_path / "res"))
    assert code == 1  # one row failed
    assert "2 of 3 imported" in out and "GENERATION_FAILED" in out
    assert (tmp_path / "res" / "rows.blend").exists()
    bodies = [json.loads(r.body) for r in trify.requests if r.method == "POST"]
    assert sorted(b["prompt"] for b in bodies) == ["a batch lamp", "a batch stool", "please fail"]
    assert all(b["mode"] == "quality" for b in bodies)  # option columns reach the service


def test_batch_rerun_skips_rows_already_done(scene, trify, capsys, tmp_path) -> None:
    import bpy

    rows = _csv(tmp_path, ["a rerun chair", "a rerun table"])
    assert run(capsys, "batch", str(rows), "--output-dir", str(tmp_path))[0] == 0
    posts = trify.count("POST")
    bpy.ops.wm.read_homefile(use_empty=True)  # a fresh Blender session's empty scene
    code, out, _ = run(capsys, "batch", str(rows), "--output-dir", str(tmp_path))
    assert code == 0 and trify.count("POST") == posts  # nothing paid again
    assert out.count("(done earlier)") == 2
    prompts = {o.get("conjure_prompt") for o in bpy.data.objects}
    assert {"a rerun chair", "a rerun table"} <= prompts  # re-imported from their files


def test_batch_rerun_never_resends_a_row_that_may_have_been_charged(
    scene, trify, capsys, tmp_path
) -> None:
    """#20 finding 8: a create answered 504 may have made a task; a re-run leaves it."""
    rows = _csv(tmp_path, ["an unsure crate", "a sure crate"])
    trify.inject(status=504, body={"error": "Gateway Timeout"}, method="POST")
    code, out, _ = run(capsys, "batch", str(rows), "--output-dir", str(tmp_path))
    assert code == 1 and "unsure" in out and "check its dashboard" in out
    posts = trify.count("POST")
    code, out, _ = run(capsys, "batch", str(rows), "--output-dir", str(tmp_path))
    assert code == 1 and trify.count("POST") == posts  # neither row sent again
    assert "a re-run never sends it again" in out and "(done earlier)" in out


def test_batch_text_and_json_files(scene, trify, capsys, tmp_path) -> None:
    text = tmp_path / "prompts.txt"
    text.write_text("a text-file vase\n\na text-file bowl\n")
    code, _, err = run(capsys, "batch", str(text), "--service", "trify3d",
                         "--output-dir", str(tmp_path))  # fmt: skip
    assert code == 0, err
    listed = tmp_path / "rows.json"
    listed.write_text(json.dumps([{"prompt": "a json cup", "service": "trify3d"}]))
    assert run(capsys, "batch", str(listed), "--output-dir", str(tmp_path))[0] == 0
    assert trify.count("POST") == 3


def test_shards_together_make_each_job_exactly_once(scene, trify, capsys, tmp_path) -> None:
    prompts = [f"a sharded crate {i}" for i in range(5)]
    rows = _csv(tmp_path, prompts)
    for shard in ("1/2", "2/2"):
        code, _, err = run(capsys, "batch", str(rows), "--shard", shard,
                           "--output-dir", str(tmp_path))  # fmt: skip
        assert code == 0, err
    sent = sorted(json.loads(r.body)["prompt"] for r in trify.requests if r.method == "POST")
    assert sent == sorted(prompts)
    assert (tmp_path / "rows-1of2.blend").exists() and (tmp_path / "rows-2of2.blend").exists()
    runtime = importlib.import_module(f"{ADDON_ID}.runtime").get()
    rule = runtime.engine.limiter("trify3d").rules[0]
    assert rule.requests <= 50_000  # half of the service's stated 100,000 per hour
    runtime.engine.share_budgets(1.0)


def test_bad_shard_is_refused(scene, trify, capsys, tmp_path) -> None:
    rows = _csv(tmp_path, ["x"])
    code, _, err = run(capsys, "batch", str(rows), "--shard", "3/2")
    assert code == 2 and "I/N" in err


def test_a_journal_from_a_newer_conjure_is_one_line_and_left_as_it_is(scene, capsys) -> None:
    import sqlite3

    import bpy

    runtime = importlib.import_module(f"{ADDON_ID}.runtime")
    api = importlib.import_module(f"{ADDON_ID}.api")
    runtime.shutdown()
    folder = Path(bpy.utils.extension_path_user(ADDON_ID, create=True))
    aside = folder / "aside"
    aside.mkdir()
    for name in [p.name for p in folder.glob("journal.sqlite*")]:
        (folder / name).rename(aside / name)
    try:
        db = sqlite3.connect(folder / "journal.sqlite")
        db.execute("PRAGMA journal_mode = WAL")  # as every Conjure writes it
        db.execute("PRAGMA user_version = 99")
        db.close()
        before = (folder / "journal.sqlite").read_bytes()
        code, _, err = run(capsys, "jobs")
        assert code == 2 and "written by a newer Conjure (schema 99)" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        with pytest.raises(api.ConjureError, match="newer Conjure"):
            api.jobs()
        assert (folder / "journal.sqlite").read_bytes() == before
    finally:
        runtime.shutdown()
        for path in folder.glob("journal.sqlite*"):
            path.unlink()
        for path in aside.iterdir():
            path.rename(folder / path.name)
        aside.rmdir()
