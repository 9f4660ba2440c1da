"""What the journal's jobs cost, per service, as the services said it, and what new jobs
will likely cost, from the last charges seen for the same kind of job (no bpy, no price
table: Conjure never writes a price down). docs/jobs.md, "Money you can see"."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace

from ..providers import SERVICES
from ..providers.base import ChargeState
from .model import FINISHED, Job, JobState, plain_number

# A job in these states sends no more creates: what it cost is what it will cost.
PAID_UP = FINISHED | {JobState.DOWNLOADING, JobState.READY, JobState.IMPORTING}

# A service, a source and the values of the options that may change its price.
PriceKey = tuple[str, str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class ServiceSpend:
    """One service's money in the journal, in its own unit."""

    service: str
    unit: str  # "credits", "tokens", or "generation" where no price is documented
    paid_jobs: int  # jobs with a charge, held or spent, or refunded
    charged: float  # spent
    held: float  # frozen for tasks not ended yet (Triverse)
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


@dataclass(frozen=True)
class Balance:
    amount: float
    unit: str
    at: float  # when the service said it (wall time)


class PriceBook:
    """What this journal knows of prices and accounts: each kind of job's most recent known
    cost (held or spent; refunded jobs say nothing of a price), and each service's last
    reported balance. Built from the journal once, then told of every job that changes."""

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self.last: dict[PriceKey, tuple[float, str]] = {}
        self.balances: dict[str, Balance] = {}
        self._made: dict[PriceKey, float] = {}  # when the job `last` went by was created
        for job in jobs:
            self.learn(job)

    def learn(self, job: Job) -> None:
        """Take what `job` says; of two jobs of a kind, the one created later sets the price
        (an old job imported again or resumed does not)."""
        key = price_key(job.provider, job.source, job.options)
        if job.price is not None and job.created >= self._made.get(key, job.created):
            self.last[key], self._made[key] = (job.price, job.credit_unit), job.created
        said = job.balance
        seen = self.balances.get(job.provider)
        if said is not None and (seen is None or said[1] >= seen.at):
            self.balances[job.provider] = Balance(said[0], job.credit_unit, said[1])

    def quote(self, requests: Iterable[Request]) -> list[Estimate]:
        """Per service (in the order they first appear), the estimate of `requests`."""
        estimates: dict[str, Estimate] = {}
        for request in requests:
            now = estimates.get(request.service) or Estimate(request.service, "", 0, 0.0, 0)
            known = self.last.get(price_key(request.service, request.source, request.options))
            if known is None:
                now = replace(now, rows=now.rows + 1, unknown=now.unknown + 1)
            else:
                now = replace(now, unit=known[1], rows=now.rows + 1, amount=now.amount + known[0])
            estimates[request.service] = now
        return list(estimates.values())


def totals(estimates: Iterable[Estimate]) -> dict[str, float]:
    """The known part of some estimates, per unit."""
    summed: dict[str, float] = {}
    for e in estimates:
        if e.unit:
            summed[e.unit] = summed.get(e.unit, 0.0) + e.amount
    return summed


def amount_words(amount: float, unit: str) -> str:
    """'12 credits', '1 generation', '3 generations'."""
    plural = unit == "generation" and amount != 1
    return f"{plain_number(amount)} {unit}{'s' if plural else ''}"


def estimate_words(estimates: list[Estimate]) -> str:
    """'about 30 credits + 1 generation, 1 unknown'; '' when nothing is known."""
    known = " + ".join(amount_words(v, u) for u, v in totals(estimates).items())
    if not known:
        return ""
    unknown = sum(e.unknown for e in estimates)
    return f"about {known}" + (f", {unknown} unknown" if unknown else "")


def cost_words(job: Job) -> str:
    """A job's cost as the service said it, in a few words ('' when it said nothing)."""
    if not job.charges:
        return ""
    unit = job.credit_unit
    if all(c.state == ChargeState.REFUNDED for c in job.charges):
        return f"{amount_words(0, unit)} (refunded)"
    if job.credits is None:
        return "cost unknown"
    held = any(c.state == ChargeState.FROZEN for c in job.charges)
    return amount_words(job.credits, unit) + (" (held)" if held else "")


class Admit(enum.Enum):
    GO = "go"
    WAIT = "wait"  # the cost of the job before it is being learned: ask again soon
    REFUSE = "refuse"  # it could take the total over the limit: never sent


@dataclass
class _Reserved:
    key: PriceKey
    estimate: float | None  # None: no job of its kind was charged before
    cost: float | None = None  # what its charges say so far
    unreadable: bool = False  # the service gave an amount Conjure could not read
    finished: bool = False  # no more creates: its cost is final

    def counted(self, limit: float) -> float:
        if self.unreadable:
            return limit  # unknown spending holds every further create
        cost = self.cost or 0.0
        return cost if self.finished else max(cost, self.estimate or 0.0)


class SpendLimit:
    """A limit on what the jobs created from `since` on may cost, in each service's unit
    (summed as they come), held before each job's first paid create; the scheduler thread
    owns it. A job counts its estimate (the last charge of its kind) until its own charges
    say more; a kind never charged here goes one job at a time until one has ended, so its
    price is learned before a second one could cross the limit."""

    def __init__(self, limit: float, since: float, last: dict[PriceKey, tuple[float, str]]):
        self.limit, self.since, self.last = limit, since, last
        self._jobs: dict[str, _Reserved] = {}

    def committed(self) -> float:
        return sum(r.counted(self.limit) for r in self._jobs.values())

    def admit(self, job: Job) -> tuple[Admit, str]:
        """Whether `job`'s paid create may go now, and why not."""
        if job.created < self.since or job.job_id in self._jobs:
            return Admit.GO, ""  # not under this limit, or already counted (a later stage)
        key = price_key(job.provider, job.source, job.options)
        known = self.last.get(key)
        spent = self.committed()
        limit = f"{self.limit:g}"
        if known is None:
            if any(r.estimate is None and not r.finished for r in self._jobs.values()):
                return Admit.WAIT, "Waiting to learn what a job costs (credit limit)"
            if spent >= self.limit:
                return Admit.REFUSE, f"Not sent: credit limit ({spent:g} of {limit} committed)"
        elif spent + known[0] > self.limit:
            about = f"about {known[0]:g} {known[1]}"
            return Admit.REFUSE, f"Not sent: credit limit ({spent:g} of {limit} committed, {about})"
        self._jobs[job.job_id] = _Reserved(key, known[0] if known else None)
        return Admit.GO, ""

    def observe(self, job: Job) -> None:
        """A job changed: what its charges say replaces the estimate reserved for it."""
        reserved = self._jobs.get(job.job_id)
        if reserved is None:
            return
        if job.charges:
            reserved.cost = job.credits
            reserved.unreadable = job.credits is None
        reserved.finished = job.state in PAID_UP
        if reserved.finished and job.price is not None:  # the whole job's price
            self.last[reserved.key] = (job.price, job.credit_unit)
