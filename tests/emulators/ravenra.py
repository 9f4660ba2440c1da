"""Ravenra as its page describes it (PROVIDERS.md, seed 000), with the quirks the page allows.

- `x-api-key` auth (401 otherwise); JSON bodies checked strictly per mode, unknown fields
  refused, so a test learns exactly what was sent.
- `POST /task/create-task` (preview, refine of a finished task, 3D from an image URL) and
  `POST /task/text-to-image`; the answer is the new record (its internal `id` is not the
  `taskId` to poll with).
- `GET /task/result/{taskId}`: PENDING, then IN_PROGRESS with rising progress; then the URLs
  appear while `status` stays IN_PROGRESS (`done_status`), the page's own warning. A preview
  has an OBJ + MTL; refine and image tasks add a texture, served as a PNG or as a zip bundle.
- Files come from extension-less URLs behind a 302, so formats must be told by their bytes.
- Switches: credits (402, or 403 with a credit message), a forbidden key (403), 404 for an
  unknown task, 429 with Retry-After, a failure with any status word and message, URLs that
  never appear, an MTL with hostile texture paths, and the bytes of every file.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .base import Emulator, Reply, json_reply, take_slot
from .trify3d import tiny_png

TEXTURE_NAME = "cube_diffuse.png"
CREATE_FIELDS = {
    "preview": ({"prompt", "mode"}, {"prompt", "mode"}),  # (allowed, required)
    "refine": ({"prompt", "mode", "parent_task_id"}, {"mode", "parent_task_id"}),
    "image": ({"prompt", "mode", "image_source"}, {"image_source"}),
}
TYPES = {
    "preview": "text-to-3d",
    "refine": "text-to-3d-refine",
    "image": "image-to-3d",
    "text-to-image": "text-to-image",
}


def cube_obj(mtllib: str = "cube.mtl", material: str = "CubeSkin") -> bytes:
    """A unit cube with UVs and normals, its MTL named by `mtllib` (not the download's name)."""
    lines = ["# Ravenra emulator cube", f"mtllib {mtllib}", "o RavenraCube"]
    corners = [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
    lines += [f"v {x} {y} {z}" for x, y, z in corners]
    lines += ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1"]
    lines += ["vn -1 0 0", "vn 1 0 0", "vn 0 -1 0", "vn 0 1 0", "vn 0 0 -1", "vn 0 0 1"]
    lines += [f"usemtl {material}", "s off"]
    quads = [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7), (1, 3, 7, 5), (2, 6, 8, 4)]
    for normal, quad in enumerate(quads, 1):
        lines.append("f " + " ".join(f"{v}/{t}/{normal}" for t, v in enumerate(quad, 1)))
    return ("\n".join(lines) + "\n").encode()


def cube_mtl(texture: str | None = TEXTURE_NAME, material: str = "CubeSkin") -> bytes:
    lines = ["# Ravenra emulator material", f"newmtl {material}", "Kd 0.8 0.8 0.8", "illum 2"]
    if texture:
        lines.append(f"map_Kd {texture}")
    return ("\n".join(lines) + "\n").encode()


def hostile_mtl(material: str = "CubeSkin") -> bytes:
    """Texture paths from the machine that made the file, and worse; CRLF line ends."""
    lines = [
        "# made on a workstation",
        f"newmtl {material}",
        "Kd 1 1 1",
        "map_Kd -s 1 1 1 C:\\Users\\x\\Cube Diffuse.PNG",  # Windows path, spaces, case
        "map_Bump -bm 0.5 /etc/passwd",  # a POSIX file outside
        "map_Ks ../x.png",  # climbs out
        "map_d\tcube diffuse.png",  # spaces for underscores, tab separated
        "map_Ns /home/artist/textures/cube_diffuse.png",  # an absolute path to a known name
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def texture_zip(png: bytes, mtl: bytes | None = None) -> bytes:
    """A texture bundle: the image in a sub-folder, maybe the MTL beside it."""
    members = [(f"textures/{TEXTURE_NAME}", png)] + ([("cube.mtl", mtl)] if mtl else [])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:  # a fixed time stamp: the same bytes on every call
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            archive.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@dataclass
class Task:
    task_id: str
    record_id: str
    mode: str
    body: dict
    created: str
    polls: int = 0
    parent: str | None = None
    outputs: dict[str, bool] = field(default_factory=dict)  # which files this task makes


class RavenraEmulator(Emulator):
    def __init__(
        self,
        *,
        api_key: str = "rvn_test_key",
        credits: int = 100,
        cost: int = 10,
        polls_to_complete: int = 2,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.credits = credits
        self.cost = cost
        self.polls_to_complete = polls_to_complete
        self.credit_status = 402  # or 403 (with a credit message)
        self.forbidden = False  # 403 "not allowed" for every API call
        self.running_status = "IN_PROGRESS"  # the status while working (after PENDING)
        self.done_status = "IN_PROGRESS"  # the status shown once the URLs are there
        self.fail: tuple[str, str] | None = None  # (status word, message) instead of files
        self.fail_field = "message"  # where the record carries the failure's reason
        self.never_ready = False  # URLs stay null for ever
        self.texture = "png"  # "png" | "zip" (bundle) | "zip+mtl" (bundle with the MTL)
        self.image_field = "thumbnail_url"  # where a text-to-image result's URL goes
        self.files: dict[str, bytes] = {
            "obj": cube_obj(),
            "mtl": cube_mtl(),
            "preview_mtl": cube_mtl(None),
            "png": tiny_png((30, 160, 90)),
            "thumb": tiny_png((10, 10, 10)),
            "image": tiny_png((250, 200, 20)),
        }
        self.rate: tuple[int, float] | None = None  # (requests, window seconds) per key
        self._recent: deque[float] = deque()
        self.poll_times: list[float] = []  # when each result poll arrived (monotonic)
        self.tasks: dict[str, Task] = {}
        self.charges = 0  # creates that spent credits (each stage of a job is one)
        self._state = threading.Lock()

    # -- test controls
    def create_task(self, mode: str = "preview", body: dict | None = None) -> str:
        """A task that already exists on the service (made by an earlier session)."""
        with self._state:
            return self._new_task(mode, body or {"prompt": "earlier", "mode": "preview"}).task_id

    def bodies(self, path: str = "/task/") -> list[dict]:
        """The JSON bodies the service received on POSTs under `path`, in order."""
        with self._lock:
            seen = [r for r in self.requests if r.method == "POST" and r.path.startswith(path)]
        return [json.loads(r.body) for r in seen]

    def texture_bytes(self) -> bytes:
        if self.texture == "png":
            return self.files["png"]
        mtl = self.files["mtl"] if self.texture == "zip+mtl" else None
        return texture_zip(self.files["png"], mtl)

    # -- routing
    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith(("/r/", "/cdn/")):
            return self._file(path)
        with self._state:
            key = next((v for k, v in headers.items() if k.lower() == "x-api-key"), None)
            if key != self.api_key:
                # Some services echo what they got; the add-on must not repeat it anywhere.
                return json_reply(401, {"message": f"Invalid API key {key}"})
            if self.forbidden:
                return json_reply(403, {"message": "This API key may not use the API"})
            retry_after = self._spend()
            if retry_after is not None:
                return json_reply(
                    429, {"message": "Too many requests"}, {"Retry-After": str(retry_after)}
                )
            if method == "POST" and path == "/task/create-task":
                return self._create(body, text_to_image=False)
            if method == "POST" and path == "/task/text-to-image":
                return self._create(body, text_to_image=True)
            if method == "GET" and path.startswith("/task/result/"):
                return self._result(path.removeprefix("/task/result/"))
        return json_reply(404, {"message": "Not found"})

    def _spend(self) -> int | None:
        if self.rate is None:
            return None
        return take_slot(self._recent, *self.rate)

    def _create(self, raw: bytes, *, text_to_image: bool) -> Reply:
        try:
            body = json.loads(raw or b"")
        except ValueError:
            return json_reply(400, {"message": "Body must be JSON"})
        if not isinstance(body, dict):
            return json_reply(400, {"message": "Body must be a JSON object"})
        mode = "text-to-image" if text_to_image else self._mode(body)
        problem = self._invalid(mode, body)
        if problem:
            return json_reply(400, {"message": problem})
        if self.credits < self.cost:
            return json_reply(self.credit_status, {"message": "Insufficient credits"})
        self.credits -= self.cost
        self.charges += 1
        task = self._new_task(mode, body)
        return json_reply(200, self._record(task))

    @staticmethod
    def _mode(body: dict) -> str:
        if body.get("mode") == "refine":
            return "refine"
        return "image" if "image_source" in body else "preview"

    def _invalid(self, mode: str, body: dict) -> str:
        if mode == "text-to-image":
            allowed, required = {"prompt"}, {"prompt"}
        else:
            allowed, required = CREATE_FIELDS[mode]
        if extra := sorted(set(body) - allowed):
            return f"unknown fields: {', '.join(extra)}"
        if missing := sorted(required - set(body)):
            return f"missing fields: {', '.join(missing)}"
        if "prompt" in required and not str(body.get("prompt", "")).strip():
            return "prompt is required"
        if body.get("mode") not in (None, "preview", "refine"):
            return f"unknown mode {body.get('mode')!r}"
        if mode == "preview" and body.get("mode") != "preview":
            return "mode must be preview"
        if mode == "image" and not str(body.get("image_source", "")).startswith("http"):
            return "image_source must be a URL"
        if mode == "refine":
            parent = self.tasks.get(str(body.get("parent_task_id")))
            if parent is None:
                return "parent task not found"
            if parent.polls < self.polls_to_complete:
                return "parent task is not finished"
        return ""

    def _new_task(self, mode: str, body: dict) -> Task:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        task = Task(f"tsk_{uuid.uuid4().hex[:16]}", uuid.uuid4().hex, mode, body, now)
        task.parent = body.get("parent_task_id")
        textured = mode in ("refine", "image")
        task.outputs = {
            "obj": mode != "text-to-image",
            "mtl": mode != "text-to-image",
            "texture": textured,
            "thumb": mode != "text-to-image",
            "image": mode == "text-to-image",
        }
        self.tasks[task.task_id] = task
        return task

    def _result(self, task_id: str) -> Reply:
        task = self.tasks.get(task_id)
        if task is None:
            return json_reply(404, {"message": "Task not found"})
        task.polls += 1
        self.poll_times.append(time.monotonic())
        return json_reply(200, self._record(task))

    def _record(self, task: Task) -> dict:
        urls = dict.fromkeys(("obj_url", "mtl_url", "texture_url", "thumbnail_url"))
        record = {
            "id": task.record_id,
            "taskId": task.task_id,
            "status": "PENDING",
            "progress": 0,
            "type": TYPES[task.mode],
            "prompt": task.body.get("prompt", ""),
            "parent_task_id": task.parent,
            **urls,
            "image_source_url": task.body.get("image_source"),
            "created_at": task.created,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": "user_emulator",
        }
        done = task.polls >= self.polls_to_complete
        if task.polls <= 1 and not done:
            return record
        if not done or self.never_ready:
            record["status"] = self.running_status
            record["progress"] = min(99, round(100 * task.polls / self.polls_to_complete))
            return record
        if self.fail is not None:
            word, message = self.fail
            record["status"] = word
            record[self.fail_field] = message
            return record
        record["status"] = self.done_status
        record["progress"] = 100
        base = f"{self.url}/r/{task.task_id}"
        for name, key in (("obj", "obj_url"), ("mtl", "mtl_url"), ("texture", "texture_url")):
            if task.outputs[name]:
                record[key] = f"{base}/{name}"
        if task.outputs["thumb"]:
            record["thumbnail_url"] = f"{base}/thumb"
        if task.outputs["image"]:
            record[self.image_field] = f"{base}/image"
        return record

    def _file(self, path: str) -> Reply:
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[1] not in self.tasks:
            return 404, {"Content-Type": "text/plain"}, b"no such file"
        if parts[0] == "r":  # like a CDN: the API hands out a redirect, without an extension
            return 302, {"Location": f"/cdn/{parts[1]}/{parts[2]}"}, b""
        task = self.tasks[parts[1]]
        name = parts[2]
        if name == "texture":
            payload = self.texture_bytes()
        elif name == "mtl" and not task.outputs["texture"]:
            payload = self.files["preview_mtl"]
        else:
            payload = self.files.get(name, b"")
        if not payload:
            return 404, {"Content-Type": "text/plain"}, b"no such file"
        return 200, {"Content-Type": "application/octet-stream"}, payload
