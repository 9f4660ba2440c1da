"""Benchmark: many jobs against a rate-limited service, in real Blender.

Usage: python tools/bench_engine.py [--jobs 100] [--limit 60] [--window 6] [--polls 2]
                                    [--tick S] [--latency S] [--timeout 300]

Installs the built extension into a throwaway Blender, starts the Trify3D emulator with a
shortened sliding rate window (`--limit` requests per `--window` seconds instead of the
documented 600 per hour), submits `--jobs` text jobs through the script API (`api.submit`)
and runs the runtime's main-thread drain in a loop, as the job monitor's modal timer does
(every `--tick` seconds; by default at the monitor's own pace, `tick_interval()`: 0.1 s,
0.02 s while imports are queued), until every job is imported. Each
drain call is timed; calls that imported an asset (Blender's own glTF importer, main-thread
work by nature) are reported apart.

The engine is told the same shortened rule: after the runtime starts and before anything is
submitted, the Trify3D limiter's documented rule (600/3600 s, one rule) is replaced by
RateRule(limit, window) — `rt.engine.limiter("trify3d").rules = [...]`.

The floor. The emulator counts every API request (creates and polls; asset downloads under
/files/ and /r/ are free). With `needed` = the API requests the service accepted (a 429 is
not needed work), the first `limit` go at t = 0 as one burst and each further batch of
`limit` one window later, so no client can finish its API work sooner than
    floor = window * (ceil(needed / limit) - 1)
The simpler average-rate figure needed / limit * window is printed too. Wall time runs from
the first submit to the last import; ratio = wall / floor (goal ≤ 1.1, with 0 requests
refused and a main-thread drain p99 ≤ 2 ms). Exits 1 if a job did not end imported or the
run exceeded `--timeout`.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS), str(TOOLS.parent / "tests")]
import blender_env  # noqa: E402
from emulators.trify3d import Trify3DEmulator  # noqa: E402

GLB = blender_env.ROOT.parent / "shared" / "fixtures" / "gltf" / "BoxTextured.glb"
KEY = "trf_bench_key"
VERDICT = {True: "ok", False: "MISSED", None: "n/a"}


class TimedEmulator(Trify3DEmulator):
    """Records when each accepted API request arrived (for the per-batch timeline).

    Its server answers with TCP_NODELAY: http.server writes headers and body in two sends,
    so on a kept-alive connection Nagle + delayed ACK add ~40 ms to every answer, which is
    the emulator's artifact, not the engine's. `latency` adds a chosen delay instead."""

    def __init__(self, *args, latency: float = 0.0, **kw) -> None:
        super().__init__(*args, **kw)
        self.accepted: list[float] = []
        self.latency = latency

    def start(self) -> TimedEmulator:
        super().start()
        assert self._server is not None
        self._server.RequestHandlerClass.disable_nagle_algorithm = True
        if self.latency:
            self.inject(delay=self.latency, passthrough=True, times=10**9)
        return self

    def route(self, method, path, headers, body):
        reply = super().route(method, path, headers, body)
        if path.startswith("/api/") and reply[0] != 429:
            self.accepted.append(time.perf_counter())
        return reply


def sample_glb() -> Path:
    if GLB.exists():
        return GLB
    import bpy

    path = Path(tempfile.mkdtemp(prefix="conjure-bench-")) / "cube.glb"
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB")
    bpy.ops.wm.read_homefile(use_empty=True)
    return path


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


@dataclass
class Run:
    wall: float = 0.0
    plain: list[float] = field(default_factory=list)  # drain calls that imported nothing
    importing: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # exceptions out of drain()
    peak_threads: int = 0
    peak_conjure: int = 0
    rss_before: float = 0.0
    rss_peak: float = 0.0
    ended: dict[str, str] = field(default_factory=dict)  # job id -> final state
    messages: list[str] = field(default_factory=list)  # of jobs that did not import


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(bpy, api, rt, jobs: int, tick: float | None, timeout: float, interval=None) -> Run:
    """Submit the jobs and drain like the modal timer until all end (or the timeout)."""
    result = Run(rss_before=rss_mib())
    started = time.perf_counter()
    pending = {api.submit("trify3d", prompt=f"bench crate {i}") for i in range(jobs)}
    while pending:
        objects = len(bpy.data.objects)
        t0 = time.perf_counter()
        try:
            rt.drain(bpy.context)
        except Exception as exc:  # in Blender this would end the modal monitor: report it
            result.errors.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(-1)}")
        dt = time.perf_counter() - t0
        (result.importing if len(bpy.data.objects) != objects else result.plain).append(dt)
        names = [t.name for t in threading.enumerate()]
        result.peak_threads = max(result.peak_threads, len(names))
        conjure = sum(name.startswith("conjure-") for name in names)
        result.peak_conjure = max(result.peak_conjure, conjure)
        for job_id in list(pending):
            status = api.status(job_id)
            if status["state"] in ("imported", "failed", "cancelled", "unsure"):
                pending.discard(job_id)
                result.ended[job_id] = str(status["state"])
                if status["state"] != "imported":
                    result.messages.append(str(status["message"]))
        if time.perf_counter() - started > timeout:
            states = [str(api.status(i)["state"]) for i in pending]
            counts = {s: states.count(s) for s in sorted(set(states))}
            raise TimeoutError(
                f"{len(pending)} of {jobs} jobs not finished after {timeout:.0f} s: {counts}"
            )
        time.sleep(tick or interval(rt))
    result.wall = time.perf_counter() - started
    result.rss_peak = rss_mib()
    return result


def report(args: argparse.Namespace, emu: TimedEmulator, r: Run) -> None:
    if not emu.accepted:
        print("--- bench_engine: the service accepted no request")
        return
    creates = emu.count("POST", "/api/")
    polls = emu.count("GET", "/api/")
    needed = creates + polls - emu.refused
    floor = args.window * (math.ceil(needed / args.limit) - 1)
    simple = needed / args.limit * args.window
    first = emu.accepted[0]
    spans = [  # first and last arrival of each batch of `limit` accepted requests
        (emu.accepted[k] - first, emu.accepted[min(k + args.limit, needed) - 1] - first)
        for k in range(0, needed, args.limit)
    ]
    imported = sum(state == "imported" for state in r.ended.values())
    ratio = r.wall / floor if floor else float("nan")
    p99 = pct(r.plain, 0.99)

    print("--- bench_engine " + "-" * 60)
    print(f"jobs              {args.jobs} submitted, {imported} imported")
    for message in sorted(set(r.messages))[:5]:
        print(f"  NOT IMPORTED:   {message}")
    if r.errors:
        print(f"DRAIN RAISED      {len(r.errors)} times (the modal monitor would stop); first:")
        print("  " + r.errors[0].strip().replace("\n", "\n  "))
    print(
        f"service           {args.limit} requests / {args.window:g} s sliding, "
        f"{args.polls} polls per task, +{args.latency * 1e3:.0f} ms per answer; "
        + (f"drain every {args.tick:g} s" if args.tick else "drain at the monitor's pace")
    )
    print(
        f"requests          {creates + polls} API ({creates} creates, {polls} polls), "
        f"{emu.refused} refused with 429; needed = {needed}"
    )
    print(
        f"floor             {floor:.2f} s = {args.window:g} * (ceil({needed}/{args.limit}) - 1)"
        f"   [needed/limit * window = {simple:.2f} s]"
    )
    against = f"{ratio:.3f} x floor" if floor else "no floor: all fits in one burst"
    print(f"wall time         {r.wall:.2f} s (first submit -> last import) = {against}")
    api_work = emu.accepted[-1] - first
    print(
        f"API work          {api_work:.2f} s from the first request to the last"
        + (f" = {api_work / floor:.3f} x floor" if floor else "")
    )
    print(
        f"batches of {args.limit:<6} "
        + "  ".join(f"{a:.2f}-{b:.2f}" for a, b in spans)
        + f" s (ideal: one every {args.window:g} s)"
    )
    print(
        f"drain, no import  {len(r.plain)} ticks  p50 {ms(pct(r.plain, 0.5))}  "
        f"p99 {ms(p99)}  max {ms(max(r.plain, default=0))}"
    )
    if r.importing:
        print(
            f"drain, importing  {len(r.importing)} ticks  median "
            f"{ms(statistics.median(r.importing))}  max {ms(max(r.importing))}"
        )
    print(
        f"threads (peak)    {r.peak_threads} in the process, {r.peak_conjure} named conjure-* "
        "(others: main thread, the in-process emulator's server)"
    )
    print(f"peak RSS          {r.rss_peak:.0f} MiB ({r.rss_before:.0f} MiB before submitting)")
    verdicts = (
        ("ratio ≤ 1.1", ratio <= 1.1 if floor else None),
        ("no 429", emu.refused == 0),
        ("drain p99 ≤ 2 ms", p99 <= 0.002),
        ("all imported", imported == args.jobs),
    )
    print("targets           " + "   ".join(f"{name}: {VERDICT[ok]}" for name, ok in verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--limit", type=int, default=60, help="requests per window")
    parser.add_argument("--window", type=float, default=6.0, help="rate window, seconds")
    parser.add_argument("--polls", type=int, default=2, help="polls before a task completes")
    parser.add_argument("--tick", type=float, help="drain interval, s (default: the monitor's)")
    parser.add_argument("--latency", type=float, default=0.0, help="added per answer, s")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after, s")
    args = parser.parse_args()

    blender_env.isolate_user_resources()
    addon = blender_env.build_and_install()
    import bpy

    api = importlib.import_module(f"{addon.__name__}.api")
    runtime = importlib.import_module(f"{addon.__name__}.runtime")
    base = importlib.import_module(f"{addon.__name__}.providers.base")
    monitor = importlib.import_module(f"{addon.__name__}.operators.monitor")

    emu = TimedEmulator(
        sample_glb(),
        api_key=KEY,
        credits=10**6,
        polls_to_complete=args.polls,
        rate_limit=args.limit,
        rate_window=args.window,
        latency=args.latency,
    ).start()
    os.environ.update(  # read when the runtime is created, below
        CONJURE_TRIFY3D_API_KEY=KEY,
        CONJURE_TRIFY3D_BASE_URL=emu.url,
        CONJURE_POLL_SECONDS="0.5",  # polls are paced by the rate budget anyway
    )
    prefs = bpy.context.preferences.addons[blender_env.ADDON_ID].preferences
    prefs.max_concurrent_jobs = min(args.jobs, 100)
    rt = runtime.get()
    limiter = rt.engine.limiter("trify3d")
    assert len(limiter.rules) == 1, limiter.rules  # one rule: its send log is reused as is
    limiter.rules = [base.RateRule(args.limit, args.window)]  # the emulator's shortened window

    try:
        result = run(bpy, api, rt, args.jobs, args.tick, args.timeout, monitor.tick_interval)
    except TimeoutError as exc:
        print(f"TIMEOUT: {exc}; {emu.refused} requests refused with 429", file=sys.stderr)
        sys.exit(1)
    finally:
        runtime.shutdown()
        emu.stop()
    report(args, emu, result)
    if len(result.ended) != args.jobs or result.messages:
        sys.exit(1)


if __name__ == "__main__":
    main()
