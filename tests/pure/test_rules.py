"""The money rules as a table: what becomes of a job after a failed step, by service kind."""

from __future__ import annotations

import pytest

from conjure_src.jobs.model import Answer, CreateSent, Job
from conjure_src.jobs.rules import MAX_CREATE_SENDS, Act, after_error, answer_of
from conjure_src.providers.base import ServiceInfo, Step
from conjure_src.providers.errors import ErrorKind, ProviderError

PLAIN = ServiceInfo("plain", "Plain", "https://plain.example", "", "")
KEYED = ServiceInfo("keyed", "Keyed", "https://keyed.example", "", "", idempotent_create=True)
FREE = ServiceInfo("free", "Free", "https://free.example", "", "", free_stages=frozenset({"img"}))
UNPAID = Job.new("plain", "TEXT", "a chair")
PAID = UNPAID.evolve(paid_at=1.0, task_id="t-1")


def _error(kind: ErrorKind) -> ProviderError:
    return ProviderError(kind, "trouble")


@pytest.mark.parametrize(
    ("step", "kind", "job", "info", "stage", "act"),
    [
        (Step.CREATE, ErrorKind.RATE_LIMIT, UNPAID, PLAIN, "", Act.RETRY),  # refused: not made
        (Step.CREATE, ErrorKind.NOT_SENT, UNPAID, PLAIN, "", Act.RETRY),  # never connected
        (Step.CREATE, ErrorKind.TIMEOUT, UNPAID, PLAIN, "", Act.UNSURE),  # maybe made: ask
        (Step.CREATE, ErrorKind.SERVER, UNPAID, PLAIN, "", Act.UNSURE),
        (Step.CREATE, ErrorKind.BAD_RESPONSE, UNPAID, PLAIN, "", Act.UNSURE),
        (Step.CREATE, ErrorKind.TIMEOUT, UNPAID, KEYED, "", Act.CONFIRM),  # documented key
        (Step.CREATE, ErrorKind.TIMEOUT, UNPAID, FREE, "img", Act.CONFIRM),  # a free stage
        (Step.CREATE, ErrorKind.CREDITS, UNPAID, PLAIN, "", Act.FAIL),  # the service said no
        (Step.CREATE, ErrorKind.NOT_FOUND, UNPAID, PLAIN, "", Act.FAIL),  # a wrong base URL
        (Step.CREATE, ErrorKind.RATE_LIMIT, PAID, PLAIN, "refine", Act.STALL),  # paid: stall
        (Step.CREATE, ErrorKind.TIMEOUT, PAID, PLAIN, "refine", Act.UNSURE),
        (Step.UPLOAD, ErrorKind.TIMEOUT, UNPAID, PLAIN, "", Act.RETRY),  # free to send again
        (Step.UPLOAD, ErrorKind.SERVER, UNPAID, PLAIN, "", Act.RETRY),  # a 500: no task either
        (Step.POLL, ErrorKind.TIMEOUT, PAID, PLAIN, "", Act.STALL),  # paid: never dropped
        (Step.POLL, ErrorKind.AUTH, PAID, PLAIN, "", Act.STALL),  # a key fixed later resumes
        (Step.POLL, ErrorKind.NOT_FOUND, PAID, PLAIN, "", Act.FAIL),  # the service's word
        (Step.DOWNLOAD, ErrorKind.NOT_FOUND, PAID, PLAIN, "", Act.REFETCH),  # expired URL
        (Step.DOWNLOAD, ErrorKind.BAD_RESPONSE, PAID, PLAIN, "", Act.REFETCH),  # not a model
        (Step.DOWNLOAD, ErrorKind.NETWORK, PAID, PLAIN, "", Act.STALL),
    ],
)
def test_after_a_failed_step(step, kind, job, info, stage, act) -> None:
    verdict = after_error(step, _error(kind), job, stage, info, refetches=0)
    assert verdict.act == act
    if act == Act.UNSURE:
        assert "may be charged" in verdict.message and "check its dashboard" in verdict.message


def test_a_safe_resend_stops_at_the_cap() -> None:
    sent = tuple(CreateSent("", "k", 1.0, Answer.UNKNOWN) for _ in range(MAX_CREATE_SENDS))
    job = UNPAID.evolve(creates=sent)
    assert after_error(Step.CREATE, _error(ErrorKind.TIMEOUT), job, "", KEYED, 0).act == Act.UNSURE
    free = after_error(Step.CREATE, _error(ErrorKind.TIMEOUT), job, "img", FREE, 0)
    assert free.act == Act.CONFIRM  # its own stage has not been sent that often
    sent_free = tuple(CreateSent("img", "k", 1.0, Answer.UNKNOWN) for _ in range(MAX_CREATE_SENDS))
    verdict = after_error(
        Step.CREATE, _error(ErrorKind.TIMEOUT), job.evolve(creates=sent_free), "img", FREE, 0
    )
    assert verdict.act == Act.FAIL and "nothing was charged" in verdict.message


def test_expired_urls_are_asked_for_again_a_few_times_only() -> None:
    gone = _error(ErrorKind.NOT_FOUND)
    assert after_error(Step.DOWNLOAD, gone, PAID, "", PLAIN, refetches=3).act == Act.STALL
    wrong = after_error(Step.DOWNLOAD, _error(ErrorKind.BAD_RESPONSE), PAID, "", PLAIN, 3)
    assert wrong.act == Act.FAIL and "(4 tries)" in wrong.message


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        (ErrorKind.RATE_LIMIT, Answer.NOT_MADE),
        (ErrorKind.NOT_SENT, Answer.NOT_MADE),
        (ErrorKind.CREDITS, Answer.NOT_MADE),
        (ErrorKind.TIMEOUT, Answer.UNKNOWN),
        (ErrorKind.SERVER, Answer.UNKNOWN),
        (ErrorKind.BAD_RESPONSE, Answer.UNKNOWN),
    ],
)
def test_what_a_failed_create_says_about_a_task(kind, answer) -> None:
    assert answer_of(_error(kind)) == answer
