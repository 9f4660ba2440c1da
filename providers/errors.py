"""What went wrong with a request, and what an answer said about the request budget.

The words the HTTP layer (`http.py`), the service modules and the engine share; this module
imports nothing from the package, so none of them depends on another through it.

An error's kind decides what the engine does (docs/jobs.md): wait and ask again, stall a paid
job, or fail it; its text is one line a user can act on, keys already redacted by whoever
made it. `NOT_SENT` is the one kind that promises the request never reached the service (the
connection failed or timed out before anything was sent, the proxy was unreachable, the
certificate was rejected): even a create may then be sent again, nothing was made or charged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    AUTH = "auth"
    CREDITS = "credits"
    RATE_LIMIT = "rate-limit"
    BAD_REQUEST = "bad-request"
    NOT_FOUND = "not-found"
    TRANSIENT = "transient"
    SERVER = "server"
    NETWORK = "network"  # the request may have arrived (the connection broke after sending)
    TIMEOUT = "timeout"  # sent, but no answer in time: it may have arrived
    BAD_RESPONSE = "bad-response"
    NOT_SENT = "not-sent"  # certainly never reached the service: safe to send again


# What the user reads first; the detail (redacted, one line) follows after a colon.
USER_MESSAGES: dict[ErrorKind, str] = {
    ErrorKind.AUTH: "The service rejected the API key; check it in the add-on preferences",
    ErrorKind.CREDITS: "Not enough credits on the service account",
    ErrorKind.RATE_LIMIT: "The service is rate limiting requests; try again shortly",
    ErrorKind.BAD_REQUEST: "The service refused the request",
    ErrorKind.NOT_FOUND: "The service does not know this task",
    ErrorKind.TRANSIENT: "The service is temporarily unavailable",
    ErrorKind.SERVER: "The service had an internal error",
    ErrorKind.NETWORK: "Could not reach the service",
    ErrorKind.TIMEOUT: "The service did not answer in time",
    ErrorKind.BAD_RESPONSE: "The service sent a response this add-on does not understand",
    ErrorKind.NOT_SENT: "Could not reach the service",
}
RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMIT,
        ErrorKind.TRANSIENT,
        ErrorKind.NETWORK,
        ErrorKind.TIMEOUT,
        ErrorKind.NOT_SENT,
    }
)


class ProviderError(Exception):
    """A failure with a kind the engine acts on; str() is one line for the user.

    `status` is the HTTP status the error was read from, when it was read from one; `cause`
    what kept an answer from coming (dns, refused, timeout, tls, proxy, network), when none
    did."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str = "",
        retry_after: float | None = None,
        *,
        status: int | None = None,
        cause: str = "",
    ) -> None:
        self.kind = kind
        self.detail = " ".join(detail.split())[:300]
        self.retry_after = retry_after
        self.status = status
        self.cause = cause
        super().__init__(str(self))

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __str__(self) -> str:
        base = USER_MESSAGES[self.kind]
        return f"{base}: {self.detail}" if self.detail else base


@dataclass(frozen=True)
class RateNote:
    """One answer's word on the request budget, from its headers: the HTTP client hands it
    to `on_rate`, the engine's limiter (`jobs/ratelimit.py`) acts on it."""

    status: int
    limit: int | None
    remaining: int | None
    reset_after: float | None  # seconds until the budget refills
    retry_after: float | None  # seconds the service asked us to wait
