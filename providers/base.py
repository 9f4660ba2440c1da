"""The contract every generation service implements. Plain Python: no bpy, thread-safe.

A provider turns a GenerationRequest into a task id (`submit`) and a task id into a
normalized TaskStatus (`poll`). Everything that goes wrong is a ProviderError whose kind
decides what the engine does (wait and retry, or fail the job) and whose text is one line a
user can act on. Keys never reach these messages: the HTTP layer redacts them first.
"""

from __future__ import annotations

import base64
import enum
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_IMAGE_BYTES = 20 * 1024 * 1024
IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


class Capability(enum.Enum):
    TEXT = "text"
    IMAGE = "image"
    MULTIVIEW = "multiview"
    REFINE = "refine"
    TEXT_TO_IMAGE = "text-to-image"
    CANDIDATES = "candidates"


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class ErrorKind(enum.Enum):
    AUTH = "auth"
    CREDITS = "credits"
    RATE_LIMIT = "rate-limit"
    BAD_REQUEST = "bad-request"
    NOT_FOUND = "not-found"
    TRANSIENT = "transient"
    SERVER = "server"
    NETWORK = "network"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad-response"


# What the user reads first; the detail (redacted, one line) follows after a colon.
USER_MESSAGES: dict[ErrorKind, str] = {
    ErrorKind.AUTH: "The service rejected the API key; check it in the add-on preferences",
    ErrorKind.CREDITS: "Not enough credits on the service account",
    ErrorKind.RATE_LIMIT: "The service is rate limiting requests; try again shortly",
    ErrorKind.BAD_REQUEST: "The service refused the request",
    ErrorKind.NOT_FOUND: "The service does not know this task",
    ErrorKind.TRANSIENT: "The service is temporarily unavailable",
    ErrorKind.SERVER: "The service had an internal error",
    ErrorKind.NETWORK: "Could not reach the service",
    ErrorKind.TIMEOUT: "The service did not answer in time",
    ErrorKind.BAD_RESPONSE: "The service sent a response this add-on does not understand",
}
RETRYABLE = {ErrorKind.RATE_LIMIT, ErrorKind.TRANSIENT, ErrorKind.NETWORK, ErrorKind.TIMEOUT}


class ProviderError(Exception):
    """A failure with a kind the engine acts on; str() is one line for the user."""

    def __init__(self, kind: ErrorKind, detail: str = "", retry_after: float | None = None):
        self.kind = kind
        self.detail = " ".join(detail.split())[:300]
        self.retry_after = retry_after
        super().__init__(str(self))

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __str__(self) -> str:
        base = USER_MESSAGES[self.kind]
        return f"{base}: {self.detail}" if self.detail else base


@dataclass(frozen=True)
class Asset:
    url: str
    role: str  # "model", "thumbnail", "texture", "image"


@dataclass(frozen=True)
class TaskStatus:
    state: TaskState
    progress: float = 0.0  # 0..1
    message: str = ""
    assets: tuple[Asset, ...] = ()
    wait: float | None = None  # seconds the service suggests before the next poll


@dataclass(frozen=True)
class GenerationRequest:
    source: str  # "TEXT" | "IMAGE" | "MULTIVIEW"
    prompt: str = ""
    image_paths: tuple[str, ...] = ()
    options: Mapping[str, str | int | float | bool] = field(default_factory=dict)


class Provider(ABC):
    id: str = ""
    capabilities: frozenset[Capability] = frozenset()
    supports_idempotency: bool = False
    poll_interval: float = 5.0  # seconds between polls when the service suggests nothing

    @abstractmethod
    def submit(self, request: GenerationRequest, idempotency_key: str) -> str:
        """Start a task and return its id. May raise ProviderError."""

    @abstractmethod
    def poll(self, task_id: str) -> TaskStatus:
        """The task's current state. May raise ProviderError."""

    def check(self, request: GenerationRequest) -> None:
        """Reject what this service cannot do before anything is sent."""
        wanted = {
            "TEXT": Capability.TEXT,
            "IMAGE": Capability.IMAGE,
            "MULTIVIEW": Capability.MULTIVIEW,
        }.get(request.source)
        if wanted is None or wanted not in self.capabilities:
            raise ProviderError(
                ErrorKind.BAD_REQUEST, f"{self.id} cannot generate from {request.source.lower()}"
            )


def progress_fraction(value: object) -> float:
    """Progress as services send it (0..1, 0..100, "45%") → 0..1."""
    if isinstance(value, str):
        value = value.strip().rstrip("%")
        try:
            number = float(value) / 100.0
        except ValueError:
            return 0.0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) / (100.0 if value > 1 else 1.0)
    else:
        return 0.0
    return min(max(number, 0.0), 1.0)


def image_data_url(path: str) -> str:
    """A local PNG/JPEG/WebP as a data: URL, after checking it really is one."""
    try:
        size = os.path.getsize(path)
        if size > MAX_IMAGE_BYTES:
            raise ProviderError(
                ErrorKind.BAD_REQUEST, f"image larger than 20 MB: {os.path.basename(path)}"
            )
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ProviderError(
            ErrorKind.BAD_REQUEST, f"cannot read image {os.path.basename(path)}: {exc.strerror}"
        ) from None
    mime = next((m for magic, m in IMAGE_TYPES.items() if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        raise ProviderError(
            ErrorKind.BAD_REQUEST, f"not a PNG, JPEG or WebP image: {os.path.basename(path)}"
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
