"""Trify3D: text, image or multiview to GLB (PROVIDERS.md, seed 003).

Creates send an Idempotency-Key, so a create whose answer was lost can be sent again with
the same key without paying twice. Poll bodies may or may not be wrapped in {"data": ...};
field names follow the webhook body the docs show.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .base import (
    Asset,
    Capability,
    Charge,
    ChargeState,
    Created,
    GenerationRequest,
    OptionSpec,
    Provider,
    RateRule,
    ServiceInfo,
    TaskState,
    TaskStatus,
)
from .common import (
    bad,
    image_reference,
    one_line,
    progress_fraction,
    reported_charge,
    unwrapped,
)
from .errors import ErrorKind, ProviderError

INFO = ServiceInfo(
    "trify3d",
    "Trify3D",
    "https://trify3d.com",
    "https://trify3d.com/api-keys",
    "Text, image or multiview to GLB",
    capabilities=frozenset({Capability.TEXT, Capability.IMAGE, Capability.MULTIVIEW}),
    rate_rules=(RateRule(600, 3600.0),),  # per key; X-RateLimit-* headers on every answer
    image_input="both",  # imageUrl takes an http(s) URL or a data: URL
    # Not on its page: the Idempotency-Key header it gets does no harm, but a create whose
    # answer was lost is treated as possibly charged, never sent again.
    idempotent_create=False,
    poll_interval=3.0,
    job_lifetime=600.0,  # "jobs time out server-side after 10 minutes"
    price_options=("model", "mode"),
    options=(
        OptionSpec("model", "Model", "Model id, e.g. tripo3d/h3.1 (empty: the service's)"),
        OptionSpec("mode", "Mode", "Quality mode, e.g. quality (empty: the service's)"),
    ),
)

ENDPOINTS = {
    "TEXT": "/api/v1/generations/text-to-3d",
    "IMAGE": "/api/v1/generations/image-to-3d",
    "MULTIVIEW": "/api/v1/generations/multiview-to-3d",
}
_STATES = {
    "pending": TaskState.QUEUED,
    "queued": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "running": TaskState.RUNNING,
    "in_progress": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "succeeded": TaskState.SUCCEEDED,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "error": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
    "canceled": TaskState.CANCELLED,
}


class Trify3D(Provider):
    info = INFO

    def create(self, request: GenerationRequest, idempotency_key: str, stage: str = "") -> Created:
        self.check(request)
        body: dict[str, Any] = {k: v for k, v in request.options.items() if v not in ("", None)}
        if request.source == "TEXT":
            body["prompt"] = request.prompt
        elif request.source == "IMAGE":
            body["imageUrl"] = image_reference(request.image_paths[0])
        else:
            if len(request.image_paths) < 2:
                raise bad("multiview needs at least two images")
            body["imageUrls"] = [image_reference(p) for p in request.image_paths]
        if request.prompt and request.source != "TEXT":
            body["prompt"] = request.prompt
        data = unwrapped(self.http.post_json(ENDPOINTS[request.source], body, idempotency_key))
        task_id = data.get("taskId") or data.get("task_id") or data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderError(
                ErrorKind.BAD_RESPONSE,
                f"create answer has no taskId: {self.http.redact(str(data))[:160]}",
            )
        return Created(task_id, _charge(data))

    def poll(self, task_id: str, stage: str = "") -> TaskStatus:
        data = unwrapped(self.http.get_json(f"/api/v1/generations/{quote(task_id, safe='')}"))
        raw = self.http.redact(str(data.get("status", ""))).lower()
        state = _STATES.get(raw)
        if state is None:
            raise ProviderError(ErrorKind.BAD_RESPONSE, f"unknown task status {raw[:80]!r}")
        model = data.get("outputModelUrl") or data.get("modelUrl") or data.get("outputUrl")
        assets = []
        if isinstance(model, str) and model:
            assets.append(Asset(model, "model"))
        thumb = data.get("thumbnailUrl")
        if isinstance(thumb, str) and thumb:
            assets.append(Asset(thumb, "thumbnail"))
        if state == TaskState.SUCCEEDED and not any(a.role == "model" for a in assets):
            raise ProviderError(ErrorKind.BAD_RESPONSE, "task completed without outputModelUrl")
        message = ""
        if state == TaskState.FAILED:
            code = data.get("errorCode") or data.get("error") or "no reason given"
            message = self.http.redact(f"generation failed ({one_line(code)})")
        progress = 1.0 if state == TaskState.SUCCEEDED else progress_fraction(data.get("progress"))
        return TaskStatus(state, progress, message, tuple(assets), charge=_charge(data))


def _charge(data: dict[str, Any]) -> Charge | None:
    """Every answer says the credits the task used; the create also what is left."""
    return reported_charge(
        data, ("creditsUsed",), "credits", ChargeState.CHARGED, ("creditsRemaining",)
    )
