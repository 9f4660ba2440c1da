"""Benchmark: many jobs against a rate-limited service, in real Blender.

Usage: python tools/bench_engine.py [--jobs 100] [--limit 60] [--window 6] [--polls 2]
                                    [--tick S] [--latency S] [--timeout 300]

Installs the built extension into a throwaway Blender, starts the Trify3D emulator in its
own process (tools/emulator_process.py) with a shortened sliding rate window (`--limit`
requests per `--window` seconds instead of the documented 600 per hour), submits `--jobs`
text jobs through the script API (`api.submit`) and runs the runtime's main-thread drain in
a loop, as the job monitor's modal timer does (every `--tick` seconds; by default at the
monitor's own pace, `tick_interval()`: 0.1 s, 0.02 s while work is queued; like Blender's
timer, the next tick is due that long after the last one started), until every job is
imported. Each drain call is timed and tabled by the imports it made, with the largest
single import and the share of import time inside Blender's own glTF importer.

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
refused, a drain that imports nothing p99 ≤ 2 ms, and no tick over 100 ms unless it made
one import that itself took that long). Exits 1 if a job did not end imported or the
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS), str(TOOLS.parent / "tests")]
from emulator_process import EmulatorProcess, Hit  # noqa: E402

import blender_env  # noqa: E402

GLB = blender_env.ROOT.parent / "shared" / "fixtures" / "gltf" / "BoxTextured.glb"
KEY = "trf_bench_key"
VERDICT = {True: "ok", False: "MISSED", None: "n/a"}


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
class Tick:
    seconds: float  # the whole drain call
    imports: list[float]  # each import it made


@dataclass
class Run:
    wall: float = 0.0
    ticks: list[Tick] = field(default_factory=list)
    importer: list[float] = field(default_factory=list)  # inside Blender's glTF importer
    errors: list[str] = field(default_factory=list)  # exceptions out of drain()
    peak_threads: int = 0
    peak_conjure: int = 0
    rss_before: float = 0.0
    rss_peak: float = 0.0
    ended: dict[str, str] = field(default_factory=dict)  # job id -> final state
    messages: list[str] = field(default_factory=list)  # of jobs that did not import

    def plain(self) -> list[float]:
        return [t.seconds for t in self.ticks if not t.imports]

    def imports(self) -> list[float]:
        return [seconds for t in self.ticks for seconds in t.imports]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(log: list[float], fn: Callable[..., object]) -> Callable[..., object]:
    def call(*args: object) -> object:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            log.append(time.perf_counter() - started)

    return call


def run(bpy, api, rt, gltf, jobs: int, tick: float | None, timeout: float, interval) -> Run:
    """Submit the jobs and drain like the modal timer until all end (or the timeout).

    Blender's timer fires `interval` after it last fired (not after the handler returned),
    so a drain that took longer is followed by the next at once; so here."""
    result = Run(rss_before=rss_mib())
    imports: list[float] = []
    rt.import_job = timed(imports, rt.import_job)
    gltf._run_importer = timed(result.importer, gltf._run_importer)
    started = time.perf_counter()
    pending = {api.submit("trify3d", prompt=f"bench crate {i}") for i in range(jobs)}
    while pending:
        done_before = len(imports)
        t0 = time.perf_counter()
        try:
            rt.drain(bpy.context)
        except Exception as exc:  # in Blender this would end the modal monitor: report it
            result.errors.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(-1)}")
        result.ticks.append(Tick(time.perf_counter() - t0, imports[done_before:]))
        names = [t.name for t in threading.enumerate()]
        result.peak_threads = max(result.peak_threads, len(names))
        conjure = sum(name.startswith("conjure-") for name in names)
        result.peak_conjure = max(result.peak_conjure, conjure)
        for job_id in list(pending):  # the session's own view: no journal read per job
            job = rt.jobs[job_id]
            if job.finished:
                pending.discard(job_id)
                result.ended[job_id] = str(job.state)
                if job.state != "imported":
                    result.messages.append(job.message)
        if time.perf_counter() - started > timeout:
            states = [str(rt.jobs[i].state) for i in pending]
            counts = {s: states.count(s) for s in sorted(set(states))}
            raise TimeoutError(
                f"{len(pending)} of {jobs} jobs not finished after {timeout:.0f} s: {counts}"
            )
        time.sleep(max(t0 + (tick or interval(rt)) - time.perf_counter(), 0.0))
    result.wall = time.perf_counter() - started
    result.rss_peak = rss_mib()
    return result


def tick_table(r: Run) -> tuple[bool, list[str]]:
    """The main thread: drain ticks by how many imports they made, the largest import and
    Blender's importer's share of it, the largest tick; the target: no tick over 100 ms
    unless it is one import that itself took that long."""
    rows = {
        "no import": r.plain(),
        "one import": [t.seconds for t in r.ticks if len(t.imports) == 1],
        "2+ imports": [t.seconds for t in r.ticks if len(t.imports) > 1],
    }
    head = f"{'drain ticks':<12} {'count':>5} {'p50':>10} {'p99':>10} {'max':>10}"
    lines = [f"main thread       {head}"]
    for name, values in rows.items():
        if values:
            lines.append(
                f"                  {name:<12} {len(values):>5} {ms(pct(values, 0.5)):>10} "
                f"{ms(pct(values, 0.99)):>10} {ms(max(values)):>10}"
            )
    spent = r.imports()
    if spent:
        first, rest = spent[0], spent[1:] or spent
        own = sum(r.importer) / sum(spent)
        lines.append(
            f"imports           {len(spent)}: the first {ms(first)}, then median "
            f"{ms(statistics.median(rest))}, largest {ms(max(rest))}"
        )
        lines.append(
            f"                  {own:.0%} of import time inside Blender's glTF importer "
            f"(bpy.ops.import_scene.gltf: median {ms(statistics.median(r.importer))})"
        )
    over = [t for t in r.ticks if t.seconds > 0.1]
    bad = [t for t in over if len(t.imports) != 1]
    largest = max(r.ticks, key=lambda t: t.seconds)
    lines.append(
        f"largest tick      {ms(largest.seconds)} ({len(largest.imports)} import(s)); "
        f"{len(over)} over 100 ms, {len(bad)} of them not a single import"
    )
    return not bad, lines


def report(args: argparse.Namespace, hits: list[Hit], r: Run) -> None:
    api_hits = [h for h in hits if h.path.startswith("/api/")]
    accepted = [h.at for h in api_hits if h.status != 429]
    if not accepted:
        print("--- bench_engine: the service accepted no request")
        return
    creates = sum(h.method == "POST" for h in api_hits)
    polls = sum(h.method == "GET" for h in api_hits)
    refused = len(api_hits) - len(accepted)
    needed = len(accepted)
    floor = args.window * (math.ceil(needed / args.limit) - 1)
    simple = needed / args.limit * args.window
    first = accepted[0]
    spans = [  # first and last arrival of each batch of `limit` accepted requests
        (accepted[k] - first, accepted[min(k + args.limit, needed) - 1] - first)
        for k in range(0, needed, args.limit)
    ]
    imported = sum(state == "imported" for state in r.ended.values())
    ratio = r.wall / floor if floor else float("nan")
    p99 = pct(r.plain(), 0.99)
    ticks_ok, tick_lines = tick_table(r)

    print("--- bench_engine " + "-" * 60)
    print(f"jobs              {args.jobs} submitted, {imported} imported")
    for message in sorted(set(r.messages))[:5]:
        print(f"  NOT IMPORTED:   {message}")
    if r.errors:
        print(f"DRAIN RAISED      {len(r.errors)} times (the modal monitor would stop); first:")
        print("  " + r.errors[0].strip().replace("\n", "\n  "))
    print(
        f"service           {args.limit} requests / {args.window:g} s sliding, "
        f"{args.polls} polls per task, +{args.latency * 1e3:.0f} ms per answer, in its own "
        "process; "
        + (f"drain every {args.tick:g} s" if args.tick else "drain at the monitor's pace")
    )
    print(
        f"requests          {creates + polls} API ({creates} creates, {polls} polls), "
        f"{refused} refused with 429; needed = {needed}"
    )
    print(
        f"floor             {floor:.2f} s = {args.window:g} * (ceil({needed}/{args.limit}) - 1)"
        f"   [needed/limit * window = {simple:.2f} s]"
    )
    against = f"{ratio:.3f} x floor" if floor else "no floor: all fits in one burst"
    print(f"wall time         {r.wall:.2f} s (first submit -> last import) = {against}")
    api_work = accepted[-1] - first
    print(
        f"API work          {api_work:.2f} s from the first request to the last"
        + (f" = {api_work / floor:.3f} x floor" if floor else "")
        + f"; then {r.wall - api_work:.2f} s to the last import"
    )
    print(
        f"batches of {args.limit:<6} "
        + "  ".join(f"{a:.2f}-{b:.2f}" for a, b in spans)
        + f" s (ideal: one every {args.window:g} s)"
    )
    print("\n".join(tick_lines))
    print(
        f"threads (peak)    {r.peak_threads} in the process, {r.peak_conjure} named conjure-* "
        "(the others: the main thread, Python's own)"
    )
    print(f"peak RSS          {r.rss_peak:.0f} MiB ({r.rss_before:.0f} MiB before submitting)")
    verdicts = (
        ("ratio ≤ 1.1", ratio <= 1.1 if floor else None),
        ("no 429", refused == 0),
        ("drain p99 ≤ 2 ms", p99 <= 0.002),
        ("ticks ≤ 100 ms but single imports", ticks_ok),
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

    gltf = importlib.import_module(f"{addon.__name__}.importers.gltf")

    emu = EmulatorProcess(
        "emulators.trify3d:Trify3DEmulator",
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
        result = run(bpy, api, rt, gltf, args.jobs, args.tick, args.timeout, monitor.tick_interval)
    except TimeoutError as exc:
        print(f"TIMEOUT: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        runtime.shutdown()
        hits = emu.stop()
    report(args, hits, result)
    if len(result.ended) != args.jobs or result.messages:
        sys.exit(1)


if __name__ == "__main__":
    main()
