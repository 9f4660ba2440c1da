"""The contract every generation service implements. Plain Python: no bpy, thread-safe.

A service is one module: its facts (`ServiceInfo`: name, base URL, auth, capabilities,
documented limits) and a Provider whose steps (upload, create, poll, pick, download) the
engine runs in the order `flow()` declares. Everything that goes wrong is a ProviderError whose kind
decides what the engine does (wait and retry, or fail the job) and whose text is one line a
user can act on. Keys never reach these messages: the HTTP layer redacts them first.
"""

from __future__ import annotations

import base64
import enum
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .http import HttpClient

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
    role: str  # "model", "material" (MTL), "texture" (image or zip), "thumbnail", "image", ...


@dataclass(frozen=True)
class TaskStatus:
    state: TaskState
    progress: float = 0.0  # 0..1
    message: str = ""
    assets: tuple[Asset, ...] = ()
    wait: float | None = None  # seconds the service suggests before the next poll
    candidates: tuple[Asset, ...] = ()  # images the user picks from (Step.PICK)
    warnings: tuple[str, ...] = ()  # kept on the job: what the result lacks, and why


@dataclass(frozen=True)
class GenerationRequest:
    """What a service is asked. The last three fields are what earlier steps of the same job
    learned; the engine fills them in, never the user."""

    source: str  # "TEXT" | "IMAGE" | "MULTIVIEW"
    prompt: str = ""
    image_paths: tuple[str, ...] = ()
    options: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    upload_ref: str = ""  # the service's name for the uploaded image (Triverse: file_key)
    picked_path: str = ""  # the candidate image the user picked (Voxel-AI)
    previous_task_id: str = ""  # the earlier stage's task (Ravenra: the preview to refine)


class Step(enum.StrEnum):
    """What a job does next; a provider declares its flow as a sequence of these."""

    UPLOAD = "upload"  # send local files the create will refer to (free)
    CREATE = "create"  # start a task on the service: the step that may cost money
    POLL = "poll"  # ask until the task ends (or offers candidates)
    PICK = "pick"  # wait for the user to choose one of the task's candidates
    DOWNLOAD = "download"  # fetch the result (and optional extras) into the job folder


@dataclass(frozen=True)
class FlowStep:
    step: Step
    stage: str = ""  # which create/poll of a multi-stage flow ("images", "voxelize");
    # for DOWNLOAD, the asset role that must arrive ("" = "model"; "image" for text→image)

    @property
    def bucket(self) -> str:
        """The rate bucket its requests count against (see RateRule)."""
        return f"{self.step.value}:{self.stage}" if self.stage else self.step.value


@dataclass(frozen=True)
class RateRule:
    """A documented request budget: at most `requests` per `window` seconds.

    `bucket` "*" counts every API request; "upload" or "create:images" only those steps."""

    requests: int
    window: float
    bucket: str = "*"

    def applies_to(self, bucket: str) -> bool:
        return self.bucket in ("*", bucket) or bucket.startswith(self.bucket + ":")


@dataclass(frozen=True)
class OptionSpec:
    """One service option the sidebar offers (scripts may pass any the service takes).

    The kind follows the default: a str with `choices` is a choice, a plain str is text, a
    bool a switch, an int a whole number in lo..hi. A value equal to `default` is not sent,
    so the service's own default applies (0 for a number means "the service's default").
    """

    name: str  # the key in GenerationRequest.options
    label: str
    description: str
    default: str | int | bool = ""
    choices: tuple[tuple[str, str], ...] = ()  # (value, label); value "" = service default
    lo: int = 0
    hi: int = 0
    sources: frozenset[str] = frozenset({"TEXT", "IMAGE", "MULTIVIEW"})


def chosen_options(
    specs: Sequence[OptionSpec],
    values: Mapping[str, object],
    source: str,
    changed_only: bool = True,
) -> dict[str, object]:
    """The options for this source that a person changed from their defaults (the rest are
    left to the service), or all of them that have a value. `values` holds what the sidebar
    shows, by option name; "" (and 0 for a number whose default is 0) means "not set"."""
    chosen: dict[str, object] = {}
    for spec in specs:
        value = values.get(spec.name, spec.default)
        unset = value in ("", None) or (value == 0 and spec.default == 0 and spec.hi > 0)
        if source not in spec.sources or unset or (changed_only and value == spec.default):
            continue
        chosen[spec.name] = value
    return chosen


@dataclass(frozen=True)
class ServiceInfo:
    """Everything static about one service, declared in its own module."""

    id: str
    name: str
    default_base_url: str
    key_page_url: str
    description: str
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    capabilities: frozenset[Capability] = frozenset()
    rate_rules: tuple[RateRule, ...] = ()
    image_input: str = "file"  # images as "file" (sent as data), "url" (fetched), or "both"
    idempotent_create: bool = False  # the service dedupes a re-sent create by its key
    free_stages: frozenset[str] = frozenset()  # create stages that cost nothing (re-sendable)
    poll_interval: float = 5.0  # seconds between polls when the service suggests nothing
    job_lifetime: float | None = None  # documented seconds after which a task ends
    options: tuple[OptionSpec, ...] = ()  # what the sidebar offers, in order
    voxel_output: bool = False  # results are MagicaVoxel files: the VOX import choices apply

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources this service generates from, in the sidebar's order."""
        offered = {Capability.TEXT: "TEXT", Capability.IMAGE: "IMAGE"}
        offered[Capability.MULTIVIEW] = "MULTIVIEW"
        return tuple(v for k, v in offered.items() if k in self.capabilities)

    @property
    def env_key(self) -> str:
        return f"CONJURE_{self.id.upper()}_API_KEY"

    @property
    def env_base_url(self) -> str:
        return f"CONJURE_{self.id.upper()}_BASE_URL"


STANDARD_FLOW = (FlowStep(Step.CREATE), FlowStep(Step.POLL), FlowStep(Step.DOWNLOAD))


class Provider(ABC):
    """One service's steps. Each method is one short blocking call made on a worker thread;
    the engine decides when to call it, so a provider never sleeps, retries or paces."""

    info: ServiceInfo

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    @property
    def id(self) -> str:
        return self.info.id

    def flow(self, request: GenerationRequest) -> tuple[FlowStep, ...]:
        return STANDARD_FLOW

    def upload(self, request: GenerationRequest) -> str:
        """Send the local image the create refers to; returns the service's name for it."""
        raise ProviderError(ErrorKind.BAD_REQUEST, f"{self.info.name} takes no uploads")

    def can_refine(self, request: GenerationRequest) -> bool:
        """Whether a finished task made from `request` can be refined by a new job."""
        return False

    def refine_options(self, task_id: str) -> dict[str, object]:
        """The options of a new job that refines finished task `task_id`."""
        raise ProviderError(ErrorKind.BAD_REQUEST, f"{self.info.name} cannot refine a model")

    @abstractmethod
    def create(self, request: GenerationRequest, idempotency_key: str, stage: str = "") -> str:
        """Start a task and return its id. May raise ProviderError."""

    @abstractmethod
    def poll(self, task_id: str, stage: str = "") -> TaskStatus:
        """The task's current state. May raise ProviderError."""

    def poll_delay(self, polls: int) -> float:
        """Seconds before poll number `polls` + 1 when the service suggests nothing."""
        return self.info.poll_interval

    def download(self, url: str, dest: str, cancelled: Callable[[], bool]) -> int:
        return self.http.download(url, dest, cancelled=cancelled)

    def check(self, request: GenerationRequest) -> None:
        """Reject what this service cannot do before anything is sent."""
        wanted = {
            "TEXT": Capability.TEXT,
            "IMAGE": Capability.IMAGE,
            "MULTIVIEW": Capability.MULTIVIEW,
        }.get(request.source)
        if wanted is None or wanted not in self.info.capabilities:
            raise ProviderError(
                ErrorKind.BAD_REQUEST,
                f"{self.info.name} cannot generate from {request.source.lower()}",
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


def whole_number(value: object) -> int | None:
    """An int as options carry it (int, integral float, digits from a CLI); never a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def image_reference(path: str) -> str:
    """What goes in a service's image-URL field: a URL as given, a local file as data."""
    return path if is_url(path) else image_data_url(path)


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
