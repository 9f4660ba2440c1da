"""The script API: the same code paths as the operators, for Python scripts and pipelines.

    from bl_ext.user_default.conjure import api     # the installed extension's package
    objects = api.generate("trify3d", prompt="a wooden crate")

`submit` never blocks on the network. `wait` (and `generate`) run Blender's main-thread side
while they wait, so finished assets are imported as they arrive; at the timeout they return
and the jobs go on (`resume` continues them in a later session). Errors are `ConjureError`,
one line, never a key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence

import bpy

from . import imports, placeholders, runtime, settings
from .jobs.doctor import examine
from .jobs.model import FINISHED, ImportPlan, with_mesh
from .jobs.session import ConjureError, server_face_limit
from .jobs.spend import PriceBook, Request, totals
from .jobs.spend import spend as summed_spend
from .providers import SERVICES
from .providers.base import GenerationRequest, is_url
from .settings import online_access_problem

__all__ = [
    "ConjureError", "batch_limits", "cancel", "doctor", "generate", "generate_for", "import_file",
    "jobs", "pick", "quote", "resume", "reuse", "spend", "spend_limit", "status", "submit", "wait",
]  # fmt: skip
_ENDED = {s.value for s in FINISHED}


def submit(
    provider: str,
    source: str = "TEXT",
    prompt: str = "",
    image_paths: Sequence[str] = (),
    options: Mapping[str, object] | None = None,
    mesh: Mapping[str, object] | None = None,
) -> str:
    """Start a job and return its id at once; raises ConjureError if it cannot be sent.
    `mesh`: clean-up on import, e.g. {"max_faces": 5000, "lods": 3, "merge_distance": 1e-4,
    "smooth_angle": 30, "apply_transforms": True} (docs/jobs.md, "Scene-ready results")."""
    problem = online_access_problem()
    if problem:
        raise ConjureError(problem)
    rt = runtime.get()
    paths = [p if is_url(p) else bpy.path.abspath(p) for p in image_paths]
    request = GenerationRequest(source.upper(), prompt, tuple(paths), dict(options or {}))
    job = rt.new_job(provider, request, mesh_plan(mesh))
    return rt.submit(job)


def doctor(service: str | None = None) -> list[dict[str, object]]:
    """Whether each service (or `service`) works from here, and why not: where its key and
    base URL come from, online access, proxy and CA bundle, and a live check that costs
    nothing (an authenticated read of a task that does not exist). `status`: ok, no_key,
    key_rejected, unreachable (with `cause`: dns, refused, timeout, tls, proxy), offline,
    rate_limited (with `retry_after`) or unexpected. Never a create; never a key."""
    if service is not None and service not in SERVICES:
        raise ConjureError(f"Unknown service {service!r}: use one of {', '.join(SERVICES)}")
    network = settings.doctor_network()
    wanted = [service] if service else list(SERVICES)
    return [
        examine(settings.service_settings(s), settings.base_url_source(s), network).to_json()
        for s in wanted
    ]


def mesh_plan(mesh: Mapping[str, object] | None, plan: ImportPlan | None = None) -> ImportPlan:
    """`plan` (by default the importer's own placement) with the mesh options of `mesh`."""
    try:
        return with_mesh(plan or ImportPlan(), mesh or {})
    except ValueError as exc:
        raise ConjureError(str(exc)) from None


def status(job_id: str) -> dict[str, object]:
    """state (queued … stalled, ready, imported, failed, cancelled), progress, message,
    task_id, objects (names), files, warnings."""
    job = runtime.get().latest(job_id)
    if job is None:
        raise ConjureError(f"No job {job_id!r}")
    return job.status()


def cancel(job_id: str) -> bool:
    """Stop a job; nothing more is sent for it. False if it was not live."""
    return runtime.get().cancel(job_id)


def wait(job_ids: str | Iterable[str], timeout: float = 1800.0) -> dict[str, dict[str, object]]:
    """Import as jobs finish; return every job's status when all ended or at the timeout."""
    ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
    done = runtime.get().wait(bpy.context, ids, timeout)
    return {job_id: job.status() for job_id, job in done.items() if job is not None}


def generate(
    provider: str,
    source: str = "TEXT",
    prompt: str = "",
    image_paths: Sequence[str] = (),
    options: Mapping[str, object] | None = None,
    timeout: float = 1800.0,
    mesh: Mapping[str, object] | None = None,
) -> list[bpy.types.Object]:
    """Submit, wait and return the imported objects; raises ConjureError otherwise."""
    job_id = submit(provider, source, prompt, image_paths, options, mesh)
    result = wait(job_id, timeout)[job_id]
    problem = _not_imported(result, timeout)
    if problem:
        raise ConjureError(problem)
    return _objects(result)


def generate_for(
    objects: Iterable[bpy.types.Object],
    provider: str,
    options: Mapping[str, object] | None = None,
    timeout: float = 1800.0,
    mesh: Mapping[str, object] | None = None,
) -> dict[str, list[bpy.types.Object]]:
    """Generate for placeholders: one text job per object (its `conjure_prompt`, else its
    name made readable), all at once; each result is fitted into its placeholder's box, in
    its collection, parented like it, and the placeholder is hidden. Blocks like `generate`.
    Returns each placeholder's name with its result's objects ([] for one skipped or not
    imported: a line on stderr says why); raises ConjureError when none was imported."""
    problem = online_access_problem()
    if problem:
        raise ConjureError(problem)
    given = list(objects)
    kept, skipped = placeholders.usable(given)
    if not kept:
        raise ConjureError(skipped[0] if skipped else "no objects given to generate for")
    rt = runtime.get()
    jobs = placeholders.new_jobs(rt, provider, kept, options or {}, mesh_plan(mesh))
    for job in jobs:
        rt.submit(job)
    done = wait([j.job_id for j in jobs], timeout)
    results: dict[str, list[bpy.types.Object]] = {o.name: [] for o in given}
    problems = list(skipped)
    for holder, job in zip(kept, jobs, strict=True):
        problem = _not_imported(done[job.job_id], timeout)
        if problem:
            problems.append(f"{holder.name}: {problem}")
        else:
            results[holder.name] = _objects(done[job.job_id])
    for line in problems:
        print(f"conjure: {line}", file=sys.stderr)
    if not any(results.values()):
        raise ConjureError(problems[0])
    return results


def _not_imported(result: Mapping[str, object], timeout: float) -> str:
    """Why a job waited for did not end imported, in one line ('' when it did)."""
    state, job_id = result["state"], result["job_id"]
    if state == "imported":
        return ""
    if state in _ENDED:
        return str(result["message"])
    if state == "awaiting_pick":
        return f"Job {job_id} waits for a pick: pass options={{'candidate': N}} or api.pick()"
    return (
        f"Job {job_id} is still {state} after {timeout:.0f} s; it goes on "
        "(api.wait or api.resume continue it)"
    )


def _objects(result: Mapping[str, object]) -> list[bpy.types.Object]:
    names = result["objects"]
    return [bpy.data.objects[n] for n in names if n in bpy.data.objects]  # type: ignore[attr-defined]


def pick(job_id: str, choice: int | str, options: dict[str, object] | None = None) -> None:
    """Continue a job awaiting a pick with candidate `choice` (0-based) or a local image;
    `options` change the stages that follow (Voxel-AI: voxelize settings)."""
    if isinstance(choice, str):
        choice = bpy.path.abspath(choice)
    problem = runtime.get().pick(job_id, choice, options)
    if problem:
        raise ConjureError(problem)


def resume() -> list[str]:
    """Continue every unfinished job this Blender may take; returns their ids."""
    problem = online_access_problem()
    if problem:
        raise ConjureError(problem)
    return runtime.get().resume()


def jobs() -> list[dict[str, object]]:
    """Every job in the journal, newest first (live ones as this session knows them)."""
    rt = runtime.get()
    return [(rt.latest(j.job_id) or j).status() for j in rt.journal.recent(10_000)]


def spend(since: float = 0.0) -> list[dict[str, object]]:
    """What the journal's jobs (created at or after `since`, a Unix time) cost, per service,
    as each service reported it: paid jobs, charged, held, refunded, stages of unknown cost,
    and the last balance it reported (with when). Never an estimate."""
    rt = runtime.get()
    return [s.to_json() for s in summed_spend(rt.journal.recent(1_000_000), since)]


def quote(requests: Iterable[Mapping[str, object]]) -> dict[str, object]:
    """An estimate of what `requests` would cost, each given like `submit`'s arguments
    ({"service": "trify3d", "source": "TEXT", "options": {...}, "mesh": {...}}): per service
    and in total per unit, from the most recent charge this journal saw for the same service,
    source and price-changing options (a face budget a service keeps itself is one). Rows of
    a kind never charged before are `unknown`. Nothing is sent; there is no price table."""
    wanted = []
    for r in requests:
        service = str(r.get("service") or r.get("provider") or "")
        if service not in SERVICES:
            raise ConjureError(f"Unknown service {service!r}: use one of {', '.join(SERVICES)}")
        options, mesh = r.get("options"), r.get("mesh")
        given = dict(options) if isinstance(options, Mapping) else {}
        plan = mesh_plan(mesh if isinstance(mesh, Mapping) else None)
        sent = server_face_limit(service, given, plan)
        wanted.append(Request(service, str(r.get("source") or "TEXT"), sent))
    # Read afresh: other Blenders (farm shards) share the journal.
    estimates = PriceBook(runtime.get().journal.recent(1_000_000)).quote(wanted)
    return {
        "estimate": True,
        "services": [e.to_json() for e in estimates],
        "total": totals(estimates),
        "unknown": sum(e.unknown for e in estimates),
    }


def spend_limit(limit: float | None) -> None:
    """Hold what every job this Blender submits from now on may cost, summed in each
    service's own unit (credits, tokens, generations), under `limit`; None lifts it. Each
    paid create is checked first against what the limited jobs committed (their charges, or
    the last charge of their kind while theirs are unknown): one that could cross the limit
    is not sent, and its job ends "Not sent: credit limit". Free stages never count."""
    number = isinstance(limit, int | float) and not isinstance(limit, bool)
    if limit is not None and not (number and limit > 0):
        raise ConjureError(f"the spending limit must be a positive number, got {limit!r}")
    runtime.get().engine.set_spend_limit(None if limit is None else float(limit))


def reuse(job_ids: Iterable[str]) -> None:
    """Take up jobs of an earlier run (e.g. a batch run again): imported ones are imported
    again from their files, unfinished ones resumed; never a new create. `wait` follows them."""
    runtime.get().reuse(job_ids)


def batch_limits(rows: int, shards: int = 1) -> None:
    """Before submitting a batch of `rows` jobs: let all of them be in progress at once
    (each service's rate budget still paces them), and use 1/`shards` of every budget, so
    `shards` Blenders (farm tasks) can share one key."""
    rt = runtime.get()
    rt.engine.share_budgets(1.0 / max(shards, 1))
    rt.in_flight_floor = max(rows, 0)
    rt.apply_concurrency()


def import_file(path: str) -> list[bpy.types.Object]:
    """A .vox, .glb/.gltf, .obj or zipped bundle from disk into a new collection at the 3D
    cursor (what `conjure import` does); nothing is sent. ConjureError if it cannot be read."""
    path = os.path.abspath(bpy.path.abspath(path))
    if not os.path.isfile(path):
        raise ConjureError(f"No such file: {path}")
    try:
        return imports.import_file(bpy.context, path, str(runtime.get().root / "imports"))
    except imports.ImportFailedError as exc:
        raise ConjureError(f"Import failed: {exc}") from None
