"""Crash points: a first Blender is killed (SIGKILL) at each step boundary of a paid job and a
second one resumes it, on every service. Emulators do not dedupe creates, so a second create
would be billed; every case counts the paid creates the emulator received.

- (a) `before-create`: the journal says the paid create is going, the request has not left.
- (b) `create-in-flight`: the service holds the paid create's answer when Blender dies.
- (c) while polling: `test_faults.test_killed_after_submit_resumes_with_one_create`.
- (d) `mid-download`: the model file trickles in when Blender dies (Voxel-AI: results come
  inline in a poll, so (c) is its download).
- (e) `mid-import`: Blender dies inside the import (a model that crashes Blender).

No service's page documents an idempotency key, so after (a) and (b) nobody can know whether
the service made the task: the job ends `unsure` ("may be charged: check its dashboard") and
nothing is sent again. After (d) the resume downloads again and imports. After (e) the job
waits for a click rather than crash Blender again at every start; the click imports it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from faultrows import BY_SERVICE, Service
from killresume import journal_of, kill_and_resume, result_line
from services import service_env

from conftest import ADDON_ID

# Set up in the first Blender before the job starts: it kills itself at the boundary.
KILL_AS_THE_CREATE_GOES = """
import os, signal
from urllib.parse import urlsplit
import requests
_send = requests.Session.send
def _send_or_die(session, request, **kw):
    if request.method == "POST" and urlsplit(request.url).path == {path}:
        os.kill(os.getpid(), signal.SIGKILL)
    return _send(session, request, **kw)
requests.Session.send = _send_or_die
"""
KILL_IN_THE_IMPORT = f"""
import importlib, os, signal
importlib.import_module("{ADDON_ID}.imports").import_job = (
    lambda *args: os.kill(os.getpid(), signal.SIGKILL))
"""
# After the resume, in the second Blender: what a click on Import does for a waiting job.
CLICK_IMPORT = f"""
from {ADDON_ID} import api
waiting = [j["job_id"] for j in api.jobs() if j["state"] == "ready"]
print("WAITING", len(waiting), flush=True)
for job_id in waiting:
    bpy.ops.conjure.import_job(job_id=job_id)
print("CLICKED", sorted(o.name for o in bpy.data.objects if o.get("conjure_prompt")), flush=True)
"""


def _paid_path(svc: Service) -> str:
    return svc.paid_path or svc.create_path


def _paid_sent(emu: Any, svc: Service) -> int:
    return emu.count("POST", _paid_path(svc))


def _states(tmp_path: Path) -> list[str]:
    with sqlite3.connect(journal_of(tmp_path / "user")) as db:
        return [state for (state,) in db.execute("SELECT state FROM jobs")]


def _crash(zip_: Path, tmp_path: Path, emu: Any, svc: Service, before: str, when: Any, then=""):
    """Start the service's job in a first Blender after `before`; kill it when `when` holds
    (None: it kills itself); resume in a second Blender, which runs `then` after."""
    env = service_env(svc.name, svc.key, f"{emu.url}{svc.path}")
    start = f"{before}\n{svc.operator_call()}"
    second = kill_and_resume(zip_, tmp_path, env, start, when, then=then)
    output = second.stdout + second.stderr
    assert "Traceback" not in output and svc.key not in output, output[-3000:]
    return second


@pytest.fixture
def emulator(tmp_path: Path, request: pytest.FixtureRequest):
    svc: Service = request.getfixturevalue("svc")
    emu = svc.make(tmp_path).start()
    yield emu
    emu.stop()


@pytest.mark.slow
@pytest.mark.parametrize("svc", BY_SERVICE)
def test_a_before_the_paid_create_leaves(built_zip, tmp_path, emulator, svc: Service) -> None:
    """The journal already says the create is going: the resume cannot know it never left."""
    hook = KILL_AS_THE_CREATE_GOES.format(path=repr(_paid_path(svc)))
    second = _crash(built_zip, tmp_path, emulator, svc, hook, None)
    assert "may be charged: check its dashboard" in second.stdout
    assert _states(tmp_path) == ["unsure"]
    assert _paid_sent(emulator, svc) == 0 and emulator.charges == 0


@pytest.mark.slow
@pytest.mark.parametrize("svc", BY_SERVICE)
def test_b_while_the_paid_create_is_on_the_wire(built_zip, tmp_path, emulator, svc: Service) -> None:
    """The service made (and billed) the task, its answer never came: never sent again."""
    emulator.inject(delay=3.0, passthrough=True, method="POST", path=_paid_path(svc))
    second = _crash(built_zip, tmp_path, emulator, svc, "", lambda: _paid_sent(emulator, svc) >= 1)
    assert "may be charged: check its dashboard" in second.stdout
    assert _states(tmp_path) == ["unsure"]
    deadline = time.monotonic() + 10
    while emulator.charges < 1 and time.monotonic() < deadline:  # the held answer's task
        time.sleep(0.05)
    assert _paid_sent(emulator, svc) == 1 and emulator.charges == 1


@pytest.mark.slow
@pytest.mark.parametrize("svc", [s for s in BY_SERVICE if s.values[0].model_file])
def test_d_while_the_model_downloads(built_zip, tmp_path, emulator, svc: Service) -> None:
    prefix, part = svc.model_file or ("", "")
    emulator.inject(passthrough=True, trickle=0.05, method="GET", path=prefix, within=part)

    def downloading() -> bool:
        return any(r.path.startswith(prefix) and part in r.path for r in list(emulator.requests))

    result_line(_crash(built_zip, tmp_path, emulator, svc, "", downloading))
    assert _states(tmp_path) == ["imported"]
    assert svc.sent(emulator) == list(svc.creates) and emulator.charges == svc.charges


@pytest.mark.slow
@pytest.mark.parametrize("svc", BY_SERVICE)
def test_e_inside_the_import(built_zip, tmp_path, emulator, svc: Service) -> None:
    second = _crash(built_zip, tmp_path, emulator, svc, KILL_IN_THE_IMPORT, None, then=CLICK_IMPORT)
    lines = second.stdout.splitlines()
    assert "WAITING 1" in lines, second.stdout[-2000:]  # not imported again by itself
    clicked = next(x for x in lines if x.startswith("CLICKED"))
    assert clicked != "CLICKED []", second.stdout[-2000:]
    assert _states(tmp_path) == ["imported"]
    assert svc.sent(emulator) == list(svc.creates) and emulator.charges == svc.charges

