"""The money rules for a step that went wrong: what becomes of the job. No bpy, no threads:
a table of cases the engine applies (docs/jobs.md says the same in words).

- A create or upload that certainly made nothing (429, never connected) goes again later; so
  does an upload after a timeout or a 5xx (an upload starts no task).
- A create that may have made a task (a timeout, a 5xx, an unreadable answer) goes again
  only where that is safe — a free stage, or a service whose page documents an idempotency
  key — at most MAX_CREATE_SENDS times; otherwise the job is `unsure`: maybe charged.
- Once paid, trouble only stalls a job; the service's own answer ends it. Files that expired
  or came back wrong are asked for again (fresh URLs from a poll) a few times first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..providers.base import ServiceInfo, Step
from ..providers.errors import ErrorKind, ProviderError
from .model import Answer, Job

MAX_CREATE_SENDS = 5  # a create that may have arrived goes at most this often, even when safe
MAX_REFETCHES = 3  # asset URLs asked for again when they expired or gave no model
# Besides timeouts and transient errors, the answers to a create after which a task may
# exist (and be charged) although none came back.
MAYBE_MADE = frozenset({ErrorKind.SERVER, ErrorKind.BAD_RESPONSE})
NOTHING_MADE = frozenset({ErrorKind.RATE_LIMIT, ErrorKind.NOT_SENT})


class Act(enum.Enum):
    FAIL = "fail"  # ends the job with the message
    UNSURE = "unsure"  # ends it as maybe charged
    RETRY = "retry"  # the same step again after a wait (nothing was made)
    CONFIRM = "confirm"  # the same create again, same key, after a wait (safe here)
    STALL = "stall"  # paid and in trouble: again after a back-off, visibly
    REFETCH = "refetch"  # back to the last poll for fresh asset URLs


@dataclass(frozen=True)
class Verdict:
    act: Act
    message: str = ""


def answer_of(exc: ProviderError) -> Answer:
    """What a failed create says about a task on the service."""
    if exc.kind in NOTHING_MADE:
        return Answer.NOT_MADE
    return Answer.UNKNOWN if exc.retryable or exc.kind in MAYBE_MADE else Answer.NOT_MADE


def after_error(
    step: Step, exc: ProviderError, job: Job, stage: str, info: ServiceInfo, refetches: int
) -> Verdict:
    """What to do with `job` after its `step` (of `stage`) failed with `exc`."""
    if step in (Step.CREATE, Step.UPLOAD) and not job.paid:
        return _before_paying(step, exc, job, stage, info)
    if step == Step.CREATE:  # a later, paid stage's create: same care, but never fail blindly
        if exc.kind in NOTHING_MADE:
            return Verdict(Act.STALL)
        return _before_paying(step, exc, job, stage, info)
    if step == Step.POLL and exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.BAD_REQUEST):
        return Verdict(Act.FAIL, str(exc))  # the service's own answer
    expired = exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.AUTH)
    if step == Step.DOWNLOAD and expired and refetches < MAX_REFETCHES:
        return Verdict(Act.REFETCH, "Refreshing")
    if step == Step.DOWNLOAD and exc.kind == ErrorKind.BAD_RESPONSE:  # an HTML page, a bad hop
        if refetches < MAX_REFETCHES:  # a CDN's bad moment must not lose a paid task
            return Verdict(Act.REFETCH, "Fetching the files again")
        return Verdict(Act.FAIL, f"{exc} ({MAX_REFETCHES + 1} tries)")
    return Verdict(Act.STALL)


def _before_paying(
    step: Step, exc: ProviderError, job: Job, stage: str, info: ServiceInfo
) -> Verdict:
    if exc.kind == ErrorKind.NOT_FOUND:  # no task exists yet: it is the address
        base = job.base_url or info.default_base_url
        return Verdict(
            Act.FAIL, f"{info.name} has no such endpoint ({exc.detail}): check its base URL, {base}"
        )
    if exc.kind in NOTHING_MADE:
        return Verdict(Act.RETRY)  # certainly not made: safe once the service lets us
    if step == Step.CREATE and (exc.retryable or exc.kind in MAYBE_MADE):
        free = stage in info.free_stages
        if not (free or info.idempotent_create):
            return Verdict(Act.UNSURE, unsure(str(exc), info.name))
        if job.maybe_made(stage) >= MAX_CREATE_SENDS:
            tries = f"{exc} ({MAX_CREATE_SENDS} tries)"
            if free:
                return Verdict(Act.FAIL, f"{tries}; nothing was charged")
            return Verdict(Act.UNSURE, unsure(tries, info.name))
        return Verdict(Act.CONFIRM)
    if step == Step.UPLOAD and (exc.retryable or exc.kind in MAYBE_MADE):
        return Verdict(Act.RETRY)  # an upload starts no task: another one costs nothing
    return Verdict(Act.FAIL, str(exc))


def unsure(why: str, service: str) -> str:
    return (
        f"{why}; the request may have reached {service} and may be charged: check its "
        "dashboard before generating again"
    )
