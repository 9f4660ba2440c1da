"""What the scheduler and its workers hand each other: the commands posted to the scheduler
thread, its record of each running job, and the download worker. No bpy."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..providers import filekind
from ..providers.base import Asset, FlowStep, Provider, Step
from ..providers.errors import ErrorKind, ProviderError
from .model import ImportPlan, Job

# What each asset role may be; anything else is refused by its bytes, whatever its URL says.
ROLE_KINDS: dict[str, frozenset[str]] = {
    "model": filekind.MODEL_KINDS,
    "geometry": filekind.MODEL_KINDS,
    "material": frozenset({"mtl"}),
    "texture": filekind.IMAGE_KINDS | {"zip"},
}


class CancelledError(Exception):
    """The job was cancelled between dispatch and the create request."""


class StoppingError(Exception):
    """The engine is stopping (disable, quit): the create was not sent."""


class DiskError(Exception):
    """A download could not be written to the job folder (disk full, no permission, the
    folder removed): local trouble, not the service's. One line, with the folder."""

    retry_after: float | None = None  # nothing to wait for but the user

    def __init__(self, folder: Path, exc: OSError) -> None:
        super().__init__(f"Cannot write the download to {folder}: {exc.strerror or exc}")


# Commands to the scheduler thread, posted from any thread.
@dataclass(frozen=True)
class Start:
    job: Job


@dataclass(frozen=True)
class Cancel:
    job_id: str


@dataclass(frozen=True)
class Pick:
    job_id: str
    choice: int | str
    options: Mapping[str, object]
    plan: ImportPlan | None


@dataclass(frozen=True)
class Limit:
    count: int


@dataclass(frozen=True)
class Done:
    """A step finished on a worker: `tag` tells a job's parallel downloads apart."""

    job_id: str
    step: Step
    tag: int
    future: Future[Any]


@dataclass(frozen=True)
class Cap:
    """A spending limit for the jobs created from `since` on (None lifts it)."""

    limit: float | None
    since: float


Command = Start | Cancel | Pick | Limit | Cap | Done


@dataclass
class Live:
    job: Job
    provider: Provider
    flow: tuple[FlowStep, ...]
    cancel: threading.Event = field(default_factory=threading.Event)
    busy: bool = False
    token: int = 0  # heap entries carry it; scheduling again makes older entries stale
    polls: int = 0
    failures: int = 0  # consecutive network troubles (back-off)
    refetches: int = 0  # downloads that had to ask for fresh URLs
    assets: tuple[Asset, ...] = ()
    candidates: tuple[Asset, ...] = ()
    fetching: tuple[Asset, ...] = ()  # the downloads in flight, all at once
    required: str = "model"  # the role among them that must arrive
    fetched: dict[int, str | ProviderError | DiskError] = field(default_factory=dict)

    @property
    def here(self) -> FlowStep:
        return self.flow[min(self.job.step, len(self.flow) - 1)]


def fetch(
    provider: Provider, asset: Asset, folder: Path, index: int, stop: Callable[[], bool]
) -> str:
    """Worker: one asset into the job folder, named by what its bytes are. Trouble on the
    network is a ProviderError; trouble writing the folder a DiskError."""
    raw = folder / f"asset-{index}.download"
    try:
        provider.download(asset.url, str(raw), stop)
        with open(raw, "rb") as f:
            head = f.read(filekind.HEAD_BYTES)
        kind = filekind.kind_of(head)
        if kind is None or kind not in ROLE_KINDS.get(asset.role, filekind.IMAGE_KINDS):
            raw.unlink()
            raise ProviderError(
                ErrorKind.BAD_RESPONSE,
                f"the {asset.role} file is not a format Conjure can read: "
                f"got {filekind.describe(head)}",
            )
        name = f"{asset.role}-{index}" if index else asset.role
        final = folder / f"{name}.{kind}"
        os.replace(raw, final)
    except OSError as exc:  # the HTTP client turns every network OSError into a ProviderError
        raise DiskError(folder, exc) from None
    return str(final)


def last_poll(flow: Sequence[FlowStep], before: int) -> int:
    return max((i for i, s in enumerate(flow[:before]) if s.step == Step.POLL), default=0)


class Workers:
    """Fixed pools of daemon threads that run steps: API requests on one, downloads on
    their own (a burst of big files never delays a request the rate budget has just
    granted). Daemon threads, unlike ThreadPoolExecutor's, never make Python wait for a
    request at exit: the engine decides what a quit waits for (creates, briefly)."""

    def __init__(self, count: int, name: str, done: Callable[[Done], None]) -> None:
        self._count, self._name, self._done = count, name, done
        self._queues: dict[bool, queue.SimpleQueue[_Work | None]] = {}
        self._running: dict[Future[Any], Done] = {}  # started or queued, until they end
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._queues:
            return
        for downloads in (False, True):
            work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
            self._queues[downloads] = work
            prefix = f"{self._name}-dl" if downloads else self._name
            for index in range(self._count):
                thread = threading.Thread(
                    target=_serve, args=(work,), name=f"{prefix}_{index}", daemon=True
                )
                thread.start()

    def run(self, job_id: str, step: Step, tag: int, fn: Callable[..., Any], *args: object) -> None:
        future: Future[Any] = Future()
        record = Done(job_id, step, tag, future)
        with self._lock:
            self._running[future] = record
        future.add_done_callback(self._ended)
        self._queues[step == Step.DOWNLOAD].put((future, fn, args))

    def stop(self) -> tuple[list[Done], list[Done]]:
        """Nothing queued starts: returns the steps that never started and those already
        inside a request (the caller decides which to wait for). The threads then end."""
        unsent: list[Done] = []
        for work in self._queues.values():
            while True:
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    with self._lock:
                        unsent.append(self._running[item[0]])
                    item[0].cancel()
            for _ in range(self._count):
                work.put(None)
        with self._lock:
            return unsent, list(self._running.values())

    def _ended(self, future: Future[Any]) -> None:
        with self._lock:
            record = self._running.pop(future)
        if not future.cancelled():
            self._done(record)


_Work = tuple[Future[Any], Callable[..., Any], tuple[object, ...]]


def _serve(work: queue.SimpleQueue[_Work | None]) -> None:
    while _run(work.get()):
        pass


def _run(item: _Work | None) -> bool:
    """One step; False for the sign to end. Nothing of it stays referenced while the
    thread waits for the next (a step's result can reach the whole session)."""
    if item is None:
        return False
    future, fn, args = item
    if future.set_running_or_notify_cancel():
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the scheduler, which owns every outcome
            future.set_exception(exc)
        else:
            future.set_result(result)
    return True
