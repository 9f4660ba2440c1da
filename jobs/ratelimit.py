"""Per-service request budgets: "may I send now, or in how many seconds?" without blocking.

Two sources, both kept: the documented limits (`RateRule`: N requests per window, as a
sliding log of our own sends, each counted from when its answer came: the service counted it
on arrival, at some moment between the send and the answer, and a send may wait in the
workers' queue, then for Python's GIL while the main thread imports) and what the
service says in its answers (X-RateLimit-Limit, -Remaining, -Reset, Retry-After). A
"Remaining: 0" with no reset time blocks for at most `probe_after` seconds; then exactly one
request probes, and its answer decides. Every wait is a number handed back to the scheduler,
never a sleep.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from ..providers import SERVICES
from ..providers.base import RateRule
from ..providers.errors import RateNote

MAX_BLOCK = 15 * 60.0  # a Retry-After longer than this is treated as this
# A window is kept a little longer than documented, for the service's own clock and
# bookkeeping: a share of it (15 s gives 75 ms, an hour 18 s, and a short window does not
# lose a fixed slice of its rate), never less than 5 ms.
MARGIN = 0.005
LEAST_MARGIN = 0.005


def margin(window: float) -> float:
    return max(window * MARGIN, LEAST_MARGIN)


PROBE_TIMEOUT = 60.0  # a probe whose answer never came frees the gate after this


class ServiceLimiter:
    def __init__(
        self,
        rules: Sequence[RateRule],
        *,
        probe_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = list(rules)
        self.probe_after = probe_after
        self.clock = clock
        self._sent: list[deque[float]] = [deque() for _ in self.rules]  # per rule, in order
        self._unsent: list[deque[float]] = [deque() for _ in self.rules]  # reserved, not gone
        self._blocked_until = 0.0
        self._needs_probe = False  # the last word was "Remaining: 0"
        self._probe_started = 0.0  # 0: no probe in flight
        self._share = 1.0  # the part of the budget this process may use (farm shards)
        self._lock = threading.Lock()

    def set_share(self, fraction: float) -> None:
        """Use `fraction` of the budget: N shards of a batch on N machines share one key."""
        with self._lock:
            scale = fraction / self._share
            self._share = fraction
            self.rules = [
                RateRule(max(1, int(r.requests * scale)), r.window, r.bucket) for r in self.rules
            ]

    def reserve(self, bucket: str) -> float:
        """0.0 and the send is counted (from now until it goes: `leaving`); otherwise the
        seconds to wait before asking again."""
        with self._lock:
            now = self.clock()
            if now < self._blocked_until:
                return self._blocked_until - now
            if self._needs_probe:
                if self._probe_started and now - self._probe_started < PROBE_TIMEOUT:
                    return 0.25  # one probe is out; its answer decides for everyone
                self._probe_started = now  # the service's word beats our own log here
            else:
                rules = self._rules_for(bucket)
                wait = max((self._window_wait(i, now) for i in rules), default=0.0)
                if wait > 0:
                    return wait
            for i in self._rules_for(bucket):
                self._sent[i].append(now)
                self._unsent[i].append(now)
            return 0.0

    def leaving(self, bucket: str) -> float:
        """A reserved request goes on the wire now (on a worker, perhaps a while after it was
        reserved): it is counted from now until `answered`. The oldest reservation not yet
        gone gives up its place; one that never goes (a cancel) keeps its place until it ages
        out, which can only count more, never less. Returns the send's stamp."""
        with self._lock:
            now = self.clock()
            for i in self._rules_for(bucket):
                sent, unsent = self._sent[i], self._unsent[i]
                if unsent:  # aged out together with its copy in `sent`, or still in both
                    sent.remove(unsent.popleft())
                sent.append(now)
            return now

    def answered(self, bucket: str, stamp: float) -> None:
        """The send `leaving` stamped has its answer, or its caller gave up on it: the
        service took it at some moment before now, so it counts from now."""
        with self._lock:
            now = self.clock()
            for i in self._rules_for(bucket):
                sent = self._sent[i]
                with contextlib.suppress(ValueError):  # aged out: it took over a window
                    sent.remove(stamp)
                sent.append(now)  # the log stays in time order: nothing in it is later

    def observe(self, note: RateNote) -> None:
        """An answer's rate headers, as the HTTP client reports them (on worker threads)."""
        with self._lock:
            now = self.clock()
            if note.limit and note.limit > 0:
                self._learn_limit(note.limit)
            self._probe_started = 0.0
            self._needs_probe = False
            if note.status == 429:  # without a time given, our own log says when, if it can
                wait = note.retry_after or note.reset_after or self._own_wait(now)
                wait = wait or self.probe_after
            elif note.remaining == 0:
                own = self._own_wait(now)
                if note.reset_after is None and own > 0:
                    wait = min(own, self.probe_after)  # our own log says when: no probe
                else:
                    self._needs_probe = True
                    wait = note.reset_after if note.reset_after is not None else self.probe_after
            else:
                return
            self._blocked_until = max(self._blocked_until, now + min(wait, MAX_BLOCK))

    def blocked_for(self) -> float:
        with self._lock:
            return max(self._blocked_until - self.clock(), 0.0)

    # -- internals ------------------------------------------------------------------------

    def _rules_for(self, bucket: str) -> list[int]:
        return [i for i, rule in enumerate(self.rules) if rule.applies_to(bucket)]

    def _window_wait(self, i: int, now: float) -> float:
        rule, sent = self.rules[i], self._sent[i]
        span = rule.window + margin(rule.window)
        for log in (sent, self._unsent[i]):
            while log and log[0] <= now - span:
                log.popleft()
        if len(sent) < rule.requests:
            return 0.0
        return sent[-rule.requests] + span - now

    def _own_wait(self, now: float) -> float:
        """When our own send log frees a slot (0: it has room)."""
        return max((self._window_wait(i, now) for i in range(len(self.rules))), default=0.0)

    def _learn_limit(self, limit: int) -> None:
        """The service's stated limit replaces the documented count of its overall rule."""
        mine = max(1, int(limit * self._share))
        for i, rule in enumerate(self.rules):
            if rule.bucket == "*" and rule.requests != mine:
                self.rules[i] = RateRule(mine, rule.window, rule.bucket)


class Budgets:
    """Every service's limiter, made on first use from its documented rules (or the ones
    given), all using the same share of their budgets. Thread-safe."""

    def __init__(
        self,
        rules: Mapping[str, Sequence[RateRule]] | None = None,
        *,
        probe_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rules = dict(rules or {})
        self._probe_after = probe_after
        self._clock = clock
        self._limiters: dict[str, ServiceLimiter] = {}
        self._share = 1.0
        self._lock = threading.Lock()

    def limiter(self, service: str) -> ServiceLimiter:
        with self._lock:
            limiter = self._limiters.get(service)
            if limiter is None:
                rules = self._rules.get(service)
                if rules is None:
                    rules = SERVICES[service].rate_rules if service in SERVICES else ()
                limiter = ServiceLimiter(rules, probe_after=self._probe_after, clock=self._clock)
                limiter.set_share(self._share)
                self._limiters[service] = limiter
            return limiter

    def share(self, fraction: float) -> None:
        """Use `fraction` of every service's budget (farm shards split it)."""
        with self._lock:
            self._share = fraction
            limiters = list(self._limiters.values())
        for limiter in limiters:
            limiter.set_share(fraction)
