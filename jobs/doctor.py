"""`conjure doctor`: whether each service works from here, and why not, without spending
anything (no bpy). Per service: where its key and base URL come from, online access, the
proxy and CA bundle in use, and one live check that costs nothing: an authenticated read of
a task that does not exist. The service answering "no such task" (or "not yours") accepted
the key; 401 or 403 rejected it. Never a create or an upload, never the key in what it says.
"""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from ..providers import SERVICES, get_provider, make_http
from ..providers.errors import ErrorKind, ProviderError
from .session import ServiceSettings

PROBE_TASK = "conjure-doctor-no-such-task"  # asked for by every check: no service has it
CHECK_TIMEOUT = 10.0  # seconds to connect, and to wait for the answer


class Health(enum.StrEnum):
    OK = "ok"
    NO_KEY = "no_key"
    KEY_REJECTED = "key_rejected"
    UNREACHABLE = "unreachable"
    OFFLINE = "offline"
    RATE_LIMITED = "rate_limited"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class Checkup:
    """One service's state, in words (`detail`) and in fields (for `--json`)."""

    service: str
    status: Health
    detail: str  # one line, key redacted
    key_from: str  # "environment", "preferences", "" (none)
    base_url: str
    base_url_from: str  # "environment", "preferences", "default"
    online_access: bool
    proxy: str  # "" (none), "system" (HTTP(S)_PROXY) or the preference, password hidden
    ca_bundle: str  # "" (the usual certificates) or the file
    seconds: float | None = None  # how long the live check took
    http_status: int | None = None
    cause: str = ""  # unreachable: dns, refused, timeout, tls, proxy or network
    retry_after: float | None = None  # rate_limited: seconds until the service takes more

    @property
    def needs_attention(self) -> bool:
        """A service with a key that does not answer as it should (no key: not in use)."""
        return self.status not in (Health.OK, Health.NO_KEY)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "status": self.status.value}

    def line(self) -> str:
        took = f" ({self.seconds:.2f} s)" if self.seconds is not None else ""
        return f"{SERVICES[self.service].name}: {self.status.value}{took} — {self.detail}"


@dataclass(frozen=True)
class Network:
    """What every check goes through: online access, and the proxy and CA bundle."""

    offline_reason: str  # '' when online access is allowed
    proxy: str  # the preference, as requests takes it ('' = the system's, if any)
    ca_bundle: str
    system_proxy: bool = False  # HTTP(S)_PROXY is set

    @property
    def proxy_shown(self) -> str:
        """'' (none), 'system', or the preference with its password hidden."""
        if not self.proxy:
            return "system" if self.system_proxy else ""
        parts = urlsplit(self.proxy)
        if parts.password is None:
            return self.proxy
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def examine(settings: ServiceSettings, base_url_from: str, network: Network) -> Checkup:
    """One service's checkup; the live check only when it may be made (online, a key)."""
    info = SERVICES[settings.provider]
    base = Checkup(
        settings.provider, Health.OK, "", settings.key_source, settings.base_url, base_url_from,
        not network.offline_reason, network.proxy_shown, network.ca_bundle,
    )  # fmt: skip
    if network.offline_reason:
        return replace(base, status=Health.OFFLINE, detail=network.offline_reason)
    if not settings.api_key:
        detail = f"no key: add one in preferences or set {info.env_key}"
        return replace(base, status=Health.NO_KEY, detail=detail)
    started = time.perf_counter()
    try:
        http = make_http(
            settings.provider, settings.api_key, settings.base_url, proxy=network.proxy,
            ca_bundle=network.ca_bundle, connect_timeout=CHECK_TIMEOUT,
            read_timeout=CHECK_TIMEOUT,
        )  # fmt: skip
        get_provider(settings.provider, http).poll(PROBE_TASK)
    except ProviderError as exc:
        checked = _verdict(base, exc, info.name)
    else:  # it answered about a task it cannot have: it let the key in
        checked = replace(base, detail=f"key accepted by {info.name}")
    return replace(checked, seconds=round(time.perf_counter() - started, 3))


def _verdict(base: Checkup, exc: ProviderError, name: str) -> Checkup:
    """What an error answer to the made-up task says about the key and the way there."""
    answered = replace(base, http_status=exc.status)
    not_there = exc.kind == ErrorKind.NOT_FOUND or exc.status == 404
    if not_there or (exc.status == 403 and "not your" in exc.detail.lower()):
        return replace(answered, detail=f"key accepted by {name}")
    if exc.kind == ErrorKind.AUTH:
        return replace(answered, status=Health.KEY_REJECTED, detail=f"{name} rejected the key")
    if exc.kind == ErrorKind.RATE_LIMIT:
        when = f": try again in {exc.retry_after:g} s" if exc.retry_after else ""
        detail = f"{name} is rate limiting this key{when}"
        return replace(answered, status=Health.RATE_LIMITED, detail=detail,
                       retry_after=exc.retry_after)  # fmt: skip
    if exc.cause or exc.kind in (ErrorKind.NOT_SENT, ErrorKind.NETWORK, ErrorKind.TIMEOUT):
        cause = exc.cause or "network"
        return replace(answered, status=Health.UNREACHABLE, detail=str(exc), cause=cause)
    status = f"HTTP {exc.status}: " if exc.status else ""
    return replace(answered, status=Health.UNEXPECTED, detail=f"{status}{exc}")
