"""What the HTTP layer reads and how long it waits (issue #20, findings 10 and 12): a JSON
answer is read up to a size cap, never whole; a download that trickles meets its deadlines,
and a cancel interrupts it within a fraction of a second, even mid-read."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from conjure_src.providers import SERVICES, make_http
from conjure_src.providers import http as layer
from conjure_src.providers.errors import ErrorKind, ProviderError
from conjure_src.providers.http import HttpClient
from emulators.base import Emulator, json_reply

KEY = "trf_live_LIMITS-secret-12"
MIB = 1024 * 1024
PAYLOAD = b"glTF\x02\x00\x00\x00" + b"\x00" * 192  # 200 bytes: 40 s at a byte per 0.2 s


class Answers(Emulator):
    """A JSON answer of any size, an error page of any size, and a file."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def route(self, method, path, headers, body):
        if path == "/json":
            return json_reply(200, {"pad": "x" * self.size})
        if path == "/error":
            return 502, {"Content-Type": "text/html"}, b"<p>" + b"x" * self.size + b"</p>"
        if path == "/file":
            return 200, {"Content-Type": "application/octet-stream"}, PAYLOAD
        return 404, {}, b""


@pytest.fixture
def emu():
    server = Answers().start()
    yield server
    server.stop()


def _client(url: str, **kw) -> HttpClient:
    return make_http("trify3d", KEY, url, **kw)


# -- 12. JSON answers have a size cap ------------------------------------------------------------


def test_a_json_answer_over_the_cap_is_a_one_line_bad_response(emu) -> None:
    http = _client(emu.url)
    emu.size = 1000
    assert http.get_json("/json") == {"pad": "x" * 1000}
    emu.size = 8 * MIB  # 8 MiB of padding: over the cap once quoted
    with pytest.raises(ProviderError) as info:
        http.get_json("/json")
    assert info.value.kind == ErrorKind.BAD_RESPONSE
    assert str(info.value).endswith("the answer is over 8 MiB (HTTP 200)")
    with pytest.raises(ProviderError, match="over 8 MiB"):
        http.post_json("/json", {"prompt": "a chair"})


def test_the_cap_is_kept_without_a_declared_length(emu, monkeypatch) -> None:
    """An answer with no Content-Length (chunked) is cut off at the cap, not read whole."""
    http = _client(emu.url, max_answer_bytes=64 * 1024)
    emu.size = MIB
    body, read = http._body, []

    def unsized(response):
        del response.headers["Content-Length"]
        try:
            return body(response)
        finally:
            read.append(response.raw.tell())

    monkeypatch.setattr(http, "_body", unsized)
    with pytest.raises(ProviderError, match=r"over 0\.0625 MiB"):
        http.get_json("/json")
    assert read and read[0] < 256 * 1024  # stopped soon after the cap, not at 1 MiB


def test_an_error_page_over_the_cap_keeps_its_status(emu) -> None:
    http = _client(emu.url, max_answer_bytes=64 * 1024)
    emu.size = MIB
    with pytest.raises(ProviderError) as info:
        http.get_json("/error")
    assert info.value.kind == ErrorKind.TRANSIENT and info.value.status == 502
    assert info.value.detail == "HTTP 502"


def test_services_whose_answers_carry_files_get_a_larger_cap() -> None:
    assert SERVICES["voxelai"].max_answer_bytes == 64 * MIB  # base64 images and .vox
    assert make_http("voxelai", KEY, "http://127.0.0.1:9").max_answer_bytes == 64 * MIB
    assert make_http("trify3d", KEY, "http://127.0.0.1:9").max_answer_bytes == 8 * MIB


def test_json_nested_too_deep_is_a_bad_response_not_a_crash(emu, monkeypatch) -> None:
    http = _client(emu.url)
    monkeypatch.setattr(emu, "route", lambda *a: (200, {}, b"[" * 100_000 + b"]" * 100_000))
    with pytest.raises(ProviderError) as info:
        http.get_json("/deep")
    assert info.value.kind == ErrorKind.BAD_RESPONSE


# -- 10. downloads have deadlines and a cancel interrupts them -------------------------------------


def _trickle(emu: Emulator) -> None:
    emu.inject(trickle=0.2, passthrough=True, path="/file")


def test_a_cancel_interrupts_a_trickling_download_mid_read(emu, tmp_path: Path) -> None:
    _trickle(emu)
    http = _client(emu.url)
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    started = time.monotonic()
    with pytest.raises(ProviderError, match="download cancelled"):
        http.download(f"{emu.url}/file", str(tmp_path / "a.glb"), cancelled=flag.is_set)
    assert time.monotonic() - started < 1.5  # the whole file would take 40 s
    assert list(tmp_path.iterdir()) == []  # no .part left behind


def test_a_download_with_no_progress_meets_its_idle_deadline(emu, tmp_path: Path) -> None:
    _trickle(emu)
    http = _client(emu.url, deadlines=layer.Deadlines(idle=0.5))
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        http.download(f"{emu.url}/file", str(tmp_path / "a.glb"))
    assert time.monotonic() - started < 1.5
    assert info.value.kind == ErrorKind.TIMEOUT and "no progress for 0.5 s" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_download_that_takes_too_long_meets_its_total_deadline(emu, tmp_path: Path) -> None:
    _trickle(emu)
    http = _client(emu.url, deadlines=layer.Deadlines(idle=30, grace=0.8, rate=1e9))
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        http.download(f"{emu.url}/file", str(tmp_path / "a.glb"))
    assert time.monotonic() - started < 2.0
    assert info.value.kind == ErrorKind.TIMEOUT and "took over 1 s" in str(info.value)


def test_the_total_deadline_scales_with_the_size() -> None:
    limits = layer.Deadlines()
    assert limits.total(0) == 120
    assert limits.total(512 * 1024 * 1024) == pytest.approx(120 + 8192)  # 64 KiB/s at least


def test_a_download_within_its_deadlines_arrives_whole(emu, tmp_path: Path) -> None:
    emu.inject(trickle=0.002, passthrough=True, path="/file")
    http = _client(emu.url, deadlines=layer.Deadlines(idle=5))
    assert http.download(f"{emu.url}/file", str(tmp_path / "a.glb")) == len(PAYLOAD)
    assert (tmp_path / "a.glb").read_bytes() == PAYLOAD
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == '["a.glb"]'
