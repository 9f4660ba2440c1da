"""A generation job as plain immutable data, and the events workers post about it."""

from __future__ import annotations

import enum
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..providers.base import GenerationRequest


class JobState(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"  # create request may be on the wire: never resent blindly
    SUBMITTED = "submitted"  # the service's task id is known and journaled
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    IMPORTING = "importing"
    IMPORTED = "imported"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.IMPORTED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class JobEvent:
    """Posted by a worker, read only by the main thread."""

    job_id: str
    state: JobState
    progress: float = 0.0
    message: str = ""
    task_id: str | None = None
    files: tuple[str, ...] = ()


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

    @classmethod
    def new(
        cls,
        provider: str,
        source: str,
        prompt: str = "",
        image_paths: tuple[str, ...] = (),
        options: Mapping[str, object] | None = None,
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

    def request(self) -> GenerationRequest:
        return GenerationRequest(self.source, self.prompt, self.image_paths, dict(self.options))

    def evolve(self, **changes: object) -> Job:
        return replace(self, updated=time.time(), **changes)

    def with_event(self, event: JobEvent) -> Job:
        return self.evolve(
            state=event.state,
            progress=event.progress,
            message=event.message,
            task_id=event.task_id or self.task_id,
            files=event.files or self.files,
        )
