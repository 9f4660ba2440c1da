"""Triverse: image or text to a textured GLB (PROVIDERS.md, seed 004).

A local image goes up first (`POST /upload/image`, multipart field `file`, 10 uploads per
60 s) and the create names it by the returned `file_key`; an image URL is passed as is.
Every answer is an envelope `{code, message, data}` whose `code != 0` is an error even at
HTTP 200. The create's `client_order_id` is the service's idempotency key, so a create whose
answer was lost is sent again with the same id and the service hands back the same task.

What the page leaves open, and what this module does about it:
- No poll interval, job lifetime or error codes are documented: poll every 5 s, end a task
  only on the service's word, read an envelope code that looks like an HTTP status as that
  status, other codes by their message's words (credits, rate, key, not found); a refused
  create or upload is a bad request, a refused status read is a server hiccup (the paid
  job stalls and retries rather than failing on an unknown code).
- A 403 is "not enough credits" when its message speaks of credits (the page's services
  send 402 or 403 for that), otherwise a rejected key.
- Field names moved from camelCase to snake_case over time: both are read everywhere.
- When texturing fails but the geometry was made, the task's `status` may say FAILED or
  SUCCESS: either way the untextured geometry GLB is the result and the status message says
  why. `GET /tasks/url` is asked only for a fully successful task (it names one file).
- `negative_prompt` is a text-to-model field only: with an image it is not sent; an image
  job's prompt is not sent either (image-to-model has no such field).
- Push updates (wss/SSE) exist; a desktop client polls, which needs no open socket.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from . import filekind
from .base import (
    STANDARD_FLOW,
    Asset,
    Capability,
    Charge,
    ChargeState,
    Created,
    FlowStep,
    GenerationRequest,
    OptionSpec,
    Provider,
    RateRule,
    ServiceInfo,
    Step,
    TaskState,
    TaskStatus,
    is_url,
)
from .common import (
    CREDIT_WORDS,
    bad,
    credits_if_said,
    http_url,
    int_in_range,
    json_object,
    one_line,
    reported_charge,
    status_word,
    whole_number,
)
from .errors import ErrorKind, ProviderError

INFO = ServiceInfo(
    "triverse",
    "Triverse",
    "https://api.triverse.ai/api/v1",
    "https://triverse.ai/api-keys",
    "Image or text to GLB",
    capabilities=frozenset({Capability.TEXT, Capability.IMAGE}),
    rate_rules=(RateRule(10, 60.0, "upload"),),  # "10 uploads / 60 s"; nothing else documented
    image_input="both",  # a local file is uploaded; an http(s) URL is passed as image_file
    # client_order_id is sent, but the page does not say a repeated id returns the same task:
    # a create whose answer was lost is treated as possibly charged, never sent again.
    idempotent_create=False,
    poll_interval=5.0,  # the page documents none
    job_lifetime=None,  # none documented
    price_options=("turbo", "texture_size", "polygon_limit"),
    face_limit_option="polygon_limit",
    options=(
        OptionSpec(
            "polygon_limit",
            "Polygon Limit",
            "Most polygons in the model, 1,000 to 1,500,000 (0: the service's default)",
            0,
            lo=1_000,
            hi=1_500_000,
        ),
        OptionSpec(
            "texture_size",
            "Texture Size",
            "Texture resolution in pixels",
            "",
            (("", "Service Default"), ("1024", "1024"), ("2048", "2048"), ("4096", "4096")),
        ),
        OptionSpec("turbo", "Turbo", "Faster, at some cost in quality", False),
        OptionSpec(
            "negative_prompt",
            "Avoid",
            "What the model should not look like",
            sources=frozenset({"TEXT"}),
        ),
    ),
)

UPLOAD_FLOW = (FlowStep(Step.UPLOAD), *STANDARD_FLOW)
UPLOAD_PATH = "/upload/image"
CREATE_PATHS = {"TEXT": "/tasks/text-to-model", "IMAGE": "/tasks/image-to-model"}
TASK_PATH = "/tasks/"
URL_PATH = "/tasks/url/"
MODEL_VERSION = "v2"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MIN_PROMPT = 3
# Documented ranges of the numeric options; turbo and negative_prompt are checked apart.
RANGES: dict[str, tuple[int, int]] = {
    "polygon_limit": (1_000, 1_500_000),
    "texture_size": (1_024, 4_096),
}
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

_STATES = {
    "PENDING": TaskState.QUEUED,
    "QUEUED": TaskState.QUEUED,
    "RUNNING": TaskState.RUNNING,
    "IN_PROGRESS": TaskState.RUNNING,
    "PROCESSING": TaskState.RUNNING,
    "SUCCESS": TaskState.SUCCEEDED,
    "SUCCEEDED": TaskState.SUCCEEDED,
    "COMPLETED": TaskState.SUCCEEDED,
    "FAILED": TaskState.FAILED,
    "FAILURE": TaskState.FAILED,
    "ERROR": TaskState.FAILED,
    "CANCELLED": TaskState.CANCELLED,
    "CANCELED": TaskState.CANCELLED,
}
_DONE, _FAILED = {"COMPLETED", "SUCCESS", "SUCCEEDED"}, {"FAILED", "FAILURE", "ERROR"}
_HTTP_KINDS = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    402: ErrorKind.CREDITS,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    429: ErrorKind.RATE_LIMIT,
}
_WORD_KINDS = (
    (CREDIT_WORDS, ErrorKind.CREDITS),
    (re.compile(r"rate.?limit|too many|too frequent", re.I), ErrorKind.RATE_LIMIT),
    (re.compile(r"api.?key|access.?token|unauthori[sz]ed|authenticat", re.I), ErrorKind.AUTH),
    (re.compile(r"not.?found|does not exist|no such", re.I), ErrorKind.NOT_FOUND),
)


def client_order_id(idempotency_key: str) -> str:
    """The engine's key as a valid client_order_id (1 to 64 of [A-Za-z0-9_-]); the same key
    always gives the same id, so a re-sent create is recognised. A key that does not fit is
    hashed rather than trimmed, so two different keys never share an id."""
    if ORDER_ID.fullmatch(idempotency_key):
        return idempotency_key
    return "conjure-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def settings(options: Mapping[str, object], source: str) -> dict[str, Any]:
    """The documented options that were given, checked against the page's ranges. Nothing is
    filled in: the service's own defaults apply to what the user left alone."""
    body: dict[str, Any] = {}
    for name, (lo, hi) in RANGES.items():
        if options.get(name) not in (None, ""):
            body[name] = int_in_range(name, options[name], lo, hi)
    turbo = options.get("turbo")
    if turbo not in (None, ""):
        if not isinstance(turbo, bool):
            raise bad(f"turbo must be true or false, got {turbo!r}")
        body["turbo"] = turbo
    negative = options.get("negative_prompt")
    if source == "TEXT" and negative not in (None, ""):
        if not isinstance(negative, str):
            raise bad(f"negative_prompt must be text, got {negative!r}")
        if negative.strip():
            body["negative_prompt"] = negative.strip()
    return body


def _image_kind(head: bytes) -> str | None:
    """The kind ("png", "jpg", "webp") of a PNG, JPEG or WebP by its first bytes, else None."""
    kind = filekind.kind_of(head)
    return kind if kind in filekind.IMAGE_KINDS else None


def _check_image_file(path: str) -> None:
    """Size first (a stat), then the magic bytes: a 2 GB file is refused without reading it."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(filekind.HEAD_BYTES)
    except OSError as exc:
        raise bad(f"cannot read image {name}: {exc.strerror}") from None
    if size > MAX_UPLOAD_BYTES:
        raise bad(f"image {name} is {size / 2**20:.1f} MB; Triverse accepts at most 50 MB")
    if _image_kind(head) is None:
        raise bad(f"image {name} is not a JPEG, PNG or WebP file")


def _pick(record: Mapping[str, Any], *names: str) -> Any:
    """The first present field among the names, each tried in snake_case and camelCase."""
    for name in names:
        for key in (name, re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)):
            if record.get(key) not in (None, ""):
                return record[key]
    return None


def _url(value: object) -> str | None:
    """An http(s) URL, or the first one of a list of them."""
    if isinstance(value, list):
        return next((url for url in map(http_url, value) if url is not None), None)
    return http_url(value)


def _reason(value: object) -> str:
    """An `error` field as one short line: text, or an object's message."""
    if isinstance(value, dict):
        value = _pick(value, "message", "error", "detail", "reason")
    return one_line(value) if value not in (None, "") else ""


class Triverse(Provider):
    info = INFO

    def flow(self, request: GenerationRequest) -> tuple[FlowStep, ...]:
        # By the path alone: the flow must keep its shape after upload(), because the
        # journal stores the step as an index into it.
        if request.source == "IMAGE" and request.image_paths and not is_url(request.image_paths[0]):
            return UPLOAD_FLOW
        return STANDARD_FLOW

    def check(self, request: GenerationRequest) -> None:
        super().check(request)
        settings(request.options, request.source)
        if request.source == "TEXT":
            if len(request.prompt.strip()) < MIN_PROMPT:
                raise bad(f"prompt must be at least {MIN_PROMPT} characters")
            return
        if len(request.image_paths) != 1:
            raise bad(f"Triverse takes exactly one image, got {len(request.image_paths)}")
        path = request.image_paths[0]
        if not is_url(path) and not request.upload_ref:
            _check_image_file(path)  # once uploaded, the local file is no longer needed

    def upload(self, request: GenerationRequest) -> str:
        self.check(request)  # options, size and type: a bad job sends nothing at all
        path, name = request.image_paths[0], os.path.basename(request.image_paths[0])
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_UPLOAD_BYTES + 1)
        except OSError as exc:
            raise bad(f"cannot read image {name}: {exc.strerror}") from None
        ext = _image_kind(data[: filekind.HEAD_BYTES])
        if ext is None or len(data) > MAX_UPLOAD_BYTES:  # changed since the check
            raise bad(f"image {name} changed: no longer a JPEG, PNG or WebP of at most 50 MB")
        mime = filekind.MIME_TYPES[ext]
        # A neutral file name: the user's own may hold private words or odd characters.
        try:
            answer = self.http.post_file(UPLOAD_PATH, "file", f"image.{ext}", data, mime)
        except ProviderError as exc:
            raise credits_if_said(exc) from None
        key = _pick(self._data(answer, "upload"), "file_key")
        if not isinstance(key, str) or not key.strip():
            raise ProviderError(ErrorKind.BAD_RESPONSE, "upload answer has no file_key")
        return key.strip()

    def create(self, request: GenerationRequest, idempotency_key: str, stage: str = "") -> Created:
        self.check(request)
        body: dict[str, Any]
        if request.source == "TEXT":
            body = {"prompt": request.prompt.strip()}
        else:
            path = request.image_paths[0]
            reference = path if is_url(path) else request.upload_ref
            if not reference:
                raise bad("the image was not uploaded yet (no file_key)")
            body = {"image_file": reference, "model_version": MODEL_VERSION}
        body |= settings(request.options, request.source)
        if idempotency_key:  # without a key, no id: an empty key must not dedupe all creates
            body["client_order_id"] = client_order_id(idempotency_key)
        try:
            answer = self.http.post_json(CREATE_PATHS[request.source], body)
        except ProviderError as exc:
            raise credits_if_said(exc) from None
        data = self._data(answer, "create")
        task_id = _pick(data, "task_uuid", "task_id")
        if not isinstance(task_id, str) or not task_id.strip():
            raise ProviderError(ErrorKind.BAD_RESPONSE, "create answer has no task_uuid")
        return Created(task_id.strip(), _charge(data, ChargeState.FROZEN))

    def poll(self, task_id: str, stage: str = "") -> TaskStatus:
        record = self._data(self._get(TASK_PATH + quote(task_id, safe="")), "status")
        word = status_word(record.get("status"))
        output = record.get("output")
        if not isinstance(output, dict):
            output = {}
        geometry_word = status_word(_pick(output, "geometry_job_status"))
        texture_word = status_word(_pick(output, "texture_job_status"))
        geometry = _url(_pick(output, "geometry_model_url"))
        progress = self._progress(record, geometry_word)
        if texture_word in _FAILED and geometry and word in {*_DONE, *_FAILED}:
            reason = _reason(_pick(record, "error")) or "no reason given"
            message = f"Texturing failed: {reason}; imported the untextured geometry"
            model = (Asset(geometry, "model"),)
            charged = _charge(record, ChargeState.CHARGED)
            return TaskStatus(
                TaskState.SUCCEEDED, 1.0, message, model, warnings=(message,), charge=charged
            )
        state = _STATES.get(word)
        if state == TaskState.SUCCEEDED:
            finished = self._finished(task_id, output, progress)
            if finished.state != TaskState.SUCCEEDED:
                return finished
            return replace(finished, charge=_charge(record, ChargeState.CHARGED))
        if state in (TaskState.FAILED, TaskState.CANCELLED):
            reason = _reason(_pick(record, "error", "message")) or "no reason given"
            verb = "failed" if state == TaskState.FAILED else "was cancelled"
            message = self.http.redact(f"Triverse task {verb}: {reason}")
            refunded = _charge(record, ChargeState.REFUNDED)
            return TaskStatus(state, progress, message, charge=refunded)
        if state == TaskState.QUEUED:
            return TaskStatus(state, progress, "Queued on Triverse")
        if geometry_word in _DONE or (geometry and texture_word):
            return TaskStatus(TaskState.RUNNING, progress, "Geometry ready; texturing…")
        if state is None:  # a word the page does not list: still working, say which
            return TaskStatus(TaskState.RUNNING, progress, f"Generating (Triverse: {word})")
        return TaskStatus(TaskState.RUNNING, progress, "Generating geometry")

    # -- helpers ----------------------------------------------------------------------

    def _finished(self, task_id: str, output: Mapping[str, Any], progress: float) -> TaskStatus:
        """The download URL of a successful task, asked for here so the engine sees one poll.

        A 404 from /tasks/url right after SUCCESS is read as "not registered yet": the
        textured URL from the status is used if there is one, else the next poll asks again."""
        textured = _url(_pick(output, "textured_model_url"))
        try:
            answer = self._get(URL_PATH + quote(task_id, safe=""))
            links = self._data(answer, "status")
        except ProviderError as exc:
            if exc.kind != ErrorKind.NOT_FOUND:
                raise
            if textured is None:
                return TaskStatus(TaskState.RUNNING, progress, "Waiting for the download link")
            links = {}
        model = _url(_pick(links, "download_url")) or textured
        if model is None:
            raise ProviderError(ErrorKind.BAD_RESPONSE, "finished task has no download_url")
        assets = [Asset(model, "model")]
        if preview := _url(_pick(links, "preview_url")):
            assets.append(Asset(preview, "thumbnail"))
        return TaskStatus(TaskState.SUCCEEDED, 1.0, "", tuple(assets))

    def _get(self, path: str) -> Any:
        try:
            return self.http.get_json(path)
        except ProviderError as exc:
            raise credits_if_said(exc) from None

    @staticmethod
    def _progress(record: Mapping[str, Any], geometry_word: str) -> float:
        """progress is 0..100 (1 means 1 %); older answers carry none: geometry is half."""
        value = record.get("progress")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return min(max(float(value) / 100.0, 0.0), 1.0)
        return 0.5 if geometry_word in _DONE else 0.0

    def _data(self, answer: Any, during: str) -> dict[str, Any]:
        """The envelope's data, or the error its code stands for (even at HTTP 200)."""
        answer = json_object(answer, f"the {during} answer")
        code = answer.get("code", 0)
        if code not in (0, "0", None):  # the page's success is 0; nothing else is assumed
            raise self._code_error(code, answer.get("message"), during)
        data = answer.get("data", answer if "code" not in answer else None)
        if not isinstance(data, dict):
            raise ProviderError(ErrorKind.BAD_RESPONSE, f"the {during} answer carries no data")
        return data

    def _code_error(self, code: object, message: object, during: str) -> ProviderError:
        """What an envelope code means: an HTTP-like number as that status, otherwise the
        message's words; failing those, a refused upload/create is a bad request (nothing
        was made) and a refused status read a server error (the paid job stalls, not fails).
        """
        text = one_line(message or "no message")
        detail = self.http.redact(f"Triverse: {text} (code {code})")
        number = whole_number(code)
        kind = _HTTP_KINDS.get(number or 0)
        if kind is None or kind in (ErrorKind.AUTH, ErrorKind.BAD_REQUEST):
            # "not found" ends a paid job only when it is about the task (a status read);
            # on a create it is about the input, which is a bad request.
            words = (k for p, k in _WORD_KINDS if p.search(text))
            kind = next((k for k in words if k != ErrorKind.NOT_FOUND or during == "status"), kind)
        if kind is None and number is not None and 500 <= number < 600:
            kind = ErrorKind.SERVER
        if kind is None:
            kind = ErrorKind.SERVER if during == "status" else ErrorKind.BAD_REQUEST
        return ProviderError(kind, detail)


def _charge(data: Mapping[str, Any], state: ChargeState) -> Charge:
    """Credits are frozen at create (`cost_credits`, older `costCredits`), deducted when the
    task succeeds and unfrozen when it fails; a later answer may not repeat the amount."""
    reported = reported_charge(data, ("cost_credits", "costCredits"), "credits", state)
    return reported or Charge(None, "credits", state)
