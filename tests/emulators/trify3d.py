"""Trify3D as PROVIDERS.md describes it (seed 003): Bearer keys, credits, idempotent creates,
tasks that progress over polls, rate-limit headers on every answer, GLB + thumbnail assets
served (like a CDN) from extension-less URLs behind a redirect."""

from __future__ import annotations

import json
import struct
import threading
import uuid
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .base import Emulator, Reply, json_reply, take_slot

CREATE_PATHS = {
    "/api/v1/generations/text-to-3d": "text_to_3d",
    "/api/v1/generations/image-to-3d": "image_to_3d",
    "/api/v1/generations/multiview-to-3d": "multiview_to_3d",
}
COST = 5


TINY_GLB = b"glTF\x02\x00\x00\x00" + b"\x00" * 64  # enough for the engine: GLB by its bytes


def tiny_png(rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A real 2x2 PNG, so thumbnails pass magic-byte checks and image loaders."""
    raw = b"".join(b"\x00" + bytes(rgb) * 2 for _ in range(2))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass
class Task:
    task_id: str
    kind: str
    body: dict
    polls: int = 0
    failed: bool = False


class Trify3DEmulator(Emulator):
    def __init__(
        self,
        model_path: Path,
        *,
        api_key: str = "trf_live_test",
        credits: int = 1000,
        polls_to_complete: int = 2,
        rate_limit: int = 600,
        rate_window: float | None = None,
        wrap: bool = False,
    ) -> None:
        super().__init__()
        self.model_bytes = Path(model_path).read_bytes()
        self.api_key = api_key
        self.credits = credits
        self.polls_to_complete = polls_to_complete
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.rate_window = rate_window  # None: the budget never refills (a long window)
        self._recent: deque[float] = deque()
        self.refused = 0  # requests answered 429
        self.thumbnail: tuple[int, bytes] = (200, tiny_png())  # (status, bytes) served
        self.wrap = wrap
        self.tasks: dict[str, Task] = {}
        self.charges = 0  # creates that spent credits (as Triverse's emulator counts them)
        self.credits_used: object = COST  # what answers say in creditsUsed (a test may garble it)
        self._state = threading.Lock()

    # -- helpers
    def _limits(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
        }

    def _spend(self) -> int | None:
        """Count one request; None if allowed, else the Retry-After seconds (per key)."""
        if self.rate_window is None:
            self.remaining -= 1
            return 1 if self.remaining < 0 else None
        retry_after = take_slot(self._recent, self.rate_limit, self.rate_window)
        self.remaining = 0 if retry_after else self.rate_limit - len(self._recent)
        return retry_after

    def _answer(self, status: int, body: object) -> Reply:
        if self.wrap and status < 400:
            body = {"data": body}
        return json_reply(status, body, self._limits())

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith("/files/") or path.startswith("/r/"):
            return self._asset(path)
        with self._state:
            if headers.get("Authorization") != f"Bearer {self.api_key}":
                return json_reply(401, {"error": "Invalid or revoked API key"}, self._limits())
            retry_after = self._spend()
            if retry_after is not None:
                self.refused += 1
                return json_reply(
                    429,
                    {"error": "Rate limit exceeded"},
                    {**self._limits(), "Retry-After": str(retry_after)},
                )
            if method == "POST" and path in CREATE_PATHS:
                return self._create(CREATE_PATHS[path], headers, body)
            if method == "GET" and path.startswith("/api/v1/generations/"):
                return self._poll(path.rsplit("/", 1)[1])
        return json_reply(404, {"error": "Not found"})

    def _create(self, kind: str, headers: dict[str, str], raw: bytes) -> Reply:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return json_reply(400, {"error": "Body must be JSON"}, self._limits())
        problem = self._invalid(kind, body)
        if problem:
            return json_reply(400, {"error": problem}, self._limits())
        if self.credits < COST:
            return json_reply(402, {"error": "INSUFFICIENT_CREDITS"}, self._limits())
        self.credits -= COST
        self.charges += 1
        task = self._new_task(kind, body)  # a re-sent create is a new, paid task: no dedupe
        return self._answer(201, self._created(task))

    def _new_task(self, kind: str, body: dict, task_id: str | None = None) -> Task:
        task = Task(task_id or str(uuid.uuid4()), kind, body)
        task.failed = "fail" in str(body.get("prompt", ""))
        self.tasks[task.task_id] = task
        return task

    def create_task(self, kind: str, body: dict, task_id: str | None = None) -> str:
        """A task that exists on the service already (created by an earlier session)."""
        with self._state:
            return self._new_task(kind, body, task_id).task_id

    @staticmethod
    def _invalid(kind: str, body: dict) -> str:
        if kind == "text_to_3d" and not str(body.get("prompt", "")).strip():
            return "prompt is required"
        if kind == "image_to_3d" and not str(body.get("imageUrl", "")).startswith(
            ("data:image/", "http")
        ):
            return "imageUrl must be an http(s) or data:image URL"
        if kind == "multiview_to_3d":
            urls = body.get("imageUrls")
            if not isinstance(urls, list) or len(urls) < 2:
                return "imageUrls needs 2 or more images"
        return ""

    def _created(self, task: Task) -> dict:
        return {
            "taskId": task.task_id,
            "provider": "tripo3d",
            "status": "processing",
            "creditsUsed": self.credits_used,
            "creditsRemaining": self.credits,
        }

    def _poll(self, task_id: str) -> Reply:
        task = self.tasks.get(task_id)
        if task is None:
            return json_reply(404, {"error": "Task not found"}, self._limits())
        task.polls += 1
        record = {"taskId": task.task_id, "type": task.kind, "errorCode": None}
        record["creditsUsed"] = self.credits_used
        if task.polls < self.polls_to_complete:
            record |= {
                "status": "processing",
                "progress": round(100 * task.polls / self.polls_to_complete),
            }
        elif task.failed:
            record |= {"status": "failed", "errorCode": "GENERATION_FAILED"}
        else:
            record |= {
                "status": "completed",
                "outputModelUrl": f"{self.url}/r/{task.task_id}",
                "thumbnailUrl": f"{self.url}/files/{task.task_id}/thumb",
            }
        return self._answer(200, record)

    def _asset(self, path: str) -> Reply:
        parts = path.strip("/").split("/")
        if parts[0] == "r" and len(parts) == 2:
            return 302, {"Location": f"/files/{parts[1]}/model"}, b""
        if len(parts) == 3 and parts[1] in self.tasks:
            if parts[2] == "model":
                return 200, {"Content-Type": "application/octet-stream"}, self.model_bytes
            if parts[2] == "thumb":
                status, payload = self.thumbnail
                return status, {"Content-Type": "image/png"}, payload
        return 404, {"Content-Type": "text/plain"}, b"no such file"
