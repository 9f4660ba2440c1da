"""Money you can see (issue #21), without Blender: how a stage's charge is kept as answers
arrive, what a job cost, the per-service sums `spend` prints, and amounts as services write
them. The agreement with each service's own ledger is in tests/blender/test_spend_blender.py."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from conjure_src.jobs.model import Job, JobState, StageCharge
from conjure_src.jobs.spend import (
    Admit,
    Balance,
    PriceBook,
    Request,
    SpendLimit,
    cost_words,
    estimate_words,
    price_key,
    spend,
)
from conjure_src.providers.base import Charge, ChargeState
from conjure_src.providers.common import amount, reported_charge

FROZEN, CHARGED, REFUNDED = ChargeState.FROZEN, ChargeState.CHARGED, ChargeState.REFUNDED


def _job(provider: str = "triverse", created: float = 100.0, *charges: tuple) -> Job:
    job = Job.new(provider, "TEXT", "a cost").evolve(created=created)
    for stage, charge in charges:
        job = job.evolve(charges=job.charged(stage, charge))
    return job


def test_a_later_answer_replaces_a_stage_and_keeps_what_it_leaves_unsaid() -> None:
    job = _job("triverse", 1.0, ("", Charge(120.0, "credits", FROZEN, 880.0)))
    assert job.credits == 120 and job.balance is not None and job.balance[0] == 880
    job = job.evolve(charges=job.charged("", Charge(None, "credits", CHARGED)))
    (only,) = job.charges
    assert (only.state, only.amount, only.balance) == (CHARGED, 120.0, 880.0)
    again = job.evolve(charges=job.charged("", Charge(None, "credits", CHARGED)))
    assert again.charges == job.charges  # the same answer twice (a resume) changes nothing


def test_what_a_job_cost() -> None:
    assert _job().credits is None  # nothing said: unknown, not free
    refunded = _job("voxelai", 1.0, ("voxelize", Charge(1.0, "tokens", CHARGED, 4.0)),
                    ("voxelize", Charge(None, "tokens", REFUNDED, 5.0)))  # fmt: skip
    assert refunded.credits == 0 and refunded.credit_unit == "tokens"
    two = _job("ravenra", 1.0, ("preview", Charge(1.0, "generation", CHARGED)),
               ("refine", Charge(1.0, "generation", CHARGED)))  # fmt: skip
    assert two.credits == 2 and len(two.charges) == 2
    unread = _job("trify3d", 1.0, ("", Charge(None, "credits", CHARGED, note="garbled")))
    assert unread.credits is None


def test_spend_sums_each_service_and_keeps_the_latest_balance() -> None:
    jobs = [
        _job("triverse", 10.0, ("", Charge(120.0, "credits", CHARGED, 880.0))),
        _job("triverse", 20.0, ("", Charge(120.0, "credits", FROZEN, 760.0))),
        _job("triverse", 30.0, ("", Charge(120.0, "credits", REFUNDED))),
        _job("voxelai", 40.0, ("voxelize", Charge(None, "tokens", CHARGED))),
        _job("siray", 5.0),  # nothing said: not a paid job here
    ]
    triverse, voxel = spend(jobs)
    assert (triverse.service, triverse.unit, triverse.paid_jobs) == ("triverse", "credits", 3)
    assert (triverse.charged, triverse.held, triverse.refunded) == (120, 120, 120)
    assert triverse.balance == 760 and triverse.unknown == 0
    assert voxel.service == "voxelai" and voxel.unknown == 1 and voxel.charged == 0
    assert [s.service for s in spend(jobs, since=25.0)] == ["triverse", "voxelai"]
    assert spend(jobs, since=25.0)[0].paid_jobs == 1


@pytest.mark.parametrize(
    ("written", "read"),
    [(5, 5.0), (2.5, 2.5), ("7", 7.0), (" 0.5 ", 0.5), (0, 0.0), (True, None), (-1, None),
     ("five", None), (None, None), (math.nan, None), (math.inf, None), ([3], None)],
)  # fmt: skip
def test_amounts_as_services_write_them(written: object, read: float | None) -> None:
    assert amount(written) == read


def test_a_charge_not_understood_says_why_and_keeps_the_balance() -> None:
    charge = reported_charge({"creditsUsed": "lots", "creditsRemaining": 40}, ("creditsUsed",),
                             "credits", CHARGED, ("creditsRemaining",))  # fmt: skip
    assert charge == Charge(None, "credits", CHARGED, 40.0, "creditsUsed 'lots' is not an amount")
    assert reported_charge({}, ("creditsUsed",), "credits", CHARGED) is None


def test_stage_charges_compare_without_their_time() -> None:
    assert StageCharge("", "credits", CHARGED, 1.0, at=1.0) == StageCharge(
        "", "credits", CHARGED, 1.0, at=2.0
    )


def test_a_quote_is_the_sum_of_the_last_charges_for_each_kind_of_job() -> None:
    def job(created: float, cost: float, state: ChargeState = CHARGED, **options: object) -> Job:
        made = Job.new("trify3d", "TEXT", "q", options=options).evolve(created=created)
        return made.evolve(charges=made.charged("", Charge(cost, "credits", state)))

    jobs = [
        job(1.0, 4.0),
        job(2.0, 5.0),  # the newest of its kind wins
        job(3.0, 9.0, REFUNDED),  # a refund says nothing of the price
        job(4.0, 30.0, model="big"),
        _job("voxelai", 5.0, ("voxelize", Charge(1.0, "tokens", CHARGED))),
    ]
    requests = [
        Request("trify3d"), Request("trify3d", "TEXT", {"prompt_extra": 1}),  # not a price option
        Request("trify3d", "TEXT", {"model": "big"}), Request("trify3d", "IMAGE"),
        Request("voxelai"), Request("siray"),
    ]  # fmt: skip
    trify, voxel, siray = PriceBook(jobs).quote(requests)
    assert (trify.rows, trify.amount, trify.unknown, trify.unit) == (4, 40.0, 1, "credits")
    assert (voxel.amount, voxel.unit, siray.unknown, siray.unit) == (1.0, "tokens", 1, "")


def test_the_price_book_keeps_learning_and_keeps_the_newest_balance() -> None:
    book = PriceBook([_job("trify3d", 1.0, ("", Charge(5.0, "credits", CHARGED, 95.0)))])
    assert book.balances["trify3d"].amount == 95
    assert estimate_words(book.quote([Request("trify3d")] * 2)) == "about 10 credits"
    newer = _job("trify3d", 2.0, ("", Charge(7.0, "credits", CHARGED, 88.0)))
    book.learn(newer)
    assert estimate_words(book.quote([Request("trify3d"), Request("siray")])) == (
        "about 7 credits, 1 unknown"
    )
    older = tuple(replace(c, balance=50.0, at=c.at - 60) for c in newer.charges)
    stale = newer.evolve(charges=older)
    book.learn(stale)  # a balance older than the one seen is not the balance now
    assert book.balances["trify3d"] == Balance(88.0, "credits", newer.charges[0].at)
    assert estimate_words(book.quote([Request("siray")])) == ""  # nothing known: no words


@pytest.mark.parametrize(
    ("charges", "words"),
    [
        ((), ""),
        ((("", Charge(12.0, "credits", CHARGED)),), "12 credits"),
        ((("", Charge(120.0, "credits", FROZEN)),), "120 credits (held)"),
        ((("v", Charge(1.0, "tokens", CHARGED)), ("v", Charge(None, "tokens", REFUNDED))),
         "0 tokens (refunded)"),
        ((("p", Charge(1.0, "generation", CHARGED)), ("r", Charge(1.0, "generation", CHARGED))),
         "2 generations"),
        ((("", Charge(None, "credits", CHARGED, note="garbled")),), "cost unknown"),
    ],
)  # fmt: skip
def test_what_a_job_row_says_it_cost(charges: tuple, words: str) -> None:
    assert cost_words(_job("trify3d", 1.0, *charges)) == words


def _limited(limit: float, last: dict | None = None) -> SpendLimit:
    return SpendLimit(limit, since=0.0, last=dict(last or {}))


def _charged(job: Job, cost: float | None, paid: ChargeState = CHARGED, **changes) -> Job:
    return job.evolve(charges=job.charged("", Charge(cost, "credits", paid)), **changes)


def test_a_limit_sends_what_fits_by_the_last_charges_and_refuses_the_rest() -> None:
    key = price_key("trify3d", "TEXT", {})
    limit = _limited(12, {key: (5.0, "credits")})
    jobs = [Job.new("trify3d", "TEXT", f"row {i}") for i in range(3)]
    assert [limit.admit(j)[0] for j in jobs[:2]] == [Admit.GO, Admit.GO]
    verdict, why = limit.admit(jobs[2])
    assert verdict == Admit.REFUSE and why == (
        "Not sent: credit limit (10 of 12 committed, about 5 credits)"
    )
    assert limit.admit(jobs[0])[0] == Admit.GO  # a later stage of a counted job
    limit.observe(_charged(jobs[0], 5.0, REFUNDED, state=JobState.FAILED))  # refunded: room
    assert limit.admit(jobs[2])[0] == Admit.GO and limit.committed() == 10


def test_a_kind_never_charged_goes_one_job_at_a_time_until_its_price_is_known() -> None:
    limit = _limited(12)
    first, second, third = (Job.new("trify3d", "TEXT", f"row {i}") for i in range(3))
    assert limit.admit(first)[0] == Admit.GO
    assert limit.admit(second)[0] == Admit.WAIT  # might cost anything: not two at once
    limit.observe(_charged(first, 5.0))
    assert limit.admit(second)[0] == Admit.WAIT  # charged, but its job has not ended yet
    limit.observe(_charged(first, 5.0, state=JobState.IMPORTED))
    assert limit.admit(second)[0] == Admit.GO and limit.committed() == 10
    assert limit.admit(third)[0] == Admit.REFUSE


def test_an_amount_that_cannot_be_read_holds_every_further_create() -> None:
    limit = _limited(100, {price_key("trify3d", "TEXT", {}): (5.0, "credits")})
    first, second = Job.new("trify3d", "TEXT", "a"), Job.new("trify3d", "TEXT", "b")
    assert limit.admit(first)[0] == Admit.GO
    limit.observe(_charged(first, None))
    assert limit.admit(second)[0] == Admit.REFUSE


def test_jobs_from_before_the_limit_are_not_under_it() -> None:
    limit = SpendLimit(1, since=1e12, last={})
    assert limit.admit(Job.new("trify3d", "TEXT", "older"))[0] == Admit.GO
