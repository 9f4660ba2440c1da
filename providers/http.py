"""The one place that talks HTTP: auth, timeouts, retries, rate limits, downloads, redaction.

- GETs (idempotent) are retried with exponential back-off and full jitter, honouring
  Retry-After. A create (POST) is retried only when the service certainly did not act on it
  (429, or a connect timeout); after a read timeout it is never resent here.
- Every message that leaves this module passes through `redact`, so no key reaches an
  exception, a log line, the journal or the UI.
- Downloads stream to `<dest>.part` and are renamed when complete, with a size cap, http(s)
  only, redirects followed by hand so the key is sent only to the service's own origin.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from .base import ErrorKind, ProviderError

log = logging.getLogger("conjure.http")

MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
MAX_REDIRECTS = 5
_SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"),
    re.compile(r"(?i)([?&](?:token|key|api_key|apikey)=)[^&\s\"']+"),
)


class NotSentError(ProviderError):
    """The request never reached the service (connect failed): safe to send again."""


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


@dataclass
class RateLimit:
    """What the service last said about its budget; read by the engine to pace requests."""

    limit: int | None = None
    remaining: int | None = None
    blocked_until: float = 0.0  # monotonic time before which no request should be sent


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - time.time(), 0.0)


_STATUS_KINDS = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    402: ErrorKind.CREDITS,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    409: ErrorKind.BAD_REQUEST,
    413: ErrorKind.BAD_REQUEST,
    422: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMIT,
    502: ErrorKind.TRANSIENT,
    503: ErrorKind.TRANSIENT,
    504: ErrorKind.TRANSIENT,
}


def _kind_for(status: int) -> ErrorKind:
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    return ErrorKind.SERVER if status >= 500 else ErrorKind.BAD_REQUEST


def _detail(response: requests.Response) -> str:
    """The service's own words about an error, if it sent any."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return f"HTTP {response.status_code}" + (f" {text[:120]}" if text else "")
    if isinstance(body, dict):
        inner = body.get("data") if isinstance(body.get("data"), dict) else {}
        for source in (body, inner):
            for key in ("message", "error", "errorCode", "detail", "code"):
                value = source.get(key)
                if isinstance(value, str) and value:
                    return f"HTTP {response.status_code} {value[:200]}"
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return f"HTTP {response.status_code} {value['message'][:200]}"
    return f"HTTP {response.status_code}"


class HttpClient:
    """One service's HTTP session. Safe to share between worker threads."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        scheme = urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ProviderError(ErrorKind.BAD_REQUEST, f"base URL must be http(s), got {scheme!r}")
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._auth_header = auth_header
        self._auth_value = f"{auth_scheme} {api_key}".strip() if auth_scheme else api_key
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.sleep, self.clock = sleep, clock
        self.rate = RateLimit()
        self._lock = threading.Lock()
        self._local = threading.local()

    # -- plumbing ---------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["User-Agent"] = "Conjure-Blender/0.1"
        return session

    def redact(self, text: str) -> str:
        return redact(text, self._key)

    def error(
        self, kind: ErrorKind, detail: str, retry_after: float | None = None
    ) -> ProviderError:
        return ProviderError(kind, self.redact(detail), retry_after)

    def url(self, path: str) -> str:
        return (
            path
            if path.startswith(("http://", "https://"))
            else f"{self.base_url}/{path.lstrip('/')}"
        )

    def _same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    def _headers(self, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._key and self._same_origin(url):
            headers[self._auth_header] = self._auth_value
        return headers

    def backoff(self, attempt: int) -> float:
        return random.random() * min(self.backoff_cap, self.backoff_base * 2**attempt)

    def _note_rate(self, response: requests.Response) -> None:
        headers = response.headers
        with self._lock:
            for name, attr in (
                ("X-RateLimit-Limit", "limit"),
                ("X-RateLimit-Remaining", "remaining"),
            ):
                with contextlib.suppress(KeyError, ValueError):
                    setattr(self.rate, attr, int(headers[name]))
            wait = _retry_after(headers.get("Retry-After"))
            if response.status_code in (429, 503) and wait is not None:
                self.rate.blocked_until = max(self.rate.blocked_until, self.clock() + wait)

    def _wait_for_budget(self) -> None:
        delay = self.rate.blocked_until - self.clock()
        if delay > 0:
            self.sleep(delay)

    # -- requests ---------------------------------------------------------------------

    def _send(self, method: str, url: str, **kw: Any) -> requests.Response:
        self._wait_for_budget()
        try:
            response = self.session.request(
                method, url, timeout=self.timeout, allow_redirects=False, **kw
            )
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, urlsplit(url).netloc) from None
        self._note_rate(response)
        log.debug("%s %s -> %s", method, self.redact(urlsplit(url).path), response.status_code)
        return response

    def _transport_error(self, exc: requests.RequestException, host: str) -> ProviderError:
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return NotSentError(ErrorKind.TIMEOUT, self.redact(f"connecting to {host} timed out"))
        if isinstance(reason, NewConnectionError):
            return NotSentError(ErrorKind.NETWORK, self.redact(f"cannot connect to {host}"))
        if isinstance(exc, requests.exceptions.Timeout):
            return self.error(ErrorKind.TIMEOUT, f"no answer from {host}")
        return self.error(ErrorKind.NETWORK, f"{host}: {type(exc).__name__}")

    def _checked(self, response: requests.Response) -> Any:
        if response.status_code >= 400:
            wait = _retry_after(response.headers.get("Retry-After"))
            raise self.error(_kind_for(response.status_code), _detail(response), wait)
        try:
            return response.json()
        except ValueError:
            snippet = response.text[:80]
            raise self.error(
                ErrorKind.BAD_RESPONSE, f"not JSON (HTTP {response.status_code}): {snippet!r}"
            ) from None

    def get_json(self, path: str) -> Any:
        """GET with retries: safe because reading a task changes nothing."""
        url = self.url(path)
        for attempt in range(self.max_retries + 1):
            try:
                return self._checked(self._send("GET", url, headers=self._headers(url)))
            except ProviderError as exc:
                if not exc.retryable or attempt == self.max_retries:
                    raise
                self.sleep(max(exc.retry_after or 0.0, self.backoff(attempt)))
        raise AssertionError("unreachable")

    def post_json(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        """A create. Retried only when the service certainly did not act on it."""
        url = self.url(path)
        extra = {"Content-Type": "application/json"}
        if idempotency_key:
            extra["Idempotency-Key"] = idempotency_key
        data = json.dumps(body)
        for attempt in range(self.max_retries + 1):
            try:
                response = self._send("POST", url, data=data, headers=self._headers(url, extra))
            except NotSentError:
                if attempt == self.max_retries:
                    raise
                self.sleep(self.backoff(attempt))
                continue
            if response.status_code == 429 and attempt < self.max_retries:
                wait = _retry_after(response.headers.get("Retry-After"))
                self.sleep(max(wait or 0.0, self.backoff(attempt)))
                continue
            return self._checked(response)
        raise AssertionError("unreachable")

    # -- downloads --------------------------------------------------------------------

    def download(
        self,
        url: str,
        dest: str,
        *,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> int:
        """Stream `url` to `dest` via `dest.part`; returns the byte count."""
        part = dest + ".part"
        response = self._open_download(url)
        try:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise self.error(
                    ErrorKind.BAD_RESPONSE,
                    f"asset is {declared} bytes, over the {max_bytes} byte limit",
                )
            written = 0
            with open(part, "wb") as f:
                for block in response.iter_content(chunk_size=256 * 1024):
                    if cancelled():
                        raise ProviderError(ErrorKind.NETWORK, "download cancelled")
                    written += len(block)
                    if written > max_bytes:
                        raise self.error(
                            ErrorKind.BAD_RESPONSE, f"asset exceeds the {max_bytes} byte limit"
                        )
                    f.write(block)
            if written == 0:
                raise self.error(ErrorKind.BAD_RESPONSE, "asset download was empty")
            os.replace(part, dest)
            return written
        except requests.exceptions.RequestException as exc:
            raise self.error(
                ErrorKind.NETWORK, f"download interrupted: {type(exc).__name__}"
            ) from None
        finally:
            response.close()
            if os.path.exists(part):
                os.remove(part)

    def _open_download(self, url: str) -> requests.Response:
        for _ in range(MAX_REDIRECTS + 1):
            if urlsplit(url).scheme not in ("http", "https"):
                raise self.error(
                    ErrorKind.BAD_RESPONSE, f"refusing non-http(s) asset URL {url[:60]!r}"
                )
            try:
                response = self.session.get(
                    url,
                    headers=self._headers(url),
                    timeout=self.timeout,
                    stream=True,
                    allow_redirects=False,
                )
            except requests.exceptions.RequestException as exc:
                raise self._transport_error(exc, urlsplit(url).netloc) from None
            if response.is_redirect and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            if response.status_code >= 400:
                detail = f"download failed: HTTP {response.status_code}"
                response.close()
                raise self.error(_kind_for(response.status_code), detail)
            return response
        raise self.error(ErrorKind.BAD_RESPONSE, "too many redirects for an asset URL")
