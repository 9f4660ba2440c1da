"""Voxel-AI as PROVIDERS.md and seed 002 describe it: bearer tokens per user, a token balance
(voxelize costs 1 up front, refunded once if the job fails), the images rate limit of one
request per window per user, jobs that go queued → running → completed over polls, 502
{"transient": true} on demand, and results inline as base64: three real PNGs, a real .vox
whose size follows `voxel_size`, and a hostile `filename`."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import voxwriter

from .base import Emulator, Reply, json_reply
from .trify3d import tiny_png

IMAGES_PATH = "/api/generate/images"
VOXELIZE_PATH = "/api/generate/voxelize"
STATUS_PATH = "/api/generate/status"
CANDIDATE_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230))
INT_RANGES = {"voxel_size": (8, 128), "palette_size": (2, 256)}
CHOICES = {"texturing": ("textured", "gray"), "color": ("surface", "vertex")}


def vox_for(voxel_size: int) -> bytes:
    """A real .vox: one row of voxel_size // 8 voxels, so a test can see the option arrived."""
    count = max(1, voxel_size // 8)
    return voxwriter.vox_file(
        voxwriter.model((count, 1, 1), [(x, 0, 0, 1 + x) for x in range(count)])
    )


@dataclass
class VoxelJob:
    job_id: str
    owner: str
    kind: str  # "images" | "voxelize"
    body: dict
    image: bytes = b""  # what voxelize was sent, decoded
    polls: int = 0
    charged: bool = False
    refunded: bool = False
    fail: bool = False


class VoxelAIEmulator(Emulator):
    def __init__(
        self,
        *,
        api_key: str = "vxl_test_key",
        balance: int | None = 5,
        polls_to_complete: int = 3,
        images_window: float = 15.0,
        retry_after: int | None = None,
        filename: str = "../../evil.vox",
        prefixed_images: bool = False,
    ) -> None:
        super().__init__()
        self.users: dict[str, str] = {}  # bearer token → user
        self.balances: dict[str, int | None] = {}  # None: no balance record (NO_BALANCE)
        self.add_user(api_key, "alice", balance)
        self.polls_to_complete = polls_to_complete
        self.images_window = images_window
        self.retry_after = retry_after  # the page documents no Retry-After on 429
        self.filename = filename
        self.prefixed_images = prefixed_images  # image_base64 with a data: prefix
        self.held: set[str] = set()  # job kinds that stay running while held
        self.fail_voxelize = False
        self.refused = 0  # /images requests answered 429
        self.charges = 0  # voxelize tokens taken up front (a refund does not undo the count)
        self.images_accepted: list[float] = []  # monotonic times of accepted /images
        self.candidate_pngs = [tiny_png(c) for c in CANDIDATE_COLOURS]
        self.jobs: dict[str, VoxelJob] = {}
        self._last_images: dict[str, float] = {}
        self._state = threading.Lock()

    # -- test controls
    def add_user(self, api_key: str, user: str, balance: int | None = 5) -> None:
        self.users[api_key] = user
        self.balances[user] = balance

    def balance(self, user: str = "alice") -> int | None:
        with self._state:
            return self.balances[user]

    def use_images_window(self, user: str = "alice") -> None:
        """As if the user's browser had just asked for images: the window is taken."""
        with self._state:
            self._last_images[user] = time.monotonic()

    def create_job(self, kind: str, owner: str = "alice", body: dict | None = None) -> str:
        """A job that exists on the service already (submitted by an earlier session)."""
        with self._state:
            return self._new_job(kind, owner, body or {"voxel_size": 32}).job_id

    def transient(self, times: int = 1) -> None:
        """The next status checks answer 502 {"transient": true}: the job keeps running."""
        self.inject(
            status=502,
            body={"error": "Upstream status check failed", "transient": True},
            method="GET",
            path=STATUS_PATH,
            times=times,
        )

    def bodies(self, path: str) -> list[dict]:
        with self._lock:
            return [json.loads(r.body) for r in self.requests if r.path == path]

    # -- routing
    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(path)
        with self._state:
            auth = headers.get("Authorization", "")
            user = (
                self.users.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
            )
            if user is None:
                return json_reply(401, {"error": "Unauthorized"})
            if method == "POST" and url.path in (IMAGES_PATH, VOXELIZE_PATH):
                try:
                    data = json.loads(body or b"{}")
                except ValueError:
                    return json_reply(400, {"error": "Invalid request body"})
                if not isinstance(data, dict):
                    return json_reply(400, {"error": "Invalid request body"})
                if url.path == IMAGES_PATH:
                    return self._images(user, data)
                return self._voxelize(user, data)
            if method == "GET" and url.path == STATUS_PATH:
                job_id = parse_qs(url.query).get("jobId", [""])[0]
                return self._status(user, job_id)
        return json_reply(404, {"error": "Not found"})

    def _new_job(self, kind: str, owner: str, body: dict) -> VoxelJob:
        job = VoxelJob(str(uuid.uuid4()), owner, kind, body)
        job.fail = kind == "voxelize" and self.fail_voxelize
        self.jobs[job.job_id] = job
        return job

    def _images(self, user: str, data: dict) -> Reply:
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 500:
            return json_reply(400, {"error": "prompt must be 1 to 500 characters"})
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            return json_reply(400, {"error": "seed must be an integer"})
        now = time.monotonic()
        last = self._last_images.get(user)
        if last is not None and now - last < self.images_window:
            self.refused += 1
            extra = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
            return json_reply(
                429, {"error": "Rate limit exceeded: 1 request per 15 seconds"}, extra
            )
        self._last_images[user] = now
        self.images_accepted.append(now)
        return json_reply(200, {"jobId": self._new_job("images", user, data).job_id})

    def _voxelize(self, user: str, data: dict) -> Reply:
        image = data.get("image_base64")
        if not isinstance(image, str) or not image:
            return json_reply(400, {"error": "image_base64 is required"})
        if image.startswith("data:"):
            image = image.partition(",")[2]
        try:
            decoded = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            return json_reply(400, {"error": "image_base64 is not valid base64"})
        for name, (lo, hi) in INT_RANGES.items():
            value = data.get(name, lo)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                return json_reply(400, {"error": f"{name} must be {lo} to {hi}"})
        for name, choices in CHOICES.items():
            if data.get(name, choices[0]) not in choices:
                return json_reply(400, {"error": f"{name} must be one of {choices}"})
        if not isinstance(data.get("fill", False), bool):
            return json_reply(400, {"error": "fill must be a boolean"})
        balance = self.balances.get(user)
        if balance is None:
            return json_reply(403, {"error": "No token balance found", "code": "NO_BALANCE"})
        if balance < 1:
            return json_reply(402, {"error": "Out of tokens", "code": "INSUFFICIENT_TOKENS"})
        self.balances[user] = balance - 1
        self.charges += 1
        job = self._new_job("voxelize", user, data)
        job.image, job.charged = decoded, True
        return json_reply(200, {"jobId": job.job_id, "balance": balance - 1, "charged": True})

    def _status(self, user: str, job_id: str) -> Reply:
        if not job_id:
            return json_reply(400, {"error": "jobId is required"})
        job = self.jobs.get(job_id)
        if job is None:
            return json_reply(404, {"error": "Job not found"})
        if job.owner != user:
            return json_reply(403, {"error": "Forbidden: not your job"})
        job.polls += 1
        if job.kind in self.held or job.polls < self.polls_to_complete:
            if job.polls == 1:
                return json_reply(200, {"state": "queued", "delayTime": 1820})
            ran = 1000 * (job.polls - 1)
            return json_reply(200, {"state": "running", "delayTime": 1820, "executionTime": ran})
        if job.fail:
            if job.charged and not job.refunded:  # refunded here, exactly once
                job.refunded = True
                self.balances[job.owner] = (self.balances[job.owner] or 0) + 1
            failed = {"state": "failed", "error": "Worker ran out of GPU memory"}
            if job.kind == "voxelize":  # as the page's status answer: the balance after it
                failed |= {"balance": self.balances[job.owner], "charged": job.charged}
            return json_reply(200, failed)
        return json_reply(200, {"state": "completed", "executionTime": 38000, **self._result(job)})

    def _result(self, job: VoxelJob) -> dict:
        if job.kind == "images":
            images = [
                {"index": i, "image_base64": self._encode(png, "data:image/png;base64,")}
                for i, png in enumerate(self.candidate_pngs)
            ]
            # Served out of order on purpose: `index` is what says which image is which.
            output = {"seed": job.body.get("seed", 12345), "images": images[::-1]}
            return {"output": output}
        vox = vox_for(int(job.body.get("voxel_size", 32)))
        return {
            "output": {"filename": self.filename, "vox_base64": self._encode(vox, "")},
            "balance": self.balances[job.owner],
            "charged": job.charged,
        }

    def _encode(self, data: bytes, prefix: str) -> str:
        text = base64.b64encode(data).decode("ascii")
        return prefix + text if self.prefixed_images and prefix else text
