"""Ravenra: text or image to a textured OBJ (+ MTL + texture), and text to image (seed 000).

What the page (PROVIDERS.md, seed 000) leaves open, and what this module does about it:
- Payloads are not shown. Preview sends `{"prompt", "mode": "preview"}` (public docs); refine
  sends `{"mode": "refine", "parent_task_id"}` (+ `prompt` when given); image sends `prompt`
  (when given) + `image_source` (a URL); text-to-image sends `{"prompt"}`.
- The create answer is not shown: the task id is read from `taskId` ("the identifier to use
  when polling"), else `task_id` or `result`, also inside a `{"data": ...}` wrapper; the
  record's `id` is an internal id and is used only when nothing else is there.
- Status words beyond IN_PROGRESS are unknown ("may vary"): non-null URLs decide completion,
  failure-like words fail the job with the record's own message, any other word keeps polling.
- No idempotency key, no job lifetime, no rate limit and no error codes are documented: a
  create is never re-sent blindly, a task that never finishes polls until the user cancels,
  and a 403 that speaks of credits is read as "not enough credits" (402 already is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .base import (
    Asset,
    Capability,
    Created,
    FlowStep,
    GenerationRequest,
    OptionSpec,
    Provider,
    ServiceInfo,
    Step,
    TaskState,
    TaskStatus,
    is_url,
)
from .common import (
    bad,
    credits_if_said,
    generation,
    http_url,
    one_line,
    progress_fraction,
    status_word,
    unwrapped,
)
from .errors import ErrorKind, ProviderError

INFO = ServiceInfo(
    "ravenra",
    "Ravenra",
    "https://api.ravenra.io",
    "https://dashboard.ravenra.io/api-dashboard",
    "Text or image to textured OBJ",
    auth_header="x-api-key",
    auth_scheme="",
    capabilities=frozenset(
        {Capability.TEXT, Capability.IMAGE, Capability.REFINE, Capability.TEXT_TO_IMAGE}
    ),
    image_input="url",  # image_source: "a publicly accessible image URL"
    idempotent_create=False,  # the page shows no idempotency key
    poll_interval=3.0,  # "Poll every 3-10 seconds", backing off 3 → 5 → 10
    job_lifetime=None,  # none documented
    price_options=("mode",),
    options=(
        OptionSpec(
            "mode",
            "Result",
            "What a text prompt makes",
            "textured",
            (
                ("textured", "Textured Model (preview, then refine)"),
                ("preview", "Preview Model (untextured, faster)"),
                ("text-to-image", "Image Only"),
            ),
            sources=frozenset({"TEXT"}),
        ),
    ),
)

CREATE_PATH = "/task/create-task"
TEXT_TO_IMAGE_PATH = "/task/text-to-image"
RESULT_PATH = "/task/result/"

PREVIEW, REFINE, IMAGE, TEXT_TO_IMAGE = "preview", "refine", "image", "text-to-image"
TEXTURED = "textured"  # a preview, then its refinement, as one job: a textured model
TEXT_MODES = (TEXTURED, PREVIEW, REFINE, TEXT_TO_IMAGE)  # options["mode"] of a TEXT request
IMAGE_STAGE = "image"  # the poll/download stage of text-to-image: its result is a picture

POLL_DELAYS = (3.0, 5.0, 10.0)  # the page's back-off, by the number of polls so far

_RUNNING_WORDS = {
    "IN_PROGRESS", "PENDING", "QUEUED", "QUEUEING", "PROCESSING", "RUNNING", "STARTED",
    "SUBMITTED", "CREATED", "WAITING", "NOT_STARTED", "GENERATING", "REFINING",
}  # fmt: skip
_SUCCESS_WORDS = {"SUCCEEDED", "SUCCESS", "SUCCESSFUL", "COMPLETED", "COMPLETE", "DONE", "FINISHED"}
_CANCEL_WORDS = {"CANCELLED", "CANCELED"}
_KNOWN_WORDS = _RUNNING_WORDS | _SUCCESS_WORDS
# Beginnings of words that read as an ended, unsuccessful task, however the service spells
# the rest; matched per "_"-separated part, so DEFERRED is not an ERRor.
_FAILURE_PREFIXES = (
    "FAIL", "ERR", "CANCEL", "ABORT", "REJECT", "EXPIR", "TIMEOUT", "DENIED", "DENY",
    "INVALID", "BLOCK", "TERMINAT", "KILL", "REFUS", "UNSAFE", "VIOLAT", "CRASH",
)  # fmt: skip
_MESSAGE_FIELDS = (
    "message", "error", "error_message", "errorMessage", "failure_reason", "fail_reason",
    "reason", "task_error", "detail", "status_message",
)  # fmt: skip
# Output fields a text-to-image record may carry its picture in, best first. Never
# image_source_url: that is the input image, not the result.
_IMAGE_FIELDS = ("thumbnail_url", "image_url", "output_url", "result_url", "texture_url")
_NOT_IMAGE_FIELDS = {"image_source_url", "obj_url", "mtl_url", "glb_url", "fbx_url", "usdz_url"}


def mode_of(request: GenerationRequest) -> str:
    """Which of Ravenra's flows a request asks for: an image source makes an image task."""
    if request.source == "IMAGE":
        return IMAGE
    return str(request.options.get("mode") or TEXTURED).strip().lower()


class Ravenra(Provider):
    info = INFO

    def can_refine(self, request: GenerationRequest) -> bool:
        return request.source == "TEXT" and mode_of(request) == PREVIEW

    def parent_task(self, request: GenerationRequest) -> str:
        return str(request.options.get("parent_task_id") or "").strip()

    def refine_options(self, task_id: str) -> dict[str, object]:
        return {"mode": REFINE, "parent_task_id": task_id}

    def flow(self, request: GenerationRequest) -> tuple[FlowStep, ...]:
        if mode_of(request) == TEXT_TO_IMAGE:
            return (
                FlowStep(Step.CREATE),
                FlowStep(Step.POLL, IMAGE_STAGE),
                FlowStep(Step.DOWNLOAD, IMAGE_STAGE),
            )
        if mode_of(request) == TEXTURED:  # the page's workflow: preview, then refine it
            return (
                FlowStep(Step.CREATE, PREVIEW),
                FlowStep(Step.POLL, PREVIEW),
                FlowStep(Step.CREATE, REFINE),
                FlowStep(Step.POLL, REFINE),
                FlowStep(Step.DOWNLOAD),
            )
        return (FlowStep(Step.CREATE), FlowStep(Step.POLL), FlowStep(Step.DOWNLOAD))

    def check(self, request: GenerationRequest) -> None:
        super().check(request)
        mode = mode_of(request)
        if request.source == "IMAGE" and request.options.get("mode") not in (None, "", PREVIEW):
            raise bad(f"Ravenra makes only previews from an image, not {request.options['mode']!r}")
        if request.source == "TEXT" and mode not in TEXT_MODES:
            raise bad(f"unknown Ravenra mode {mode!r}")
        if mode in (TEXTURED, PREVIEW, TEXT_TO_IMAGE) and not request.prompt.strip():
            raise bad("a prompt is required")
        if mode == REFINE and not str(request.options.get("parent_task_id") or "").strip():
            raise bad("refine needs the preview's task id (parent_task_id)")
        if mode == IMAGE:
            if not request.image_paths:
                raise bad("no image given")
            if not is_url(request.image_paths[0]):
                raise bad("Ravenra reads images from an http(s) URL, not from a local file")

    def create(self, request: GenerationRequest, idempotency_key: str, stage: str = "") -> Created:
        # No Idempotency-Key is sent: Ravenra documents none, and the engine never re-sends.
        self.check(request)
        path, body = self._create_body(request, stage)
        answer = self._call(lambda: self.http.post_json(path, body))
        return Created(self._task_id(answer), generation())

    def poll(self, task_id: str, stage: str = "") -> TaskStatus:
        answer = self._call(lambda: self.http.get_json(RESULT_PATH + quote(task_id, safe="")))
        record = unwrapped(answer)
        progress = progress_fraction(record.get("progress"))
        word = status_word(record.get("status"))
        image = stage == IMAGE_STAGE
        assets = _image_assets(record) if image else _model_assets(record, word in _SUCCESS_WORDS)
        if assets is not None:  # the URLs decide, whatever the status says
            return TaskStatus(TaskState.SUCCEEDED, 1.0, "", assets)
        if word in _CANCEL_WORDS or (word not in _KNOWN_WORDS and _looks_failed(word)):
            state = TaskState.CANCELLED if word in _CANCEL_WORDS else TaskState.FAILED
            return TaskStatus(state, progress, self.http.redact(_failure(word, record)))
        if word in _SUCCESS_WORDS:
            # Finished by its word, yet the needed URLs are still null: they may lag the
            # status, so keep asking, and say what is awaited.
            return TaskStatus(
                TaskState.RUNNING, progress, f"Ravenra says {word}; waiting for the file URLs"
            )
        if word and word not in _RUNNING_WORDS:
            # An unknown word that does not read as a failure, with no URLs yet: the page
            # says the list of statuses "may vary", so it is taken as still working.
            return TaskStatus(TaskState.RUNNING, progress, f"Generating (Ravenra: {word})")
        return TaskStatus(TaskState.RUNNING, progress)

    def poll_delay(self, polls: int) -> float:
        return POLL_DELAYS[min(max(polls, 0), len(POLL_DELAYS) - 1)]

    # -- helpers ----------------------------------------------------------------------

    def _create_body(self, request: GenerationRequest, stage: str) -> tuple[str, dict[str, Any]]:
        mode = stage or mode_of(request)  # a textured job's stages are its two modes
        if mode == TEXTURED:
            mode = PREVIEW  # its first create
        prompt = request.prompt.strip()
        if mode == TEXT_TO_IMAGE:
            return TEXT_TO_IMAGE_PATH, {"prompt": prompt}
        if mode == PREVIEW:
            return CREATE_PATH, {"prompt": prompt, "mode": PREVIEW}
        if mode == REFINE:
            # A refine job names its parent; a textured job's second stage refines its first.
            parent = str(request.options.get("parent_task_id") or request.previous_task_id)
            parent = parent.strip()
            body: dict[str, Any] = {"mode": REFINE, "parent_task_id": parent}
        else:
            body = {"image_source": request.image_paths[0]}
        if prompt:
            body = {"prompt": prompt, **body}
        return CREATE_PATH, body

    def _call(self, send: Callable[[], Any]) -> Any:
        """One request; a 403 that speaks of credits is a credit error, not a bad key."""
        try:
            return send()
        except ProviderError as exc:
            raise credits_if_said(exc) from None

    def _task_id(self, answer: Any) -> str:
        record = unwrapped(answer)
        for key in ("taskId", "task_id", "result", "id"):
            value = record.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        raise ProviderError(
            ErrorKind.BAD_RESPONSE,
            f"create answer has no taskId: {self.http.redact(str(record))[:160]}",
        )


def _looks_failed(word: str) -> bool:
    return "TIMED_OUT" in word or any(
        part.startswith(_FAILURE_PREFIXES) for part in word.split("_")
    )


def _url(record: dict[str, Any], key: str) -> str | None:
    return http_url(record.get(key))


def _model_assets(record: dict[str, Any], finished: bool) -> tuple[Asset, ...] | None:
    """The OBJ's files once the OBJ and its material or texture are there; the OBJ alone
    once the status says the task finished (an untextured preview has nothing else)."""
    obj, mtl, texture = (_url(record, k) for k in ("obj_url", "mtl_url", "texture_url"))
    if obj is None or (mtl is None and texture is None and not finished):
        return None
    assets = [Asset(obj, "model")]
    if mtl is not None:
        assets.append(Asset(mtl, "material"))
    if texture is not None:
        assets.append(Asset(texture, "texture"))
    if (thumbnail := _url(record, "thumbnail_url")) is not None:
        assets.append(Asset(thumbnail, "thumbnail"))
    return tuple(assets)


def _image_assets(record: dict[str, Any]) -> tuple[Asset, ...] | None:
    """A text-to-image result: thumbnail_url, or another output *_url ("or similar")."""
    keys = [*_IMAGE_FIELDS, *sorted(k for k in record if k.endswith("_url"))]
    for key in keys:
        if key in _NOT_IMAGE_FIELDS:
            continue
        if (url := _url(record, key)) is not None:
            return (Asset(url, "image"),)
    return None


def _failure(word: str, record: dict[str, Any]) -> str:
    """The record's own words about why, in one line."""
    for key in _MESSAGE_FIELDS:
        value = record.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("error")
        if isinstance(value, str) and value.strip():
            return f"Ravenra task {word}: {one_line(value)}"
    return f"Ravenra task {word} (no reason given)"
