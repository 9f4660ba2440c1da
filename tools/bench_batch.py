"""Benchmark: a 200-row `conjure batch` across all five services' emulators, in real Blender.

Usage: python tools/bench_batch.py [--per-service 40] [--speedup 30] [--burst 30]
                                   [--concurrent 100] [--poll 0.5] [--timeout 300]

Installs the built extension into a throwaway Blender, starts the five emulators on
127.0.0.1, each in its own process (tools/emulator_process.py), and runs
`cli.main(["batch", CSV, "--output-dir", DIR])` in-process: the code path of
`blender -b -c conjure batch` (it waits with api.wait, which runs the main-thread side).
Rows are interleaved by service: text rows, Voxel-AI rows with a `candidate` (no person
picks), Triverse rows with a local PNG (so uploads, and their limit, are used).

Rate rules: each documented rule (INFO.rate_rules) has its window divided by `--speedup`,
after a rule allowing more than `--burst` requests is cut to `--burst` per proportionally
shorter window (same average rate: Trify3D's 600 an hour would never bind for 200 jobs).
The emulators and the engine's limiters (`rt.engine.limiter(id).rules`) get the same rules.

The floor. For a service with a rule, `needed` = the rate-counted requests its emulator
accepted (Trify3D: every API request; Voxel-AI: image creates; Triverse: uploads; a 429 is
not needed work). The first `limit` may go at t = 0 and each further `limit` one window
later, so no client ends that service's counted work sooner than
    floor(service) = window * (ceil(needed / limit) - 1)
The batch's floor is the largest; ratio = wall / floor, wall being the whole batch command
(submits, polls, downloads, imports, saving the .blend). Goal: ≤ 1.15 with 0 refusals.
Exits 1 if a row was not imported; gives up (tracebacks, exit 1) after `--timeout` + 60 s.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import faulthandler
import importlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS), str(TOOLS.parent / "tests")]
from bench_engine import timed  # noqa: E402
from emulator_process import EmulatorProcess, Hit  # noqa: E402

import blender_env  # noqa: E402
from emulators.trify3d import tiny_png  # noqa: E402
from emulators.triverse import tiny_glb  # noqa: E402

SERVICES = ("ravenra", "siray", "voxelai", "trify3d", "triverse")
GLB = blender_env.ROOT.parent / "shared" / "fixtures" / "gltf" / "BoxTextured.glb"
ASSET_PATHS = ("/r/", "/files/", "/cdn/", "/redirect/")  # downloads: free, never counted
COUNTED: dict[str, Callable[[str, str], bool]] = {  # what each service's rule counts
    "trify3d": lambda method, path: True,
    "voxelai": lambda method, path: method == "POST" and path.endswith("/generate/images"),
    "triverse": lambda method, path: method == "POST" and path.endswith("/upload/image"),
}


class Rule(NamedTuple):
    requests: int
    window: float
    bucket: str
    documented: str


Rules = dict[str, Rule]
Hits = dict[str, list[Hit]]


def start_emulators(rules: Rules, glb: Path) -> dict[str, EmulatorProcess]:
    """All five with the bench rules, each in its own process, logging what it answered."""
    t, v, u = rules["trify3d"], rules["voxelai"], rules["triverse"]
    emus = {
        "ravenra": EmulatorProcess(  # preview + refine
            "emulators.ravenra:RavenraEmulator", api_key="ravenra-key", credits=10**6
        ),
        "siray": EmulatorProcess(  # two polls, like the others
            "emulators.siray:SirayEmulator",
            api_key="siray-key",
            credits=10**6,
            attrs={"steps": (("IN_PROGRESS", "45%"), ("SUCCESS", "100%"))},
        ),
        "voxelai": EmulatorProcess(
            "emulators.voxelai:VoxelAIEmulator",
            api_key="voxelai-key",
            balance=10**6,
            images_window=v.window,
            polls_to_complete=2,
        ),
        "trify3d": EmulatorProcess(  # polls_to_complete=2 by default
            "emulators.trify3d:Trify3DEmulator",
            glb,
            api_key="trify3d-key",
            credits=10**6,
            rate_limit=t.requests,
            rate_window=t.window,
        ),
        "triverse": EmulatorProcess(
            "emulators.triverse:TriverseEmulator",
            api_key="triverse-key",
            credits=10**8,
            upload_limit=u.requests,
            upload_window=u.window,
        ),
    }
    for sid, emu in emus.items():
        emu.start()
        os.environ[f"CONJURE_{sid.upper()}_API_KEY"] = f"{sid}-key"
        os.environ[f"CONJURE_{sid.upper()}_BASE_URL"] = emu.url + "/api/v1" * (sid == "triverse")
    return emus


def api_hits(hits: list[Hit], t0: float) -> list[Hit]:
    """The API requests (downloads are free, never counted), timed from the start."""
    return [h._replace(at=h.at - t0) for h in hits if not h.path.startswith(ASSET_PATHS)]


def write_batch(folder: Path, per_service: int) -> Path:
    (folder / "photo.png").write_bytes(tiny_png())
    with open(folder / "bench.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "service", "image", "candidate"])
        for i in range(per_service * len(SERVICES)):
            sid = SERVICES[i % len(SERVICES)]
            image, candidate = "photo.png" * (sid == "triverse"), i % 3 if sid == "voxelai" else ""
            writer.writerow([f"bench crate {i}", sid, image, candidate])
    return folder / "bench.csv"


def run_quietly(fn: Callable[[], int], log_path: Path) -> int:
    """fn() with stdout and stderr (Python's and Blender's own) into log_path."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            return fn()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


def report(
    code: int, wall: float, log: list[str], rules: Rules, hits: Hits, imports: list[float]
) -> None:
    summary = next((line for line in reversed(log) if line.endswith(" imported")), "?")
    print(f"result            exit code {code}, {summary!r}")
    for line in [line for line in log if " failed " in line or "conjure:" in line][:5]:
        print(f"  {line}")
    print(f"{'service':<9} {'rule (documented)':<34} {'API ok':>6} {'429':>4} {'counted':>7} "
          f"{'floor':>6}  {'counted from-to':<15} {'API end':>7}")  # fmt: skip
    floors = dict.fromkeys(SERVICES, 0.0)
    ends: dict[str, float] = {}  # each service's last counted request
    for sid in SERVICES:
        ok = [h for h in hits[sid] if h.status != 429]
        counted = [h for h in ok if sid in rules and COUNTED[sid](h.method, h.path)]
        rule, span = "none", "-"
        if sid in rules:
            n, window, bucket, documented = rules[sid]
            floors[sid] = window * (math.ceil(len(counted) / n) - 1) if counted else 0.0
            rule = f"{n}/{window:g} s ({documented}) on {bucket}"
            if counted:
                span, ends[sid] = f"{counted[0].at:.2f}-{counted[-1].at:.2f}", counted[-1].at
        end = max((h.at for h in hits[sid]), default=0.0)
        print(f"{sid:<9} {rule:<34} {len(ok):>6} {len(hits[sid]) - len(ok):>4} {len(counted):>7} "
              f"{floors[sid]:>6.2f}  {span:<15} {end:>7.2f}")  # fmt: skip
    binding = max(floors, key=floors.__getitem__)
    floor = floors[binding] or math.nan  # nan: everything fitted in one burst
    refused = sum(h.status == 429 for log in hits.values() for h in log)
    last = max(h.at for log in hits.values() for h in log)
    print(f"floor             {floor:.2f} s, set by {binding} (times above: s after the start)")
    print(f"wall time         {wall:.2f} s, the batch command = {wall / floor:.3f} x floor")
    if binding in ends:  # where the binding service's time went
        print(f"  {binding}: its counted requests end at {ends[binding]:.2f} s = floor + "
              f"{ends[binding] - floor:.2f} s; then {wall - ends[binding]:.2f} s of work after "
              "them (polls, later steps, downloads, imports)")  # fmt: skip
    print(f"API work          the last request at {last:.2f} s = {last / floor:.3f} x floor")
    spent = sorted(imports) or [0.0]
    median, most = spent[len(spent) // 2] * 1e3, spent[-1] * 1e3
    print(f"imports           {len(imports)} on the main thread: {sum(spent):.2f} s in all, "
          f"median {median:.0f} ms, max {most:.0f} ms")  # fmt: skip
    print(f"refused (429)     {refused}")
    met = {"ratio ≤ 1.15": wall / floor <= 1.15, "no 429": refused == 0, "all imported": code == 0}
    print("targets           " + "   ".join(f"{k}: {('MISSED', 'ok')[v]}" for k, v in met.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-service", type=int, default=40, help="rows per service")
    parser.add_argument("--speedup", type=float, default=30.0, help="windows divided by this")
    parser.add_argument("--burst", type=int, default=30, help="most requests per window")
    parser.add_argument("--concurrent", type=int, default=100, help="Concurrent Jobs pref")
    parser.add_argument("--poll", type=float, default=0.5, help="CONJURE_POLL_SECONDS")
    parser.add_argument("--timeout", type=float, default=300.0, help="the batch's --timeout")
    args = parser.parse_args()
    terminal = os.fdopen(os.dup(2), "w")  # not the batch's log, where fd 2 points meanwhile
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True, file=terminal)

    blender_env.isolate_user_resources()  # also drops the caller's CONJURE_* settings
    addon = blender_env.build_and_install()
    import bpy

    cli = importlib.import_module(f"{addon.__name__}.cli")
    runtime = importlib.import_module(f"{addon.__name__}.runtime")
    providers = importlib.import_module(f"{addon.__name__}.providers")
    base = importlib.import_module(f"{addon.__name__}.providers.base")

    rules: Rules = {}
    for sid in SERVICES:
        documented = providers.SERVICES[sid].rate_rules
        assert len(documented) == (sid in COUNTED), (sid, documented)  # one rule, or none
        for r in documented:
            n, window = r.requests, r.window
            if n > args.burst:  # the same average rate, a smaller burst
                n, window = args.burst, window * args.burst / n
            rules[sid] = Rule(n, window / args.speedup, r.bucket, f"{r.requests}/{r.window:g} s")
    folder = Path(tempfile.mkdtemp(prefix="conjure-bench-batch-"))
    atexit.register(shutil.rmtree, folder, True)
    glb = GLB if GLB.exists() else folder / "model.glb"
    if not GLB.exists():
        glb.write_bytes(tiny_glb("bench"))
    emus = start_emulators(rules, glb)
    os.environ["CONJURE_POLL_SECONDS"] = str(args.poll)  # all read when the runtime starts
    prefs = bpy.context.preferences.addons[blender_env.ADDON_ID].preferences
    prefs.max_concurrent_jobs = args.concurrent
    rt = runtime.get()
    for sid in SERVICES:
        rt.engine.limiter(sid).rules = [base.RateRule(*rules[sid][:3])] if sid in rules else []

    imports: list[float] = []  # seconds each import took on the main thread
    rt.import_job = timed(imports, rt.import_job)
    csv_path = write_batch(folder, args.per_service)
    argv = ["batch", str(csv_path), "--output-dir", str(folder), "--timeout", str(args.timeout)]
    print("--- bench_batch " + "-" * 70)
    print(f"batch             {len(SERVICES) * args.per_service} rows; windows / "
          f"{args.speedup:g}, at most {args.burst} a window; polls every {args.poll:g} s; "
          f"{args.concurrent} concurrent jobs")  # fmt: skip
    t0 = time.monotonic()  # the emulators' clock
    try:
        code = run_quietly(lambda: cli.main(argv), folder / "log")
        wall = time.monotonic() - t0
    finally:
        runtime.shutdown()
        hits = {sid: api_hits(emu.stop(), t0) for sid, emu in emus.items()}
    faulthandler.cancel_dump_traceback_later()
    log = (folder / "log").read_text(errors="replace").splitlines()
    report(code, wall, log, rules, hits, imports)
    sys.exit(0 if code == 0 else 1)


if __name__ == "__main__":
    main()
