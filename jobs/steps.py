"""What the scheduler and its workers hand each other: the commands posted to the scheduler
thread, its record of each running job, and the download worker. No bpy."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
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


Command = Start | Cancel | Pick | Limit | Done


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
    fetched: dict[int, str | ProviderError] = field(default_factory=dict)

    @property
    def here(self) -> FlowStep:
        return self.flow[min(self.job.step, len(self.flow) - 1)]



def fetch(
    provider: Provider, asset: Asset, folder: Path, index: int, stop: Callable[[], bool]
) -> str:
    """Worker: one asset into the job folder, named by what its bytes are."""
    raw = folder / f"asset-{index}.download"
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
    return str(final)


def last_poll(flow: Sequence[FlowStep], before: int) -> int:
    return max((i for i, s in enumerate(flow[:before]) if s.step == Step.POLL), default=0)


class Workers:
    """The fixed pools that run steps: API requests on one, downloads on their own (a burst
    of big files never delays a request the rate budget has just granted). Started on first
    use; `done(job_id, step, tag, future)` is called on the worker as each step ends."""

    def __init__(self, count: int, name: str, done: Callable[[Done], None]) -> None:
        self._count, self._name, self._done = count, name, done
        self._pools: dict[bool, ThreadPoolExecutor] = {}
        self._running: set[Future[Any]] = set()  # for an orderly shutdown

    def start(self) -> None:
        if not self._pools:
            for downloads in (False, True):
                prefix = f"{self._name}-dl" if downloads else self._name
                self._pools[downloads] = ThreadPoolExecutor(self._count, prefix)

    def run(self, job_id: str, step: Step, tag: int, fn: Callable[..., Any], *args: object) -> None:
        future = self._pools[step == Step.DOWNLOAD].submit(fn, *args)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        future.add_done_callback(lambda f: self._done(Done(job_id, step, tag, f)))

    def stop(self, timeout: float) -> None:
        """Nothing queued runs; steps inside a request get `timeout` s, then are abandoned."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        futures.wait(list(self._running), timeout)
