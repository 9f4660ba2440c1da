"""What the journal's jobs cost, per service, as the services said it, and what new jobs
will likely cost, from the last charges seen for the same kind of job (no bpy, no price
table: Conjure never writes a price down). docs/jobs.md, "Money you can see"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace

from ..providers import SERVICES
from ..providers.base import ChargeState
from .model import Job

# A service, a source and the values of the options that may change its price.
PriceKey = tuple[str, str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class ServiceSpend:
    """One service's money in the journal, in its own unit."""

    service: str
    unit: str  # "credits", "tokens", or "generation" where no price is documented
    paid_jobs: int  # jobs with a charge, held or spent, or refunded
    charged: float  # spent
    held: float  # frozen for tasks still running (Triverse), or counted when they succeed
    refunded: float  # given back
    unknown: int  # stages whose amount the service did not say (or not readably)
    balance: float | None  # what the account had left, the last time the service said
    balance_at: float | None  # when (wall time)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def spend(jobs: Iterable[Job], since: float = 0.0) -> list[ServiceSpend]:
    """Per service (alphabetical), the jobs created at or after `since` that cost something."""
    by_service: dict[str, list[Job]] = {}
    for job in jobs:
        if job.charges and job.created >= since:
            by_service.setdefault(job.provider, []).append(job)
    return [_summed(service, group) for service, group in sorted(by_service.items())]


def _summed(service: str, jobs: list[Job]) -> ServiceSpend:
    totals = {state: 0.0 for state in ChargeState}
    unknown = 0
    balances: list[tuple[float, float]] = []
    for job in jobs:
        for charge in job.charges:
            if charge.amount is None:
                unknown += 1
            else:
                totals[charge.state] += charge.amount
        if job.balance is not None:
            balances.append((job.balance[1], job.balance[0]))
    at, balance = max(balances) if balances else (None, None)
    return ServiceSpend(
        service,
        jobs[0].credit_unit,
        len(jobs),
        totals[ChargeState.CHARGED],
        totals[ChargeState.FROZEN],
        totals[ChargeState.REFUNDED],
        unknown,
        balance,
        at,
    )


@dataclass(frozen=True)
class Request:
    """What a quote needs of a job not yet sent."""

    service: str
    source: str = "TEXT"
    options: Mapping[str, object] | None = None


@dataclass(frozen=True)
class Estimate:
    """A quote for one service's share of some requests: an estimate, from the most recent
    charge this journal saw for each kind of job; rows of a kind never charged are unknown."""

    service: str
    unit: str  # "" while no row of it is known
    rows: int
    amount: float  # the estimate of the rows whose kind was charged before
    unknown: int  # rows with no earlier charge to go by

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def price_key(service: str, source: str, options: Mapping[str, object] | None) -> PriceKey:
    names = SERVICES[service].price_options if service in SERVICES else ()
    given = options or {}
    return service, source.upper(), tuple((n, str(given.get(n, ""))) for n in names)


def last_charges(jobs: Iterable[Job]) -> dict[PriceKey, tuple[float, str]]:
    """Each kind of job's most recent known cost (held or spent; refunded jobs say nothing
    of a price), with its unit."""
    last: dict[PriceKey, tuple[float, str]] = {}
    for job in sorted(jobs, key=lambda j: j.created):  # oldest first: the newest wins
        cost = job.credits
        if cost is not None and any(c.state != ChargeState.REFUNDED for c in job.charges):
            last[price_key(job.provider, job.source, job.options)] = (cost, job.credit_unit)
    return last


def quote(requests: Iterable[Request], jobs: Iterable[Job]) -> list[Estimate]:
    """Per service (in the order they first appear), the estimate of `requests`."""
    last = last_charges(jobs)
    estimates: dict[str, Estimate] = {}
    for request in requests:
        now = estimates.get(request.service) or Estimate(request.service, "", 0, 0.0, 0)
        known = last.get(price_key(request.service, request.source, request.options))
        if known is None:
            now = replace(now, rows=now.rows + 1, unknown=now.unknown + 1)
        else:
            now = replace(now, unit=known[1], rows=now.rows + 1, amount=now.amount + known[0])
        estimates[request.service] = now
    return list(estimates.values())
