"""A generation job as plain immutable data. docs/jobs.md describes the life cycle."""

from __future__ import annotations

import enum
import hashlib
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..providers.base import GenerationRequest


class JobState(enum.StrEnum):
    QUEUED = "queued"  # journaled, nothing sent yet
    UPLOADING = "uploading"  # sending local files the create refers to (free)
    SUBMITTING = "submitting"  # create request may be on the wire: never resent blindly
    SUBMITTED = "submitted"  # the service's task id is known and journaled (paid)
    RUNNING = "running"
    STALLED = "stalled"  # paid, but the network or service is in trouble: retrying
    AWAITING_PICK = "awaiting_pick"  # candidates are ready; the user chooses one
    DOWNLOADING = "downloading"
    READY = "ready"  # downloaded; waits for Object mode, its own file, or a click
    IMPORTING = "importing"
    IMPORTED = "imported"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.IMPORTED, JobState.FAILED, JobState.CANCELLED})


def key_fingerprint(api_key: str) -> str:
    """Enough to tell two keys apart, useless to anyone who reads the journal."""
    return hashlib.sha256(f"conjure:{api_key}".encode()).hexdigest()[:12] if api_key else ""


@dataclass(frozen=True)
class Job:
    job_id: str
    provider: str
    source: str
    prompt: str = ""
    image_paths: tuple[str, ...] = ()
    options: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    state: JobState = JobState.QUEUED
    task_id: str | None = None
    progress: float = 0.0
    message: str = ""
    files: tuple[str, ...] = ()
    idempotency_key: str = ""
    created: float = 0.0
    updated: float = 0.0
    step: int = 0  # index into the provider's flow()
    paid_at: float = 0.0  # wall time the first create succeeded (0: nothing paid yet)
    key_fingerprint: str = ""
    base_url: str = ""
    blend_file: str = ""  # the .blend the job was started from ("" = unsaved file)
    warnings: tuple[str, ...] = ()
    next_try: float = 0.0  # wall time of the next attempt while stalled
    candidates: tuple[str, ...] = ()  # downloaded candidate images (awaiting_pick)
    objects: tuple[str, ...] = ()  # names of the imported objects

    @classmethod
    def new(
        cls,
        provider: str,
        source: str,
        prompt: str = "",
        image_paths: tuple[str, ...] = (),
        options: Mapping[str, object] | None = None,
        **context: str,
    ) -> Job:
        now = time.time()
        return cls(
            job_id=uuid.uuid4().hex,
            provider=provider,
            source=source,
            prompt=prompt,
            image_paths=tuple(image_paths),
            options=MappingProxyType(dict(options or {})),
            idempotency_key=f"conjure-{uuid.uuid4().hex}",
            created=now,
            updated=now,
            **context,  # type: ignore[arg-type]  # key_fingerprint, base_url, blend_file
        )

    @property
    def label(self) -> str:
        """Short human name: the prompt, else the first image's file name."""
        text = self.prompt or (os.path.basename(self.image_paths[0]) if self.image_paths else "")
        text = " ".join(text.split()) or self.provider
        return text if len(text) <= 40 else text[:39] + "…"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def paid(self) -> bool:
        return self.paid_at > 0

    def request(self) -> GenerationRequest:
        """What the service is asked; options starting with "_" are the add-on's own notes
        (e.g. which batch row a job is) and never leave the machine."""
        options = {k: v for k, v in self.options.items() if not k.startswith("_")}
        return GenerationRequest(self.source, self.prompt, self.image_paths, options)

    def evolve(self, **changes: object) -> Job:
        return replace(self, updated=time.time(), **changes)

    def warn(self, text: str) -> Job:
        return self.evolve(warnings=(*self.warnings, text))

    def status(self) -> dict[str, object]:
        """What scripts see (api.status): plain values only, never a key."""
        return {
            "job_id": self.job_id,
            "provider": self.provider,
            "source": self.source,
            "prompt": self.prompt,
            "image_paths": list(self.image_paths),
            "state": self.state.value,
            "progress": self.progress,
            "message": self.message,
            "task_id": self.task_id,
            "objects": list(self.objects),
            "files": list(self.files),
            "warnings": list(self.warnings),
            "options": dict(self.options),
            "created": self.created,
            "updated": self.updated,
        }
