"""Services for the Blender tests: an emulator started and the add-on pointed at it by the
environment (CONJURE_<ID>_API_KEY, CONJURE_<ID>_BASE_URL, a short CONJURE_POLL_SECONDS), and
the script API imported the way a user's script imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TypeVar

import pytest

from conftest import ADDON_ID

E = TypeVar("E")

DONE = ("imported", "failed", "cancelled", "unsure")


def api() -> ModuleType:
    """The script API (`<add-on>.api`)."""
    return importlib.import_module(f"{ADDON_ID}.api")


def service_env(service: str, key: str, url: str) -> dict[str, str]:
    """The variables that give the add-on a service's key and base URL."""
    name = service.upper()
    return {f"CONJURE_{name}_API_KEY": key, f"CONJURE_{name}_BASE_URL": url}


def cancel_live_jobs(wait: float = 0.0) -> None:
    """Cancel every job still live, so none counts against the next test's limits; with
    `wait`, give them that long to settle."""
    script = api()
    live = [j["job_id"] for j in script.jobs() if j["state"] not in DONE]
    for job_id in live:
        script.cancel(job_id)
    if wait:
        script.wait(live, wait)


@contextmanager
def service(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    emulator: E,
    key: str,
    *,
    path: str = "",
    cancel_live: bool = False,
    cancel_wait: float = 0.0,
) -> Iterator[E]:
    """Start `emulator` and point the add-on's service `name` at it (its URL plus `path`);
    afterwards cancel the live jobs (if asked) and stop it."""
    emu = emulator.start()  # type: ignore[attr-defined]
    try:
        for var, value in service_env(name, key, f"{emu.url}{path}").items():
            monkeypatch.setenv(var, value)
        monkeypatch.setenv("CONJURE_POLL_SECONDS", "0.05")
        yield emu
        if cancel_live:
            cancel_live_jobs(cancel_wait)
    finally:
        emu.stop()
