"""`blender -b --online-mode -c conjure …`: generate, batch, jobs, spend, resume and import
headless.

A thin door onto `api` (the same code paths as the operators). `main(argv)` returns the exit
code: 0 all good, 1 a job failed (or did not finish), 2 bad input, refused before anything
was sent. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import bpy

from . import api, placeholders
from .jobs.model import FINISHED, MESH_LIMITS, JobState, plain_number
from .jobs.spend import amount_words
from .providers import SERVICES

OK, FAILED, BAD_INPUT = 0, 1, 2
IMPORTED = JobState.IMPORTED.value
ENDED = {s.value for s in FINISHED}
UNDONE = {JobState.FAILED.value, JobState.CANCELLED.value}  # a batch row so ended goes again
UNSURE = JobState.UNSURE.value  # may have been charged: never sent again by a re-run


class UsageError(Exception):
    """Bad input from the command line or a batch file: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + exit
        raise UsageError(message)


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _typed(value.strip())


def _typed(value: str) -> object:
    """Option values as the services want them: numbers and booleans, else text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _date(text: str) -> float:
    """A day (YYYY-MM-DD, local time) or an ISO date and time, as a Unix time."""
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-12-01, got {text!r}") from None


def _credits(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _whole(option: str, name: str):
    """A reader of a whole number within the range MESH_LIMITS gives `option`."""
    low, high = (int(v) for v in MESH_LIMITS[option])

    def read(text: str) -> int:
        if text.strip().isdigit() and low <= int(text) <= high:
            return int(text)
        raise argparse.ArgumentTypeError(f"expected {name} from {low:,} to {high:,}, got {text!r}")

    return read


def _mesh_flags(command: argparse.ArgumentParser) -> None:
    """--max-faces and --lods: the mesh clean-up on import."""
    command.add_argument(
        "--max-faces",
        type=_whole("max_faces", "a face budget"),
        metavar="N",
        help="at most N faces per result (the service's own limit where it has one, else "
        "Blender's Decimate, applied)",
    )
    command.add_argument(
        "--lods",
        type=_whole("lods", "a number of levels"),
        metavar="K",
        help="K levels of detail, <name>_LOD0..LOD{K-1}, each about half the faces",
    )


def _mesh(args: argparse.Namespace) -> dict[str, object]:
    given = {"max_faces": args.max_faces, "lods": args.lods}
    return {k: v for k, v in given.items() if v is not None}


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if sep and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count):
        return int(index), int(count)
    raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, got {text!r}")


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="blender -c conjure", description=__doc__.split("\n\n")[0])
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = sub.add_parser("generate", help="generate one asset and import it")
    gen.add_argument("--service", required=True, help="ravenra, siray, voxelai, trify3d, triverse")
    gen.add_argument(
        "--source",
        default="TEXT",
        type=str.upper,
        choices=("TEXT", "IMAGE", "MULTIVIEW"),
        help="what to generate from",
    )
    gen.add_argument("--prompt", default="", help="what to generate (or a hint for images)")
    gen.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH",
        help="an image file or URL; repeat for several views",
    )
    gen.add_argument(
        "--option",
        action="append",
        default=[],
        type=_option,
        metavar="KEY=VALUE",
        help="a service option, e.g. model=..., candidate=1; repeatable",
    )
    gen.add_argument("--output", metavar="FILE.blend", help="save the scene here afterwards")
    gen.add_argument(
        "--export",
        choices=("glb", "obj"),
        help="also write the imported objects as FILE.glb / FILE.obj",
    )
    gen.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")  # fmt: skip
    _mesh_flags(gen)

    batch = sub.add_parser("batch", help="run many prompts: a CSV, a JSON list or one per line")
    batch.add_argument(
        "file",
        help="CSV with a header (prompt, service[, source, image, "
        "option columns]), a JSON list of objects, or text: one prompt a line",
    )
    batch.add_argument("--output-dir", default=".", help="where results go (default: here)")
    batch.add_argument("--service", help="service for rows that name none (text files)")
    batch.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="run the I-th of N slices, with 1/N of each service's rate budget",
    )
    batch.add_argument("--export", choices=("glb", "obj"), help="one file per job as well")
    batch.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait")
    batch.add_argument(
        "--max-credits",
        type=_credits,
        metavar="N",
        help="send no create that could take what this batch costs over N (each service's "
        "unit: credits, tokens, generations); over N by the estimate: nothing is sent",
    )
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and an estimate of its cost; send and journal nothing",
    )
    _mesh_flags(batch)

    fill = sub.add_parser(
        "fill", help="generate for placeholders: each object with conjure_prompt (or in "
        "--collection) gets a result fitted into its box, and is hidden"
    )  # fmt: skip
    fill.add_argument("--service", required=True, help="ravenra, siray, voxelai, trify3d, triverse")
    fill.add_argument("--collection", metavar="NAME",
                      help="every object in this collection is a placeholder")  # fmt: skip
    fill.add_argument("--option", action="append", default=[], type=_option,
                      metavar="KEY=VALUE", help="a service option; repeatable")  # fmt: skip
    fill.add_argument("--output", metavar="FILE.blend", help="save the scene here afterwards")
    fill.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    fill.add_argument("--max-credits", type=_credits, metavar="N",
                      help="send no create that could take what this costs over N")  # fmt: skip
    _mesh_flags(fill)

    jobs = sub.add_parser("jobs", help="list the journal's jobs")
    jobs.add_argument("--json", action="store_true", help="one JSON list on stdout")

    spent = sub.add_parser("spend", help="what the jobs cost, per service, as each service said")
    spent.add_argument("--json", action="store_true", help="one JSON list on stdout")
    spent.add_argument("--since", type=_date, default=0.0, metavar="DATE",
                       help="only jobs created on or after DATE (YYYY-MM-DD)")  # fmt: skip

    resume = sub.add_parser("resume", help="continue unfinished jobs without paying again")
    resume.add_argument("--output", metavar="FILE.blend", help="save the scene here afterwards")
    resume.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")

    doctor = sub.add_parser(
        "doctor", help="check each service from here (keys, URLs, network) without spending"
    )
    doctor.add_argument("--json", action="store_true", help="one JSON list on stdout")
    doctor.add_argument("--service", choices=tuple(SERVICES), help="only this service")

    imp = sub.add_parser("import", help="import a .vox, .obj, .glb or .zip file")
    imp.add_argument("file", help="the file to import")
    imp.add_argument("--output", metavar="FILE.blend", help="save the scene here afterwards")
    return root


def main(argv: Sequence[str]) -> int:
    try:
        args = parser().parse_args(list(argv))
        return COMMANDS[args.command](args)
    except SystemExit as exc:  # --help prints and exits 0
        return int(exc.code or 0)
    except (UsageError, api.ConjureError, OSError, ValueError) as exc:  # refused up front
        print(f"conjure: {exc}", file=sys.stderr)
        return BAD_INPUT


# -- subcommands ------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    options = dict(args.option)
    job_id = api.submit(args.service, args.source, args.prompt, args.image, options, _mesh(args))
    status = api.wait(job_id, args.timeout)[job_id]
    print(_line(status))
    if status["state"] != IMPORTED:
        return FAILED
    _write_results(args.output, args.export, [status])
    return OK


def _fill(args: argparse.Namespace) -> int:
    """Placeholders that have no result yet; a re-run fills only what is still empty."""
    in_scene = set(bpy.context.scene.objects)
    if args.collection:
        collection = bpy.data.collections.get(args.collection)
        if collection is None:
            raise UsageError(f"no collection {args.collection!r} in this file")
        objects = [o for o in collection.all_objects if o in in_scene]
    else:
        objects = [o for o in bpy.context.scene.objects if o.get("conjure_prompt")]
    objects = [o for o in objects if not o.get("conjure_job_id")]  # results name their prompt
    kept, skipped = placeholders.usable(objects, refill=False)
    for line in skipped:
        print(line)
    if not kept:
        if skipped:
            return OK  # every one is filled already, or cannot be: nothing to send
        where = f"collection {args.collection!r}" if args.collection else "this scene"
        raise UsageError(f"no placeholders in {where} (give objects a conjure_prompt)")
    wanted = [{"service": args.service, "options": dict(args.option), "mesh": _mesh(args)}]
    with _held_to(args.max_credits, lambda: api.quote(wanted * len(kept))):
        try:
            results = api.generate_for(kept, args.service, dict(args.option), args.timeout,
                                       _mesh(args))  # fmt: skip
        except api.ConjureError as exc:  # sent, and none came back imported
            print(f"conjure: {exc}", file=sys.stderr)
            return FAILED
    for name, made in results.items():
        print(f"{name}: {len(made)} object(s)" if made else f"{name}: nothing placed")
    if args.output:
        _save(args.output)
    return OK if all(results.values()) else FAILED


def _doctor(args: argparse.Namespace) -> int:
    """Exit 0 when every service with a key is ok, 1 when one needs attention."""
    rows: list[dict[str, Any]] = api.doctor(args.service)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        first = rows[0]
        proxy = first["proxy"] or "none"
        print(f"online access: {'allowed' if first['online_access'] else 'off'} · proxy: "
              f"{proxy} · CA bundle: {first['ca_bundle'] or 'the usual certificates'}")  # fmt: skip
        for row in rows:
            key = f"key from {row['key_from']}" if row["key_from"] else "no key"
            url = "" if row["base_url_from"] == "default" else (
                f" · base URL {row['base_url']} (from {row['base_url_from']})"
            )  # fmt: skip
            took = f" in {row['seconds']:.2f} s" if row["seconds"] is not None else ""
            print(f"{row['service']:<9} {row['status']:<13} {key}{url}{took} — {row['detail']}")
    attention = [r for r in rows if r["status"] not in ("ok", "no_key")]
    return FAILED if attention else OK


def _jobs(args: argparse.Namespace) -> int:
    rows = api.jobs()
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(_line(row))
    return OK


def _spend(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = api.spend(args.since)
    if args.json:
        print(json.dumps(rows, indent=1))
        return OK
    if not rows:
        print("no job has cost anything yet")
        return OK
    print(f"{'service':<10} {'unit':<10} {'jobs':>5} {'charged':>9} {'held':>7} "
          f"{'refunded':>9}  last balance")  # fmt: skip
    for row in rows:
        balance = "—"
        if row["balance"] is not None:
            when = datetime.datetime.fromtimestamp(row["balance_at"])
            balance = f"{plain_number(row['balance'])} at {when:%Y-%m-%d %H:%M}"
        unknown = f" (+{row['unknown']} unknown)" if row["unknown"] else ""
        print(f"{row['service']:<10} {row['unit']:<10} {row['paid_jobs']:>5} "
              f"{plain_number(row['charged']):>9} {plain_number(row['held']):>7} "
              f"{plain_number(row['refunded']):>9}  {balance}{unknown}")  # fmt: skip
    return OK


def _resume(args: argparse.Namespace) -> int:
    started = api.resume()
    if not started:
        print("no unfinished jobs to resume")
        return OK
    done = api.wait(started, args.timeout)
    for status in done.values():
        print(_line(status))
    _write_results(args.output, None, [s for s in done.values() if s["state"] == IMPORTED])
    return OK if all(s["state"] == IMPORTED for s in done.values()) else FAILED


def _import(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {args.file}")
    objects = api.import_file(path)
    print(f"imported {len(objects)} object(s) from {os.path.basename(path)}")
    if args.output:
        _save(args.output)
    return OK


# -- batch -------------------------------------------------------------------------------------


@dataclass
class Row:
    index: int
    service: str
    prompt: str = ""
    source: str = "TEXT"
    images: list[str] = field(default_factory=list)
    options: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What identifies this row across re-runs of the same batch."""
        spec = [self.service, self.source, self.prompt, self.images, sorted(self.options.items())]
        return json.dumps(spec, sort_keys=True, default=str)


def read_batch(path: str, default_service: str | None) -> list[Row]:
    """Rows of a CSV (header row), a JSON list of objects, or a text file (a prompt a line)."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    stripped = text.lstrip()
    if path.lower().endswith(".json") or stripped.startswith("["):
        try:
            records = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{os.path.basename(path)} is not valid JSON: {exc}") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise UsageError(f"{os.path.basename(path)} must be a JSON list of objects")
    elif path.lower().endswith(".csv"):
        records = list(csv.DictReader(text.splitlines()))
    else:
        records = [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    rows = [_row(i, dict(r), default_service, path) for i, r in enumerate(records)]
    if not rows:
        raise UsageError(f"{os.path.basename(path)} has no rows")
    return rows


def _row(index: int, record: dict[str, object], default_service: str | None, path: str) -> Row:
    where = f"{os.path.basename(path)} row {index + 1}"
    service = str(record.pop("service", "") or default_service or "").strip().lower()
    if not service:
        raise UsageError(f"{where}: no service (add a service column or --service)")
    image = str(record.pop("image", "") or "").strip()
    base = os.path.dirname(os.path.abspath(path))
    images = [image if "://" in image else os.path.join(base, image)] if image else []
    source = str(record.pop("source", "") or ("IMAGE" if images else "TEXT")).upper()
    prompt = str(record.pop("prompt", "") or "").strip()
    options = {k: _typed(str(v)) for k, v in record.items() if k and str(v or "").strip()}
    return Row(index, service, prompt, source, images, options)


def _batch(args: argparse.Namespace) -> int:
    rows = read_batch(args.file, args.service)
    index, count = args.shard or (1, 1)
    rows = [r for r in rows if r.index % count == index - 1]
    if args.dry_run:
        return _plan(rows, _mesh(args))
    os.makedirs(args.output_dir, exist_ok=True)
    api.batch_limits(len(rows), count)  # every row at once, within (a share of) the budgets
    batch_id = os.path.abspath(args.file)
    known = {
        j["plan"].get("batch_row"): j
        for j in reversed(api.jobs())  # oldest first: the newest attempt of a row wins
        if j["plan"].get("batch_id") == batch_id
    }
    job_of: dict[int, str] = {}
    reused: set[int] = set()
    fresh = []
    for row in rows:
        earlier = known.get(row.key)
        if earlier and earlier["state"] not in UNDONE:
            job_of[row.index] = str(earlier["job_id"])
            if earlier["state"] != UNSURE:  # shown as it ended, never sent again
                reused.add(row.index)
        else:
            fresh.append(row)
    with _held_to(args.max_credits, lambda: _quote(fresh, _mesh(args))):
        for row in fresh:
            options = {**row.options, "_batch": batch_id, "_batch_row": row.key}  # its plan
            try:
                job_of[row.index] = api.submit(
                    row.service, row.source, row.prompt, row.images, options, _mesh(args)
                )
            except api.ConjureError as exc:
                print(f"row {row.index + 1}: {exc}", file=sys.stderr)
        api.reuse(job_of[i] for i in reused)  # imported: from its files; else resumed
        statuses = _watch(list(job_of.values()), args.timeout)
    results = [statuses[j] for j in job_of.values() if statuses[j]["state"] == IMPORTED]
    stem = os.path.splitext(os.path.basename(args.file))[0]
    shard = f"-{args.shard[0]}of{args.shard[1]}" if args.shard else ""
    _write_results(os.path.join(args.output_dir, f"{stem}{shard}.blend"), None, results)
    if args.export:
        for status in results:
            _export([status], os.path.join(args.output_dir, f"{stem}-{status['job_id'][:8]}"),
                    args.export)  # fmt: skip
    _summary(rows, job_of, statuses, reused)
    failed = len(rows) - len(results)
    return OK if failed == 0 else FAILED


@contextlib.contextmanager
def _held_to(limit: float | None, quote: Callable[[], dict[str, Any]]) -> Iterator[None]:
    """`--max-credits` (None: no limit): refuse up front when the estimate (`quote()`'s
    total per unit) of what is to be sent is over the limit; else hold every create under it
    until the block ends."""
    if limit is None:
        yield
        return
    total: dict[str, float] = quote()["total"]
    if sum(total.values()) > limit:
        units = ", ".join(amount_words(v, u) for u, v in total.items())
        raise UsageError(f"the estimate, {units}, is over --max-credits {limit:g}: nothing sent")
    api.spend_limit(limit)
    try:
        yield
    finally:
        api.spend_limit(None)


def _quote(rows: list[Row], mesh: dict[str, object]) -> dict[str, Any]:
    return api.quote(
        {"service": r.service, "source": r.source, "options": r.options, "mesh": mesh}
        for r in rows
    )


def _plan(rows: list[Row], mesh: dict[str, object]) -> int:
    """`batch --dry-run`: the rows per service and kind, and the estimate; nothing sent."""
    if not rows:
        raise UsageError("--dry-run: no rows in this slice")
    quoted = _quote(rows, mesh)
    kinds: dict[str, dict[str, int]] = {}
    for row in rows:
        kind = " ".join([row.source] + [f"{k}={v}" for k, v in sorted(row.options.items())])
        counts = kinds.setdefault(row.service, {})
        counts[kind] = counts.get(kind, 0) + 1
    print(f"dry run: {len(rows)} row(s), nothing sent")
    print(f"{'service':<10} {'rows':>5}  {'estimate':<22} kinds of job")
    for e in quoted["services"]:
        known = amount_words(e["amount"], e["unit"]) if e["unit"] else ""
        unknown = f"{e['unknown']} unknown" if e["unknown"] else ""
        estimate = " + ".join(x for x in (known, unknown) if x)
        listed = "; ".join(f"{n} x {k}" for k, n in kinds[e["service"]].items())
        print(f"{e['service']:<10} {e['rows']:>5}  {estimate:<22} {listed}")
    total = ", ".join(amount_words(v, u) for u, v in quoted["total"].items()) or "nothing known"
    if quoted["unknown"]:
        total += f"; {quoted['unknown']} row(s) of unknown cost"
    print(f"total: {total} (an estimate: the last charges this journal saw for each kind of job)")
    return OK


def _watch(job_ids: list[str], timeout: float) -> dict[str, dict[str, object]]:
    """Wait, printing a line whenever a job's state changes."""
    seen: dict[str, str] = {}
    deadline = timeout
    statuses: dict[str, dict[str, object]] = {}
    while True:
        step = min(1.0, max(deadline, 0.0))
        statuses = api.wait(job_ids, step) if job_ids else {}
        deadline -= step
        for job_id, status in statuses.items():
            if seen.get(job_id) != status["state"]:
                seen[job_id] = str(status["state"])
                print(_line(status), flush=True)
        if all(s["state"] in ENDED for s in statuses.values()) or deadline <= 0:
            return statuses


def _summary(rows, job_of, statuses, reused) -> None:
    print(f"{'row':>4}  {'service':<9} {'state':<13} prompt / message")
    for row in rows:
        status = statuses.get(job_of.get(row.index, ""), {})
        state = str(status.get("state", "not sent"))
        note = " (done earlier)" if row.index in reused else ""
        if state == UNSURE:
            note = " (may be charged: check its dashboard; a re-run never sends it again)"
        text = row.prompt[:40] if state == IMPORTED else str(status.get("message", ""))[:60]
        print(f"{row.index + 1:>4}  {row.service:<9} {state:<13} {text}{note}")
    done = sum(1 for s in statuses.values() if s["state"] == IMPORTED)
    print(f"{done} of {len(rows)} imported")


# -- output ------------------------------------------------------------------------------------


def _line(status: dict[str, object]) -> str:
    label = str(status.get("prompt") or status.get("job_id"))[:40]
    return f"{status['job_id'][:8]}  {status['provider']:<9} {status['state']:<13} {label}  " + (
        str(status.get("message") or "")
    )


def _write_results(output: str | None, export: str | None, statuses: list[dict]) -> None:
    if output:
        _save(output)
        if export:
            _export(statuses, os.path.splitext(output)[0], export)
    elif export:
        _export(statuses, os.path.abspath("conjure-result"), export)


def _save(path: str) -> None:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path, check_existing=False)
    print(f"saved {path}")


def _export(statuses: list[dict], stem: str, kind: str) -> None:
    """The jobs' objects (with their children) as .glb or .obj, by Blender's own exporters."""
    names = [n for s in statuses for n in s.get("objects", ()) if n in bpy.data.objects]
    for selected in bpy.context.view_layer.objects.selected:
        selected.select_set(False)
    for name in names:
        for item in (bpy.data.objects[name], *bpy.data.objects[name].children_recursive):
            item.select_set(True)
    path = f"{stem}.{kind}"
    if kind == "glb":
        bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True)
    else:
        bpy.ops.wm.obj_export(filepath=path, export_selected_objects=True)
    print(f"exported {path}")


COMMANDS = {
    "generate": _generate,
    "batch": _batch,
    "fill": _fill,
    "doctor": _doctor,
    "jobs": _jobs,
    "spend": _spend,
    "resume": _resume,
    "import": _import,
}

_handle: object | None = None


def register() -> None:
    """`blender -c conjure …` (Blender 4.2+)."""
    global _handle
    _handle = bpy.utils.register_cli_command("conjure", lambda argv: main(argv))


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
