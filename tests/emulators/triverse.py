"""Triverse as PROVIDERS.md and seed 004 describe it: Bearer keys, `{code, message, data}`
envelopes (code != 0 is an error even at HTTP 200), multipart image uploads limited to 10 per
60 s, creates that are never deduped (client_order_id is only recorded), credits frozen at create and returned when a
task fails, tasks that make the geometry first and the texture second, download links from
/tasks/url, and GLBs served (like a CDN) from extension-less URLs behind a redirect.

Switches for the quirks a client must survive: `errors_at_200` (every error as HTTP 200 with
code != 0), `old_fields` (the seed page's camelCase shapes: taskId, flowName, costCredits,
no progress), `texture_fails` (geometry made, texturing failed, with the overall status in
`texture_failure_status`), `lose_create_answers` (the task is made and charged, the answer
is a 504), `url_not_ready` (404s from /tasks/url right after SUCCESS).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any

from .base import Emulator, Fault, Reply, json_reply, take_slot
from .glb import triangle_glb
from .trify3d import tiny_png

PREFIX = "/api/v1"
UPLOAD_PATH = PREFIX + "/upload/image"
TEXT_PATH = PREFIX + "/tasks/text-to-model"
IMAGE_PATH = PREFIX + "/tasks/image-to-model"
TASKS_PATH = PREFIX + "/tasks/"
URL_PATH = PREFIX + "/tasks/url/"
COST = 120
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A task's life, one step per `polls_per_stage` status reads.
STAGES = ("PENDING", "QUEUED", "GEOMETRY", "TEXTURE", "DONE")
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"))


def tiny_glb(node_name: str, color: tuple[float, float, float, float] | None = None) -> bytes:
    """A valid binary glTF: one triangle named `node_name` (with a coloured material when
    `color` is given), so the geometry and the textured model differ by content."""
    material = None
    if color is not None:
        material = {"name": "baked", "pbrMetallicRoughness": {"baseColorFactor": color}}
    return triangle_glb(
        node_name, generator="Triverse emulator", mesh_name=node_name, material=material
    )


GEOMETRY_GLB = tiny_glb("triverse-geometry")
TEXTURED_GLB = tiny_glb("triverse-textured", (0.8, 0.3, 0.1, 1.0))


def image_ext(data: bytes) -> str | None:
    for magic, ext in _IMAGE_MAGIC:
        if data.startswith(magic):
            return ext
    return "webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


@dataclass(frozen=True)
class Part:
    name: str
    filename: str
    content_type: str
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """A multipart/form-data body's parts (the stdlib email parser; cgi is gone in 3.13)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return []
    parts = []
    for part in message.iter_parts():
        parts.append(
            Part(
                part.get_param("name", "", header="content-disposition"),
                part.get_filename() or "",
                part.get_content_type(),
                part.get_payload(decode=True) or b"",
            )
        )
    return parts


@dataclass
class Task:
    task_uuid: str
    flow_name: str
    body: dict[str, Any]
    created_at: str
    texture_fails: bool
    polls: int = 0
    refunded: bool = False


class TriverseEmulator(Emulator):
    def __init__(
        self,
        *,
        api_key: str = "tvs_test",
        credits: int = 100 * COST,
        polls_per_stage: int = 1,
        upload_limit: int = 10,
        upload_window: float = 60.0,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.credits = credits
        self.polls_per_stage = polls_per_stage
        self.upload_limit = upload_limit
        self.upload_window = upload_window
        self.max_upload_bytes = max_upload_bytes
        # switches (see the module docstring)
        self.errors_at_200 = False
        self.old_fields = False
        self.texture_fails = False
        self.texture_failure_status = "FAILED"
        self.credit_status = 402  # the HTTP status of "Insufficient credits": 402 or 403
        self.lose_create_answers = 0
        self.url_not_ready = 0
        # state
        self.tasks: dict[str, Task] = {}
        self.files: dict[str, bytes] = {}  # file_key -> the uploaded image
        self.charges = 0  # creates that froze credits
        self.refused_uploads = 0  # uploads answered 429
        self.upload_times: list[float] = []  # arrival of every accepted upload
        self._recent: deque[float] = deque()
        self._state = threading.Lock()

    # -- test controls ----------------------------------------------------------------

    def inject_code(
        self, code: int, message: str, *, method: str | None = None, path: str | None = None,
        times: int = 1,
    ) -> Fault:  # fmt: skip
        """The next matching answers are HTTP 200 carrying `code` (!= 0) and `message`."""
        body = {"code": code, "message": message, "data": None}
        return self.inject(status=200, body=body, method=method, path=path, times=times)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies the service received on `path`, in order."""
        with self._lock:
            seen = [r for r in self.requests if r.method == "POST" and r.path == path]
        return [json.loads(r.body) for r in seen]

    def uploads(self) -> list[list[Part]]:
        """Every upload request's multipart parts, in order."""
        with self._lock:
            seen = [r for r in self.requests if r.method == "POST" and r.path == UPLOAD_PATH]
        return [parse_multipart(_header(r.headers, "Content-Type"), r.body) for r in seen]

    def create_task(self, body: dict[str, Any], flow_name: str = "text-to-model") -> str:
        """A task that exists on the service already (made by an earlier session)."""
        with self._state:
            return self._new_task(flow_name, body).task_uuid

    def asset(self, kind: str) -> bytes:
        return {
            "geometry": GEOMETRY_GLB,
            "textured": TEXTURED_GLB,
            "model": TEXTURED_GLB,
            "preview": tiny_png(),
        }[kind]

    # -- envelope ---------------------------------------------------------------------

    def _ok(self, data: Any, status: int = 200) -> Reply:
        return json_reply(status, {"code": 0, "message": "success", "data": data})

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        body = {"code": status, "message": message, "data": None}
        return json_reply(200 if self.errors_at_200 else status, body, headers)

    # -- routing ----------------------------------------------------------------------

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith(("/r/", "/files/")):
            return self._asset(method, path)
        with self._state:
            if _header(headers, "Authorization") != f"Bearer {self.api_key}":
                return self._error(401, "Invalid or missing API key")
            if method == "POST" and path == UPLOAD_PATH:
                return self._upload(headers, body)
            if method == "POST" and path in (TEXT_PATH, IMAGE_PATH):
                return self._create(path, body)
            if method == "GET" and path.startswith(URL_PATH):
                return self._links(path[len(URL_PATH) :])
            if method == "GET" and path.startswith(TASKS_PATH):
                return self._status(path[len(TASKS_PATH) :])
        return self._error(404, "Not found")

    def _upload(self, headers: dict[str, str], body: bytes) -> Reply:
        wait = take_slot(self._recent, self.upload_limit, self.upload_window)
        if wait is not None:
            self.refused_uploads += 1
            return self._error(429, "Too many uploads", {"Retry-After": str(wait)})
        self.upload_times.append(self._recent[-1])
        parts = parse_multipart(_header(headers, "Content-Type"), body)
        file = next((p for p in parts if p.name == "file"), None)
        if file is None:
            return self._error(400, "file is required (multipart field 'file')")
        if len(file.data) > self.max_upload_bytes:
            return self._error(413, "file too large: at most 50 MB")
        ext = image_ext(file.data)
        if ext is None:
            return self._error(400, "unsupported file type: use jpeg, png or webp")
        key = f"uploads/{uuid.uuid4().hex}.{ext}"
        self.files[key] = file.data
        return self._ok({"file_key": key})

    def _create(self, path: str, raw: bytes) -> Reply:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._error(400, "body must be JSON")
        if not isinstance(body, dict):
            return self._error(400, "body must be a JSON object")
        flow = "text-to-model" if path == TEXT_PATH else "image-to-model"
        problem = self._invalid(flow, body)
        if problem:
            return self._error(400, problem)
        if self.credits < COST:
            return self._error(self.credit_status, "Insufficient credits")
        self.credits -= COST
        self.charges += 1
        task = self._new_task(flow, body)  # a repeated client_order_id is a new, paid task
        if self.lose_create_answers > 0:  # made and charged; the gateway lost the answer
            self.lose_create_answers -= 1
            return json_reply(504, {"code": 504, "message": "Gateway Timeout", "data": None})
        return self._ok(self._created(task))

    def _invalid(self, flow: str, body: dict[str, Any]) -> str:
        if flow == "text-to-model":
            prompt = body.get("prompt")
            if not isinstance(prompt, str) or len(prompt.strip()) < 3:
                return "prompt must be at least 3 characters"
        else:
            image = body.get("image_file")
            if not isinstance(image, str) or not (
                image in self.files or image.startswith(("http://", "https://"))
            ):
                return "image_file must be a file_key from /upload/image or an image URL"
            if body.get("model_version", "v2") != "v2":
                return "model_version must be v2"
        for name, lo, hi in (("polygon_limit", 1000, 1_500_000), ("texture_size", 1024, 4096)):
            value = body.get(name)
            if name in body and (type(value) is not int or not lo <= value <= hi):
                return f"{name} must be an integer from {lo} to {hi}"
        if "turbo" in body and not isinstance(body["turbo"], bool):
            return "turbo must be a boolean"
        order = body.get("client_order_id")
        if "client_order_id" in body and not (isinstance(order, str) and ORDER_ID.fullmatch(order)):
            return "client_order_id must be 1-64 characters of [A-Za-z0-9_-]"
        return ""

    def _new_task(self, flow: str, body: dict[str, Any]) -> Task:
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        task = Task(str(uuid.uuid4()), flow, body, created, self.texture_fails)
        self.tasks[task.task_uuid] = task
        return task

    def _input(self, task: Task) -> dict[str, Any]:
        snapshot = {k: v for k, v in task.body.items() if k != "client_order_id"}
        image = snapshot.pop("image_file", None)
        if image is not None:  # the service stores uploads and shows its own URL
            snapshot["image_url"] = image if image.startswith("http") else f"{self.url}/{image}"
        return snapshot

    def _created(self, task: Task) -> dict[str, Any]:
        if self.old_fields:
            return {
                "task_uuid": task.task_uuid,
                "name": f"{task.flow_name}-{task.task_uuid[:8]}",
                "created_at": task.created_at,
                "is_public": True,
                "task_priority": 0,
                "status": "PENDING",
                "flow_name": task.flow_name,
                "input": self._input(task),
                "costCredits": COST,
            }
        return {
            "task_uuid": task.task_uuid,
            "status": "PENDING",
            "created_at": task.created_at,
            "cost_credits": COST,
        }

    def _stage(self, task: Task) -> str:
        index = max(task.polls - 1, 0) // self.polls_per_stage
        return STAGES[min(index, len(STAGES) - 1)]

    def _status(self, task_id: str) -> Reply:
        task = self.tasks.get(task_id)
        if task is None:
            return self._error(404, "Task not found")
        task.polls += 1
        stage = self._stage(task)
        base = f"{self.url}/r/{task.task_uuid}"
        output: dict[str, Any] = {
            "geometry_job_status": "PENDING",
            "texture_job_status": "PENDING",
            "geometry_model_url": [],
            "textured_model_url": None,
        }
        status, progress, error = stage if stage in ("PENDING", "QUEUED") else "RUNNING", 0, None
        if stage == "GEOMETRY":
            output["geometry_job_status"], progress = "IN_PROGRESS", 30
        elif stage in ("TEXTURE", "DONE"):
            output["geometry_job_status"] = "COMPLETED"
            output["geometry_model_url"] = [f"{base}/geometry"]
            output["texture_job_status"], progress = "IN_PROGRESS", 60
            if task.flow_name == "image-to-model":
                output["preprocessed_image_url"] = [f"{base}/preview"]
        if stage == "DONE" and task.texture_fails:
            output["texture_job_status"] = "FAILED"
            status, progress = self.texture_failure_status, 100
            error = "Texture generation failed: UV unwrap error"
            if status == "FAILED" and not task.refunded:  # unfrozen when the task fails
                task.refunded = True
                self.credits += COST
        elif stage == "DONE":
            output["texture_job_status"] = "COMPLETED"
            output["textured_model_url"] = f"{base}/textured"
            status, progress = "SUCCESS", 100
        if self.old_fields:  # the seed page's FlowStatusPayload: no progress, no error
            record = {"flowName": task.flow_name, "taskId": task.task_uuid, "status": status}
            record |= {"input": self._input(task), "output": output}
            return self._ok(record | {"createTime": task.created_at})
        record = {"task_uuid": task.task_uuid, "flow_name": task.flow_name, "status": status}
        record |= {"progress": progress, "input": self._input(task), "output": output}
        return self._ok(record | {"error": error})

    def _links(self, task_id: str) -> Reply:
        task = self.tasks.get(task_id)
        if task is None:
            return self._error(404, "Task not found")
        if task.polls == 0 or self._stage(task) != "DONE":
            return self._error(400, "Task has not finished")
        if self.url_not_ready > 0:
            self.url_not_ready -= 1
            return self._error(404, "Asset not found")
        kind = "geometry" if task.texture_fails else "model"
        base = f"{self.url}/r/{task.task_uuid}"
        return self._ok(
            {
                "download_url": f"{base}/{kind}",
                "preview_url": f"{base}/preview",
                "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, task.task_uuid)),
                "kind": "model",
            }
        )

    def _asset(self, method: str, path: str) -> Reply:
        """/r/<task>/<kind> redirects to a signed, extension-less /files/ URL (a CDN)."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if method != "GET" or len(parts) != 3 or parts[1] not in self.tasks:
            return 404, {"Content-Type": "text/plain"}, b"no such file"
        try:
            payload = self.asset(parts[2])
        except KeyError:
            return 404, {"Content-Type": "text/plain"}, b"no such file"
        if parts[0] == "r":
            return 302, {"Location": f"/files/{parts[1]}/{parts[2]}?sig=abc123"}, b""
        return 200, {"Content-Type": "application/octet-stream"}, payload


def _header(headers: dict[str, str], name: str) -> str:
    """A request header by name, whatever its case on the wire."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")
