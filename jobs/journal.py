"""The durable record of every job: SQLite (WAL), one transaction per state change.

The path is passed in (the caller asks Blender where user data lives), so this stays bpy-free.
Only plain request data is stored: prompts, local image paths, options, ids, file names, the
base URL and a key *fingerprint*. Keys never pass through here.

Several Blenders may share one journal: a job belongs to the process holding its lease
(`owner`, `lease_until`); another process takes it over only when that one is gone.
The schema carries a version (`PRAGMA user_version`) and migrates forward, never losing rows.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from ..providers.base import ChargeState, FlowStep, Step
from .model import (
    FINISHED,
    Answer,
    CreateSent,
    ImportPlan,
    Job,
    JobState,
    StageCharge,
    split_notes,
)

SCHEMA_VERSION = 4

_T = TypeVar("_T")

# Version 1 (the first release) had exactly these columns, in this order.
_V1_COLUMNS = (
    "job_id", "provider", "source", "prompt", "image_paths", "options", "state", "task_id",
    "progress", "message", "files", "idempotency_key", "created", "updated",
)  # fmt: skip
_V2_COLUMNS = {
    "step": "INTEGER DEFAULT 0",
    "paid_at": "REAL DEFAULT 0",
    "key_fingerprint": "TEXT DEFAULT ''",
    "base_url": "TEXT DEFAULT ''",
    "blend_file": "TEXT DEFAULT ''",
    "warnings": "TEXT DEFAULT '[]'",
    "next_try": "REAL DEFAULT 0",
    "candidates": "TEXT DEFAULT '[]'",
    "objects": "TEXT DEFAULT '[]'",
    "owner": "TEXT DEFAULT ''",
    "lease_until": "REAL DEFAULT 0",
}
_V3_COLUMNS = {
    "plan": "TEXT DEFAULT '{}'",
    "upload_ref": "TEXT DEFAULT ''",
    "picked_path": "TEXT DEFAULT ''",
    "previous_task_id": "TEXT DEFAULT ''",
    "needs_click": "INTEGER DEFAULT 0",
    "import_tries": "INTEGER DEFAULT 0",
    "flow": "TEXT DEFAULT '[]'",
    "creates": "TEXT DEFAULT '[]'",
}
_V4_COLUMNS = {"charges": "TEXT DEFAULT '[]'"}  # what each paid stage cost (spend control)
_LEASE_COLUMNS = ("owner", "lease_until")
_JOB_COLUMNS = (
    *_V1_COLUMNS,
    *(c for c in (*_V2_COLUMNS, *_V3_COLUMNS, *_V4_COLUMNS) if c not in _LEASE_COLUMNS),
)  # fmt: skip
_TEXT_COLUMNS = ("prompt", "message", "idempotency_key", "key_fingerprint", "base_url",
                 "blend_file", "upload_ref", "picked_path", "previous_task_id")  # fmt: skip
_JSON_TUPLES = ("image_paths", "files", "warnings", "candidates", "objects")

_V1_TABLE = f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(_V1_COLUMNS)}, PRIMARY KEY (job_id))"
# v1 → v2: a task id means the job was paid for; states that no longer exist map onward;
# jobs v1 failed only because polling gave up ("resume later") were paid and are resumable.
_V1_TO_V2 = (
    "UPDATE jobs SET paid_at = COALESCE(created, 0) WHERE task_id IS NOT NULL AND task_id != ''",
    "UPDATE jobs SET step = 1 WHERE task_id IS NOT NULL AND task_id != ''",
    "UPDATE jobs SET state = 'ready', step = 2 WHERE state IN ('downloaded', 'importing')",
    "UPDATE jobs SET state = 'stalled' WHERE state = 'failed' AND task_id IS NOT NULL "
    "AND task_id != '' AND message LIKE '%resume later%'",
)

# What the v2 engine wrote into options, in the order of the v3 fields they become
# (upload_ref, picked_path, previous_task_id).
_V2_ENGINE_KEYS = ("file_key", "picked_path", "previous_task_id")

HOST = socket.gethostname()
PLATFORM = sys.platform  # which platform's process facts apply (tests fake the others)

WRITE_PAUSES = (0.1, 0.3)  # a write SQLite refused is tried again after these pauses

# Windows (kernel32): never os.kill there, which would send the process a Ctrl+C.
_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_ACCESS_DENIED = 5
_ERROR_INVALID_PARAMETER = 87  # OpenProcess's answer for a pid that no process has
_STILL_ACTIVE = 259

ProcessFacts = tuple[bool | None, str]


def process_facts(pid: int) -> ProcessFacts:
    """Whether process `pid` runs on this machine (None: this platform cannot tell) and when
    it started ("?" when unknown), so a reused pid is not mistaken for a lease's owner."""
    if PLATFORM == "win32":
        return _windows_facts(pid)
    try:
        os.kill(pid, 0)  # POSIX: signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False, "?"
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return None, "?"
    if PLATFORM.startswith("linux"):
        return True, _proc_start(pid)
    if PLATFORM == "darwin":
        return True, _ps_start(pid)
    return True, "?"


def _proc_start(pid: int) -> str:
    """Linux: the start time in clock ticks since boot, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _ps_start(pid: int) -> str:
    """macOS (no /proc): the start time `ps` gives, in one locale and time zone so that two
    Blenders with different settings read the same words."""
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC0"}
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)],
            capture_output=True, text=True, timeout=2.0, env=env, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return "_".join(out.split()) or "?"  # a lease name has no spaces or slashes


def _kernel32() -> Any:
    """Windows' kernel32, typed so 64-bit handles pass whole."""
    from ctypes import wintypes

    kernel32 = getattr(ctypes, "WinDLL")("kernel32", use_last_error=True)  # noqa: B009
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.c_void_p)
    kernel32.GetProcessTimes.argtypes = (wintypes.HANDLE, *(ctypes.c_void_p,) * 4)
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    return kernel32


def _windows_facts(pid: int) -> ProcessFacts:
    """Windows: open the process to read its exit code and creation time."""
    try:
        kernel32 = _kernel32()
    except (OSError, AttributeError, ImportError, ValueError):
        return None, "?"
    handle = kernel32.OpenProcess(_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        error = kernel32.GetLastError()
        if error == _ERROR_INVALID_PARAMETER:
            return False, "?"
        return (True if error == _ERROR_ACCESS_DENIED else None), "?"
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return None, "?"
        if code.value != _STILL_ACTIVE:
            return False, "?"
        created, unused = ctypes.c_ulonglong(), ctypes.c_ulonglong()
        times = (ctypes.byref(created), *(ctypes.byref(unused),) * 3)
        return True, str(created.value) if kernel32.GetProcessTimes(handle, *times) else "?"
    finally:
        kernel32.CloseHandle(handle)


def process_owner() -> str:
    """A lease name: host, pid and start time (to tell whether its process is gone), and a
    token, so two engines are two owners even within one process."""
    pid = os.getpid()
    return f"{HOST}/{pid}/{process_facts(pid)[1]}/{os.urandom(3).hex()}"


def owner_alive(owner: str) -> bool | None:
    """True/False when we can tell (same host), None when not (another machine, or a
    platform that cannot say): then only its lease expiring tells."""
    host, pid, started = ([*owner.split("/"), "", ""])[:3]
    if host != HOST or not pid.isdigit():
        return None
    exists, start = process_facts(int(pid))
    if exists is not True:
        return exists  # gone (False), or this platform cannot tell (None)
    return started in ("?", "") or start in ("?", started)


class JournalClosedError(RuntimeError):
    pass


class JournalWriteError(RuntimeError):
    """A write SQLite refused even after its retries (busy past its timeout with another
    Blender, a full disk, a read-only folder). Its text is one line."""


class Journal:
    """Thread-safe: one connection guarded by a lock (writes are tiny)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    # -- schema ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock, self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            existed = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
            ).fetchone()
            self._db.execute(_V1_TABLE)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for name, decl in {**_V2_COLUMNS, **_V3_COLUMNS, **_V4_COLUMNS}.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
            if version < 1 and existed:  # rows written by version 1 get their meaning
                for statement in _V1_TO_V2:
                    self._db.execute(statement)
            if version < 3 and existed:
                self._options_to_fields()
            if version > SCHEMA_VERSION:
                raise JournalClosedError(
                    f"the job journal was written by a newer Conjure (schema {version})"
                )
            self._db.execute(f"PRAGMA user_version = {max(version, SCHEMA_VERSION)}")

    def _options_to_fields(self) -> None:
        """v2 → v3: the add-on's "_" notes leave options for the plan, what the engine wrote
        there becomes fields, "Ready — Import" (a message before) becomes a flag, and a job
        failed because its create may have been charged gets its own state."""
        rows = self._db.execute("SELECT job_id, options, state, message FROM jobs").fetchall()
        for job_id, text, state, message in rows:
            options, plan = split_notes(json.loads(str(text or "{}")))
            learned = [str(options.pop(key, "") or "") for key in _V2_ENGINE_KEYS]
            options.pop("pick", None)  # picked_path says what was picked
            needs_click = int(state == JobState.READY and message == "Ready — Import")
            self._db.execute(
                "UPDATE jobs SET options = ?, plan = ?, upload_ref = ?, picked_path = ?, "
                "previous_task_id = ?, needs_click = ? WHERE job_id = ?",
                (json.dumps(options), json.dumps(plan.to_json()), *learned, needs_click, job_id),
            )
        self._db.execute(
            "UPDATE jobs SET state = 'unsure' WHERE state = 'failed' "
            "AND message LIKE '%may have reached%check its dashboard%'"
        )

    # -- jobs -----------------------------------------------------------------------------

    def save(self, job: Job, owner: str | None = None) -> bool:
        """One transaction; leaves the lease alone. With `owner` (the engine's writes) the
        row is written only while `owner` holds it: False when another Blender took it over.
        Without, an insert or update (the main thread, for jobs this Blender holds). A new
        task id or payment is synced to disk before this returns. A closed journal ignores
        late writers."""
        values = _values(job)
        if owner is None:
            updates = ", ".join(f"{c} = excluded.{c}" for c in _JOB_COLUMNS[1:])
            sql = (
                f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({_marks(_JOB_COLUMNS)}) "
                f"ON CONFLICT(job_id) DO UPDATE SET {updates}"
            )
        else:
            sets = ", ".join(f"{c} = ?" for c in _JOB_COLUMNS[1:])
            sql = f"UPDATE jobs SET {sets} WHERE job_id = ? AND owner = ?"
            values = [*values[1:], job.job_id, owner]

        def write() -> bool:
            if self._closed:
                return True  # a straggling worker after shutdown: the job stays as journaled
            paid = self._db.execute(
                "SELECT task_id, paid_at FROM jobs WHERE job_id = ?", (job.job_id,)
            ).fetchone()
            money = paid is None or (paid[0] or None, float(paid[1] or 0)) != (
                job.task_id or None, job.paid_at,
            )  # fmt: skip
            with self._synced(money):
                return self._db.execute(sql, values).rowcount > 0

        return self._write(write)

    def insert_claimed(self, job: Job, owner: str, lease: float = 30.0) -> None:
        """Journal a new job already leased to `owner`, in one transaction: no other Blender
        can take it between the insert and the claim. Synced to disk."""
        columns = (*_JOB_COLUMNS, *_LEASE_COLUMNS)
        sql = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({_marks(columns)})"

        def write() -> None:
            self._check_open()
            with self._synced():
                self._db.execute(sql, (*_values(job), owner, time.time() + lease))

        self._write(write)

    def get(self, job_id: str) -> Job | None:
        rows = self._select("WHERE job_id = ?", (job_id,))
        return rows[0] if rows else None

    def unfinished(self) -> list[Job]:
        done = tuple(s.value for s in FINISHED)
        return self._select(
            f"WHERE state NOT IN ({', '.join('?' * len(done))}) ORDER BY created", done
        )

    def recent(self, limit: int = 50) -> list[Job]:
        return self._select("ORDER BY created DESC LIMIT ?", (limit,))

    def finished_before(self, when: float) -> list[Job]:
        done = tuple(s.value for s in FINISHED)
        marks = ", ".join("?" * len(done))
        return self._select(f"WHERE state IN ({marks}) AND updated < ?", (*done, when))

    def delete(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self._execute(f"DELETE FROM jobs WHERE job_id IN ({', '.join('?' * len(ids))})", ids)

    # -- leases ---------------------------------------------------------------------------

    def claim(self, job_id: str, owner: str, lease: float = 30.0) -> str:
        """Take the job for `owner`; returns "" on success, else the owner holding it."""

        def write() -> str:
            self._check_open()
            now = time.time()
            with self._transaction():
                row = self._db.execute(
                    "SELECT owner, lease_until FROM jobs WHERE job_id = ?", (job_id,)
                ).fetchone()
                holder = str(row[0] or "") if row else ""
                if holder and holder != owner:
                    alive = owner_alive(holder)
                    leased = float(row[1] or 0) > now
                    if alive or (alive is None and leased):
                        return holder
                self._db.execute(
                    "UPDATE jobs SET owner = ?, lease_until = ? WHERE job_id = ?",
                    (owner, now + lease, job_id),
                )
                return ""

        return self._write(write)

    def renew(self, owner: str, job_ids: Iterable[str], lease: float = 30.0) -> None:
        ids = list(job_ids)
        if ids:
            self._execute(
                f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND job_id IN ({_marks(ids)})",
                (time.time() + lease, owner, *ids),
            )

    def release(self, owner: str) -> None:
        self._execute("UPDATE jobs SET owner = '', lease_until = 0 WHERE owner = ?", (owner,))

    def holder(self, job_id: str) -> str:
        """The process holding a live lease on the job ("" when none)."""
        with self._lock:
            self._check_open()
            row = self._db.execute(
                "SELECT owner, lease_until FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        if not row or not row[0]:
            return ""
        alive = owner_alive(str(row[0]))
        leased = float(row[1] or 0) > time.time()
        return str(row[0]) if alive or (alive is None and leased) else ""

    # -- plumbing -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise JournalClosedError("the job journal is closed")

    def _execute(self, sql: str, args: Iterable[object]) -> None:
        def write() -> None:
            if not self._closed:  # else a straggling worker after shutdown: nothing to do
                self._db.execute(sql, tuple(args))

        self._write(write)

    def _write(self, write: Callable[[], _T]) -> _T:
        """Run `write` under the lock; what SQLite refuses (busy past its timeout, a full
        disk, a read-only folder) is tried again after a short pause, then JournalWriteError."""
        error: sqlite3.OperationalError | None = None
        for pause in (0.0, *WRITE_PAUSES):
            time.sleep(pause)  # outside the lock: readers go on meanwhile
            with self._lock:
                try:
                    return write()
                except sqlite3.OperationalError as exc:
                    error = exc
        reason = " ".join(str(error).split())
        raise JournalWriteError(f"Cannot write the job journal: {reason}") from error

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # a failed COMMIT leaves it open
                self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _synced(self, synced: bool = True) -> Iterator[None]:
        """Writes that record money wait for the disk (synchronous=FULL): with WAL and
        NORMAL, a power loss may undo the last commits."""
        if not synced:
            yield
            return
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    def _select(self, where: str, args: tuple[object, ...]) -> list[Job]:
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs {where}", args
            ).fetchall()
        return [_job(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


def _marks(items: Sized) -> str:
    return ", ".join("?" * len(items))


def _values(job: Job) -> list[object]:
    """A job as the values of _JOB_COLUMNS."""
    values: list[object] = [getattr(job, c) for c in _JOB_COLUMNS]
    for i, name in enumerate(_JOB_COLUMNS):
        if name in _JSON_TUPLES:
            values[i] = json.dumps(list(getattr(job, name)))
        elif name == "options":
            values[i] = json.dumps(dict(job.options))
        elif name == "plan":
            values[i] = json.dumps(job.plan.to_json())
        elif name == "flow":
            values[i] = json.dumps([[s.step.value, s.stage] for s in job.flow])
        elif name in ("creates", "charges"):
            values[i] = json.dumps([asdict(c) for c in getattr(job, name)])
        elif name == "state":
            values[i] = job.state.value
    return values


def _job(row: tuple[Any, ...]) -> Job:
    v = dict(zip(_JOB_COLUMNS, row, strict=True))
    for name in _JSON_TUPLES:
        v[name] = tuple(json.loads(str(v[name] or "[]")))
    v["options"] = MappingProxyType(json.loads(str(v["options"] or "{}")))
    v["plan"] = ImportPlan.from_json(json.loads(str(v["plan"] or "{}")))
    v["state"] = JobState(str(v["state"]))
    v["task_id"] = str(v["task_id"]) if v["task_id"] else None
    v["needs_click"] = bool(v["needs_click"])
    v["import_tries"] = int(v["import_tries"] or 0)
    v["flow"] = tuple(FlowStep(Step(a), str(b)) for a, b in json.loads(str(v["flow"] or "[]")))
    v["creates"] = tuple(_create_sent(c) for c in json.loads(str(v["creates"] or "[]")))
    v["charges"] = tuple(_stage_charge(c) for c in json.loads(str(v["charges"] or "[]")))
    for name in _TEXT_COLUMNS:
        v[name] = str(v[name] or "")
    for name in ("progress", "created", "updated", "paid_at", "next_try"):
        v[name] = float(v[name] or 0)
    v["step"] = int(v["step"] or 0)
    return Job(**v)


def _stage_charge(c: dict[str, Any]) -> StageCharge:
    def number(value: object) -> float | None:
        return float(value) if isinstance(value, int | float) else None

    return StageCharge(
        str(c.get("stage", "")),
        str(c.get("unit", "")),
        ChargeState(str(c.get("state", ChargeState.CHARGED))),
        number(c.get("amount")),
        number(c.get("balance")),
        number(c.get("at")) or 0.0,
    )


def _create_sent(c: dict[str, object]) -> CreateSent:
    return CreateSent(
        str(c.get("stage", "")),
        str(c.get("key", "")),
        float(c.get("sent_at", 0) or 0),  # type: ignore[arg-type]
        Answer(str(c.get("answer", Answer.UNKNOWN))),
        str(c.get("task_id", "")),
    )
