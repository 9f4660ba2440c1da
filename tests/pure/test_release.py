"""The version rule: the manifest's version is CHANGELOG.md's newest entry, and the entries
(`## <version> — <YYYY-MM-DD>`) go newest first with real dates."""

from __future__ import annotations

import datetime
import re
import tomllib
from itertools import pairwise

from conftest import ROOT

HEADING = re.compile(r"^## (\S+) — (\S+)$")


def _entries() -> list[tuple[str, str]]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith("## ")]
    found = [HEADING.match(line) for line in lines]
    assert all(found), f"headings must read '## <version> — <YYYY-MM-DD>': {lines}"
    return [(m.group(1), m.group(2)) for m in found if m]


def _version(text: str) -> tuple[int, ...]:
    assert re.fullmatch(r"\d+(\.\d+)*", text), f"not a version of numbers: {text!r}"
    return tuple(int(part) for part in text.split("."))


def _date(text: str) -> datetime.date:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", text), f"not YYYY-MM-DD: {text!r}"
    return datetime.date.fromisoformat(text)  # a real day: 2026-02-30 raises


def test_the_manifest_version_is_the_newest_entry() -> None:
    with (ROOT / "blender_manifest.toml").open("rb") as f:
        version = tomllib.load(f)["version"]
    versions = [v for v, _ in _entries()]
    assert version in versions, f"CHANGELOG.md has no entry for {version}"
    assert versions[0] == version, f"the newest entry is {versions[0]}, the manifest {version}"


def test_entries_go_newest_first_with_iso_dates() -> None:
    entries = _entries()
    assert entries, "CHANGELOG.md has no entries"
    versions = [_version(v) for v, _ in entries]
    assert all(new > old for new, old in pairwise(versions)), f"not newest first: {entries}"
    dates = [_date(d) for _, d in entries]
    assert all(new >= old for new, old in pairwise(dates)), f"dates go back: {entries}"
