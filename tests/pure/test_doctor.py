"""`conjure doctor` without Blender (issue #23): each case told apart, in words and fields,
against the five emulators, a closed port, a self-signed TLS server and a proxy that is not
there; never a create, never the key in what it says."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conjure_src.jobs.doctor import Health, Network, examine
from conjure_src.jobs.session import ServiceSettings
from emulators.ravenra import RavenraEmulator
from emulators.siray import SirayEmulator
from emulators.tls import make_cert, serve_tls
from emulators.trify3d import Trify3DEmulator
from emulators.triverse import TriverseEmulator
from emulators.voxelai import VoxelAIEmulator

KEY = "doctor-PLANTED-S3CRET-key-77"
ONLINE = Network("", "", "")
BASE_PATH = {"triverse": "/api/v1"}


def _emulator(service: str, tmp_path: Path):
    if service == "trify3d":
        glb = tmp_path / "m.glb"
        glb.write_bytes(b"glTF\x02\x00\x00\x00" + b"\x00" * 64)
        return Trify3DEmulator(glb, api_key=KEY)
    made = {"ravenra": RavenraEmulator, "siray": SirayEmulator, "voxelai": VoxelAIEmulator,
            "triverse": TriverseEmulator}[service]  # fmt: skip
    return made(api_key=KEY)


@pytest.fixture(params=["ravenra", "siray", "voxelai", "trify3d", "triverse"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, object, str]]:
    emu = _emulator(request.param, tmp_path).start()
    yield request.param, emu, emu.url + BASE_PATH.get(request.param, "")
    emu.stop()


def _settings(service: str, url: str, key: str = KEY) -> ServiceSettings:
    return ServiceSettings(service, key, url, "environment" if key else "")


def _said(checkup) -> str:
    return json.dumps(checkup.to_json()) + checkup.line()


def test_a_good_key_is_accepted_by_reading_a_task_that_does_not_exist(running) -> None:
    service, emu, url = running
    checkup = examine(_settings(service, url), "environment", ONLINE)
    assert checkup.status == Health.OK and checkup.http_status == 404, checkup
    assert checkup.seconds is not None and checkup.key_from == "environment"
    assert emu.count("POST") == 0 and emu.count("GET") == 1  # one read; nothing made
    assert KEY not in _said(checkup)


def test_a_wrong_key_is_rejected(running) -> None:
    service, emu, url = running
    wrong = "doctor-WRONG-S3CRET-key-00"
    checkup = examine(_settings(service, url, wrong), "default", ONLINE)
    assert checkup.status == Health.KEY_REJECTED and checkup.http_status in (401, 403)
    assert wrong not in _said(checkup) and emu.count("POST") == 0


def test_no_key_and_no_online_access_send_nothing(running) -> None:
    service, emu, url = running
    assert examine(_settings(service, url, ""), "default", ONLINE).status == Health.NO_KEY
    off = Network("Online access is disabled: enable it in Preferences > System > Network", "", "")
    offline = examine(_settings(service, url), "default", off)
    assert offline.status == Health.OFFLINE and not offline.online_access
    assert "Online access is disabled" in offline.detail
    assert emu.requests == []


def test_rate_limited_says_when(running) -> None:
    service, emu, url = running
    emu.inject(status=429, method="GET", headers={"Retry-After": "30"},
               body={"error": "slow down"})  # fmt: skip
    checkup = examine(_settings(service, url), "default", ONLINE)
    assert checkup.status == Health.RATE_LIMITED and checkup.retry_after == 30
    assert "try again in 30 s" in checkup.detail


def test_an_unexpected_answer_gives_its_status_and_one_line_without_the_key(running) -> None:
    service, emu, url = running
    emu.inject(status=500, method="GET", body=f"upstream broke for Bearer {KEY}\nline two")
    checkup = examine(_settings(service, url), "default", ONLINE)
    assert checkup.status == Health.UNEXPECTED and checkup.http_status == 500
    assert "HTTP 500" in checkup.detail and "\n" not in checkup.detail
    assert KEY not in _said(checkup)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_says_which(tmp_path: Path) -> None:
    refused = examine(_settings("trify3d", f"http://127.0.0.1:{_closed_port()}"), "environment",
                      ONLINE)  # fmt: skip
    assert (refused.status, refused.cause) == (Health.UNREACHABLE, "refused")
    no_proxy = Network("", f"http://user:pa55word@127.0.0.1:{_closed_port()}", "")
    via = examine(_settings("siray", "http://127.0.0.1:9"), "default", no_proxy)
    assert (via.status, via.cause) == (Health.UNREACHABLE, "proxy")
    assert "pa55word" not in _said(via) and via.proxy.startswith("http://user:***@127.0.0.1:")


def test_a_self_signed_server_is_a_tls_failure(tmp_path: Path) -> None:
    made = make_cert(tmp_path)
    if made is None:
        pytest.skip("openssl is not installed")
    emu = _emulator("trify3d", tmp_path)
    url = serve_tls(emu, *made)
    try:
        checkup = examine(_settings("trify3d", url), "environment", ONLINE)
    finally:
        emu.stop()
    assert (checkup.status, checkup.cause) == (Health.UNREACHABLE, "tls")
    assert "certificate" in checkup.detail
    trusted = Network("", "", str(made[0]))  # the server's own certificate as the CA bundle
    emu = _emulator("trify3d", tmp_path)
    url = serve_tls(emu, *made)
    try:
        assert examine(_settings("trify3d", url), "environment", trusted).status == Health.OK
    finally:
        emu.stop()
