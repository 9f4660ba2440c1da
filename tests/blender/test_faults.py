"""The fault matrix: every fault test run against every service's emulator, in real Blender.

One row per service (`tests/faultrows.py`) says how to start its emulator, what a job sends,
which creates are paid, how to make it refuse, and where its model file comes from. Each test
is parametrized over the rows, so a fault the add-on survives on one service is checked on
all five (docs/RELIABILITY.md has the table):

- `test_refusal_is_one_line`: 401, 402, a 403 for credits where the service sends one, and
  the service's own refusals end the job in one line without the key, nothing imported,
  nothing charged, no create sent twice.
- `test_failed_task_is_one_line`: a task the service took, then failed.
- `test_an_unknown_task_fails_in_one_line`: a 404 on the poll.
- `test_trouble_after_the_create_waits_and_imports`: 429 + Retry-After, 500 (an HTML page),
  502, 503, a 200 that is not JSON, an HTML page at 200 and slow answers on the polls stall
  the paid job, which then imports; every create sent once, charged once.
- `test_a_429_on_the_create_is_sent_again_and_paid_once`: refused, so not made.
- `test_a_paid_create_whose_answer_is_lost_is_not_sent_again`: a read timeout on the paid
  create ends the job `unsure`, billed once.
- `test_trouble_with_the_model_file`: a connection dropped mid-body, a busy CDN, HTML pages,
  a zip that is not one, links to another scheme or to a link-local address.
- `test_the_key_never_leaves`: a key echoed by a hostile service reaches no output or file.
- Crash and resume: SIGKILL while a paid task runs; disabling the add-on or ending a script
  while a paid create is on the wire; a script ending while a poll hangs. The other crash
  points are in test_crashes.py.
"""

from __future__ import annotations

import importlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from faultrows import (
    BY_SERVICE,
    PROMPT,
    SERVICES,
    Case,
    Service,
    generate,
    imported,
    newest_job,
    running,
)
from killresume import end_and_resume, journal_of, kill_and_resume, result_line
from services import api, service_env

from conftest import ADDON_ID

# Trouble on the polls of a paid job: (id, fault). The 429 waits the service's Retry-After.
TROUBLE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("429", {"status": 429, "headers": {"Retry-After": "1"}, "times": 2}),
    ("500", {"status": 500, "body": "<html>oops</html>", "times": 2}),
    ("502", {"status": 502, "body": "<html>Bad Gateway</html>", "times": 3}),
    ("503", {"status": 503, "times": 2}),
    ("not-json", {"status": 200, "body": "{not json"}),
    ("html-200", {"status": 200, "body": "<html>Maintenance</html>", "times": 2,
                  "headers": {"Content-Type": "text/html"}}),
    ("slow", {"delay": 1.0, "passthrough": True, "times": 2}),
)  # fmt: skip


def _ids(svc: Service, case: str = "") -> str:
    return f"{svc.name}-{case}" if case else svc.name


def _each(cases: Callable[[Service], tuple[Case, ...]]) -> list[Any]:
    return [pytest.param(s, c, id=_ids(s, c.id)) for s in SERVICES for c in cases(s)]


def _trouble() -> list[Any]:
    rows = []
    for svc in SERVICES:
        for kind, fault in TROUBLE + svc.extra_trouble:
            status = fault.get("status")
            if status in svc.trouble_bodies:
                fault = {**fault, "body": svc.trouble_bodies[status]}
            rows.append(pytest.param(svc, kind, fault, id=_ids(svc, kind)))
    return rows


def assert_failed_in_one_line(svc: Service, error: RuntimeError, expected: str) -> None:
    """One line, the expected words, never the key; nothing of the job in the scene."""
    import bpy

    text = str(error).strip()
    assert expected.lower() in text.lower(), text
    assert "\n" not in text and "Traceback" not in text and svc.key not in text
    assert not imported()
    assert not [o for o in bpy.data.objects if o.type == "MESH"]
    assert not [c for c in bpy.data.collections if c.name.startswith("Conjure")]
    assert newest_job(svc)["state"] == "failed"


def assert_imported_once(svc: Service, emu: Any) -> None:
    """Imported, every create sent exactly once and every paid one charged exactly once."""
    assert [o for o in imported() if o.get("conjure_provider") == svc.name]
    assert newest_job(svc)["state"] == "imported"
    assert svc.sent(emu) == list(svc.creates)
    assert emu.charges == svc.charges


# ---------------------------------------------------------------- refused and failed jobs


@pytest.mark.parametrize(("svc", "case"), _each(lambda s: s.refusals))
def test_refusal_is_one_line(scene, monkeypatch, tmp_path, svc: Service, case: Case) -> None:
    """A refusal costs nothing and is not a reason to send the create again."""
    with running(svc, monkeypatch, tmp_path) as emu:
        case.setup(emu)
        with pytest.raises(RuntimeError) as info:
            generate(svc)
        assert_failed_in_one_line(svc, info.value, case.expected)
        sent = svc.sent(emu)
        assert sent and sent == list(svc.creates[: len(sent)])  # none sent twice
        assert emu.charges == 0 and case.after(emu)


@pytest.mark.parametrize(("svc", "case"), _each(lambda s: s.failures))
def test_failed_task_is_one_line(scene, monkeypatch, tmp_path, svc: Service, case: Case) -> None:
    """A task the service took and then failed: its reason, in one line; paid once."""
    with running(svc, monkeypatch, tmp_path) as emu:
        case.setup(emu)
        with pytest.raises(RuntimeError) as info:
            generate(svc)
        assert_failed_in_one_line(svc, info.value, case.expected)
        sent = svc.sent(emu)
        assert sent and sent == list(svc.creates[: len(sent)])
        assert emu.charges == sum(1 for c in sent if c in svc.paid) == 1
        assert case.after(emu)


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_an_unknown_task_fails_in_one_line(scene, monkeypatch, tmp_path, svc: Service) -> None:
    """A 404 on a poll is the service's own word that the task is gone: no waiting, no
    second create."""
    with running(svc, monkeypatch, tmp_path) as emu:
        emu.inject(status=404, body=svc.not_found, method="GET", path=svc.poll_path)
        with pytest.raises(RuntimeError) as info:
            generate(svc)
        assert_failed_in_one_line(svc, info.value, "does not know this task")
        assert svc.sent(emu) == list(svc.creates[:1])
        assert emu.charges == (1 if svc.creates[0] in svc.paid else 0)


# ---------------------------------------------------------------- trouble that passes


@pytest.mark.parametrize(("svc", "kind", "fault"), _trouble())
def test_trouble_after_the_create_waits_and_imports(
    scene, monkeypatch, tmp_path, svc: Service, kind: str, fault: dict[str, Any]
) -> None:
    """Once a task exists, odd or failing polls only stall the job: it must never be
    bought again, and it imports when the service answers properly."""
    with running(svc, monkeypatch, tmp_path) as emu:
        emu.inject(method="GET", path=svc.poll_path, **fault)
        started = time.monotonic()
        assert generate(svc) == {"FINISHED"}
        assert not emu.faults  # the trouble did happen
        assert_imported_once(svc, emu)
        if "Retry-After" in fault.get("headers", {}):
            assert time.monotonic() - started >= 1.0  # the service's pace was honoured


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_a_paid_create_whose_answer_is_lost_is_not_sent_again(
    scene, monkeypatch, tmp_path, svc: Service
) -> None:
    """A read timeout on the paid create: it reached the service, which made and billed the
    task. No service's page documents an idempotency key, so the create is not sent again:
    the job ends `unsure` in one line that says so, and the service billed one task."""
    session = importlib.import_module(f"{ADDON_ID}.jobs.session")
    made = session.make_http
    monkeypatch.setattr(session, "make_http", lambda *a, **kw: made(*a, read_timeout=1.0, **kw))
    paid_path = svc.paid_path or svc.create_path
    with running(svc, monkeypatch, tmp_path) as emu:
        emu.inject(delay=2.0, passthrough=True, method="POST", path=paid_path)
        with pytest.raises(RuntimeError) as info:
            generate(svc)
        text = str(info.value).strip()
        assert "may be charged" in text and "dashboard" in text and "\n" not in text, text
        assert svc.key not in text and not imported()
        assert newest_job(svc)["state"] == "unsure"
        assert emu.count("POST", paid_path) == 1
        deadline = time.monotonic() + 5
        while emu.charges < 1 and time.monotonic() < deadline:  # the late answer's task
            time.sleep(0.05)
        assert emu.charges == 1


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_a_service_not_reachable_yet_is_waited_for_and_paid_once(
    monkeypatch, tmp_path, scene, svc: Service
) -> None:
    """Connection refused: the create certainly never arrived, so it goes again after a
    back-off, with the reason on the job; once the service is up the job imports, paid once."""
    with socket.socket() as probe:  # a port nothing listens on, until the emulator does
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for var, value in service_env(svc.name, svc.key, f"http://127.0.0.1:{port}{svc.path}").items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("CONJURE_POLL_SECONDS", "0.05")
    svc.prepare(None)
    job_id = api().submit(svc.name, prompt=PROMPT, options=dict(svc.args))
    deadline = time.monotonic() + 10
    while "retrying" not in str(api().status(job_id)["message"]):
        assert time.monotonic() < deadline, api().status(job_id)
        api().wait(job_id, 0.05)
    message = str(api().status(job_id)["message"])
    assert "\n" not in message and svc.key not in message
    emu = svc.make(tmp_path).start(port)
    try:
        assert api().wait(job_id, 60)[job_id]["state"] == "imported", api().status(job_id)
        assert_imported_once(svc, emu)
    finally:
        emu.stop()


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_a_429_on_the_create_is_sent_again_and_paid_once(
    scene, monkeypatch, tmp_path, svc: Service
) -> None:
    """A 429 means the create was not made: the same create goes again after the wait."""
    with running(svc, monkeypatch, tmp_path) as emu:
        emu.inject(status=429, headers={"Retry-After": "1"}, method="POST", path=svc.create_path)
        started = time.monotonic()
        assert generate(svc) == {"FINISHED"}
        assert time.monotonic() - started >= 1.0
        assert svc.sent(emu) == [svc.creates[0], *svc.creates]
        assert emu.charges == svc.charges
        assert newest_job(svc)["state"] == "imported" and imported()


# ---------------------------------------------------------------- the model's download

# What can go wrong with the model's file once the task is done: (id, where, fault, the
# failure's words or "" when the job must still import). "link" is the URL the service
# hands out, "file" where that redirects (see Service.model_link / model_file).
DOWNLOAD_TROUBLE: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("reset-mid-body", "file", {"passthrough": True, "cut": 40}, ""),
    ("503", "file", {"status": 503, "body": "<html>busy</html>", "times": 2}, ""),
    ("html-200-once", "file", {"status": 200, "body": "<html>Access denied</html>",
                               "headers": {"Content-Type": "text/html"}}, ""),
    ("html-200", "file", {"status": 200, "body": "<html>Access denied</html>", "times": 9,
                          "headers": {"Content-Type": "text/html"}}, "got an HTML page (4 tries)"),
    ("zip-that-is-not", "file", {"status": 200, "body": "PK\x03\x04 not a zip", "times": 9,
                                 "headers": {"Content-Type": "application/zip"}}, "not a zip file"),
    ("to-file-scheme", "link", {"status": 302, "body": "", "times": 9,
                                "headers": {"Location": "file:///etc/passwd"}}, "file scheme"),
    ("to-link-local", "link", {"status": 302, "body": "", "times": 9,
                               "headers": {"Location": "http://169.254.169.254/m.glb"}}, "link-local"),
)  # fmt: skip


def _download_trouble() -> list[Any]:
    return [
        pytest.param(s, where, fault, words, id=_ids(s, kind))
        for s in SERVICES
        if s.model_file is not None
        for kind, where, fault, words in DOWNLOAD_TROUBLE
    ]


@pytest.mark.parametrize(("svc", "where", "fault", "words"), _download_trouble())
def test_trouble_with_the_model_file(
    scene, monkeypatch, tmp_path, svc: Service, where: str, fault: dict[str, Any], words: str
) -> None:
    """A paid task's file: a dropped connection or a busy CDN stall the job, an HTML page
    has its files asked for again, and then it imports. A file that stays no model, or a
    link to another scheme or to a link-local address, ends it in one line with nothing
    imported, after a few fresh links. Paid once either way."""
    prefix, part = svc.model_link if where == "link" else svc.model_file
    with running(svc, monkeypatch, tmp_path) as emu:
        emu.inject(method="GET", path=prefix, within=part, **fault)
        if words:
            with pytest.raises(RuntimeError) as info:
                generate(svc)
            assert_failed_in_one_line(svc, info.value, words)
        else:
            assert generate(svc) == {"FINISHED"}
            assert_imported_once(svc, emu)
        assert svc.sent(emu) == list(svc.creates) and emu.charges == svc.charges
        assert not emu.faults or emu.faults[0].times < 9  # the trouble did happen


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_the_key_never_leaves(scene, monkeypatch, tmp_path, capfd, svc: Service) -> None:
    """A hostile service echoes the key in an error; then a job succeeds, `jobs --json` runs
    and the file is saved with the key in the preferences too. The key is in no message,
    no output, nothing under the add-on's folder (journal, job files) and not in the .blend."""
    import bpy

    runtime = importlib.import_module(f"{ADDON_ID}.runtime")
    cli = importlib.import_module(f"{ADDON_ID}.cli")
    echo = f"bad header Authorization: Bearer {svc.key}"
    with running(svc, monkeypatch, tmp_path) as emu:
        body = {"error": echo, "message": echo, "msg": echo, "code": 400}
        emu.inject(status=400, body=body, method="POST", path=svc.create_path)
        with pytest.raises(RuntimeError) as info:
            generate(svc)
        assert svc.key not in str(info.value)
        assert generate(svc) == {"FINISHED"}
        assert cli.main(["jobs", "--json"]) == 0
        prefs = bpy.context.preferences.addons[ADDON_ID].preferences
        setattr(prefs, f"{svc.name}_api_key", svc.key)
        try:
            blend = tmp_path / "scene.blend"
            bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        finally:
            setattr(prefs, f"{svc.name}_api_key", "")
    files = [p for p in runtime.get().root.rglob("*") if p.is_file()]
    assert files and not [p for p in files if svc.key.encode() in p.read_bytes()]
    assert svc.key.encode() not in blend.read_bytes()
    out, err = capfd.readouterr()
    assert svc.key not in out + err and '"job_id"' in out


# ---------------------------------------------------------------- crash and resume


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_killed_after_submit_resumes_with_one_create(built_zip, tmp_path, svc: Service) -> None:
    """Blender killed while a paid task runs: the next one resumes it, never buys again, and
    counts what the task cost once."""
    emu = svc.make(tmp_path).start()
    try:
        svc.hold(emu)
        second = kill_and_resume(
            built_zip,
            tmp_path,
            service_env(svc.name, svc.key, f"{emu.url}{svc.path}"),
            svc.operator_call(),
            svc.killed_when,
            before_resume=lambda: svc.release(emu),
        )
        result_line(second)
        assert svc.sent(emu) == list(svc.creates)
        assert emu.charges == svc.charges
        with sqlite3.connect(journal_of(tmp_path / "user")) as db:
            ((state, charges),) = db.execute("SELECT state, charges FROM jobs").fetchall()
        assert state == "imported"
        counted = [c for c in json.loads(charges) if c["state"] != "refunded"]  # never twice
        assert sum(c["amount"] for c in counted) == svc.spent(emu) > 0
        assert svc.key not in second.stdout + second.stderr
    finally:
        emu.stop()


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_disable_while_a_paid_create_is_on_the_wire_pays_once(
    scene, monkeypatch, tmp_path, svc: Service
) -> None:
    """Disabling the add-on (as quitting, or a script's end) while a paid create's answer is
    1.5 s away: the disable waits for it, at most 2 s, and journals the task; enabled again,
    Resume polls that task. The emulators do not dedupe: a second create would be billed."""
    import addon_utils

    with running(svc, monkeypatch, tmp_path) as emu:
        emu.inject(delay=1.5, passthrough=True, method="POST", path=svc.paid_path or svc.create_path)
        job_id = api().submit(svc.name, prompt=PROMPT, options=dict(svc.args))
        deadline = time.monotonic() + 30
        while not any(label in svc.paid for label in svc.sent(emu)):
            assert time.monotonic() < deadline, svc.sent(emu)
            api().wait(job_id, 0.05)
        started = time.monotonic()
        addon_utils.disable(ADDON_ID)
        took = time.monotonic() - started
        addon_utils.enable(ADDON_ID, default_set=True)
        assert took <= 2.0
        svc.prepare(emu)
        assert api().resume() == [job_id]
        assert api().wait(job_id, 60)[job_id]["state"] == "imported"
        assert_imported_once(svc, emu)


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_a_script_ending_while_a_paid_create_is_on_the_wire_pays_once(
    built_zip, tmp_path, svc: Service
) -> None:
    """A `blender -b` script ends while a paid create's answer is 1.5 s away: Blender exits
    about 2 s later, having journaled the task; the next Blender resumes it: one charge."""
    emu = svc.make(tmp_path).start()
    flag = tmp_path / "create-on-the-wire"

    def signal_when_sent() -> None:
        deadline = time.monotonic() + 60
        while not any(label in svc.paid for label in svc.sent(emu)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        flag.touch()

    try:
        emu.inject(delay=1.5, passthrough=True, method="POST", path=svc.paid_path or svc.create_path)
        threading.Thread(target=signal_when_sent, daemon=True).start()
        start = f"""
import os
from {ADDON_ID} import api
job = api.submit({svc.name!r}, prompt={PROMPT!r}, options={dict(svc.args)!r})
while not os.path.exists({str(flag)!r}):
    api.wait(job, 0.02)
print("LEAVING", flush=True)
"""
        took, second = end_and_resume(
            built_zip, tmp_path, service_env(svc.name, svc.key, f"{emu.url}{svc.path}"), start
        )
        result_line(second)
        assert took <= 3.0, took  # the create's answer (<= 1.8 s), then Blender's own exit
        assert svc.sent(emu) == list(svc.creates)
        assert emu.charges == svc.charges
        assert svc.key not in second.stdout + second.stderr
    finally:
        emu.stop()


def test_a_script_ending_while_a_poll_hangs_exits_at_once_and_resumes(built_zip, tmp_path):
    """Python waits for its thread pools before `atexit`: a poll hanging 20 s used to hold a
    quit that long. Now a quit waits for nothing but creates, and the paid job resumes."""
    svc = SERVICES[0]
    emu = svc.make(tmp_path).start()
    flag = tmp_path / "poll-hangs"

    def signal_when_polling() -> None:
        deadline = time.monotonic() + 60
        while emu.count("GET", svc.poll_path) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        flag.touch()

    try:
        emu.inject(delay=20.0, passthrough=True, method="GET", path=svc.poll_path)
        threading.Thread(target=signal_when_polling, daemon=True).start()
        start = f"""
import os
from {ADDON_ID} import api
job = api.submit({svc.name!r}, prompt={PROMPT!r})
while not os.path.exists({str(flag)!r}):
    api.wait(job, 0.02)
print("LEAVING", flush=True)
"""
        took, second = end_and_resume(
            built_zip, tmp_path, service_env(svc.name, svc.key, f"{emu.url}{svc.path}"), start
        )
        result_line(second)
        assert took <= 3.0, took
        assert svc.sent(emu) == list(svc.creates) and emu.charges == svc.charges
    finally:
        emu.stop()
