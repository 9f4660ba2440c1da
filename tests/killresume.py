"""Kill a Blender mid-job, resume in another: the crash test every service runs.

`bpy` imports once per process, so both Blenders are subprocesses sharing one throwaway
user folder (and so one journal).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import ADDON_ID, ROOT

CHILD = """
import sys
import bpy, addon_utils
bpy.context.preferences.system.use_online_access = True
if sys.argv[1] == "start":
    bpy.ops.extensions.package_install_files(filepath=sys.argv[2], repo="user_default",
                                             enable_on_install=True)
    {start}
else:
    addon_utils.enable("{addon}", default_set=True)
    try:
        result = bpy.ops.conjure.resume_jobs()
    except RuntimeError as exc:  # a job that ended in error: its one line, as a script sees it
        result = "ERROR " + str(exc).strip()
    names = sorted(o.name for o in bpy.data.objects if o.get("conjure_prompt"))
    names += sorted(i.name for i in bpy.data.images if i.get("conjure_prompt"))
    print("RESULT", result, names, flush=True)
    {then}
"""


def journal_of(user: Path) -> Path:
    return user / "extensions" / ".user" / "user_default" / "conjure" / "journal.sqlite"


def kill_and_resume(
    built_zip: Path,
    tmp_path: Path,
    env: dict[str, str],
    start: str,
    killed_when: str | Callable[[], bool] | None,
    before_resume: Callable[[], None] = lambda: None,
    then: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run `start` (Python statements) in a first Blender; SIGKILL it as soon as
    `killed_when` holds (a journal query that returns a row, or a test of the emulator), or
    with None wait for it to kill itself (`start` set that up); run `before_resume`; resume
    in a second Blender, which then runs `then`. Returns the second run (its stdout has a
    `RESULT {'FINISHED'} [names]` line)."""
    first, resume = _blenders(built_zip, tmp_path, env, start, then)
    journal = journal_of(tmp_path / "user")
    if killed_when is None:
        reached = lambda: False  # noqa: E731
    elif isinstance(killed_when, str):
        reached = lambda: _has_row(journal, killed_when)  # noqa: E731
    else:
        reached = killed_when
    deadline, hit = time.monotonic() + 60, False
    while not hit and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
        hit = reached()
    first.kill()
    first.wait(10)
    output = first.stdout.read()[-2000:] if first.stdout else "no output"
    assert hit or (killed_when is None and first.returncode == -9), output
    before_resume()
    return resume()


def end_and_resume(
    built_zip: Path,
    tmp_path: Path,
    env: dict[str, str],
    start: str,
    before_resume: Callable[[], None] = lambda: None,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run `start` (Python statements; they print LEAVING when the script is about to end)
    in a first Blender, which then exits as a script's end makes it; resume in a second.
    Returns the seconds from LEAVING to the first one's exit, and the second run."""
    first, resume = _blenders(built_zip, tmp_path, env, start, "")
    assert first.stdout is not None
    output = []
    for line in first.stdout:  # until LEAVING, then the time to exit
        output.append(line)
        if line.startswith("LEAVING"):
            break
    left = time.monotonic()
    try:
        first.wait(60)
    finally:  # a Blender that hangs at exit must not outlive the test
        first.kill()
    took = time.monotonic() - left
    assert any(x.startswith("LEAVING") for x in output), "".join(output)[-2000:]
    before_resume()
    return took, resume()


def _blenders(
    built_zip: Path, tmp_path: Path, env: dict[str, str], start: str, then: str
) -> tuple[subprocess.Popen[str], Callable[[], subprocess.CompletedProcess[str]]]:
    """The first Blender, running `start`, and how to run the second (Resume, then `then`),
    both on one throwaway user folder."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user"),
           "CONJURE_POLL_SECONDS": "0.05", **env}  # fmt: skip
    script = tmp_path / "child.py"
    script.write_text(
        CHILD.replace("{start}", _indented(start))
        .replace("{then}", _indented(then) or "pass")
        .replace("{addon}", ADDON_ID)
    )
    first = subprocess.Popen(
        [sys.executable, str(script), "start", str(built_zip)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def resume() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), "resume"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    return first, resume


def _indented(code: str) -> str:
    return code.strip().replace("\n", "\n    ")


def _has_row(journal: Path, query: str) -> bool:
    if not journal.exists():
        return False
    with sqlite3.connect(journal) as db:
        try:
            return db.execute(query).fetchone() is not None
        except sqlite3.OperationalError:  # the table is not there yet
            return False


def result_line(run: subprocess.CompletedProcess[str]) -> str:
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT")), "")
    assert "{'FINISHED'}" in line and "[]" not in line, run.stdout[-2000:] + run.stderr[-2000:]
    return line
