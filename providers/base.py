"""The contract every generation service implements. Plain Python: no bpy, thread-safe.

A service is one module: its facts (`ServiceInfo`: name, base URL, auth, capabilities,
documented limits) and a Provider whose steps (upload, create, poll, pick, download) the
engine runs in the order `flow()` declares. Everything that goes wrong is a ProviderError
(`errors.py`) whose kind decides what the engine does (wait and retry, or fail the job) and
whose text is one line a user can act on. Keys never reach these messages: the HTTP layer
redacts them first. A provider talks to its service only through `Http`, the part of
`http.HttpClient` it needs; what several services' modules share is in `common.py`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# The Blender-side modules import these two from here too.
from .errors import ErrorKind, ProviderError


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


@dataclass(frozen=True)
class Asset:
    url: str
    role: str  # "model", "material" (MTL), "texture" (image or zip), "thumbnail", "image", ...


class ChargeState(enum.StrEnum):
    """Where a stage's cost stands, as the service said."""

    FROZEN = "frozen"  # held for the task until it ends (Triverse)
    CHARGED = "charged"  # spent
    REFUNDED = "refunded"  # given back (Voxel-AI's failed voxelize, Triverse's failed task)


@dataclass(frozen=True)
class Charge:
    """What the service said a stage costs, in its own unit ("credits", "tokens", or
    "generation" where no price is documented). `amount` None: it said nothing of the
    amount this time (a later answer may); `balance`: what it said is left, when it did."""

    amount: float | None
    unit: str
    state: ChargeState
    balance: float | None = None
    note: str = ""  # why the amount is unknown when the answer had one we could not read


@dataclass(frozen=True)
class Created:
    """A create's answer: the task, and what the service said it costs."""

    task_id: str
    charge: Charge | None = None


@dataclass(frozen=True)
class TaskStatus:
    state: TaskState
    progress: float = 0.0  # 0..1
    message: str = ""
    assets: tuple[Asset, ...] = ()
    wait: float | None = None  # seconds the service suggests before the next poll
    candidates: tuple[Asset, ...] = ()  # images the user picks from (Step.PICK)
    warnings: tuple[str, ...] = ()  # kept on the job: what the result lacks, and why
    charge: Charge | None = None  # what the service now says the task costs


@dataclass(frozen=True)
class GenerationRequest:
    """What a service is asked. The last three fields are what earlier steps of the same job
    learned; the engine fills them in, never the user."""

    source: str  # "TEXT" | "IMAGE" | "MULTIVIEW"
    prompt: str = ""
    image_paths: tuple[str, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)  # as given; check() checks
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
    max_answer_bytes: int | None = None  # a longer JSON answer is refused (None: 8 MiB)
    options: tuple[OptionSpec, ...] = ()  # what the sidebar offers, in order
    voxel_output: bool = False  # results are MagicaVoxel files: the VOX import choices apply
    # The options that may change what a job costs: a quote goes by earlier jobs that had the
    # same source and these options (never by a price written here).
    price_options: tuple[str, ...] = ()
    # An option that caps the model's faces on the server: a face budget uses it when the
    # budget is within the option's range (else Blender's Decimate does it on import).
    face_limit_option: str = ""

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


class Http(Protocol):
    """What a provider may ask of its HTTP client: `http.HttpClient`, or a test's stub. Each
    call is one request; failures are ProviderErrors whose text the client has redacted."""

    def get_json(self, path: str) -> Any: ...

    def post_json(
        self, path: str, body: dict[str, Any], idempotency_key: str | None = None
    ) -> Any: ...

    def post_file(
        self, path: str, field: str, filename: str, data: bytes, content_type: str
    ) -> Any: ...

    def download(self, url: str, dest: str, *, cancelled: Callable[[], bool]) -> int: ...

    def redact(self, text: str) -> str: ...


class Provider(ABC):
    """One service's steps. Each method is one short blocking call made on a worker thread;
    the engine decides when to call it, so a provider never sleeps, retries or paces."""

    info: ServiceInfo

    def __init__(self, http: Http) -> None:
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

    def parent_task(self, request: GenerationRequest) -> str:
        """The earlier task a request builds on (what it refines), '' when none."""
        return ""

    def refine_options(self, task_id: str) -> dict[str, object]:
        """The options of a new job that refines finished task `task_id`."""
        raise ProviderError(ErrorKind.BAD_REQUEST, f"{self.info.name} cannot refine a model")

    @abstractmethod
    def create(self, request: GenerationRequest, idempotency_key: str, stage: str = "") -> Created:
        """Start a task: its id and what it costs. May raise ProviderError."""

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


def is_url(path: str) -> bool:
    """Whether an image "path" of a request is a URL (else it is a local file)."""
    return path.startswith(("http://", "https://"))
