"""Trify3D's module on its own: what its error texts may carry and how a task id is sent
(issue #20, finding 14). The engine's runs against its emulator are in test_engine.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conjure_src.providers import make_http
from conjure_src.providers.base import TaskState
from conjure_src.providers.errors import ProviderError
from conjure_src.providers.trify3d import Trify3D
from emulators.trify3d import Trify3DEmulator

KEY = "trf_live_PLANTED-key-9431"


@pytest.fixture
def trify(tmp_path: Path):
    glb = tmp_path / "m.glb"
    glb.write_bytes(b"glTF\x02\x00\x00\x00" + b"\x00" * 64)
    emu = Trify3DEmulator(glb, api_key=KEY, rate_limit=100_000).start()
    yield emu
    emu.stop()


def _provider(url: str) -> Trify3D:
    return Trify3D(make_http("trify3d", KEY, url))


def test_a_key_echoed_in_a_failed_task_is_redacted(trify) -> None:
    trify.inject(
        status=200,
        method="GET",
        body={"status": "failed", "errorCode": f"KEY_REJECTED: {KEY}"},
    )
    status = _provider(trify.url).poll("t-1")
    assert status.state == TaskState.FAILED and "KEY_REJECTED" in status.message
    assert KEY not in status.message


def test_a_key_echoed_as_a_status_is_redacted(trify) -> None:
    trify.inject(status=200, method="GET", body={"status": f"denied for {KEY}"})
    with pytest.raises(ProviderError) as err:
        _provider(trify.url).poll("t-1")
    assert "unknown task status" in str(err.value)
    assert KEY.lower() not in str(err.value).lower()


class _Recorder:
    """Just enough of the HTTP client for poll(): remembers the paths it was asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def get_json(self, path: str) -> Any:
        self.paths.append(path)
        return {"status": "processing", "progress": 10}

    def redact(self, text: str) -> str:
        return text


@pytest.mark.parametrize("task_id", ["a/b", "a?b=1", "a#b", "../../admin", "a b%2F"])
def test_the_task_id_is_one_path_segment(task_id: str) -> None:
    http = _Recorder()
    Trify3D(http).poll(task_id)  # type: ignore[arg-type]
    (path,) = http.paths
    prefix = "/api/v1/generations/"
    segment = path.removeprefix(prefix)
    assert path.startswith(prefix) and not any(c in segment for c in "/?#")
    from urllib.parse import unquote

    assert unquote(segment) == task_id
