"""The five services as the fault and crash tests see them: one `Service` row each, saying
how to start its emulator, what a job sends, which creates are paid, how to make it refuse or
fail, how to hold its tasks running, where its model file comes from and how its ledger
reads. Used by test_faults.py, test_crashes.py and test_spend_blender.py."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from services import api, service

from conftest import ADDON_ID
from emulators import ravenra, siray, trify3d, triverse, voxelai
from emulators.base import Emulator
from emulators.glb import triangle_glb

PROMPT = "a patient lamp"  # no "fail" in it: Trify3D's emulator fails those
HOLD = 10**9  # polls a task takes while a test keeps it running
Setup = Callable[[Any], object]


@dataclass(frozen=True)
class Case:
    """One way a service refuses or fails a job, and the words the user must read."""

    id: str
    setup: Setup
    expected: str
    after: Callable[[Any], bool] = lambda emu: True  # a service-specific outcome to check


@dataclass(frozen=True)
class Service:
    """What the fault tests need to know about one service and its emulator."""

    name: str
    key: str
    make: Callable[[Path], Emulator]  # built (not started) with `key`; may write into the path
    creates: tuple[str, ...]  # the POSTs that start a job's work, in order (labels of `sent`)
    paid: frozenset[str]  # which of those spend credits
    sent: Callable[[Any], list[str]]  # the labels of the creates the emulator received
    create_path: str  # where the first create goes
    poll_path: str  # prefix of the task polls
    refusals: tuple[Case, ...]
    not_found: object  # the body of the service's 404 for a task it does not know
    hold: Setup  # keep the tasks running (for the kill)
    release: Setup  # let them finish
    path: str = ""  # base URL suffix
    args: Mapping[str, object] = field(default_factory=dict)  # more operator arguments
    failures: tuple[Case, ...] = ()
    trouble_bodies: Mapping[int, object] = field(default_factory=dict)  # its own 5xx bodies
    extra_trouble: tuple[tuple[str, dict[str, Any]], ...] = ()
    killed_when: str = "SELECT 1 FROM jobs WHERE task_id != ''"
    prepare: Callable[[Any], None] = lambda emu: None  # in this Blender, before a job
    paid_path: str = ""  # where the first paid create goes, when not `create_path`
    # The model's download: the link the service hands out (it redirects) and the file it
    # redirects to, each as (path prefix, part of the path); None when results come inline.
    model_link: tuple[str, str] | None = None
    model_file: tuple[str, str] | None = None
    # Money as the service's own ledger has it: the unit the add-on reports it in, what was
    # spent (held credits and refunds left out), and the balance its answers report, if any.
    unit: str = "generation"
    spent: Callable[[Any], float] = lambda emu: float(emu.charges)
    balance: Callable[[Any], float | None] = lambda emu: None

    @property
    def charges(self) -> int:
        """What one whole job costs: one charge per paid create."""
        return sum(1 for c in self.creates if c in self.paid)

    def operator_call(self) -> str:
        """The generate operator as a statement (for the kill test's child Blender)."""
        args = "".join(f", {k}={v!r}" for k, v in self.args.items())
        return f"bpy.ops.conjure.generate(provider={self.name!r}, prompt={PROMPT!r}{args})"


def posts(emu: Emulator, labels: Mapping[str, str]) -> list[str]:
    """The label of each POST to one of `labels`' paths, in the order they arrived."""
    return [labels[r.path] for r in list(emu.requests) if r.method == "POST" and r.path in labels]


def key_refused(emu: Any) -> None:
    emu.api_key = "another"


def out_of_credits(emu: Any) -> None:
    emu.credits = 0


def credits_403(emu: Any) -> None:
    emu.credits, emu.credit_status = 0, 403


def trify_emulator(tmp_path: Path) -> Emulator:
    model = tmp_path / "model.glb"
    model.write_bytes(triangle_glb("Trify3DTriangle"))
    return trify3d.Trify3DEmulator(model, api_key=TRIFY_KEY, rate_limit=100_000)


def voxel_limiter(emu: Any) -> None:
    """The add-on's images window (15 s, one request) shortened to 1 s for the tests; the
    emulator's is shorter still, so the add-on's own pacing is what keeps it from a 429."""
    runtime = importlib.import_module(f"{ADDON_ID}.runtime").get()
    base = importlib.import_module(f"{ADDON_ID}.providers.base")
    runtime.engine.limiter("voxelai").rules = [base.RateRule(1, 1.0, "create:images")]


TRIFY_KEY = "trf_live_S3CRET-planted-key-0042"
TRIFY_TEXT = "/api/v1/generations/text-to-3d"
RAVENRA_KEY = "rvn_live_S3CRET-raven-key"
SIRAY_KEY = "sk-siray-S3CRET-planted-77"
TRIVERSE_KEY = "tvs_live_S3CRET-planted-31"
VOXEL_KEY = "vxl_live_S3CRET-voxel-key"

SERVICES = (
    Service(
        name="trify3d",
        unit="credits",
        spent=lambda e: float(e.charges * trify3d.COST),
        balance=lambda e: float(e.credits),
        model_link=("/r/", ""),
        model_file=("/files/", "/model"),
        key=TRIFY_KEY,
        make=trify_emulator,
        creates=("create",),
        paid=frozenset({"create"}),
        sent=lambda emu: posts(emu, {TRIFY_TEXT: "create"}),
        create_path=TRIFY_TEXT,
        poll_path="/api/v1/generations/",
        refusals=(
            Case("401", key_refused, "rejected the API key"),
            Case("402", out_of_credits, "Not enough credits"),
            Case(
                "bad-request",
                lambda e: e.inject(status=400, body={"error": "prompt too long"}, method="POST"),
                "prompt too long",
            ),
        ),
        not_found={"error": "Task not found"},
        hold=lambda e: setattr(e, "polls_to_complete", HOLD),
        release=lambda e: setattr(e, "polls_to_complete", 1),
        extra_trouble=(("bad-status", {"status": 200, "body": {"status": "teleporting"}}),),
    ),
    Service(
        name="ravenra",
        model_link=("/r/", "/obj"),
        model_file=("/cdn/", "/obj"),
        key=RAVENRA_KEY,
        make=lambda _: ravenra.RavenraEmulator(api_key=RAVENRA_KEY),
        creates=("preview", "refine"),  # a text job buys a preview, then refines it
        paid=frozenset({"preview", "refine"}),
        sent=lambda emu: [b["mode"] for b in emu.bodies("/task/create-task")],
        create_path="/task/create-task",
        poll_path="/task/result/",
        refusals=(
            Case("401", key_refused, "rejected the API key"),
            Case("402", out_of_credits, "Not enough credits"),
            Case("403-credits", credits_403, "Not enough credits"),
        ),
        failures=(
            Case(
                "failure-word",
                lambda e: setattr(e, "fail", ("GENERATION_FAILED", "mesh exploded")),
                "mesh exploded",
            ),
        ),
        not_found={"message": "Task not found"},
        hold=lambda e: setattr(e, "never_ready", True),
        release=lambda e: setattr(e, "never_ready", False),
    ),
    Service(
        name="siray",
        model_link=("/redirect/", "/model"),
        model_file=("/cdn/", "/model"),
        key=SIRAY_KEY,
        make=lambda _: siray.SirayEmulator(api_key=SIRAY_KEY),
        creates=("create",),
        paid=frozenset({"create"}),
        sent=lambda emu: posts(emu, {siray.GENERATIONS_PATH: "create"}),
        create_path=siray.GENERATIONS_PATH,
        poll_path=siray.GENERATIONS_PATH + "/",
        refusals=(
            Case("401", key_refused, "rejected the API key"),
            Case("402", out_of_credits, "Not enough credits"),
            Case("403-credits", credits_403, "Not enough credits"),
            Case(
                "code-not-success",
                lambda e: e.refuse("invalid_request", "prompt rejected by moderation"),
                "moderation",
            ),
        ),
        failures=(
            Case(
                "failure",
                lambda e: setattr(e, "fail", ("FAILURE", "mesh generation crashed")),
                "crashed",
            ),
        ),
        not_found=siray.envelope(None, "task_not_exist", "task_not_exist"),
        hold=lambda e: setattr(e, "steps", (("IN_PROGRESS", "10%"),)),
        release=lambda e: setattr(e, "steps", (("SUCCESS", "100%"),)),
    ),
    Service(
        name="triverse",
        unit="credits",
        spent=lambda e: float(100 * triverse.COST - e.credits),  # frozen and not returned
        model_link=("/r/", "/model"),
        model_file=("/files/", "/model"),
        key=TRIVERSE_KEY,
        make=lambda _: triverse.TriverseEmulator(api_key=TRIVERSE_KEY),
        path="/api/v1",  # as the real base URL
        creates=("create",),
        paid=frozenset({"create"}),
        sent=lambda emu: posts(emu, {triverse.TEXT_PATH: "create"}),
        create_path=triverse.TEXT_PATH,
        poll_path=triverse.TASKS_PATH,
        refusals=(
            Case("401", key_refused, "rejected the API key"),
            Case("402", out_of_credits, "Not enough credits"),
            Case("403-credits", credits_403, "Not enough credits"),
            Case(
                "code-not-zero",
                lambda e: e.inject_code(1001, "prompt violates the content policy", method="POST"),
                "content policy",
            ),
        ),
        not_found={"code": 404, "message": "Task not found", "data": None},
        hold=lambda e: setattr(e, "polls_per_stage", HOLD),
        release=lambda e: setattr(e, "polls_per_stage", 1),
    ),
    Service(
        name="voxelai",
        unit="tokens",
        spent=lambda e: float(5 - (e.balance() or 0)),  # the emulator's users start with 5
        balance=lambda e: float(e.balance() or 0),
        key=VOXEL_KEY,
        make=lambda _: voxelai.VoxelAIEmulator(
            api_key=VOXEL_KEY, images_window=0.5, polls_to_complete=2
        ),
        args={"candidate": 0},  # picked up front: the job does not wait for a person
        creates=("images", "voxelize"),  # three candidates (free), then the paid voxelize
        paid=frozenset({"voxelize"}),
        sent=lambda emu: posts(
            emu, {voxelai.IMAGES_PATH: "images", voxelai.VOXELIZE_PATH: "voxelize"}
        ),
        create_path=voxelai.IMAGES_PATH,
        poll_path=voxelai.STATUS_PATH,
        refusals=(
            Case("401", lambda e: e.users.clear(), "rejected the API key"),
            Case("402", lambda e: e.balances.update(alice=0), "Not enough credits"),
            Case("403-credits", lambda e: e.balances.update(alice=None), "Not enough credits"),
        ),
        failures=(
            Case(
                "failed-voxelize",
                lambda e: setattr(e, "fail_voxelize", True),
                "refunded",
                after=lambda e: e.balance() == 5,  # the token came back, once
            ),
        ),
        not_found={"error": "Job not found"},
        trouble_bodies={502: {"error": "Upstream status check failed", "transient": True}},
        hold=lambda e: setattr(e, "held", {"voxelize"}),
        release=lambda e: e.held.clear(),
        killed_when="SELECT 1 FROM jobs WHERE step >= 4",  # the voxelize job is made
        prepare=voxel_limiter,
        paid_path=voxelai.VOXELIZE_PATH,
    ),
)

BY_SERVICE = [pytest.param(s, id=s.name) for s in SERVICES]


@contextmanager
def running(svc: Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """The service's emulator, with the add-on in this Blender pointed at it."""
    emulator = svc.make(tmp_path)
    with service(monkeypatch, svc.name, emulator, svc.key, path=svc.path, cancel_live=True) as emu:
        svc.prepare(emu)
        yield emu


def generate(svc: Service) -> set[str]:
    """The generate operator as a script calls it: it returns once the job has ended."""
    import bpy

    return bpy.ops.conjure.generate(provider=svc.name, prompt=PROMPT, timeout=120, **svc.args)


def imported() -> list[Any]:
    import bpy

    return [o for o in bpy.data.objects if o.get("conjure_job_id")]


def newest_job(svc: Service) -> dict[str, Any]:
    job = api().jobs()[0]
    assert job["provider"] == svc.name and job["prompt"] == PROMPT
    return job
