"""Benchmark: main-thread tick cost with many live jobs (the UI must never stutter).

Usage: python tools/bench_pump.py [--jobs 20] [--polls 40]
Installs the built extension into a throwaway Blender, starts the Trify3D emulator, runs N
jobs at once with fast polling so events arrive continuously, and times every call of the
pump's drain() — the work the modal timer does per tick. Ticks that import a finished asset
are reported apart: importing is main-thread work by nature (Blender's own importer).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS), str(TOOLS.parent / "tests")]
import blender_env  # noqa: E402
from emulators.trify3d import Trify3DEmulator  # noqa: E402

GLB = blender_env.ROOT.parent / "shared" / "fixtures" / "gltf" / "Duck.glb"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--polls", type=int, default=40, help="polls before a task completes")
    args = parser.parse_args()

    blender_env.isolate_user_resources()
    addon = blender_env.build_and_install()
    import bpy

    if not GLB.exists():
        raise SystemExit(f"needs {GLB} (../shared beside the repo)")
    emu = Trify3DEmulator(GLB, api_key="bench-key", polls_to_complete=args.polls, rate_limit=10**6)
    emu.start()
    os.environ.update(
        CONJURE_TRIFY3D_API_KEY="bench-key",
        CONJURE_TRIFY3D_BASE_URL=emu.url,
        CONJURE_POLL_SECONDS="0.02",
    )
    pump = sys.modules[f"{addon.__name__}.jobs.pump"]
    prefs = bpy.context.preferences.addons[blender_env.ADDON_ID].preferences
    prefs.max_concurrent_jobs = args.jobs
    jobs = [pump.Job.new("trify3d", "TEXT", f"bench job {i}") for i in range(args.jobs)]
    for job in jobs:
        pump.start(job)

    plain, importing, events = [], [], 0
    started = time.perf_counter()
    while any(not pump.runtime().jobs[j.job_id].finished for j in jobs):
        before = len(bpy.data.objects)
        t0 = time.perf_counter()
        applied = pump.drain(bpy.context)
        dt = time.perf_counter() - t0
        events += applied
        (importing if len(bpy.data.objects) != before else plain).append(dt)
        time.sleep(0.01)  # the modal timer's interval, shortened
        if time.perf_counter() - started > 120:
            raise SystemExit("jobs did not finish within 120 s")
    wall = time.perf_counter() - started
    states = {pump.runtime().jobs[j.job_id].state.value for j in jobs}
    pump.shutdown()
    emu.stop()

    print(f"{args.jobs} jobs, {events} events in {wall:.1f} s, final states {sorted(states)}")
    print(
        f"ticks without import: {len(plain)}  p50 {pct(plain, 0.5) * 1e3:.3f} ms  "
        f"p99 {pct(plain, 0.99) * 1e3:.3f} ms  max {max(plain) * 1e3:.3f} ms"
    )
    if importing:
        median = statistics.median(importing) * 1e3
        print(
            f"ticks with an import: {len(importing)}  median {median:.1f} ms  "
            f"max {max(importing) * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
