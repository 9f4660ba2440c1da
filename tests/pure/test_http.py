"""The HTTP layer and the engine without Blender: one attempt a call, timeouts, downloads,
secrets, file kinds."""

from __future__ import annotations

import email.utils
import socket
import struct
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conjure_src.jobs.model import Job
from conjure_src.providers import get_provider, make_http
from conjure_src.providers.common import progress_fraction
from conjure_src.providers.errors import ErrorKind, ProviderError, RateNote
from conjure_src.providers.filekind import describe, kind_of, kind_of_name
from conjure_src.providers.http import HttpClient, hop_refusal, normalize_proxy, redact
from emulators.base import Emulator, json_reply
from emulators.proxy import ForwardProxy
from emulators.tls import make_cert, serve_tls
from emulators.trify3d import TINY_GLB, tiny_png

KEY = "trf_live_PURE-test-secret-99"
GLB = TINY_GLB


class Files(Emulator):
    """Serves fixed bytes, redirects across origins, and records what it was sent."""

    def __init__(self, payload: bytes = GLB) -> None:
        super().__init__()
        self.payload = payload
        self.elsewhere = ""

    def route(self, method, path, headers, body):
        if path == "/hop":
            return 302, {"Location": f"{self.elsewhere}/file"}, b""
        if path == "/file":
            return 200, {"Content-Type": "application/octet-stream"}, self.payload
        if path == "/json":
            return json_reply(200, {"ok": True})
        return 404, {}, b""


def _client(url: str, **kw):
    return make_http("trify3d", KEY, url, **kw)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep on the test's own thread: an HTTP call never waits, the engine owns waits."""
    seen: list[float] = []
    real, me = time.sleep, threading.current_thread()

    def sleep(seconds: float) -> None:
        if threading.current_thread() is me:
            seen.append(seconds)
        real(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return seen


def test_an_emulator_takes_a_client_hanging_up_mid_request_quietly(capfd) -> None:
    """A client that resets its connection mid-request (a killed process, a test's timeout)
    is not the emulator's error: no traceback from its request thread, and it still serves."""
    emu = Files().start()
    try:
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", urlsplit(emu.url).port))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.sendall(b"GET /json HTT")  # then a reset, not a close
            client.close()
        time.sleep(0.3)  # the request threads meet the resets
        with urllib.request.urlopen(f"{emu.url}/json", timeout=5) as reply:
            assert reply.status == 200
    finally:
        emu.stop()
    assert "Traceback" not in capfd.readouterr().err


def test_redact_scrubs_keys_headers_and_query_tokens() -> None:
    text = f"Authorization: Bearer {KEY} x-api-key: abc123 url?token=zzz&x=1 {KEY}"
    out = redact(text, KEY)
    assert KEY not in out and "abc123" not in out and "zzz" not in out and "x=1" in out


@pytest.mark.parametrize(
    ("raw", "want"), [(0.5, 0.5), (45, 0.45), ("45%", 0.45), ("x", 0.0), (None, 0.0), (250, 1.0)]
)
def test_progress_is_normalized(raw, want) -> None:
    assert progress_fraction(raw) == pytest.approx(want)


def test_rate_limit_headers_are_reported(trify) -> None:
    notes: list[RateNote] = []
    http = _client(trify.url, on_rate=notes.append)
    with pytest.raises(ProviderError) as info:
        http.get_json("/api/v1/generations/nope")
    assert info.value.kind == ErrorKind.NOT_FOUND and info.value.status == 404
    assert [(n.limit, n.remaining) for n in notes] == [(100_000, 100_000 - 1)]


def test_retry_after_http_date_and_seconds_are_read(trify, sleeps) -> None:
    http = _client(trify.url)
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    for header, want in [("2", 2.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), (soon, 30.0)]:
        trify.inject(status=503, headers={"Retry-After": header}, method="GET")
        with pytest.raises(ProviderError) as info:
            http.get_json("/api/v1/generations/x")
        assert info.value.kind == ErrorKind.TRANSIENT
        assert info.value.retry_after == pytest.approx(want, abs=2)
    trify.inject(status=429, headers={"Retry-After": "2"}, method="GET")
    with pytest.raises(ProviderError) as info:
        http.get_json("/api/v1/generations/x")
    assert info.value.kind == ErrorKind.RATE_LIMIT and info.value.retry_after == 2.0
    with pytest.raises(ProviderError, match="does not know"):
        http.get_json("/api/v1/generations/x")
    assert trify.count("GET") == 5 and sleeps == []  # one attempt each, no waiting here


def test_create_is_never_resent_after_a_read_timeout(trify) -> None:
    http = _client(trify.url, read_timeout=0.3)
    trify.inject(delay=1.0, passthrough=True, method="POST")
    provider = get_provider("trify3d", http)
    job = Job.new("trify3d", "TEXT", "a chair")
    with pytest.raises(ProviderError) as info:
        provider.create(job.request(), job.idempotency_key)
    assert info.value.kind == ErrorKind.TIMEOUT
    time.sleep(1.0)
    assert trify.count("POST") == 1  # the service did create a task; we did not pay twice
    assert len(trify.tasks) == 1 and trify.charges == 1


def test_a_get_that_times_out_is_one_attempt_and_one_line(trify, sleeps) -> None:
    http = _client(trify.url, read_timeout=0.2)
    trify.inject(delay=0.5, passthrough=True, method="GET", times=3)
    with pytest.raises(ProviderError) as info:
        http.get_json("/api/v1/generations/x")
    assert info.value.kind == ErrorKind.TIMEOUT and "\n" not in str(info.value)
    assert trify.count("GET") == 1 and sleeps == []


def test_unreachable_service_is_not_sent() -> None:
    http = _client("http://127.0.0.1:9")
    with pytest.raises(ProviderError) as info:
        http.get_json("/x")
    assert info.value.kind == ErrorKind.NOT_SENT and info.value.retryable
    text = str(info.value)
    assert "Could not reach the service: cannot connect to 127.0.0.1:9" in text and KEY not in text


def test_download_streams_via_part_and_keeps_the_key_on_its_origin(tmp_path) -> None:
    origin, other = Files().start(), Files().start()
    origin.elsewhere = other.url
    try:
        http = _client(origin.url)
        dest = tmp_path / "asset.bin"
        assert http.download(f"{origin.url}/hop", str(dest)) == len(GLB)
        assert dest.read_bytes() == GLB and not (tmp_path / "asset.bin.part").exists()
        assert origin.requests[0].headers.get("Authorization") == f"Bearer {KEY}"
        assert "Authorization" not in other.requests[0].headers  # redirected off-origin
    finally:
        origin.stop()
        other.stop()


def test_download_size_cap_and_bad_urls(tmp_path) -> None:
    files = Files(payload=b"x" * 5000).start()
    try:
        http = _client(files.url)
        dest = tmp_path / "big"
        with pytest.raises(ProviderError, match="limit"):
            http.download(f"{files.url}/file", str(dest), max_bytes=1000)
        assert not dest.exists() and not Path(f"{dest}.part").exists()
        for url in ("file:///etc/passwd", "ftp://x/y", "data:text/plain,hi"):
            with pytest.raises(ProviderError, match="non-http"):
                http.download(url, str(dest))
    finally:
        files.stop()


def test_base_url_must_be_http() -> None:
    with pytest.raises(ProviderError, match="http"):
        make_http("trify3d", KEY, "file:///tmp")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"glTF\x02", "glb"),
        (b"VOX \x96", "vox"),
        (b"PK\x03\x04", "zip"),
        (tiny_png()[:16], "png"),
        (b"\xff\xd8\xff\xe0", "jpg"),
        (b"# obj\nv 0 0 0\n", "obj"),
        (b"newmtl a\nKd 1 1 1", "mtl"),
        (b"<html>", None),
    ],
)
def test_formats_are_detected_by_content(head, kind) -> None:
    assert kind_of(head) == kind


def test_more_kinds_by_content_by_name_and_in_words() -> None:
    assert kind_of(b"RIFF\x40\x00\x00\x00WEBPVP8 ") == "webp"
    assert kind_of(b"RIFF\x40\x00\x00\x00WAVEfmt ") is None
    assert kind_of(b'{"asset": {"version": "2.0"}}') == "gltf"
    assert [kind_of_name(n) for n in ("/a/model.GLB", "x.jpeg", "/a.b/c", "noext")] == [
        "glb", "jpg", None, None,
    ]  # fmt: skip
    assert describe(b"") == "an empty file"
    assert describe(b"<!DOCTYPE html><html>") == "an HTML page"
    assert describe(b'{"error": "expired"}') == "JSON text"
    assert describe(b"GIF89a\x01\x00") == "a GIF image"
    assert describe(b"\x00\x01\x02") == "unknown bytes 00 01 02"


# ------------------------------------------------------------------ studio networks, engine v2

_PROXY_VARS = ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    made = make_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("the openssl CLI is not installed; the HTTPS tests need it for a certificate")
    return made


@pytest.fixture
def serve():
    """start(emulator, tls=None) -> base URL; everything started is stopped afterwards."""
    started: list[Emulator] = []

    def start(emulator: Emulator, tls: tuple[Path, Path] | None = None) -> str:
        url = serve_tls(emulator, *tls) if tls else emulator.start().url
        started.append(emulator)
        return url

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The host's proxy variables (NO_PROXY may list 127.0.0.1) must not decide these tests."""
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text and KEY not in text
    return text


def test_https_asset_redirect_down_to_http_is_refused(tmp_path, cert, serve) -> None:
    origin, plain = Files(), Files()
    origin_url = serve(origin, cert)
    origin.elsewhere = serve(plain)
    http = HttpClient(KEY, origin_url, ca_bundle=str(cert[0]))
    dest = tmp_path / "asset.glb"
    with pytest.raises(ProviderError) as info:
        http.download(f"{origin_url}/hop", str(dest))
    assert info.value.kind == ErrorKind.BAD_RESPONSE
    assert "refusing a redirect from https to http for an asset" in _one_line(info.value)
    assert len(origin.requests) == 1 and plain.requests == []  # nothing asked over plain http
    assert not dest.exists() and not Path(f"{dest}.part").exists()


@pytest.mark.parametrize(
    ("source", "target", "refused"),
    [
        ("https://cdn.example.com/a", "https://other.example.net/b", ""),
        ("http://cdn.example.com/a", "https://other.example.net/b", ""),
        ("https://cdn.example.com/a", "http://other.example.net/b", "from https to http"),
        ("https://cdn.example.com/a", "file:///etc/passwd", "non-http(s) URL (file scheme)"),
        ("https://cdn.example.com/a", "ftp://cdn.example.com/m.glb", "(ftp scheme)"),
        ("http://cdn.example.com/a", "http://169.254.169.254/latest/", "link-local"),
        ("http://127.0.0.1:8000/a", "http://169.254.169.254/latest/", "link-local"),
        ("https://cdn.example.com/a", "https://[fe80::1]/m.glb", "link-local"),
        ("https://cdn.example.com/a", "https://10.0.0.5/m.glb", "into a local network"),
        ("https://cdn.example.com/a", "https://192.168.1.2/m.glb", "into a local network"),
        ("https://cdn.example.com/a", "https://127.0.0.1/m.glb", "into a local network"),
        ("https://cdn.example.com/a", "https://localhost/m.glb", "into a local network"),
        ("https://cdn.example.com/a", "https://[::1]/m.glb", "into a local network"),
        ("https://8.8.8.8/a", "https://10.0.0.5/m.glb", "into a local network"),
        ("http://127.0.0.1:8000/a", "http://127.0.0.1:8001/m.glb", ""),  # a local service
        ("http://10.0.0.2/a", "http://10.0.0.5/m.glb", ""),  # a studio's own mirror
    ],
)
def test_where_an_asset_may_be_fetched_from(source: str, target: str, refused: str) -> None:
    why = hop_refusal(source, target)
    assert (refused in why and why) if refused else why == "", why


def test_a_redirect_to_a_link_local_address_is_refused_unasked(tmp_path, serve) -> None:
    """The metadata service of a cloud machine (169.254.169.254) is never asked."""
    origin = Files()
    origin_url = serve(origin)
    origin.elsewhere = "http://169.254.169.254"
    http = HttpClient(KEY, origin_url)
    dest = tmp_path / "asset.glb"
    with pytest.raises(ProviderError) as info:
        http.download(f"{origin_url}/hop", str(dest))
    assert info.value.kind == ErrorKind.BAD_RESPONSE
    assert "link-local address 169.254.169.254" in _one_line(info.value)
    assert not dest.exists() and not Path(f"{dest}.part").exists()


@pytest.mark.parametrize("origin_tls", [True, False], ids=["https-to-https", "http-to-https"])
def test_redirects_that_keep_or_gain_tls_are_followed(tmp_path, cert, serve, origin_tls) -> None:
    origin, other = Files(), Files()
    origin_url = serve(origin, cert if origin_tls else None)
    origin.elsewhere = serve(other, cert)
    http = HttpClient(KEY, origin_url, ca_bundle=str(cert[0]))
    dest = tmp_path / "asset.glb"
    assert http.download(f"{origin_url}/hop", str(dest)) == len(GLB)
    assert dest.read_bytes() == GLB
    assert origin.requests[0].headers.get("Authorization") == f"Bearer {KEY}"
    assert "Authorization" not in other.requests[0].headers


def test_ca_bundle_preference_trusts_a_private_certificate(tmp_path, cert, serve, monkeypatch):
    import certifi

    # requests lets REQUESTS_CA_BUNDLE override a session's verify; the preference must win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    url = serve(Files(), cert)
    http = HttpClient(KEY, url, ca_bundle=str(cert[0]))
    assert http.get_json("/json") == {"ok": True}
    assert http.post_json("/json", {}) == {"ok": True}
    assert http.download(f"{url}/file", str(tmp_path / "a.glb")) == len(GLB)


def test_untrusted_certificate_is_one_line_and_not_sent(tmp_path, cert, serve, monkeypatch, sleeps):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    files = Files()
    url = serve(files, cert)
    host = url.removeprefix("https://")
    http = HttpClient(KEY, url)
    calls = (
        lambda: http.get_json("/json"),
        lambda: http.post_json("/json", {"prompt": "a chair"}, "idem-1"),
        lambda: http.download(f"{url}/file", str(tmp_path / "a.glb")),
    )
    for call in calls:
        with pytest.raises(ProviderError) as info:
            call()
        assert info.value.kind == ErrorKind.NOT_SENT  # a create may safely be sent again
        text = _one_line(info.value)
        assert f"certificate check failed for {host}: behind a corporate proxy" in text
        assert "Conjure's preferences (Advanced) or REQUESTS_CA_BUNDLE" in text
    assert files.requests == [] and sleeps == []


def test_missing_ca_bundle_is_a_one_line_error(tmp_path) -> None:
    missing = tmp_path / "studio-ca.pem"
    with pytest.raises(ProviderError) as info:
        HttpClient(KEY, "https://api.example", ca_bundle=str(missing))
    assert info.value.kind == ErrorKind.BAD_REQUEST
    assert f"CA bundle not found: {missing}" in _one_line(info.value)


@pytest.mark.parametrize(
    ("typed", "want"),
    [
        ("", ""),
        ("   ", ""),
        ("proxy.example:3128", "http://proxy.example:3128"),
        ("  proxy.example:3128\n", "http://proxy.example:3128"),
        ("user:pw@proxy.example:8080", "http://user:pw@proxy.example:8080"),
        ("http://proxy.example:3128", "http://proxy.example:3128"),
        ("https://proxy.example:443", "https://proxy.example:443"),
        ("socks5://127.0.0.1:1080", "socks5://127.0.0.1:1080"),
    ],
)
def test_normalize_proxy(typed, want) -> None:
    assert normalize_proxy(typed) == want


def test_proxy_preference_without_scheme_routes_every_request(tmp_path, serve, no_env_proxy):
    files, proxy = Files(), ForwardProxy()
    url, proxy_url = serve(files), serve(proxy)
    no_env_proxy.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the preference beats this
    http = HttpClient(KEY, url, proxy=proxy_url.removeprefix("http://"))
    assert http.get_json("/json") == {"ok": True}
    assert http.post_json("/json", {}) == {"ok": True}
    assert http.download(f"{url}/file", str(tmp_path / "a.glb")) == len(GLB)
    relayed = [(seen.method, seen.path) for seen in proxy.requests]
    assert relayed == [("GET", f"{url}/json"), ("POST", f"{url}/json"), ("GET", f"{url}/file")]
    assert [seen.path for seen in files.requests] == ["/json", "/json", "/file"]


def test_http_proxy_environment_is_honoured_without_a_preference(serve, no_env_proxy) -> None:
    files, proxy = Files(), ForwardProxy()
    url, proxy_url = serve(files), serve(proxy)
    no_env_proxy.setenv("HTTP_PROXY", proxy_url)
    assert HttpClient(KEY, url).get_json("/json") == {"ok": True}
    assert [seen.path for seen in proxy.requests] == [f"{url}/json"]
    assert len(files.requests) == 1


def test_unreachable_proxy_is_not_sent_and_hides_its_password(no_env_proxy, sleeps) -> None:
    http = HttpClient(KEY, "http://api.example", proxy="studio:pr0xy-pw@127.0.0.1:9")
    for call in (lambda: http.get_json("/x"), lambda: http.post_json("/x", {})):
        with pytest.raises(ProviderError) as info:
            call()
        assert info.value.kind == ErrorKind.NOT_SENT
        text = _one_line(info.value)
        assert "proxy" in text and "pr0xy-pw" not in text
    assert sleeps == []


def test_on_rate_reports_budget_headers_on_the_requesting_thread(tmp_path, serve) -> None:
    origin, cdn = Files(), Files()
    url = serve(origin)
    origin.elsewhere = serve(cdn)
    notes: list[RateNote] = []
    where: list[threading.Thread] = []

    def on_rate(note: RateNote) -> None:
        notes.append(note)
        where.append(threading.current_thread())

    http = HttpClient(KEY, url, on_rate=on_rate)
    budget = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": "12"}
    origin.inject(status=200, body={"ok": True}, headers=budget)
    assert http.get_json("/json") == {"ok": True}
    assert notes == [RateNote(200, 60, 59, 12.0, None)]

    reset_at = int(time.time()) + 30  # an epoch timestamp, as some services send
    origin.inject(
        status=429,
        headers={
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset_at),
            "Retry-After": "5",
        },
    )
    with pytest.raises(ProviderError):
        http.post_json("/json", {})
    note = notes[-1]
    assert (note.status, note.limit, note.remaining, note.retry_after) == (429, None, 0, 5.0)
    assert note.reset_after == pytest.approx(30, abs=2)

    origin.inject(status=200, body={"ok": True}, headers={"X-RateLimit-Reset": "1000000000"})
    http.get_json("/json")
    assert notes[-1].reset_after == 0.0  # a reset time in the past means now, never negative

    origin.inject(status=200, body={}, headers={"X-RateLimit-Reset": "nan", "Retry-After": "inf"})
    http.get_json("/json")
    assert (notes[-1].reset_after, notes[-1].retry_after) == (None, None)  # hostile numbers

    # A download notes the origin's answers (the redirect) but not the asset host's.
    before = len(notes)
    assert http.download(f"{url}/hop", str(tmp_path / "a.glb")) == len(GLB)
    assert [n.status for n in notes[before:]] == [302]
    assert where == [threading.current_thread()] * len(notes)


def test_a_failing_rate_observer_never_loses_an_answer(serve) -> None:
    def broken(note: RateNote) -> None:
        raise RuntimeError("observer bug")

    http = HttpClient(KEY, serve(Files()), on_rate=broken)
    assert http.post_json("/json", {}) == {"ok": True}  # e.g. the task id of a paid create


def test_a_call_is_one_attempt_and_never_sleeps(serve, sleeps) -> None:
    files = Files()
    http = HttpClient(KEY, serve(files))

    files.inject(status=429, headers={"Retry-After": "5"}, method="GET")
    with pytest.raises(ProviderError) as info:
        http.get_json("/json")
    assert info.value.kind == ErrorKind.RATE_LIMIT and info.value.retry_after == 5.0
    assert files.count("GET") == 1

    # The 429 above said "wait 5 s": the engine decides that now, this client must not.
    files.inject(status=503, headers={"Retry-After": "7"}, method="GET")
    with pytest.raises(ProviderError) as info:
        http.get_json("/json")
    assert info.value.kind == ErrorKind.TRANSIENT and info.value.retry_after == 7.0
    assert files.count("GET") == 2

    files.inject(status=429, headers={"Retry-After": "5"}, method="POST")
    with pytest.raises(ProviderError) as info:
        http.post_json("/json", {}, "idem-1")
    assert info.value.kind == ErrorKind.RATE_LIMIT and info.value.retry_after == 5.0
    assert files.count("POST") == 1

    assert http.get_json("/json") == {"ok": True} and files.count("GET") == 3
    assert sleeps == []


def test_an_unreachable_service_fails_at_once_as_not_sent(sleeps) -> None:
    http = HttpClient(KEY, "http://127.0.0.1:9")
    for call in (lambda: http.get_json("/x"), lambda: http.post_json("/x", {})):
        with pytest.raises(ProviderError) as info:
            call()
        assert info.value.kind == ErrorKind.NOT_SENT
    assert sleeps == []
