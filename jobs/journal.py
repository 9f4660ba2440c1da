"""The durable record of every job: SQLite, written on every transition, survives crashes.

The path is passed in (the caller asks Blender where user data lives), so this stays
bpy-free. Only plain request data is stored: prompts, local image paths, options, ids and
file names. Keys never pass through here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from types import MappingProxyType

from .model import FINISHED, Job, JobState

_COLUMNS = (
    "job_id",
    "provider",
    "source",
    "prompt",
    "image_paths",
    "options",
    "state",
    "task_id",
    "progress",
    "message",
    "files",
    "idempotency_key",
    "created",
    "updated",
)
_SCHEMA = f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(_COLUMNS)}, PRIMARY KEY (job_id))"


class Journal:
    """Thread-safe: one connection guarded by a lock (writes are tiny and rare)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def save(self, job: Job) -> None:
        row = (
            job.job_id,
            job.provider,
            job.source,
            job.prompt,
            json.dumps(list(job.image_paths)),
            json.dumps(dict(job.options)),
            job.state.value,
            job.task_id,
            job.progress,
            job.message,
            json.dumps(list(job.files)),
            job.idempotency_key,
            job.created,
            job.updated,
        )
        marks = ", ".join("?" * len(_COLUMNS))
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO jobs VALUES ({marks})", row)

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

    def _select(self, where: str, args: tuple[object, ...]) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs {where}", args
            ).fetchall()
        return [_job(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _job(row: tuple[object, ...]) -> Job:
    v = dict(zip(_COLUMNS, row, strict=True))
    return Job(
        job_id=str(v["job_id"]),
        provider=str(v["provider"]),
        source=str(v["source"]),
        prompt=str(v["prompt"] or ""),
        image_paths=tuple(json.loads(str(v["image_paths"]))),
        options=MappingProxyType(json.loads(str(v["options"]))),
        state=JobState(str(v["state"])),
        task_id=str(v["task_id"]) if v["task_id"] else None,
        progress=float(v["progress"] or 0),
        message=str(v["message"] or ""),
        files=tuple(json.loads(str(v["files"]))),
        idempotency_key=str(v["idempotency_key"] or ""),
        created=float(v["created"] or 0),
        updated=float(v["updated"] or 0),
    )
