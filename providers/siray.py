"""Siray: hosted Hunyuan3D and Tripo models, text or image to 3D (PROVIDERS.md, seed 001).

One endpoint serves every model: `POST /v1/3d/generations` with `{"model", "prompt"|"image",
...model options}`, then `GET /v1/3d/generations/{task_id}` until SUCCESS or FAILURE. Every
answer is an envelope `{code, message, data}` whose `code` must be "success", even on HTTP 200.

Models, chosen per job with `options["model"]` (an id below, or an alias):

=================================================  ======  ==================================
model                                              source  options
=================================================  ======  ==================================
tencent/hunyuan3d-v2.5-rapid-text-to-3d (default)  TEXT    pbr_enable, texture_enable
tencent/hunyuan3d-v2.5-rapid-image-to-3d (default) IMAGE   pbr_enable, texture_enable
tripo/tripo3d-v2.5-image-to-3d                     IMAGE   face_limit, pbr_enable, quad, seed,
                                                           texture_enable, texture_quality,
                                                           texture_alignment, texture_seed,
                                                           auto_size
=================================================  ======  ==================================

Aliases: "hunyuan" (the Hunyuan model for the job's source), "tripo" (the Tripo model).

What the page leaves open, and what this module does about it:
- Credits errors are not shown: 402, a 403 whose words speak of credits/quota/balance, and a
  HTTP-200 envelope whose code or message does, all read as "not enough credits".
- A create answered HTTP 200 with `code != "success"` is the service refusing: the job fails in
  one line, nothing was created. A *poll* answered so is a failed status query, not a failed
  task (the page: code/message are "indicators for the polling request", while the task's fate
  is `data.status`): the paid job stalls and keeps asking, unless the words say the task does
  not exist (then it ends, as a 404 would).
- Output formats are unknown and `outputs` are extension-less redirects: the engine tells
  GLB/zip/OBJ by their bytes. Of several outputs, one becomes the "model": the first whose URL
  ends like a model file, else the first that does not end like an image. Outputs that end
  like an image become optional thumbnails; any other output is left alone: as a second
  "model" it would fail the job if it were not a model file, and other roles take only images.
- Its SDK checks FAILED/ERROR instead of FAILURE: all three (and CANCELLED) end the job with
  `fail_reason`. An unknown status word keeps the job polling, with the word shown.
- No idempotency key, rate limit or job lifetime is documented: a create is never re-sent
  blindly, requests are paced only by 429 + Retry-After, and a task that never ends polls until
  the user cancels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from . import filekind
from .base import (
    Asset,
    Capability,
    Created,
    GenerationRequest,
    OptionSpec,
    Provider,
    ServiceInfo,
    TaskState,
    TaskStatus,
    is_url,
)
from .common import (
    bad,
    credits_if_said,
    flag,
    generation,
    http_url,
    image_reference,
    int_in_range,
    json_object,
    one_line,
    progress_fraction,
    speaks_of_credits,
    status_word,
)
from .errors import ErrorKind, ProviderError

INFO = ServiceInfo(
    "siray",
    "Siray",
    "https://api.siray.ai",
    "https://siray.ai/dashboard/api-keys",
    "Hosted Hunyuan3D / Tripo models",
    capabilities=frozenset({Capability.TEXT, Capability.IMAGE}),
    image_input="both",  # `image`: "it can be data URL or image URL"
    idempotent_create=False,  # no idempotency key documented
    poll_interval=5.0,  # "Poll every 5-10 seconds"
    job_lifetime=None,  # none documented
    price_options=("model", "pbr_enable"),
    options=(
        OptionSpec(
            "model",
            "Model",
            "The model that makes 3D from the image",
            "",
            (("", "Hunyuan3D v2.5"), ("tripo", "Tripo3D v2.5")),
            sources=frozenset({"IMAGE"}),
        ),
        OptionSpec("pbr_enable", "PBR Materials", "Ask for metal/roughness maps", False),
    ),
)

GENERATIONS_PATH = "/v1/3d/generations"
POLL_DELAYS = (5.0, 10.0)  # the page's band: brisk for the first minute, then relaxed
BRISK_POLLS = 12
MAX_SEED = 9_999_999_999  # tripo `seed`: -1 <= x <= 9999999999 (public docs)
MAX_JSON_INT = 2**53 - 1  # the largest integer JSON carries exactly

# Options that steer the add-on, not the model (which model; a candidate chosen up front).
ENGINE_KEYS = frozenset({"model", "candidate"})


@dataclass(frozen=True)
class Model:
    id: str
    source: str  # "TEXT" | "IMAGE": what the model makes 3D from
    options: Mapping[str, Callable[[str, object], object]]  # name → validator (value → sent)


# -- option validators: a value as scripts, the CLI or the UI pass it → the JSON value ----------


def _int_in(lo: int, hi: int) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        return int_in_range(name, value, lo, hi)

    return check


def _choice(*choices: str) -> Callable[[str, object], str]:
    """One of `choices`, matched without regard to case, sent as documented ("hd" → "HD")."""

    def check(name: str, value: object) -> str:
        if isinstance(value, str):
            for choice in choices:
                if value.strip().lower() == choice.lower():
                    return choice
        listed = " or ".join(f'"{c}"' for c in choices)
        raise bad(f"{name} must be {listed}, got {value!r}")

    return check


_HUNYUAN_OPTIONS = {"pbr_enable": flag, "texture_enable": flag}
HUNYUAN_TEXT = Model("tencent/hunyuan3d-v2.5-rapid-text-to-3d", "TEXT", _HUNYUAN_OPTIONS)
HUNYUAN_IMAGE = Model("tencent/hunyuan3d-v2.5-rapid-image-to-3d", "IMAGE", _HUNYUAN_OPTIONS)
TRIPO_IMAGE = Model(
    "tripo/tripo3d-v2.5-image-to-3d",
    "IMAGE",
    {
        "face_limit": _int_in(1, MAX_JSON_INT),
        "pbr_enable": flag,
        "quad": flag,
        "seed": _int_in(-1, MAX_SEED),
        "texture_enable": flag,
        "texture_quality": _choice("standard", "HD"),
        "texture_alignment": _choice("original_image", "geometry"),
        "texture_seed": _int_in(-MAX_JSON_INT, MAX_JSON_INT),  # public docs: an integer
        "auto_size": flag,
    },
)
MODELS = {m.id: m for m in (HUNYUAN_TEXT, HUNYUAN_IMAGE, TRIPO_IMAGE)}
DEFAULT_MODELS = {"TEXT": HUNYUAN_TEXT, "IMAGE": HUNYUAN_IMAGE}
ALIASES = {
    ("hunyuan", "TEXT"): HUNYUAN_TEXT,
    ("hunyuan", "IMAGE"): HUNYUAN_IMAGE,
    ("tripo", "TEXT"): TRIPO_IMAGE,  # refused by check(): Tripo here makes 3D from images only
    ("tripo", "IMAGE"): TRIPO_IMAGE,
}

# -- status words ---------------------------------------------------------------------------

_WAITING = {
    "NOT_START": "Siray: accepted, not started yet",
    "SUBMITTED": "Siray: submitted, waiting for the queue",
    "QUEUED": "Siray: queued for compute",
}
_RUNNING = {"IN_PROGRESS"}
_SUCCESS = {"SUCCESS"}
_FAILURE = {"FAILURE", "FAILED", "ERROR"}  # FAILURE documented; its SDK checks the others
_CANCELLED = {"CANCELLED", "CANCELED"}

_AUTH_WORDS = re.compile(r"api.?key|token|unauthori[sz]ed|auth|forbidden|permission", re.I)
_MISSING_WORDS = re.compile(r"not.?found|not.?exist|no such|unknown task", re.I)


def resolve_model(request: GenerationRequest) -> Model:
    """The model a job asks for: `options["model"]`, an alias, or the source's default."""
    wanted = str(request.options.get("model") or "").strip()
    if not wanted:
        model = DEFAULT_MODELS.get(request.source)
        if model is None:
            raise bad(f"Siray cannot generate from {request.source.lower()}")
        return model
    model = MODELS.get(wanted.lower()) or ALIASES.get((wanted.lower(), request.source))
    if model is None:
        known = ", ".join([*MODELS, "hunyuan", "tripo"])
        raise bad(f"unknown Siray model {wanted!r}: use one of {known}")
    return model


def model_options(model: Model, options: Mapping[str, object]) -> dict[str, Any]:
    """The model's options as sent, or BAD_REQUEST naming the first one that is wrong.
    Empty values mean "the service's default" and are left out."""
    sent: dict[str, Any] = {}
    for name, value in options.items():
        if name in ENGINE_KEYS or value in (None, ""):
            continue
        check = model.options.get(name)
        if check is None:
            allowed = ", ".join(model.options)
            raise bad(f"{model.id} has no option {name!r} (it takes {allowed})")
        sent[name] = check(name, value)
    return sent


class Siray(Provider):
    info = INFO

    def check(self, request: GenerationRequest) -> None:
        """Everything that can be known wrong before a request is sent."""
        super().check(request)
        model = resolve_model(request)
        if model.source != request.source:
            made = "text" if model.source == "TEXT" else "an image"
            given = "text" if request.source == "TEXT" else "an image"
            raise bad(f"{model.id} makes 3D from {made}, not from {given}")
        model_options(model, request.options)
        if request.source == "TEXT" and not request.prompt.strip():
            raise bad("a prompt is required")
        if request.source == "IMAGE":
            if len(request.image_paths) != 1:
                raise bad("Siray makes 3D from exactly one image")
            if not is_url(request.image_paths[0]):
                image_reference(request.image_paths[0])  # a real PNG/JPEG/WebP under 20 MB

    def create(self, request: GenerationRequest, idempotency_key: str, stage: str = "") -> Created:
        # No idempotency key: Siray documents none, and the engine never re-sends a create.
        self.check(request)
        model = resolve_model(request)
        body: dict[str, Any] = {"model": model.id}
        if model.source == "TEXT":
            body["prompt"] = request.prompt.strip()
        else:
            body["image"] = image_reference(request.image_paths[0])
        body.update(model_options(model, request.options))
        # An unreadable answer (BAD_RESPONSE) may hide a task that was charged: the engine
        # never sends such a create again.
        data = self._call(lambda: self.http.post_json(GENERATIONS_PATH, body), polling=False)
        task_id = data.get("task_id") or data.get("id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id.strip():
            raise ProviderError(
                ErrorKind.BAD_RESPONSE,
                f"create answer has no task_id: {self.http.redact(one_line(data, 160))}",
            )
        return Created(task_id.strip(), generation())

    def poll(self, task_id: str, stage: str = "") -> TaskStatus:
        path = f"{GENERATIONS_PATH}/{quote(task_id, safe='')}"
        data = self._call(lambda: self.http.get_json(path), polling=True)
        word = status_word(data.get("status"))
        if not word:
            raise ProviderError(ErrorKind.BAD_RESPONSE, "status answer has no data.status")
        progress = progress_fraction(data.get("progress"))
        if word in _SUCCESS:
            assets = _assets(data.get("outputs"))
            if not assets:  # "outputs ... present when status is SUCCESS": they may lag
                return TaskStatus(TaskState.RUNNING, 1.0, "Siray says SUCCESS; waiting for outputs")
            return TaskStatus(TaskState.SUCCEEDED, 1.0, "Done on Siray", assets)
        if word in _FAILURE or word in _CANCELLED:
            state = TaskState.CANCELLED if word in _CANCELLED else TaskState.FAILED
            return TaskStatus(state, progress, self.http.redact(_failure(word, data)))
        if word in _WAITING:
            return TaskStatus(TaskState.QUEUED, progress, _WAITING[word])
        if word in _RUNNING:
            return TaskStatus(TaskState.RUNNING, progress, "Generating")
        # Not on the page: the job is paid, so it keeps asking and shows what it got.
        return TaskStatus(TaskState.RUNNING, progress, f"Generating (Siray: {word[:40]})")

    def poll_delay(self, polls: int) -> float:
        return POLL_DELAYS[0] if polls < BRISK_POLLS else POLL_DELAYS[1]

    # -- helpers ----------------------------------------------------------------------------

    def _call(self, send: Callable[[], Any], *, polling: bool) -> dict[str, Any]:
        """One request; the envelope's `data`, or the page's meaning of what went wrong."""
        try:
            answer = send()
        except ProviderError as exc:
            raise _translate(exc, polling=polling) from None
        answer = json_object(answer)
        code = answer.get("code")
        data = answer.get("data")
        # A missing code with a task in it is taken as success: after a create, refusing an
        # answer that names a task could lose a paid job.
        if code is not None and str(code).strip().lower() != "success":
            raise self._refusal(str(code), str(answer.get("message") or ""), polling=polling)
        if not isinstance(data, dict):
            raise ProviderError(
                ErrorKind.BAD_RESPONSE, f"answer has no data object: {one_line(answer, 120)}"
            )
        return data

    def _refusal(self, code: str, message: str, *, polling: bool) -> ProviderError:
        """An HTTP-200 answer whose code is not "success", as one line of the service's words."""
        words = self.http.redact(one_line(f"code {code!r}" + (f": {message}" if message else "")))
        detail = f"Siray answered {words}"
        if speaks_of_credits(code + " " + message):
            return ProviderError(ErrorKind.CREDITS, detail)
        if _AUTH_WORDS.search(code + " " + message):
            return ProviderError(ErrorKind.AUTH, detail)
        if not polling:
            return bad(detail)
        if _MISSING_WORDS.search(code + " " + message):
            return ProviderError(ErrorKind.NOT_FOUND, detail)
        # The status query failed, not the task: keep asking (the job stalls, visibly).
        return ProviderError(ErrorKind.TRANSIENT, detail)


def _translate(exc: ProviderError, *, polling: bool) -> ProviderError:
    """HTTP errors where Siray's meaning differs from the HTTP layer's general mapping."""
    exc = credits_if_said(exc)
    if exc.kind == ErrorKind.NOT_FOUND and not polling:  # no task yet: a wrong URL or model
        return bad(f"{exc.detail} (is the Siray base URL right?)")
    return exc


def _output_urls(outputs: object) -> list[str]:
    """`outputs` as the page shows it (a list of URLs); a lone string or {"url": ...} items
    are accepted too. Only http(s) URLs are kept."""
    items = [outputs] if isinstance(outputs, str | dict) else outputs
    urls = []
    for item in items if isinstance(items, list) else ():
        url = http_url(item.get("url") if isinstance(item, dict) else item)
        if url is not None:
            urls.append(url)
    return urls


def _assets(outputs: object) -> tuple[Asset, ...]:
    """One model (see the module docstring for which), plus image-looking outputs as
    thumbnails; () when there is nothing to download."""
    urls = _output_urls(outputs)

    def named(url: str, kinds: frozenset[str]) -> bool:
        return filekind.kind_of_name(urlsplit(url).path) in kinds

    images = [u for u in urls if named(u, filekind.IMAGE_KINDS)]
    model = next((u for u in urls if named(u, filekind.MODEL_KINDS)), None)
    model = model or next((u for u in urls if u not in images), None)
    model = model or (urls[0] if urls else None)
    if model is None:
        return ()
    thumbnails = [Asset(u, "thumbnail") for u in images if u != model]
    return (Asset(model, "model"), *thumbnails)


def _failure(word: str, data: Mapping[str, Any]) -> str:
    """Why the task ended, in one line: `fail_reason`, else whatever else the record says."""
    for key in ("fail_reason", "message", "error"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return f"Siray task {word}: {one_line(value)}"
    return f"Siray task {word} (no reason given)"
