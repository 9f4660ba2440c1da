"""Money you can see (issue #21), in real Blender against each service's emulator: what
every job cost, as the service said it, agrees with the service's own ledger — in `jobs
--json`, in `spend` (JSON and table), after a failure or refund (after a kill and resume:
test_faults.py's kill test); quotes and `--dry-run`; a spending limit that holds.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from faultrows import BY_SERVICE, PROMPT, SERVICES, Case, Service, generate, running
from services import api

from conftest import ADDON_ID


def _mine(rows: list[dict], since: float) -> list[dict]:
    return [r for r in rows if float(r["created"]) >= since]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert importlib.import_module(f"{ADDON_ID}.cli").main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("svc", BY_SERVICE)
def test_what_jobs_cost_agrees_with_the_services_ledger(
    scene, monkeypatch, tmp_path, capsys, svc: Service
) -> None:
    since = time.time()
    with running(svc, monkeypatch, tmp_path) as emu:
        assert generate(svc) == {"FINISHED"} and generate(svc) == {"FINISHED"}
        spent, balance = svc.spent(emu), svc.balance(emu)
    assert spent > 0
    jobs = _mine(api().jobs(), since)
    assert len(jobs) == 2 and {j["credit_unit"] for j in jobs} == {svc.unit}
    assert sum(float(j["credits"]) for j in jobs) == spent
    (row,) = [r for r in api().spend(since) if r["service"] == svc.name]
    assert (row["unit"], row["paid_jobs"], row["charged"]) == (svc.unit, 2, spent)
    assert (row["held"], row["refunded"], row["unknown"]) == (0, 0, 0)
    assert row["balance"] == balance
    since_day = time.strftime("%Y-%m-%d", time.localtime(since))
    assert json.loads(_cli(capsys, "spend", "--json", "--since", since_day))
    table = _cli(capsys, "spend")
    line = next(x for x in table.splitlines() if x.startswith(svc.name))
    assert svc.unit in line and "—" in line if balance is None else str(int(balance)) in line


def _failures() -> list[object]:
    return [pytest.param(s, c, id=f"{s.name}-{c.id}") for s in SERVICES for c in s.failures]


@pytest.mark.parametrize(("svc", "case"), _failures())
def test_a_failed_task_costs_what_the_service_kept(
    scene, monkeypatch, tmp_path, svc: Service, case: Case
) -> None:
    """Voxel-AI gives the token back: the job cost nothing, the refund shows. Ravenra and
    Siray document neither price nor refund: the failed generation counts, as it was made."""
    since = time.time()
    with running(svc, monkeypatch, tmp_path) as emu:
        case.setup(emu)
        with pytest.raises(RuntimeError):
            generate(svc)
        spent = svc.spent(emu)
    (job,) = _mine(api().jobs(), since)
    assert job["state"] == "failed" and float(job["credits"]) == spent
    (row,) = [r for r in api().spend(since) if r["service"] == svc.name]
    assert row["charged"] == spent
    if svc.name == "voxelai":
        assert spent == 0 and row["refunded"] == 1 and job["credits"] == 0


def test_an_answer_with_a_charge_not_understood_leaves_the_cost_unknown(
    scene, monkeypatch, tmp_path
) -> None:
    """The jobs go on; their cost is unknown (null), with one warning per service that says
    why (on the first such job this Blender ran, not on every row of a batch)."""
    svc = SERVICES[0]  # Trify3D: every answer says creditsUsed
    importlib.import_module(f"{ADDON_ID}.runtime").shutdown()  # a Blender that warned of none
    since = time.time()
    with running(svc, monkeypatch, tmp_path) as emu:
        emu.credits_used = "five"
        assert generate(svc) == {"FINISHED"} and generate(svc) == {"FINISHED"}
    second, first = _mine(api().jobs(), since)  # newest first
    assert first["state"] == second["state"] == "imported"
    assert first["credits"] is None and second["credits"] is None
    said = [[w for w in job["warnings"] if "cost unknown" in w] for job in (first, second)]
    assert said == [["trify3d: cost unknown (creditsUsed 'five' is not an amount)"], []]
    (row,) = [r for r in api().spend(since) if r["service"] == svc.name]
    assert row["unknown"] == 2


def test_a_dry_run_quotes_from_the_last_charges_and_sends_nothing(
    scene, monkeypatch, tmp_path, capsys
) -> None:
    """After one job on each service, a batch of two rows per service (and one of a Trify3D
    model never charged) is quoted at twice each service's last charge, with one row unknown;
    nothing is sent and nothing journaled."""
    with ExitStack() as running_all:
        for svc in SERVICES:
            (tmp_path / svc.name).mkdir()
        emus = {s.name: running_all.enter_context(running(s, monkeypatch, tmp_path / s.name))
                for s in SERVICES}  # fmt: skip
        for svc in SERVICES:
            assert generate(svc) == {"FINISHED"}
        last = {j["provider"]: j["credits"] for j in reversed(api().jobs())}
        rows = [{"service": s.name, "prompt": f"a {s.name} lamp", **s.args}
                for s in SERVICES for _ in range(2)]  # fmt: skip
        rows.append({"service": "trify3d", "prompt": "a new model", "model": "never/charged"})
        batch = tmp_path / "plan.csv"
        with batch.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
        sent = {name: len(emu.requests) for name, emu in emus.items()}
        journaled = len(api().jobs())
        out = _cli(capsys, "batch", str(batch), "--dry-run")
        assert {name: len(emu.requests) for name, emu in emus.items()} == sent
        assert len(api().jobs()) == journaled
    quoted = api().quote({"service": r["service"], "options": r} for r in rows)
    by_service = {e["service"]: e for e in quoted["services"]}
    for svc in SERVICES:
        assert by_service[svc.name]["amount"] == 2 * float(last[svc.name]), svc.name
        assert by_service[svc.name]["unit"] == svc.unit
    assert by_service["trify3d"]["unknown"] == 1 and quoted["unknown"] == 1
    assert out.startswith("dry run: 11 row(s), nothing sent")
    trify_line = next(x for x in out.splitlines() if x.startswith("trify3d"))
    assert f"{2 * float(last['trify3d']):g} credits + 1 unknown" in trify_line
    assert "1 row(s) of unknown cost" in out.splitlines()[-1]


def test_a_dry_run_with_no_rows_is_bad_input(scene, tmp_path, capsys) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    cli = importlib.import_module(f"{ADDON_ID}.cli")
    assert cli.main(["batch", str(empty), "--service", "trify3d", "--dry-run"]) == 2
    assert "has no rows" in capsys.readouterr().err


def _rows(path, *rows: dict) -> str:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_a_batch_whose_estimate_is_over_the_limit_sends_nothing(
    scene, monkeypatch, tmp_path, capsys
) -> None:
    svc = SERVICES[0]  # Trify3D: 5 credits a job
    with running(svc, monkeypatch, tmp_path) as emu:
        model = f"kind/{time.time_ns()}"  # a kind of job of its own, charged once below
        assert bpy_generate(svc, model) == {"FINISHED"}
        posts = emu.count("POST")
        batch = _rows(tmp_path / "b.csv", *({"service": "trify3d", "prompt": f"row {i}",
                                             "model": model} for i in range(3)))  # fmt: skip
        cli = importlib.import_module(f"{ADDON_ID}.cli")
        capsys.readouterr()
        assert cli.main(["batch", batch, "--max-credits", "12"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "conjure: the estimate, 15 credits, is over --max-credits 12: nothing sent"
        assert emu.count("POST") == posts


def test_a_batch_of_unknown_cost_stops_at_the_limit(scene, monkeypatch, tmp_path, capsys):
    """No job of this kind was charged before: one goes alone and shows the price (5), the
    next fits (10 of 12), the rest would cross the limit and are never sent; exit 1."""
    svc = SERVICES[0]
    with running(svc, monkeypatch, tmp_path) as emu:
        model = f"kind/{time.time_ns()}"
        batch = _rows(tmp_path / "b.csv", *({"service": "trify3d", "prompt": f"row {i}",
                                             "model": model} for i in range(5)))  # fmt: skip
        cli = importlib.import_module(f"{ADDON_ID}.cli")
        code = cli.main(["batch", batch, "--max-credits", "12", "--output-dir", str(tmp_path)])
        out = capsys.readouterr().out
        assert code == 1
        assert emu.count("POST") == 2 and emu.charges == 2
        assert out.count("Not sent: credit limit") >= 3 and "2 of 5 imported" in out
    assert api().spend_limit(None) is None  # lifted after the batch; lifting twice is fine
    with pytest.raises(api().ConjureError, match="positive number"):
        api().spend_limit(0)


def bpy_generate(svc: Service, model: str) -> set[str]:
    import bpy

    return bpy.ops.conjure.generate(provider=svc.name, prompt="a priced lamp", model=model,
                                    timeout=60)  # fmt: skip


@pytest.fixture
def ask_above() -> Iterator[Callable[[float], None]]:
    """Sets the "Ask Before Spending More Than" preference; 0 (never ask) again after."""
    import bpy

    prefs = bpy.context.preferences.addons[ADDON_ID].preferences

    def set_to(credits: float) -> None:
        prefs.ask_above = credits

    yield set_to
    prefs.ask_above = 0.0


def test_the_sidebar_shows_costs_and_the_balance_and_asks_before_spending_more(
    scene, monkeypatch, tmp_path, ask_above
) -> None:
    """A job row says what the service charged; the Generate box shows the balance it last
    reported, and the buttons the estimate; over "Ask Before Spending More Than" a script
    running the sidebar's operators is refused in one line (nothing sent) unless it
    confirms; Compare's estimate is the sum over its services."""
    import bpy
    from panelrec import record

    svc = SERVICES[0]  # Trify3D: says creditsUsed and creditsRemaining
    panels = importlib.import_module(f"{ADDON_ID}.panels.main")
    settings = bpy.context.scene.conjure
    settings.provider, settings.source, settings.prompt = "trify3d", "TEXT", PROMPT
    settings.compare_services = {"trify3d", "siray"}
    monkeypatch.setenv("CONJURE_SIRAY_API_KEY", "sk-siray-never-reached")
    with running(svc, monkeypatch, tmp_path) as emu:
        assert generate(svc) == {"FINISHED"}
        price, balance = svc.spent(emu), svc.balance(emu)
        job_id = api().jobs()[0]["job_id"]
        (item,) = [i for i in bpy.context.window_manager.conjure.jobs if i.job_id == job_id]
        assert item.cost == f"{price:g} credits"
        seen = importlib.import_module(f"{ADDON_ID}.runtime").get().prices.balances["trify3d"]
        monkeypatch.setattr(panels, "now", lambda: seen.at + 120)
        lines, problems = record(panels.VIEW3D_PT_conjure_generate.draw)
        assert problems == []
        assert f'  label "Balance {balance:g} credits, seen 2 min 0 s ago"' in lines
        assert panels.with_estimate("Generate", bpy.context, ["trify3d"]) == (
            f"Generate (about {price:g} credits)"
        )
        compared = panels.with_estimate("Compare", bpy.context, ["siray", "trify3d"])
        assert re.fullmatch(rf"Compare \(about (.* \+ )?{price:g} credits.*\)", compared)
        ask_above(price / 2)
        posts = emu.count("POST")
        asked = rf"This may spend about (.* \+ )?{price:g} credits"  # (Siray's, if known)
        crate = bpy.data.objects.new("Crate", bpy.data.meshes.new("Crate"))
        crate.data.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], [], [(0, 1, 2)])
        bpy.context.scene.collection.objects.link(crate)
        crate.select_set(True)  # a placeholder: Generate for Selected asks the same
        placeholder_runs = (bpy.ops.conjure.generate_for_selected,)
        for run in (bpy.ops.conjure.sidebar_generate, bpy.ops.conjure.compare, *placeholder_runs):
            with pytest.raises(RuntimeError, match=f"Not sent: {asked}"):
                run()
        with pytest.raises(RuntimeError, match=f"Not sent: {asked}"):
            bpy.ops.conjure.sidebar_generate("INVOKE_DEFAULT")  # no window to ask in: refused
        assert emu.count("POST") == posts  # refused before anything was sent
        assert bpy.ops.conjure.sidebar_generate(confirmed=True) == {"FINISHED"}
        assert emu.count("POST") == posts + 1
        ask_above(price)  # exactly the estimate: within, no question
        assert bpy.ops.conjure.sidebar_generate() == {"FINISHED"}
        assert emu.count("POST") == posts + 2


def test_asking_weighs_each_unit_on_its_own(addon, monkeypatch) -> None:
    """5 credits and 1 generation are not 6 of anything: neither is over 5."""
    generate = importlib.import_module(f"{ADDON_ID}.operators.generate")
    spend = importlib.import_module(f"{ADDON_ID}.jobs.spend")
    monkeypatch.setattr(importlib.import_module(f"{ADDON_ID}.settings"), "ask_above", lambda: 5.0)
    mixed = [spend.Estimate("trify3d", "credits", 1, 5.0, 0),
             spend.Estimate("siray", "generation", 1, 1.0, 0)]  # fmt: skip
    assert generate.spend_question(mixed) == ""
    over = [spend.Estimate("trify3d", "credits", 2, 6.0, 0)]
    assert generate.spend_question(over) == "This may spend about 6 credits, more than 5 at once"
