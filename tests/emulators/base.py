"""A threaded HTTP server on 127.0.0.1 with a request log and switchable faults."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], bytes]


def take_slot(recent: deque[float], limit: int, window: float) -> int | None:
    """A sliding window of `limit` requests per `window` seconds: count one request now and
    return None, or, when the window is full, count nothing and return Retry-After seconds."""
    now = time.monotonic()
    while recent and recent[0] <= now - window:
        recent.popleft()
    if len(recent) >= limit:
        return max(1, math.ceil(recent[0] + window - now))
    recent.append(now)
    return None


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


@dataclass
class Fault:
    """Replaces the next `times` matching responses (or delays them)."""

    status: int = 500
    body: bytes = b'{"error": "injected"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    method: str | None = None
    path: str | None = None  # prefix
    within: str = ""  # and this in the path (a file among a task's files)
    times: int = 1
    passthrough: bool = False  # delay only, then answer normally
    trickle: float = 0.0  # seconds between the body's bytes: headers at once, then a drip
    cut: int = -1  # send only this many bytes of the body (its full length announced), then hang up

    def matches(self, method: str, path: str) -> bool:
        return (
            self.method in (None, method)
            and (self.path is None or path.startswith(self.path))
            and self.within in path
        )


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a test's timeout, a killed process) is not an error of
        the emulator: no traceback for it. Anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Emulator:
    """Subclasses implement `route(method, path, headers, body) -> Reply`."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._pace = threading.local()  # the trickle of the answer this thread is sending

    # -- lifecycle
    def start(self, port: int = 0) -> Emulator:
        """Serve on 127.0.0.1 (`port`, or any free one)."""
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once on kept-alive

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                if emulator._server is None:  # stopped: drop kept-alive connections too
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = emulator.dispatch(
                    self.command, self.path, dict(self.headers.items()), body
                )
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if not emulator._send_body(self.wfile, payload):
                        self.close_connection = True  # mid-body: the connection drops
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="emulator").start()
        return self

    def stop(self) -> None:
        """Without waiting out serve_forever's half-second select: a connection wakes it at
        once (one emulator per test, so this was most of a short test's time)."""
        server = self._server
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        while stopper.is_alive():
            with (
                contextlib.suppress(OSError),
                socket.create_connection(server.server_address[:2], timeout=0.2),
            ):
                pass
            stopper.join(0.02)
        server.server_close()
        self._server = None

    @property
    def url(self) -> str:
        assert self._server, "emulator not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test controls
    def inject(self, **kw: Any) -> Fault:
        if isinstance(kw.get("body"), dict | list):
            kw["body"] = json.dumps(kw["body"]).encode()
        elif isinstance(kw.get("body"), str):
            kw["body"] = kw["body"].encode()
        fault = Fault(**kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def count(self, method: str, path: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.method == method and r.path.startswith(path))

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()

    # -- dispatch
    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self.requests.append(Seen(method, path, headers, body))
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        self._pace.trickle = fault.trickle if fault else 0.0
        self._pace.cut = fault.cut if fault else -1
        if fault:
            if fault.delay:
                time.sleep(fault.delay)
            if not fault.passthrough:
                return (
                    fault.status,
                    {"Content-Type": "application/json", **fault.headers},
                    fault.body,
                )
        return self.route(method, path, headers, body)

    def _send_body(self, out: Any, payload: bytes) -> bool:
        """The whole body (True); with a cut fault only its start (False: the connection is
        then dropped); with a trickle fault one byte at a time until the client hangs up or
        the emulator stops (a server that is slow, not one that is down)."""
        cut, pause = getattr(self._pace, "cut", -1), getattr(self._pace, "trickle", 0.0)
        if 0 <= cut < len(payload):
            out.write(payload[:cut])
            out.flush()
            return False
        if not pause:
            out.write(payload)
            return True
        for index in range(len(payload)):
            if self._server is None:
                return True
            out.write(payload[index : index + 1])
            time.sleep(pause)
        return True

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError
