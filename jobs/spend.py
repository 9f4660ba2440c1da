"""What the journal's jobs cost, per service, as the services said it (no bpy, no price
table: Conjure never guesses a price). docs/jobs.md, "Money you can see"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from ..providers.base import ChargeState
from .model import Job


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
