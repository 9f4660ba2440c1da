"""`conjure doctor` and the sidebar's Check Services in real Blender (issue #23): where each
setting comes from, the live check against an emulator, exit codes; nothing created, no key
in what is printed."""

from __future__ import annotations

import importlib
import json

import pytest
from services import service

from conftest import ADDON_ID
from emulators.trify3d import Trify3DEmulator

KEY = "trf_live_doctor-S3CRET-23"
KEY_VARS = [f"CONJURE_{p.upper()}_API_KEY" for p in
            ("ravenra", "siray", "voxelai", "trify3d", "triverse")]  # fmt: skip


@pytest.fixture
def trify(tmp_path, monkeypatch, scene):
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    glb = tmp_path / "m.glb"
    glb.write_bytes(b"glTF\x02\x00\x00\x00" + b"\x00" * 64)
    with service(monkeypatch, "trify3d", Trify3DEmulator(glb, api_key=KEY), KEY) as emu:
        yield emu


def _doctor(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = importlib.import_module(f"{ADDON_ID}.cli").main(["doctor", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_doctor_reports_each_service_and_exits_by_what_needs_attention(trify, capsys) -> None:
    code, out = _doctor(capsys, "--json")
    rows = {r["service"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {"ravenra", "siray", "voxelai", "trify3d", "triverse"}
    ok = rows["trify3d"]
    assert (ok["status"], ok["key_from"], ok["base_url_from"]) == ("ok", "environment",
                                                                   "environment")  # fmt: skip
    assert ok["base_url"] == trify.url and ok["online_access"] is True
    assert {rows[s]["status"] for s in rows if s != "trify3d"} == {"no_key"}
    assert trify.count("POST") == 0 and trify.count("GET") == 1
    code, text = _doctor(capsys, "--service", "trify3d")
    assert code == 0 and "trify3d   ok" in text and "key from environment" in text
    assert KEY not in out + text


def test_doctor_exit_1_for_a_rejected_key_and_2_for_bad_input(trify, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CONJURE_TRIFY3D_API_KEY", "trf_live_WRONG-S3CRET")
    code, out = _doctor(capsys, "--json", "--service", "trify3d")
    (row,) = json.loads(out)
    assert code == 1 and row["status"] == "key_rejected" and "WRONG-S3CRET" not in out
    code, out = _doctor(capsys, "--service", "nowhere")
    assert code == 2 and len(out.strip().splitlines()) == 1


def test_doctor_offline_sends_nothing(trify, capsys) -> None:
    import bpy

    bpy.context.preferences.system.use_online_access = False
    try:
        code, out = _doctor(capsys, "--json")
    finally:
        bpy.context.preferences.system.use_online_access = True
    assert code == 1 and {r["status"] for r in json.loads(out)} == {"offline"}
    assert trify.requests == []


def test_check_services_from_a_script_reports_and_creates_nothing(trify) -> None:
    import bpy

    assert bpy.ops.conjure.check_services() == {"FINISHED"}
    assert trify.count("GET") == 1 and trify.count("POST") == 0
