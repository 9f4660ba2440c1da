"""The one place that talks HTTP: auth, timeouts, downloads, redaction, budget headers.

- A call is exactly one attempt and never sleeps: the engine decides every wait and every
  re-send (docs/jobs.md). A failure is a one-line ProviderError whose kind says what is known;
  `NOT_SENT` only when the request certainly never reached the service (connect failed or
  timed out, proxy unreachable, certificate rejected), so even a create may go again.
- An error answer's Retry-After travels on its ProviderError; every answer from the service's
  own origin reports its X-RateLimit-* and Retry-After headers to `on_rate` as a RateNote (the
  engine's limiter), on the requesting thread.
- Studio networks: an explicit proxy and CA bundle (preferences) win over the environment;
  without them HTTP(S)_PROXY / NO_PROXY / REQUESTS_CA_BUNDLE are honoured as usual.
- Every message that leaves this module passes through `redact`, so no key reaches an
  exception, a log line, the journal or the UI.
- A JSON answer is read up to `max_answer_bytes` (8 MiB unless the service's answers carry
  files inline): a longer one is refused before it is read whole.
- Downloads stream to `<dest>.part` and are renamed when complete, with a size cap. Redirects
  are followed by hand: the key goes only to the service's own origin, and `hop_refusal`
  keeps an asset off other schemes, off https-to-http, off link-local addresses (a cloud's
  metadata service) and out of this machine's network when the URL came from outside it.
  Each download is bounded by `Deadlines` (no progress for a minute, or slower than 64 KiB/s
  over its size): a watchdog thread shuts the socket down when one passes or `cancelled()`
  turns true, so even a read blocked on a trickling server ends at once. A download raises
  ProviderError for the network and OSError for the local file only.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from urllib3.exceptions import NewConnectionError

from .errors import ErrorKind, ProviderError, RateNote

log = logging.getLogger("conjure.http")

MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a JSON answer (a status, a task id) is a few kilobytes
MAX_REDIRECTS = 5
_BLOCK = 16 * 1024  # downloads are read and timed in blocks of this size
_WATCH_EVERY = 0.1  # seconds between a download watchdog's looks
# X-RateLimit-Reset below this is a number of seconds; above, an epoch time (year 2001+).
_EPOCH_THRESHOLD = 1e9
_SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"),
    re.compile(r"(?i)([?&](?:token|key|api_key|apikey)=)[^&\s\"']+"),
)


def _is_name_failure(reason: Exception) -> bool:
    """The host name could not be resolved (urllib3 2 says so by type, 1.26 in words)."""
    named = getattr(urllib3.exceptions, "NameResolutionError", None)
    if named is not None and isinstance(reason, named):
        return True
    words = str(reason).lower()
    return any(w in words for w in ("name or service", "getaddrinfo", "nodename", "resolution"))


def normalize_proxy(text: str) -> str:
    """A proxy as typed in preferences, usable by requests: `host:port` means http://."""
    text = text.strip()
    if text and "://" not in text:
        text = "http://" + text
    return text


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def _int_header(headers: Any, name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def _reset_after(value: str | None) -> float | None:
    """X-RateLimit-Reset as seconds from now; services send either a delta or an epoch."""
    try:
        number = float(value or "")
    except ValueError:
        return None
    if not math.isfinite(number):  # "nan"/"inf" parse as floats but mean nothing
        return None
    if number >= _EPOCH_THRESHOLD:
        number -= time.time()
    return max(number, 0.0)


def _is_certificate_failure(exc: BaseException) -> bool:
    """True when the TLS handshake rejected the server's certificate (nothing was sent)."""
    todo: list[BaseException] = [exc]
    for _ in range(16):  # urllib3/requests nest a few wrappers deep; never loop forever
        if not todo:
            return False
        current = todo.pop()
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        linked = (*current.args, getattr(current, "reason", None), current.__cause__)
        todo.extend(item for item in linked if isinstance(item, BaseException))
    return False


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "nan"/"inf" parse as floats but mean nothing
        return max(seconds, 0.0) if math.isfinite(seconds) else None
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


def _json(body: bytes) -> Any:
    """The JSON in `body`; ValueError if there is none (nesting too deep counts as none)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _detail(status: int, body: bytes) -> str:
    """The service's own words about an error, if it sent any."""
    try:
        answer = _json(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return f"HTTP {status}" + (f" {text[:120]}" if text else "")
    if isinstance(answer, dict):
        inner = answer.get("data")
        for source in (answer, inner if isinstance(inner, dict) else {}):
            for key in ("message", "error", "errorCode", "detail", "code"):
                value = source.get(key)
                if isinstance(value, str) and value:
                    return f"HTTP {status} {value[:200]}"
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return f"HTTP {status} {value['message'][:200]}"
    return f"HTTP {status}"


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if host == "localhost":
        return ipaddress.ip_address("127.0.0.1")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: where it resolves is not judged here


def _inside(host: str) -> bool:
    """A literal address (or localhost) that is not public: this machine or its network."""
    address = _address(host)
    return address is not None and not address.is_global


def hop_refusal(source: str, target: str, redirect: bool = True) -> str:
    """Why an asset may not be fetched from `target` when `source` (the service, or the URL
    that redirected) sent us there; "" when it may. Never a scheme other than http(s), never
    a link-local address (a cloud's metadata service), never into this machine's network
    (loopback, private ranges) from a host outside it, and no redirect from https down to
    http. Names are not resolved: only a literal address is judged."""
    what = "a redirect" if redirect else "an asset URL"
    now, then = urlsplit(source), urlsplit(target)
    if then.scheme not in ("http", "https"):
        return f"refusing {what} to a non-http(s) URL ({then.scheme or 'no'} scheme)"
    if redirect and now.scheme == "https" and then.scheme == "http":
        return "refusing a redirect from https to http for an asset"
    address = _address(then.hostname or "")
    if address is not None and address.is_link_local:
        return f"refusing {what} to the link-local address {address}"
    if _inside(then.hostname or "") and not _inside(now.hostname or ""):
        return f"refusing {what} from {now.hostname} into a local network ({address})"
    return ""


@dataclass(frozen=True)
class Deadlines:
    """How long one download may take: `idle` seconds without a block of data arriving, and
    in all `grace` seconds plus its size (declared, else the size cap) at `rate` bytes/s."""

    idle: float = 60.0
    grace: float = 120.0
    rate: float = 64 * 1024

    def total(self, size: int) -> float:
        return self.grace + size / self.rate


class _Watchdog:
    """Ends a download that is cancelled or out of time, even while its read is blocked: from
    its own thread it shuts the socket down, which wakes the read at once (closing it would
    not). `reason` says why it did."""

    def __init__(
        self, response: requests.Response, cancelled: Callable[[], bool], limits: Deadlines
    ) -> None:
        self._response, self._cancelled, self._limits = response, cancelled, limits
        self._started = self._last = time.monotonic()
        self._total = limits.total(MAX_DOWNLOAD_BYTES)
        self._ended = threading.Event()
        self.reason: ProviderError | None = None
        self._thread = threading.Thread(
            target=self._watch, name="conjure-download-watch", daemon=True
        )
        self._thread.start()

    def expect(self, size: int) -> None:
        self._total = self._limits.total(size)

    def progress(self) -> None:
        self._last = time.monotonic()

    def end(self) -> None:
        self._ended.set()
        self._thread.join()  # at once: it only ever waits on `_ended`

    def _watch(self) -> None:
        while not self._ended.wait(_WATCH_EVERY):
            self.reason = self._overdue()
            if self.reason is not None:
                _shut(self._response)
                return

    def _overdue(self) -> ProviderError | None:
        now = time.monotonic()
        if self._cancelled():
            return ProviderError(ErrorKind.NETWORK, "download cancelled")
        if now - self._last > self._limits.idle:
            idle = self._limits.idle
            return ProviderError(ErrorKind.TIMEOUT, f"the download made no progress for {idle:g} s")
        if now - self._started > self._total:
            return ProviderError(ErrorKind.TIMEOUT, f"the download took over {self._total:.0f} s")
        return None


def _shut(response: requests.Response) -> None:
    """Wake a read blocked on `response`'s socket, from another thread."""
    raw = response.raw
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # the plain socket's: TLS state is left alone
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


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
        proxy: str = "",
        ca_bundle: str = "",
        on_rate: Callable[[RateNote], None] | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        deadlines: Deadlines | None = None,
    ) -> None:
        scheme = urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ProviderError(ErrorKind.BAD_REQUEST, f"base URL must be http(s), got {scheme!r}")
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._auth_header = auth_header
        self._auth_value = f"{auth_scheme} {api_key}".strip() if auth_scheme else api_key
        self.timeout = (connect_timeout, read_timeout)
        self.on_rate = on_rate
        self.max_answer_bytes = max_answer_bytes
        self.deadlines = deadlines or Deadlines()
        self._local = threading.local()
        # Passed on every request rather than set on the session: requests lets the
        # environment (HTTPS_PROXY, REQUESTS_CA_BUNDLE) override session-level settings, and
        # the user's explicit choice must win. Left out, the environment applies as usual.
        self._transport: dict[str, Any] = {}
        if proxy := normalize_proxy(proxy):
            self._transport["proxies"] = {"http": proxy, "https": proxy}
        if ca_bundle:
            if not os.path.exists(ca_bundle):
                raise ProviderError(ErrorKind.BAD_REQUEST, f"CA bundle not found: {ca_bundle}")
            self._transport["verify"] = ca_bundle

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
        self,
        kind: ErrorKind,
        detail: str,
        retry_after: float | None = None,
        *,
        status: int | None = None,
        cause: str = "",
    ) -> ProviderError:
        return ProviderError(kind, self.redact(detail), retry_after, status=status, cause=cause)

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

    def _note_rate(self, response: requests.Response) -> None:
        if self.on_rate is None:
            return
        headers = response.headers
        note = RateNote(
            status=response.status_code,
            limit=_int_header(headers, "X-RateLimit-Limit"),
            remaining=_int_header(headers, "X-RateLimit-Remaining"),
            reset_after=_reset_after(headers.get("X-RateLimit-Reset")),
            retry_after=_retry_after(headers.get("Retry-After")),
        )
        # On the requesting thread. A failing observer must not lose the answer: after a
        # create it carries the task id of a job that is already paid for.
        try:
            self.on_rate(note)
        except Exception:
            log.warning("rate observer failed", exc_info=True)

    # -- requests ---------------------------------------------------------------------

    def _send(self, method: str, url: str, **kw: Any) -> tuple[requests.Response, bytes]:
        """One request; the answer and its body (see `_body`)."""
        host = urlsplit(url).netloc
        try:
            response = self.session.request(
                method, url, timeout=self.timeout, allow_redirects=False, stream=True,
                **self._transport, **kw,
            )  # fmt: skip
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, host) from None
        self._note_rate(response)
        log.debug("%s %s -> %s", method, self.redact(urlsplit(url).path), response.status_code)
        try:
            return response, self._body(response)
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, host) from None
        finally:
            response.close()

    def _body(self, response: requests.Response) -> bytes:
        """The answer's bytes, never more than `max_answer_bytes` read: a longer answer is a
        BAD_RESPONSE, or for an error status that status alone."""
        cap, status = self.max_answer_bytes, response.status_code
        body = bytearray()
        if (_int_header(response.headers, "Content-Length") or 0) <= cap:
            for block in response.iter_content(64 * 1024):
                body += block
                if len(body) > cap:
                    break
            else:
                return bytes(body)
        if status >= 400:
            return b""
        raise self.error(
            ErrorKind.BAD_RESPONSE, f"the answer is over {cap / 1024 / 1024:g} MiB (HTTP {status})"
        )

    def _transport_error(self, exc: requests.RequestException, host: str) -> ProviderError:
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return self.error(
                ErrorKind.NOT_SENT, f"connecting to {host} timed out", cause="timeout"
            )
        if isinstance(exc, requests.exceptions.ProxyError):
            # Raised only while reaching the proxy itself; its URL may hold a password.
            return self.error(
                ErrorKind.NOT_SENT, f"cannot reach the proxy for {host}", cause="proxy"
            )
        if isinstance(exc, requests.exceptions.SSLError) and _is_certificate_failure(exc):
            # Other TLS errors can strike after the request went out: only this is NOT_SENT.
            return self.error(
                ErrorKind.NOT_SENT,
                f"certificate check failed for {host}: behind a corporate proxy, set its"
                " CA bundle in Conjure's preferences (Advanced) or REQUESTS_CA_BUNDLE",
                cause="tls",
            )
        if isinstance(reason, NewConnectionError):
            if _is_name_failure(reason):
                return self.error(ErrorKind.NOT_SENT, f"cannot find {host}", cause="dns")
            return self.error(ErrorKind.NOT_SENT, f"cannot connect to {host}", cause="refused")
        if isinstance(exc, requests.exceptions.Timeout):
            return self.error(ErrorKind.TIMEOUT, f"no answer from {host}", cause="timeout")
        cause = "tls" if isinstance(exc, requests.exceptions.SSLError) else "network"
        return self.error(ErrorKind.NETWORK, f"{host}: {type(exc).__name__}", cause=cause)

    def _checked(self, answer: tuple[requests.Response, bytes]) -> Any:
        response, body = answer
        status = response.status_code
        if status >= 400:
            wait = _retry_after(response.headers.get("Retry-After"))
            raise self.error(_kind_for(status), _detail(status, body), wait, status=status)
        try:
            return _json(body)
        except ValueError:
            snippet = body[:80].decode("utf-8", "replace")
            raise self.error(
                ErrorKind.BAD_RESPONSE, f"not JSON (HTTP {status}): {snippet!r}"
            ) from None

    def get_json(self, path: str) -> Any:
        """One GET; its JSON answer."""
        url = self.url(path)
        return self._checked(self._send("GET", url, headers=self._headers(url)))

    def post_json(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        """One POST of a JSON body (a create), with an Idempotency-Key when given."""
        url = self.url(path)
        extra = {"Content-Type": "application/json"}
        if idempotency_key:
            extra["Idempotency-Key"] = idempotency_key
        answer = self._send("POST", url, data=json.dumps(body), headers=self._headers(url, extra))
        return self._checked(answer)

    def post_file(
        self, path: str, field: str, filename: str, data: bytes, content_type: str
    ) -> Any:
        """One multipart/form-data upload of one file (requests writes the boundary)."""
        url = self.url(path)
        files = {field: (filename, data, content_type)}
        return self._checked(self._send("POST", url, files=files, headers=self._headers(url)))

    # -- downloads --------------------------------------------------------------------

    def download(
        self,
        url: str,
        dest: str,
        *,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> int:
        """Stream `url` to `dest` via `dest.part`; returns the byte count. Trouble on the way
        (the network, the deadlines, a cancel) is a ProviderError; writing the file, OSError."""
        part = dest + ".part"
        response = self._open_download(url)
        watchdog = _Watchdog(response, cancelled, self.deadlines)
        try:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise self.error(
                    ErrorKind.BAD_RESPONSE,
                    f"asset is {declared} bytes, over the {max_bytes} byte limit",
                )
            watchdog.expect(declared or max_bytes)
            written = 0
            with open(part, "wb") as f:
                for block in self._blocks(response, watchdog):
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
        finally:
            watchdog.end()
            response.close()
            with contextlib.suppress(OSError):  # e.g. the folder is gone: nothing to clean
                os.remove(part)

    def _blocks(self, response: requests.Response, watchdog: _Watchdog) -> Iterator[bytes]:
        """The body in blocks as they arrive; any failure to read is a ProviderError."""
        blocks = response.iter_content(chunk_size=_BLOCK)
        while True:
            try:
                block = next(blocks, None)
            except Exception as exc:  # the network's, or the watchdog shut the socket
                if watchdog.reason is not None:
                    raise watchdog.reason from None
                raise self.error(
                    ErrorKind.NETWORK, f"download interrupted: {type(exc).__name__}"
                ) from None
            if watchdog.reason is not None:  # a body without a length simply ends
                raise watchdog.reason
            if block is None:
                return
            watchdog.progress()
            yield block

    def _open_download(self, url: str) -> requests.Response:
        refusal = hop_refusal(self.base_url, url, redirect=False)  # the service's answer
        if refusal:
            raise self.error(ErrorKind.BAD_RESPONSE, refusal)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.session.get(
                    url,
                    headers=self._headers(url),
                    timeout=self.timeout,
                    stream=True,
                    allow_redirects=False,
                    **self._transport,
                )
            except requests.exceptions.RequestException as exc:
                raise self._transport_error(exc, urlsplit(url).netloc) from None
            if self._same_origin(url):  # a CDN's limits are not the service's budget
                self._note_rate(response)
            if response.is_redirect and response.headers.get("Location"):
                target = urljoin(url, response.headers["Location"])
                response.close()
                refusal = hop_refusal(url, target)
                if refusal:
                    raise self.error(ErrorKind.BAD_RESPONSE, refusal)
                url = target
                continue
            status = response.status_code
            if status >= 400:
                response.close()
                raise self.error(
                    _kind_for(status), f"download failed: HTTP {status}", status=status
                )
            return response
        raise self.error(ErrorKind.BAD_RESPONSE, "too many redirects for an asset URL")
