"""The HTTP layer and the engine without Blender: retries, timeouts, downloads, secrets."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from conjure_src.jobs.engine import Engine, detect_format
from conjure_src.jobs.journal import Journal
from conjure_src.jobs.model import Job, JobState
from conjure_src.providers import get_provider, make_http
from conjure_src.providers.base import ErrorKind, ProviderError, progress_fraction
from conjure_src.providers.http import redact
from emulators.base import Emulator, json_reply
from emulators.trify3d import Trify3DEmulator, tiny_png

KEY = "trf_live_PURE-test-secret-99"
GLB = b"glTF\x02\x00\x00\x00" + b"\x00" * 64


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


@pytest.fixture
def trify(tmp_path: Path):
    glb = tmp_path / "m.glb"
    glb.write_bytes(GLB)
    emu = Trify3DEmulator(glb, api_key=KEY, rate_limit=100_000).start()
    yield emu
    emu.stop()


def _client(url: str, **kw):
    return make_http("trify3d", KEY, url, sleep=lambda s: time.sleep(min(s, 0.05)), **kw)


def test_redact_scrubs_keys_headers_and_query_tokens() -> None:
    text = f"Authorization: Bearer {KEY} x-api-key: abc123 url?token=zzz&x=1 {KEY}"
    out = redact(text, KEY)
    assert KEY not in out and "abc123" not in out and "zzz" not in out and "x=1" in out


@pytest.mark.parametrize(
    ("raw", "want"), [(0.5, 0.5), (45, 0.45), ("45%", 0.45), ("x", 0.0), (None, 0.0), (250, 1.0)]
)
def test_progress_is_normalized(raw, want) -> None:
    assert progress_fraction(raw) == pytest.approx(want)


def test_rate_limit_headers_are_tracked(trify) -> None:
    http = _client(trify.url)
    with pytest.raises(ProviderError) as info:
        http.get_json("/api/v1/generations/nope")
    assert info.value.kind == ErrorKind.NOT_FOUND
    assert http.rate.limit == 100_000 and http.rate.remaining == 100_000 - 1


def test_retry_after_http_date_and_seconds_are_honoured(trify) -> None:
    slept: list[float] = []
    http = make_http("trify3d", KEY, trify.url, sleep=slept.append)
    trify.inject(status=429, headers={"Retry-After": "2"}, method="GET")
    trify.inject(status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, method="GET")
    with pytest.raises(ProviderError, match="does not know"):
        http.get_json("/api/v1/generations/x")
    assert max(slept) >= 2.0 and trify.count("GET") == 3


def test_create_is_never_resent_after_a_read_timeout(trify) -> None:
    http = _client(trify.url, read_timeout=0.3)
    trify.inject(delay=1.0, passthrough=True, method="POST")
    provider = get_provider("trify3d", http)
    job = Job.new("trify3d", "TEXT", "a chair")
    with pytest.raises(ProviderError) as info:
        provider.submit(job.request(), job.idempotency_key)
    assert info.value.kind == ErrorKind.TIMEOUT
    time.sleep(1.0)
    assert trify.count("POST") == 1  # the service did create a task; we did not pay twice
    # The same key later finds the task the lost answer described.
    assert provider.submit(job.request(), job.idempotency_key) == next(iter(trify.tasks))
    assert len(trify.tasks) == 1


def test_get_retries_timeouts_then_gives_a_one_line_error(trify) -> None:
    http = _client(trify.url, read_timeout=0.2, max_retries=2)
    trify.inject(delay=0.5, passthrough=True, method="GET", times=3)
    with pytest.raises(ProviderError) as info:
        http.get_json("/api/v1/generations/x")
    assert info.value.kind == ErrorKind.TIMEOUT and "\n" not in str(info.value)
    assert trify.count("GET") == 3


def test_unreachable_service_is_a_network_error() -> None:
    http = _client("http://127.0.0.1:9", max_retries=1)
    with pytest.raises(ProviderError) as info:
        http.get_json("/x")
    assert info.value.kind == ErrorKind.NETWORK and KEY not in str(info.value)


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
    assert detect_format(head) == kind


# ------------------------------------------------------------------------------ engine


def _engine(tmp_path: Path, url: str, *, idempotent: bool = True) -> Engine:
    def factory(pid: str):
        provider = get_provider(pid, _client(url))
        provider.poll_interval = 0.02
        provider.supports_idempotency = idempotent
        return provider

    return Engine(Journal(tmp_path / "journal.sqlite"), factory, jobs_root=tmp_path / "jobs")


def _run_to_end(engine: Engine, job_id: str) -> Job:
    while True:
        event = engine.events.get(timeout=10)
        if event.job_id == job_id and event.state in (
            JobState.DOWNLOADED,
            JobState.FAILED,
            JobState.CANCELLED,
        ):
            return engine.journal.get(job_id)


def test_engine_downloads_model_and_thumbnail_named_by_content(tmp_path, trify) -> None:
    engine = _engine(tmp_path, trify.url)
    job = Job.new("trify3d", "TEXT", "a duck")
    engine.submit(job)
    done = _run_to_end(engine, job.job_id)
    assert done.state == JobState.DOWNLOADED and done.task_id in trify.tasks
    assert sorted(Path(f).name for f in done.files) == ["model.glb", "thumbnail.png"]
    assert engine.worker_count() == 1
    engine.shutdown()
    assert engine.worker_count() == 0


def test_journal_records_intent_before_the_create_is_sent(tmp_path, trify) -> None:
    engine = _engine(tmp_path, trify.url)
    trify.inject(delay=0.5, passthrough=True, method="POST")
    job = Job.new("trify3d", "TEXT", "a duck")
    engine.submit(job)
    time.sleep(0.25)  # the create is on the wire now
    seen = engine.journal.get(job.job_id)
    assert seen.state == JobState.SUBMITTING and seen.task_id is None
    assert _run_to_end(engine, job.job_id).state == JobState.DOWNLOADED
    engine.shutdown()


def test_resume_of_an_unsure_submit_reuses_the_idempotency_key(tmp_path, trify) -> None:
    first = _engine(tmp_path, trify.url)
    job = Job.new("trify3d", "TEXT", "a duck")
    first.provider_factory("trify3d").submit(job.request(), job.idempotency_key)  # answer lost
    first.journal.save(job.evolve(state=JobState.SUBMITTING))
    second = _engine(tmp_path, trify.url)
    (pending,) = second.journal.unfinished()
    second.resume(pending)
    assert _run_to_end(second, job.job_id).state == JobState.DOWNLOADED
    assert trify.count("POST") == 2 and len(trify.tasks) == 1  # one task, one charge
    second.shutdown()


def test_unsure_submit_without_idempotency_is_not_resent(tmp_path, trify) -> None:
    engine = _engine(tmp_path, trify.url, idempotent=False)
    job = Job.new("trify3d", "TEXT", "a duck").evolve(state=JobState.SUBMITTING)
    engine.journal.save(job)
    engine.resume(job)
    done = _run_to_end(engine, job.job_id)
    assert done.state == JobState.FAILED and "dashboard" in done.message
    assert trify.count("POST") == 0
    engine.shutdown()


def test_no_secret_in_logs_or_journal(tmp_path, trify, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="conjure")
    trify.inject(status=401, body={"error": f"key {KEY} revoked"}, method="POST")
    engine = _engine(tmp_path, trify.url)
    job = Job.new("trify3d", "TEXT", "a duck")
    engine.submit(job)
    done = _run_to_end(engine, job.job_id)
    engine.shutdown()
    assert done.state == JobState.FAILED and "***" in done.message
    assert KEY not in caplog.text
    for path in tmp_path.glob("journal.sqlite*"):
        assert KEY.encode() not in path.read_bytes()


def test_cancel_during_download_ends_cancelled_with_no_partial_files(tmp_path, trify) -> None:
    trify.polls_to_complete = 1
    trify.inject(delay=1.0, passthrough=True, method="GET", path="/files/")
    engine = _engine(tmp_path, trify.url)
    job = Job.new("trify3d", "TEXT", "a duck")
    engine.submit(job)
    deadline = time.monotonic() + 5
    while not trify.count("GET", "/files/") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.cancel(job.job_id)
    done = _run_to_end(engine, job.job_id)
    engine.shutdown()
    assert done.state == JobState.CANCELLED
    assert not list((tmp_path / "jobs").rglob("*.part"))
