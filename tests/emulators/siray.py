"""Siray as seed 001 and PROVIDERS.md describe it, with the quirks they warn of.

- Bearer auth (401 otherwise, echoing the token it got: the add-on must never repeat it).
- Every answer is the envelope `{code, message, data}`; errors keep it too, with HTTP 4xx.
- `POST /v1/3d/generations`: the body is checked strictly per model (unknown fields, types,
  enums, `image` a URL or a data:image URL), so a test learns exactly what was sent; the
  answer is `{"code": "success", "message": "", "data": {"task_id": ...}}`.
- `GET /v1/3d/generations/{task_id}`: NOT_START → SUBMITTED → QUEUED → IN_PROGRESS ("45%") →
  SUCCESS over polls (`steps`), or a failure word with a `fail_reason` (`fail`).
- Outputs are extension-less `/redirect/...` URLs answering 302 to `/cdn/...`, serving a GLB
  (built here), a zip of OBJ + MTL + PNG, a bare OBJ, or any bytes a test sets.
- Switches: credits (402, 403 or HTTP 200 with `code != "success"`), `refuse()` for any
  HTTP-200 refusal, 404 (or another status) for an unknown task, a rate window answering 429
  with Retry-After, and `inject()` (base class) for anything else.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
import uuid
import zipfile
from collections import deque
from dataclasses import dataclass, field

from .base import Emulator, Fault, Reply, json_reply, take_slot
from .glb import triangle_glb
from .ravenra import TEXTURE_NAME, cube_mtl, cube_obj
from .trify3d import tiny_png

GENERATIONS_PATH = "/v1/3d/generations"
HUNYUAN_TEXT = "tencent/hunyuan3d-v2.5-rapid-text-to-3d"
HUNYUAN_IMAGE = "tencent/hunyuan3d-v2.5-rapid-image-to-3d"
TRIPO_IMAGE = "tripo/tripo3d-v2.5-image-to-3d"

BOOL, INT = "bool", "int"
# Per model: its input field, and every other field with its type or its choices.
MODELS: dict[str, tuple[str, dict[str, object]]] = {
    HUNYUAN_TEXT: ("prompt", {"pbr_enable": BOOL, "texture_enable": BOOL}),
    HUNYUAN_IMAGE: ("image", {"pbr_enable": BOOL, "texture_enable": BOOL}),
    TRIPO_IMAGE: (
        "image",
        {
            "auto_size": BOOL,
            "face_limit": INT,
            "pbr_enable": BOOL,
            "quad": BOOL,
            "seed": INT,
            "texture_alignment": ("original_image", "geometry"),
            "texture_enable": BOOL,
            "texture_quality": ("standard", "HD"),
            "texture_seed": INT,
        },
    ),
}
DEFAULT_STEPS = (
    ("NOT_START", "0%"),
    ("SUBMITTED", "0%"),
    ("QUEUED", "0%"),
    ("IN_PROGRESS", "45%"),
    ("SUCCESS", "100%"),
)


def tiny_glb() -> bytes:
    """A valid GLB 2.0: one triangle (POSITION + indices) in a BIN chunk, one node, one scene."""
    return triangle_glb("SirayTriangle", generator="Conjure Siray emulator", indexed=True)


def obj_zip(png: bytes | None = None) -> bytes:
    """A model bundle: OBJ (naming its MTL), MTL (naming its texture) and the PNG."""
    members = [
        ("model.obj", cube_obj(mtllib="model.mtl")),
        ("model.mtl", cube_mtl()),
        (TEXTURE_NAME, png or tiny_png((30, 160, 90))),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:  # a fixed time stamp: the same bytes on every call
            archive.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def envelope(data: object, code: str = "success", message: str = "") -> dict:
    return {"code": code, "message": message, "data": data}


@dataclass
class Task:
    task_id: str
    model: str
    body: dict
    submitted: int
    polls: int = 0
    outputs: list[str] = field(default_factory=list)  # names under /redirect/<task_id>/


class SirayEmulator(Emulator):
    def __init__(self, *, api_key: str = "sk-siray-test", credits: int = 100, cost: int = 10):
        super().__init__()
        self.api_key = api_key
        self.credits = credits
        self.cost = cost
        self.credit_status = 402  # 403, or 200 (an envelope with code != "success")
        self.steps: tuple[tuple[str, str], ...] = DEFAULT_STEPS  # one per poll; the last stays
        self.fail: tuple[str, str] | None = None  # (status word, fail_reason) replaces SUCCESS
        self.output = "glb"  # what "model" serves: "glb" | "zip" | "obj" | a key of `files`
        self.output_names: list[str] = ["model"]  # each task's outputs, in order
        self.files: dict[str, bytes] = {
            "glb": tiny_glb(),
            "zip": obj_zip(),
            "obj": cube_obj(mtllib="model.mtl"),
            "png": tiny_png((240, 200, 30)),
        }
        self.unknown_task_status = 404  # the HTTP status for a task it does not know
        self.rate: tuple[int, float] | None = None  # (requests, window seconds) per key
        self._recent: deque[float] = deque()
        self.tasks: dict[str, Task] = {}
        self.charges = 0  # creates that spent credits
        self._state = threading.Lock()

    # -- test controls
    def create_task(self, body: dict | None = None) -> str:
        """A task that already exists on the service (made by an earlier session)."""
        with self._state:
            return self._new_task(body or {"model": HUNYUAN_TEXT, "prompt": "earlier"}).task_id

    def bodies(self) -> list[dict]:
        """The JSON bodies of every create the service received, in order."""
        with self._lock:
            seen = [r for r in self.requests if r.method == "POST"]
        return [json.loads(r.body) for r in seen]

    def refuse(self, code: str, message: str, method: str = "POST", times: int = 1) -> Fault:
        """The next `times` API calls of `method` answer HTTP 200 with `code != "success"`."""
        return self.inject(
            status=200,
            body=envelope(None, code, message),
            method=method,
            path=GENERATIONS_PATH,
            times=times,
        )

    # -- routing
    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith(("/redirect/", "/cdn/")):
            return self._file(path)
        with self._state:
            auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            if auth != f"Bearer {self.api_key}":
                token = auth.removeprefix("Bearer ")
                return json_reply(401, envelope(None, "unauthorized", f"Invalid token {token}"))
            retry_after = self._spend()
            if retry_after is not None:
                return json_reply(
                    429,
                    envelope(None, "rate_limit", "Too many requests"),
                    {"Retry-After": str(retry_after)},
                )
            if method == "POST" and path == GENERATIONS_PATH:
                return self._create(body)
            if method == "GET" and path.startswith(GENERATIONS_PATH + "/"):
                return self._poll(path.removeprefix(GENERATIONS_PATH + "/"))
        return json_reply(404, envelope(None, "not_found", "Not found"))

    def _spend(self) -> int | None:
        if self.rate is None:
            return None
        return take_slot(self._recent, *self.rate)

    def _create(self, raw: bytes) -> Reply:
        try:
            body = json.loads(raw or b"")
        except ValueError:
            return json_reply(400, envelope(None, "invalid_request", "Body must be JSON"))
        problem = self._invalid(body)
        if problem:
            return json_reply(400, envelope(None, "invalid_request", problem))
        if self.credits < self.cost:
            status = self.credit_status
            return json_reply(
                status,
                envelope(None, "insufficient_user_quota", "user quota is not enough, top up"),
            )
        self.credits -= self.cost
        self.charges += 1
        task = self._new_task(body)
        return json_reply(200, envelope({"task_id": task.task_id}))

    @staticmethod
    def _invalid(body: object) -> str:
        if not isinstance(body, dict):
            return "Body must be a JSON object"
        model = body.get("model")
        if model not in MODELS:
            return f"model {model!r} not found"
        source, fields = MODELS[model]
        if extra := sorted(set(body) - {"model", source, *fields}):
            return f"unknown fields for {model}: {', '.join(extra)}"
        value = body.get(source)
        if not isinstance(value, str) or not value.strip():
            return f"{source} is required"
        if source == "image" and not _is_image_reference(value):
            return "image must be an image URL or a data URL"
        for name, kind in fields.items():
            if name not in body:
                continue
            given = body[name]
            if kind == BOOL and not isinstance(given, bool):
                return f"{name} must be a boolean"
            if kind == INT and (isinstance(given, bool) or not isinstance(given, int)):
                return f"{name} must be an integer"
            if isinstance(kind, tuple) and given not in kind:
                return f"{name} must be one of {', '.join(kind)}"
        seed = body.get("seed")
        if isinstance(seed, int) and not -1 <= seed <= 9_999_999_999:
            return "seed out of range"
        return ""

    def _new_task(self, body: dict) -> Task:
        task = Task(f"3d_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}", body["model"], body, 0)
        task.submitted = int(time.time())
        task.outputs = list(self.output_names)
        self.tasks[task.task_id] = task
        return task

    def _poll(self, task_id: str) -> Reply:
        task = self.tasks.get(task_id)
        if task is None:
            return json_reply(
                self.unknown_task_status, envelope(None, "task_not_exist", "task_not_exist")
            )
        task.polls += 1
        word, progress = self.steps[min(task.polls, len(self.steps)) - 1]
        outputs: list[str] = []
        fail_reason = ""
        if word == "SUCCESS" and self.fail is not None:
            word, fail_reason = self.fail
        elif word == "SUCCESS":
            outputs = [f"{self.url}/redirect/{task.task_id}/{name}" for name in task.outputs]
        waiting = word in ("NOT_START", "SUBMITTED", "QUEUED")
        started = 0 if waiting else task.submitted + 1
        finished = 0 if waiting or word == "IN_PROGRESS" else int(time.time())
        data = {
            "task_id": task.task_id,
            "status": word,
            "progress": progress,
            "outputs": outputs,
            "submit_time": task.submitted,
            "start_time": started,
            "finish_time": finished,
            "fail_reason": fail_reason,
        }
        return json_reply(200, envelope(data))

    def _file(self, path: str) -> Reply:
        parts = path.strip("/").split("/")
        task = self.tasks.get(parts[1]) if len(parts) == 3 else None
        if task is None or parts[2] not in task.outputs:
            return 404, {"Content-Type": "text/plain"}, b"no such file"
        if parts[0] == "redirect":  # like a CDN: the API hands out a redirect, no extension
            return 302, {"Location": f"/cdn/{parts[1]}/{parts[2]}"}, b""
        name = parts[2]
        if name == "model":
            payload = self.files.get(self.output, b"")
        elif name.endswith(".png"):
            payload = self.files["png"]
        else:
            payload = self.files.get(name, b"")
        if not payload:
            return 404, {"Content-Type": "text/plain"}, b"no such file"
        return 200, {"Content-Type": "application/octet-stream"}, payload


def _is_image_reference(value: str) -> bool:
    """An http(s) URL, or a data: URL whose base64 decodes to a PNG, JPEG or WebP."""
    if value.startswith(("http://", "https://")):
        return True
    header, comma, payload = value.partition(",")
    if not comma or not header.startswith("data:image/") or not header.endswith(";base64"):
        return False
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return False
    return data.startswith((b"\x89PNG", b"\xff\xd8\xff")) or data[8:12] == b"WEBP"
