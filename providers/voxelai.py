"""Voxel-AI: text → 3 candidate images → the user's pick → a MagicaVoxel .vox (seed 002).

Two jobs on one status endpoint. The images job is free but limited to 1 request per 15 s
per user; the voxelize job costs 1 token up front, which the service refunds if the job
fails. Results arrive inline as base64, never as URLs: `poll` hands them to the engine as
data: URLs and `download` decodes them locally, so the server's `filename` is never used as
a path (the engine names files by their bytes). The service offers no idempotency key, so a
create whose answer was lost is never sent again.

Unknown shapes are accepted where plausible (a data: prefix on returned images, RunPod's own
state names, `output` as a JSON string, `charged` as a flag or a count); what cannot be
understood fails with a one-line BAD_RESPONSE.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from . import filekind
from .base import (
    Asset,
    Capability,
    Charge,
    ChargeState,
    Created,
    FlowStep,
    GenerationRequest,
    Http,
    OptionSpec,
    Provider,
    RateRule,
    ServiceInfo,
    Step,
    TaskState,
    TaskStatus,
)
from .common import (
    bad,
    flag,
    image_data_url,
    int_in_range,
    json_object,
    one_line,
    reported_charge,
)
from .errors import ErrorKind, ProviderError
from .http import MAX_DOWNLOAD_BYTES

IMAGES, VOXELIZE = "images", "voxelize"
IMAGES_WINDOW = 15.0  # "1 request per 15 seconds per user" on /images

INFO = ServiceInfo(
    "voxelai",
    "Voxel-AI",
    "https://voxelai.studio",
    "https://voxelai.studio/account",
    "Text to candidate images to MagicaVoxel",
    capabilities=frozenset({Capability.TEXT, Capability.IMAGE, Capability.CANDIDATES}),
    rate_rules=(RateRule(1, IMAGES_WINDOW, f"create:{IMAGES}"),),
    image_input="file",  # image_base64 only: local files sent as data
    idempotent_create=False,  # no idempotency key on either endpoint
    free_stages=frozenset({IMAGES}),  # "free, but rate-limited": safe to send again
    poll_interval=2.0,  # "poll /api/generate/status every couple of seconds"
    max_answer_bytes=64 * 1024 * 1024,  # results arrive inline: three images, or a .vox
    voxel_output=True,
    options=(
        OptionSpec("voxel_size", "Resolution", "Voxels along the longest side", 32, lo=8, hi=128),
        OptionSpec("palette_size", "Colours", "Colours in the palette", 32, lo=2, hi=256),
        OptionSpec(
            "texturing",
            "Texturing",
            "Colours from the image, or plain grey",
            "textured",
            (("textured", "Textured"), ("gray", "Grey")),
        ),
        OptionSpec(
            "color",
            "Colour From",
            "Where voxel colours are taken from",
            "surface",
            (("surface", "Surface"), ("vertex", "Vertices")),
        ),
    ),
)

TEXT_FLOW = (
    FlowStep(Step.CREATE, IMAGES),
    FlowStep(Step.POLL, IMAGES),
    FlowStep(Step.PICK),
    FlowStep(Step.CREATE, VOXELIZE),
    FlowStep(Step.POLL, VOXELIZE),
    FlowStep(Step.DOWNLOAD),
)
IMAGE_FLOW = (
    FlowStep(Step.CREATE, VOXELIZE),
    FlowStep(Step.POLL, VOXELIZE),
    FlowStep(Step.DOWNLOAD),
)

PATHS = {IMAGES: "/api/generate/images", VOXELIZE: "/api/generate/voxelize"}
STATUS_PATH = "/api/generate/status"
MAX_PROMPT = 500
CANDIDATES = 3
MAX_SEED = 2**53 - 1  # the largest integer JSON carries exactly

# Documented ranges and choices of the voxelize settings, with the service's defaults.
INT_OPTIONS: dict[str, tuple[int, int, int]] = {
    "voxel_size": (8, 128, 32),
    "palette_size": (2, 256, 32),
}
CHOICE_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "texturing": (("textured", "gray"), "textured"),
    "color": (("surface", "vertex"), "surface"),
}

# The page's four states, plus RunPod's own names in case they are passed through.
_STATES = {
    "queued": TaskState.QUEUED,
    "in_queue": TaskState.QUEUED,
    "pending": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "in_progress": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "succeeded": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "error": TaskState.FAILED,
    "timed_out": TaskState.FAILED,
    "cancelled": TaskState.FAILED,
    "canceled": TaskState.FAILED,
}


# -- options ---------------------------------------------------------------------------------


def _given(options: Mapping[str, object], name: str) -> bool:
    return options.get(name) not in (None, "")


def _int_option(options: Mapping[str, object], name: str, lo: int, hi: int) -> int | None:
    return int_in_range(name, options[name], lo, hi) if _given(options, name) else None


def voxelize_settings(options: Mapping[str, object]) -> dict[str, Any]:
    """The voxelize body's settings, documented defaults filled in, or BAD_REQUEST naming
    the option and its range. Every value is sent explicitly so the request records what
    was asked for."""
    settings: dict[str, Any] = {}
    for name, (lo, hi, default) in INT_OPTIONS.items():
        value = _int_option(options, name, lo, hi)
        settings[name] = default if value is None else value
    for name, (choices, usual) in CHOICE_OPTIONS.items():
        choice = options.get(name) if _given(options, name) else usual
        if choice not in choices:
            listed = " or ".join(f'"{c}"' for c in choices)
            raise bad(f"{name} must be {listed}, got {choice!r}")
        settings[name] = choice
    settings["fill"] = flag("fill", options["fill"]) if _given(options, "fill") else False
    return settings


def _check_candidate(options: Mapping[str, object]) -> None:
    """The engine picks up front only for an int, so nothing else is accepted here."""
    if "candidate" not in options or options["candidate"] is None:
        return
    value = options["candidate"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < CANDIDATES:
        raise bad(f"candidate must be 0, 1 or 2, got {value!r}")


def _check_prompt(prompt: str) -> None:
    # JavaScript servers count UTF-16 units: an emoji is two of them.
    units = len(prompt.encode("utf-16-le")) // 2
    if not prompt.strip():
        raise bad("prompt is empty: describe the asset (1 to 500 characters)")
    if units > MAX_PROMPT:
        raise bad(f"prompt is {units} characters; Voxel-AI accepts at most {MAX_PROMPT}")


def _image_path(request: GenerationRequest) -> str | None:
    """The image to voxelize: the user's file, or for text the picked candidate."""
    if request.source == "IMAGE":
        if not request.image_paths:
            raise bad("Voxel-AI needs an image to voxelize")
        return request.image_paths[0]
    return request.picked_path or None


# -- answers ---------------------------------------------------------------------------------


def _object(body: object, what: str) -> dict[str, Any]:
    """A JSON object, also when the service sent it as a JSON string."""
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    return json_object(body, what)


def _job_id(body: dict[str, Any]) -> str:
    job_id = body.get("jobId") or body.get("job_id") or body.get("id")
    if not isinstance(job_id, str | int) or isinstance(job_id, bool) or not str(job_id):
        raise ProviderError(ErrorKind.BAD_RESPONSE, f"answer has no jobId: {one_line(body, 120)}")
    return str(job_id)


def _data_url(value: str, default_mime: str) -> str:
    """Base64 as a data: URL, typed by the bytes it starts with."""
    if value.startswith("data:"):
        return value
    head = "".join(value[:64].split())
    try:
        kind = filekind.kind_of(base64.b64decode(head[: len(head) // 4 * 4]))
    except (binascii.Error, ValueError):
        kind = None
    return f"data:{filekind.MIME_TYPES.get(kind or '', default_mime)};base64,{value}"


def _candidates(output: dict[str, Any]) -> tuple[Asset, ...]:
    """The images in the service's `index` order (list order when an index is missing)."""
    images = output.get("images")
    found: list[tuple[int, int, str]] = []
    for position, entry in enumerate(images if isinstance(images, list) else ()):
        data = entry.get("image_base64") if isinstance(entry, dict) else entry
        if not isinstance(data, str) or not data:
            continue
        index = entry.get("index") if isinstance(entry, dict) else None
        order = index if isinstance(index, int) and not isinstance(index, bool) else position
        found.append((order, position, _data_url(data, "image/png")))
    return tuple(Asset(url, "candidate") for _, _, url in sorted(found))


def _model(output: dict[str, Any]) -> tuple[Asset, ...]:
    """The .vox as data; `filename` is deliberately ignored (the engine names files)."""
    data = output.get("vox_base64")
    if not isinstance(data, str) or not data:
        return ()
    return (Asset(_data_url(data, "application/octet-stream"), "model"),)


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return value / 1000.0
    return None


def _timing(state: TaskState, data: dict[str, Any]) -> str:
    """RunPod's timings as the page offers them: queue wait (cold start) or run time."""
    if state == TaskState.QUEUED:
        waited = _seconds(data.get("delayTime"))
        return f"waiting for a worker ({waited:.0f} s so far)" if waited else "queued"
    ran = _seconds(data.get("executionTime"))
    return f"running {ran:.0f} s" if ran is not None else "running"


def _account(balance: object, charged: object) -> str:
    """`balance` and `charged` as a user reads them; "" when the answer carried neither."""
    parts = []
    if isinstance(balance, int | float) and not isinstance(balance, bool):
        parts.append(f"balance {balance:g} token{'s' if balance != 1 else ''}")
    if charged is True:
        parts.append("1 token charged")
    elif charged is False:
        parts.append("not charged")
    elif isinstance(charged, int | float):
        parts.append(f"{charged:g} charged")
    return ", ".join(parts)


def decode_data_url(url: str, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """A base64 data: URL's bytes, bounded like an HTTP download."""
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise ProviderError(ErrorKind.BAD_RESPONSE, "inline file is not base64 data")
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise ProviderError(
            ErrorKind.BAD_RESPONSE, f"inline file exceeds the {max_bytes} byte limit"
        )
    text = "".join(payload.split()).translate(str.maketrans("-_", "+/"))
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(ErrorKind.BAD_RESPONSE, "inline file is not valid base64") from None
    if not data:
        raise ProviderError(ErrorKind.BAD_RESPONSE, "inline file is empty")
    if len(data) > max_bytes:
        raise ProviderError(
            ErrorKind.BAD_RESPONSE, f"inline file exceeds the {max_bytes} byte limit"
        )
    return data


def _translate(exc: ProviderError, *, polling: bool) -> ProviderError:
    """The page's meaning where it differs from the HTTP layer's general mapping.

    A 403 on a create can only be NO_BALANCE (there is no job to own yet): credits, not the
    key. On the status endpoint a 403 means the job belongs to another account. A 429 with
    no Retry-After waits out the documented 15 s window."""
    status = exc.status
    if status == 403 and (not polling or "NO_BALANCE" in exc.detail.upper()):
        return ProviderError(ErrorKind.CREDITS, f"{exc.detail} (no token balance on this account)")
    if status == 403:
        return ProviderError(
            ErrorKind.AUTH,
            f"{exc.detail} (the job belongs to another account: was the key changed?)",
        )
    if status == 429 and exc.retry_after is None:
        return ProviderError(ErrorKind.RATE_LIMIT, exc.detail, IMAGES_WINDOW)
    return exc


# -- the provider ----------------------------------------------------------------------------


class VoxelAI(Provider):
    info = INFO

    def __init__(self, http: Http) -> None:
        super().__init__(http)
        # What the voxelize create answered (balance, charged), shown while its job runs:
        # the status endpoint echoes them only once the job has completed.
        self._accounts: dict[str, tuple[object, object]] = {}

    def flow(self, request: GenerationRequest) -> tuple[FlowStep, ...]:
        return TEXT_FLOW if request.source == "TEXT" else IMAGE_FLOW

    def check(self, request: GenerationRequest) -> None:
        """Every documented limit, before anything is sent (and again before each create)."""
        super().check(request)
        options = request.options
        if request.source == "TEXT":
            _check_prompt(request.prompt)
        voxelize_settings(options)
        _int_option(options, "seed", 0, MAX_SEED)
        _check_candidate(options)
        path = _image_path(request)
        if path:
            image_data_url(path)  # a real PNG/JPEG/WebP under 20 MB

    def create(self, request: GenerationRequest, idempotency_key: str, stage: str = "") -> Created:
        self.check(request)
        if stage == IMAGES:
            body: dict[str, Any] = {"prompt": request.prompt}
            seed = _int_option(request.options, "seed", 0, MAX_SEED)
            if seed is not None:
                body["seed"] = seed
            return Created(_job_id(self._post(IMAGES, body)))  # free
        if stage == VOXELIZE:
            path = _image_path(request)
            if not path:
                raise bad("no candidate picked yet: pick one of the images first")
            body = {"image_base64": image_data_url(path), **voxelize_settings(request.options)}
            answer = self._post(VOXELIZE, body)
            job_id = _job_id(answer)
            self._accounts[job_id] = (answer.get("balance"), answer.get("charged"))
            return Created(job_id, _tokens(answer, ChargeState.CHARGED))
        raise bad(f"Voxel-AI has no {stage!r} step")

    def _post(self, stage: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self.http.post_json(PATHS[stage], body)
        except ProviderError as exc:
            raise _translate(exc, polling=False) from None
        return _object(answer, f"the {stage} answer")

    def poll(self, task_id: str, stage: str = "") -> TaskStatus:
        try:
            answer = self.http.get_json(f"{STATUS_PATH}?jobId={quote(task_id, safe='')}")
        except ProviderError as exc:
            raise _translate(exc, polling=True) from None
        data = _object(answer, "the status answer")
        raw = str(data.get("state") or data.get("status") or "").lower()
        state = _STATES.get(raw)
        if state is None:
            raise ProviderError(ErrorKind.BAD_RESPONSE, f"unknown job state {raw[:40]!r}")
        if state == TaskState.FAILED:
            refund = None  # "refunded if the job fails", whether or not the answer says so
            if stage == VOXELIZE:
                refund = _tokens(data, ChargeState.REFUNDED) or Charge(
                    None, "tokens", ChargeState.REFUNDED
                )
            return TaskStatus(state, message=self._failure(data, stage), charge=refund)
        account = self._account(task_id, data)
        if state == TaskState.SUCCEEDED:
            output = _object(data.get("output") or {}, "the job output")
            found = _candidates(output)
            if found:
                seed = output.get("seed")
                seeded = f" (seed {seed})" if isinstance(seed, int) else ""
                message = f"{len(found)} candidates ready{seeded}"
                return TaskStatus(state, 1.0, message, candidates=found)
            spent = _tokens(data, ChargeState.CHARGED)
            return TaskStatus(
                state, 1.0, f"Voxel model ready{account}", assets=_model(output), charge=spent
            )
        label = "Generating candidate images" if stage == IMAGES else "Voxelizing"
        return TaskStatus(state, 0.0, f"{label} — {_timing(state, data)}{account}")

    def _account(self, task_id: str, data: dict[str, Any]) -> str:
        """The balance suffix: from this answer if it has one, else from the create's."""
        balance, charged = self._accounts.get(task_id, (None, None))
        if "balance" in data or "charged" in data:
            balance, charged = data.get("balance"), data.get("charged")
        text = _account(balance, charged)
        return f" — {text}" if text else ""

    def _failure(self, data: dict[str, Any], stage: str) -> str:
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error.get("code")
        reason = self.http.redact(one_line(error)) if error else "no reason given"
        if stage == IMAGES:
            return f"Voxel-AI could not generate the images: {reason}"
        return f"Voxel-AI could not voxelize the image: {reason}; the token is refunded"

    def download(self, url: str, dest: str, cancelled: Callable[[], bool]) -> int:
        """data: URLs are decoded here (never fetched); anything else goes over HTTP."""
        if not url.startswith("data:"):
            return self.http.download(url, dest, cancelled=cancelled)
        data = decode_data_url(url)
        if cancelled():
            raise ProviderError(ErrorKind.NETWORK, "download cancelled")
        part = dest + ".part"
        try:
            with open(part, "wb") as f:
                f.write(data)
            os.replace(part, dest)
        finally:
            if os.path.exists(part):
                os.remove(part)
        return len(data)


def _tokens(data: dict[str, Any], state: ChargeState) -> Charge | None:
    """A voxelize costs one token, taken up front (`charged`) and given back once if the job
    fails; answers carry the `balance` after it."""
    if isinstance(data.get("charged"), bool):  # the page's flag: one token taken, or none
        data = {**data, "charged": float(data["charged"])}
    return reported_charge(data, ("charged",), "tokens", state, ("balance",))
