"""An emulator served from a child process, for the benchmarks.

A service runs on another machine: its work must not take turns with Blender's main thread
for the GIL while the benchmark times that thread. So each emulator is built and served in a
process of its own (spawned, never forked from a process that holds Blender) and logs every
request it answered; the log comes back when it stops. Times are `time.monotonic()`, one
clock for every process on the machine.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

TESTS = str(Path(__file__).resolve().parents[1] / "tests")


class Hit(NamedTuple):
    at: float  # time.monotonic() when the answer was ready
    method: str
    path: str
    status: int


class EmulatorProcess:
    """`EmulatorProcess("emulators.trify3d:Trify3DEmulator", *args, **kw)`: the class is
    built in the child with these arguments; `attrs` are set on it, `latency` is added to
    every answer. `url` once started; `stop()` returns the log of hits."""

    def __init__(
        self,
        target: str,
        *args: Any,
        attrs: dict[str, Any] | None = None,
        latency: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self._spec = (target, args, kwargs, attrs or {}, latency)
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.url = ""

    def start(self) -> EmulatorProcess:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs, *self._spec), daemon=True)
        self._process.start()
        self.url = self._conn.recv()
        return self

    def stop(self) -> list[Hit]:
        assert self._conn is not None and self._process is not None, "not started"
        self._conn.send("stop")
        hits = [Hit(*hit) for hit in self._conn.recv()]
        self._process.join(5)
        return hits


def _serve(
    conn: Connection,
    target: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attrs: dict[str, Any],
    latency: float,
) -> None:
    sys.path.insert(0, TESTS)
    module, name = target.split(":")
    emulator = getattr(importlib.import_module(module), name)(*args, **kwargs)
    for key, value in attrs.items():
        setattr(emulator, key, value)
    log: list[tuple[float, str, str, int]] = []
    route = emulator.route

    def timed(method: str, path: str, headers: dict, body: bytes) -> Any:
        reply = route(method, path, headers, body)
        log.append((time.monotonic(), method, path, reply[0]))
        return reply

    emulator.route = timed
    if latency:
        emulator.inject(delay=latency, passthrough=True, times=10**9)
    emulator.start()
    conn.send(emulator.url)
    conn.recv()
    emulator.stop()
    conn.send(log)
