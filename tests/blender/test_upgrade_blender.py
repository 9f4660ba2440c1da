"""Updating through Blender's own extension client: a release repository served on
127.0.0.1 (the zip and the index.json Blender's `server-generate` writes, as `make release`
makes them), added as a remote repository, synced, installed and updated with the operators
Blender's Get Extensions page uses (`extensions.repo_sync`, `extensions.package_install`:
*Install*, and *Update* on an installed extension).

Version A is the real 0.1.0: commit b47501b (journal schema 2), built with Blender's builder
from `git archive`. Where git history is missing (a shallow or archived checkout) it is the
current tree in a temporary copy with version 0.1.0 and the journal schema one behind
(SCHEMA_VERSION - 1), so the migration and the downgrade refusal still run. Version B is the
current tree (0.2.0).

All of it runs in one child Blender with its own throwaway user folder: `bpy` imports once
per process, and the repository, its add-on and its journal must not reach the other tests.
The test process serves the repository, runs the Trify3D emulator and swaps the releases
between the child's steps.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import ext
from conftest import ROOT
from emulators.glb import triangle_glb
from emulators.trify3d import Trify3DEmulator

KEY = "trf_live_upgrade-key-0042"
OLD_RELEASE = "b47501b"  # manifest 0.1.0, journal schema 2
NEWER_JOURNAL = "the job journal was written by a newer Conjure (schema 4)"
# 0.1.0 raises it as its journal's JournalClosedError (a RuntimeError), not api.ConjureError:
# a script that catches only ConjureError misses it. 0.1.0 is out; it stays so there.
REFUSED = {("JournalClosedError", NEWER_JOURNAL), ("ConjureError", NEWER_JOURNAL)}

CHILD = r"""
import hashlib, importlib, json, os, sqlite3, sys, tomllib
from contextlib import closing
from pathlib import Path
import bpy

def say(tag, **data):
    print("@@" + tag, json.dumps(data), flush=True)

def step():  # the test swaps releases or sets the emulator, then says go
    assert sys.stdin.readline().strip() == "go"

def sync_and_install():
    assert bpy.ops.extensions.repo_sync(repo_index=index) == {"FINISHED"}
    return bpy.ops.extensions.package_install(
        repo_index=index, pkg_id="conjure", enable_on_install=True
    )

def installed():
    manifest = Path(repo.directory, "conjure", "blender_manifest.toml")
    api = importlib.import_module(addon + ".api")
    return tomllib.loads(manifest.read_text())["version"], api, addon in prefs.addons

def user_version():  # closed at once: a connection left open keeps the WAL from folding in
    with closing(sqlite3.connect(journal)) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]

def attempt(call):
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return ["returned", ""]

prefs = bpy.context.preferences
prefs.system.use_online_access = True
added = bpy.ops.preferences.extension_repo_add(
    name="Conjure Releases", remote_url=sys.argv[1], type="REMOTE"
)
assert added == {"FINISHED"}, added
index, repo = next((i, r) for i, r in enumerate(prefs.extensions.repos) if r.remote_url == sys.argv[1])
addon = "bl_ext." + repo.module + ".conjure"
first = sync_and_install()
version, api, enabled = installed()
journal = Path(bpy.utils.extension_path_user(addon), "journal.sqlite")
prefs.addons[addon].preferences.keep_days = 7
done = api.generate("trify3d", prompt="a finished crate")
say("A1", result=sorted(first), version=version, enabled=enabled, addon=addon,
    journal=str(journal), objects=[o.name for o in done],
    jobs={j["job_id"]: j["state"] for j in api.jobs()})
step()
left = api.submit("trify3d", prompt="an unfinished lantern")
for _ in range(300):  # until sent and polling: the service has it
    if api.status(left)["task_id"]:
        break
    api.wait([left], 0.1)
state = api.status(left)["state"]
importlib.import_module(addon + ".runtime").shutdown()  # as quitting stops it
say("A2", left=left, state=state, schema=user_version())
step()
update = sync_and_install()
version, api, enabled = installed()
jobs = {j["job_id"]: j["state"] for j in api.jobs()}
schema = user_version()
resumed = api.resume()
result = api.wait([left], 30)[left]
say("B", result=sorted(update), version=version, enabled=enabled, jobs=jobs, schema=schema,
    resumed=resumed, state=result["state"], objects=result["objects"],
    keep_days=prefs.addons[addon].preferences.keep_days, spend=hasattr(api, "spend"))
importlib.import_module(addon + ".runtime").shutdown()
step()
wal = Path(str(journal) + "-wal").exists()  # 0.2.0 closed it: everything is in the file
before = hashlib.sha256(journal.read_bytes()).hexdigest()
downgrade = sync_and_install()
version, api, enabled = installed()
say("DOWN", result=sorted(downgrade), version=version, enabled=enabled, wal=wal, before=before,
    jobs=attempt(api.jobs), resume=attempt(api.resume),
    after=hashlib.sha256(journal.read_bytes()).hexdigest())
sys.stdout.flush()
os._exit(0)  # past the module's teardown, which can hang (tests/conftest.py)
"""


def _version_a(tmp_path: Path) -> tuple[Path, str]:
    """The real 0.1.0 from git, or (no history here) the current tree posing as 0.1.0."""
    source = tmp_path / "version-a"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_RELEASE], capture_output=True, check=False
    )
    if archive.returncode == 0:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(source, filter="data")
        return source, f"commit {OLD_RELEASE}"
    ignore = shutil.ignore_patterns(".*", "__pycache__", "dist", "tests", "docs")
    shutil.copytree(ROOT, source, ignore=ignore)
    manifest = source / "blender_manifest.toml"
    text = re.sub(r'(?m)^version = ".*"$', 'version = "0.1.0"', manifest.read_text())
    manifest.write_text(text)
    journal = source / "jobs" / "journal.py"
    schema = int(re.search(r"(?m)^SCHEMA_VERSION = (\d+)$", journal.read_text())[1])
    journal.write_text(journal.read_text().replace(f"SCHEMA_VERSION = {schema}\n",
                                                   f"SCHEMA_VERSION = {schema - 1}\n"))  # fmt: skip
    return source, "the current tree as 0.1.0"


def _publish(served: Path, zip_path: Path) -> None:
    """Make `zip_path` the repository's one release, listed by Blender's server-generate."""
    for old in served.glob("conjure-*.zip"):
        old.unlink()
    shutil.copy2(zip_path, served / zip_path.name)
    ext.generate_index(served)


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static extension repository on 127.0.0.1: (its folder, the index.json URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(served)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/index.json"
    server.shutdown()
    server.server_close()


class Child:
    """The child Blender: its tagged lines as they come, and `go` between steps."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def expect(self, tag: str, timeout: float = 60) -> dict:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                line = ""
            self.seen.append(line)
            if not line:
                raise AssertionError(f"no @@{tag} from the child:\n" + "".join(self.seen)[-4000:])
            if line.startswith(f"@@{tag} "):
                return json.loads(line.split(" ", 1)[1])

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()


def test_an_update_from_the_repository_keeps_jobs_and_preferences(
    built_zip: Path, repository: tuple[Path, str], tmp_path: Path
) -> None:
    served, url = repository
    source, origin = _version_a(tmp_path)
    zip_a = ext.run("build", tmp_path / "build-a", source)
    assert zip_a is not None and zip_a.name == "conjure-0.1.0.zip", origin
    _publish(served, zip_a)
    glb = tmp_path / "tri.glb"
    glb.write_bytes(triangle_glb())
    trify = Trify3DEmulator(glb, api_key=KEY, rate_limit=100_000).start()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(tmp_path / "user"),
        "CONJURE_TRIFY3D_API_KEY": KEY,
        "CONJURE_TRIFY3D_BASE_URL": trify.url,
        "CONJURE_POLL_SECONDS": "0.05",
    }
    process = subprocess.Popen(
        [sys.executable, str(script), url], env=env, cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    child = Child(process)
    try:
        # Version A, installed by Blender's client: one job imported, one left polling.
        a1 = child.expect("A1")
        assert (a1["result"], a1["version"], a1["enabled"]) == (["FINISHED"], "0.1.0", True)
        assert a1["objects"] and list(a1["jobs"].values()) == ["imported"], a1
        trify.polls_to_complete = 10**9
        child.go()
        a2 = child.expect("A2")
        assert a2["state"] in ("running", "stalled"), a2
        journal = Path(a1["journal"])
        schema_a = 2 if origin.startswith("commit") else 3
        assert a2["schema"] == schema_a, origin

        # Version B through the same repository, as the Update button installs it.
        _publish(served, built_zip)
        (task,) = [t for t in trify.tasks.values() if "unfinished" in t.body["prompt"]]
        trify.polls_to_complete = task.polls + 2
        child.go()
        b = child.expect("B")
        assert (b["result"], b["version"], b["enabled"], b["spend"]) == (
            ["FINISHED"], "0.2.0", True, True
        )  # fmt: skip
        assert b["schema"] == 4, "the journal migrates to schema 4 when 0.2.0 opens it"
        assert b["jobs"] == {**a1["jobs"], a2["left"]: a2["state"]}, "both jobs, as they were"
        assert b["resumed"] == [a2["left"]], b
        assert b["state"] == "imported" and b["objects"], b
        assert trify.count("POST") == 2, "one create per job: the update never re-sent one"
        assert b["keep_days"] == 7, f"the add-on's preference after Blender's update: {b}"

        # Back to A over B's journal: refused in one line, the journal left as it was.
        _publish(served, zip_a)
        child.go()
        down = child.expect("DOWN")
        assert (down["result"], down["version"], down["enabled"]) == (["FINISHED"], "0.1.0", True)
        assert not down["wal"], "0.2.0 left its journal's WAL behind at shutdown"
        assert down["before"] == down["after"], "the older Conjure wrote to the newer journal"
        for kind, line in (down["jobs"], down["resume"]):  # every call, the same one line
            assert (kind, line) in REFUSED, down
        process.wait(30)
        assert process.returncode == 0, "".join(child.seen)[-4000:]
        assert hashlib.sha256(journal.read_bytes()).hexdigest() == down["before"]
    finally:
        process.kill()
        trify.stop()
