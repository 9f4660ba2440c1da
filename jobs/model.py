"""A generation job as plain immutable data. docs/jobs.md describes the life cycle."""

from __future__ import annotations

import enum
import hashlib
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from ..providers.base import Charge, ChargeState, FlowStep, GenerationRequest


class JobState(enum.StrEnum):
    QUEUED = "queued"  # journaled, nothing sent yet
    UPLOADING = "uploading"  # sending local files the create refers to (free)
    SUBMITTING = "submitting"  # create request may be on the wire: never resent blindly
    SUBMITTED = "submitted"  # the service's task id is known and journaled (paid)
    RUNNING = "running"
    STALLED = "stalled"  # paid, but the network or service is in trouble: retrying
    AWAITING_PICK = "awaiting_pick"  # candidates are ready; the user chooses one
    DOWNLOADING = "downloading"
    READY = "ready"  # downloaded; waits for Object mode, its own file, or a click
    IMPORTING = "importing"
    IMPORTED = "imported"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A create may have reached the service (its answer was lost) and may be charged; it is
    # never sent again by itself: the person checks the dashboard, then Send Again or Forget.
    UNSURE = "unsure"


FINISHED = frozenset({JobState.IMPORTED, JobState.FAILED, JobState.CANCELLED, JobState.UNSURE})
LIVE = frozenset(JobState) - FINISHED


class Answer(enum.StrEnum):
    """What became of one create request."""

    WAITING = "waiting"  # sent, no answer yet: it may have reached the service
    MADE = "made"  # a task id came back
    NOT_MADE = "not made"  # certainly no task: refused, rate limited, never connected or sent
    UNKNOWN = "unknown"  # timed out, 5xx or unreadable: a task may exist and be charged


@dataclass(frozen=True)
class CreateSent:
    """One create request, journaled before it goes out and again when answered."""

    stage: str
    key: str  # the idempotency key it carried
    sent_at: float
    answer: Answer = Answer.WAITING
    task_id: str = ""


@dataclass(frozen=True)
class StageCharge:
    """What the service last said one stage of a job costs (see providers.base.Charge), and
    when: a later answer replaces it, so an answer seen twice (a resume) never counts twice."""

    stage: str
    unit: str
    state: ChargeState
    amount: float | None = None  # None: not said (yet)
    balance: float | None = None  # what the account had left, when the answer said
    at: float = field(default=0.0, compare=False)  # wall time of the answer

    def merged(self, charge: Charge, at: float) -> StageCharge:
        """This stage after a newer answer: what it leaves unsaid stays as it was."""
        amount = self.amount if charge.amount is None else charge.amount
        balance = self.balance if charge.balance is None else charge.balance
        return StageCharge(self.stage, charge.unit, charge.state, amount, balance, at)


class VoxMesh(enum.StrEnum):
    """How a .vox result is built: instanced cubes, or one of three meshes."""

    INSTANCES = "instances"
    MERGE = "merge"
    GREEDY = "greedy"
    WATERTIGHT = "watertight"


@dataclass(frozen=True)
class ImportPlan:
    """How the main thread places a finished job: the sidebar's choices (scripts get the
    importer's own placement), its compare slot, and which batch row it answers."""

    origin_bottom: bool = False  # the bottom centre on the 3D cursor
    target_height: float = 0.0  # scaled to this height (0: as it came)
    mark_asset: bool = False
    vox_mesh: VoxMesh = VoxMesh.INSTANCES
    compare_group: str = ""  # jobs of one Compare share it; they land in a row along X
    compare_slot: int = 0
    compare_count: int = 1
    compare_spacing: float = 2.0
    batch_id: str = ""  # `conjure batch`: which batch, and which of its rows
    batch_row: str = ""
    placeholder: str = ""  # Generate for Selected: the name of the object the result fills,
    placeholder_id: str = ""  # and its `conjure_placeholder_id` (found by it if renamed)
    # Mesh clean-up on import (see MESH_LIMITS); 0 / False: not done.
    max_faces: int = 0  # a face budget (Blender's Decimate, applied)
    lods: int = 0  # levels of detail <name>_LOD0..LOD{lods-1}
    merge_distance: float = 0.0  # merge vertices closer than this (metres)
    smooth_angle: float = 0.0  # shade smooth by angle (degrees)
    apply_transforms: bool = False  # rotation and scale applied to the mesh data

    def to_json(self) -> dict[str, object]:
        """The fields that differ from their defaults (most jobs have an empty plan)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ImportPlan:
        """Read back `to_json` (or older notes); a value that does not fit keeps the default."""
        values = {f.name: _coerce(f.default, data[f.name]) for f in fields(cls) if f.name in data}
        # Each value has its field's type: _coerce made it from the field's default.
        return cls(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def _coerce(default: object, value: object) -> object:
    """`value` as the type of `default` (text from a CSV row included), or None."""
    if isinstance(default, VoxMesh):
        text = str(value).lower()
        return VoxMesh(text) if text in set(VoxMesh) else None
    if isinstance(default, bool):  # true, 1, "1", "true", "yes", "on", as a CSV row says it
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value) if isinstance(value, int | float) else None
    if isinstance(value, bool):
        return None
    try:
        # default is a bool, int, float or str here: its type takes one value.
        return type(default)(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        return None


# Notes earlier versions (and scripts) put in options under these names: the plan's fields.
_PLAN_NOTES = {
    "_origin_bottom": "origin_bottom",
    "_target_height": "target_height",
    "_mark_asset": "mark_asset",
    "_vox_mesh": "vox_mesh",
    "_compare": "compare_group",
    "_compare_slot": "compare_slot",
    "_compare_count": "compare_count",
    "_compare_spacing": "compare_spacing",
    "_batch": "batch_id",
    "_batch_row": "batch_row",
}


# The mesh options a script, the CLI or the sidebar may set: (lowest, highest) for numbers
# other than 0 ("not done").
MESH_LIMITS: dict[str, tuple[float, float]] = {
    "max_faces": (12, 10_000_000),
    "lods": (1, 6),
    "merge_distance": (1e-7, 1.0),
    "smooth_angle": (0.01, 180.0),
}
MESH_OPTIONS = (*MESH_LIMITS, "apply_transforms")
_SWITCH = {"1", "0", "true", "false", "yes", "no", "on", "off"}


def plain_number(value: float) -> str:
    """A number as people write it: '12', '10,000,000', '2.5', '0.0001'."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) >= 1e-4 else f"{value:g}"


def with_mesh(plan: ImportPlan, mesh: Mapping[str, object]) -> ImportPlan:
    """`plan` with the mesh options of `mesh` (e.g. {"max_faces": 5000, "lods": 3}; text from
    a CSV row too); raises ValueError with one line for an unknown option or a bad value."""
    unknown = sorted(set(mesh) - set(MESH_OPTIONS))
    if unknown:
        raise ValueError(f"unknown mesh option {unknown[0]!r}: use {', '.join(MESH_OPTIONS)}")
    values: dict[str, object] = {}
    for name, given in mesh.items():
        if name == "apply_transforms":
            if str(given).strip().lower() not in _SWITCH:
                raise ValueError(f"apply_transforms must be true or false, got {given!r}")
            values[name] = bool(_coerce(False, given))
            continue
        number = _mesh_number(name, given)
        low, high = MESH_LIMITS[name]
        if number and not low <= number <= high:
            shown = f"{plain_number(low)} to {plain_number(high)}"
            raise ValueError(f"{name} must be from {shown} (0: off), got {given!r}")
        values[name] = int(number) if name in ("max_faces", "lods") else number
    return replace(plan, **values)  # type: ignore[arg-type]  # each value has its field's type


def _mesh_number(name: str, given: object) -> float:
    whole = name in ("max_faces", "lods")
    try:
        number = float(given) if not isinstance(given, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {kind} (0: off), got {given!r}")
    return number  # a negative one is out of range: the caller says so


def split_notes(
    options: Mapping[str, object], plan: ImportPlan | None = None
) -> tuple[dict[str, object], ImportPlan]:
    """Options without the "_" notes the plan holds, and `plan` with them applied. Other "_"
    keys stay (a script's own notes); like every "_" key, they are never sent."""
    kept = {k: v for k, v in options.items() if k not in _PLAN_NOTES}
    notes = {_PLAN_NOTES[k]: v for k, v in options.items() if k in _PLAN_NOTES}
    plan = plan or ImportPlan()
    return kept, ImportPlan.from_json({**plan.to_json(), **notes}) if notes else plan


def files_exist(paths: Sequence[str]) -> bool:
    """A job's downloads are all still there (a cleared folder means fetching again)."""
    return bool(paths) and all(os.path.isfile(p) for p in paths)


def key_fingerprint(api_key: str) -> str:
    """Enough to tell two keys apart, useless to anyone who reads the journal."""
    return hashlib.sha256(f"conjure:{api_key}".encode()).hexdigest()[:12] if api_key else ""


@dataclass(frozen=True)
class Job:
    job_id: str
    provider: str
    source: str
    prompt: str = ""
    image_paths: tuple[str, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)  # as given; services check them
    state: JobState = JobState.QUEUED
    task_id: str | None = None
    progress: float = 0.0
    message: str = ""
    files: tuple[str, ...] = ()
    idempotency_key: str = ""
    created: float = 0.0
    updated: float = 0.0
    step: int = 0  # index into the provider's flow()
    paid_at: float = 0.0  # wall time the first create succeeded (0: nothing paid yet)
    key_fingerprint: str = ""
    base_url: str = ""
    blend_file: str = ""  # the .blend the job was started from ("" = unsaved file)
    warnings: tuple[str, ...] = ()
    next_try: float = 0.0  # wall time of the next attempt while stalled
    candidates: tuple[str, ...] = ()  # downloaded candidate images (awaiting_pick)
    objects: tuple[str, ...] = ()  # names of the imported objects
    plan: ImportPlan = ImportPlan()
    # Written by the engine as the job goes (GenerationRequest carries them to the service):
    upload_ref: str = ""  # the service's name for the uploaded image
    picked_path: str = ""  # the candidate (or local image) the user picked
    previous_task_id: str = ""  # the task of the stage before (the create builds on it)
    needs_click: bool = False  # ready, but not in its own file or Object mode: "Ready — Import"
    import_tries: int = 0  # imports begun and not ended: > 0 at a start means one crashed
    # The steps it was started with: `step` indexes them, and a later release that changes
    # the service's steps never turns a resumed (paid) job into a new create.
    flow: tuple[FlowStep, ...] = ()
    creates: tuple[CreateSent, ...] = ()  # every create request sent for it, in order
    charges: tuple[StageCharge, ...] = ()  # what the service said each paid stage costs

    @classmethod
    def new(
        cls,
        provider: str,
        source: str,
        prompt: str = "",
        image_paths: tuple[str, ...] = (),
        options: Mapping[str, object] | None = None,
        plan: ImportPlan | None = None,
        **context: str,
    ) -> Job:
        """A new job; "_" notes in `options` (how older scripts asked for placement) go into
        its plan."""
        now = time.time()
        options, plan = split_notes(options or {}, plan)
        return cls(
            job_id=uuid.uuid4().hex,
            provider=provider,
            source=source,
            prompt=prompt,
            image_paths=tuple(image_paths),
            options=MappingProxyType(options),
            plan=plan,
            idempotency_key=f"conjure-{uuid.uuid4().hex}",
            created=now,
            updated=now,
            **context,  # type: ignore[arg-type]  # key_fingerprint, base_url, blend_file
        )

    @property
    def label(self) -> str:
        """Short human name: the prompt, else the first image's file name."""
        text = self.prompt or (os.path.basename(self.image_paths[0]) if self.image_paths else "")
        text = " ".join(text.split()) or self.provider
        return text if len(text) <= 40 else text[:39] + "…"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def paid(self) -> bool:
        return self.paid_at > 0

    def request(self) -> GenerationRequest:
        """What the service is asked, with what the job's earlier steps learned; options
        starting with "_" are notes for the add-on and never leave the machine."""
        return GenerationRequest(
            self.source,
            self.prompt,
            self.image_paths,
            {k: v for k, v in self.options.items() if not k.startswith("_")},
            upload_ref=self.upload_ref,
            picked_path=self.picked_path,
            previous_task_id=self.previous_task_id,
        )

    def evolve(self, **changes: Any) -> Job:
        return replace(self, updated=time.time(), **changes)

    def answered(self, answer: Answer, task_id: str = "") -> tuple[CreateSent, ...]:
        """The create records with the last one's answer set."""
        if not self.creates:
            return ()
        last = replace(self.creates[-1], answer=answer, task_id=task_id)
        return (*self.creates[:-1], last)

    def maybe_made(self, stage: str) -> int:
        """How many creates of `stage` may have made a task without saying so."""
        unsure = (Answer.WAITING, Answer.UNKNOWN)
        return sum(1 for c in self.creates if c.stage == stage and c.answer in unsure)

    def charged(self, stage: str, charge: Charge) -> tuple[StageCharge, ...]:
        """The charges with `stage`'s replaced by what the service now says."""
        now = time.time()
        old = next((c for c in self.charges if c.stage == stage), None)
        new = (old or StageCharge(stage, charge.unit, charge.state)).merged(charge, now)
        return (*(c for c in self.charges if c.stage != stage), new)

    @property
    def credits(self) -> float | None:
        """What it costs so far in the service's unit: held and spent amounts, refunds not;
        None when the service said nothing of it (or not how much)."""
        counted = [c for c in self.charges if c.state != ChargeState.REFUNDED]
        if not self.charges or any(c.amount is None for c in counted):
            return None
        return sum(c.amount or 0.0 for c in counted)

    @property
    def price(self) -> float | None:
        """What this job says a job of its kind costs: its cost once known, unless all of
        it was given back (a refund says nothing of a price)."""
        kept = any(c.state != ChargeState.REFUNDED for c in self.charges)
        return self.credits if kept else None

    @property
    def credit_unit(self) -> str:
        return self.charges[0].unit if self.charges else ""

    @property
    def balance(self) -> tuple[float, float] | None:
        """The account's balance the service last reported for this job, and when."""
        said = [(c.at, c.balance) for c in self.charges if c.balance is not None]
        if not said:
            return None
        at, balance = max(said)
        return float(balance or 0.0), at

    def warn(self, text: str) -> Job:
        return self.evolve(warnings=(*self.warnings, text))

    def _options_as_before(self) -> dict[str, object]:
        """`options` as scripts have always read them: what was asked, with the add-on's notes
        and what the engine learned under their old names."""
        shown: dict[str, object] = dict(self.options)
        shown |= {note: getattr(self.plan, name) for note, name in _PLAN_NOTES.items()
                  if name in self.plan.to_json()}  # fmt: skip
        learned: dict[str, object] = {"file_key": self.upload_ref}
        learned["previous_task_id"] = self.previous_task_id
        if self.picked_path:
            picked = self.picked_path
            learned["pick"] = self.candidates.index(picked) if picked in self.candidates else picked
            learned["picked_path"] = picked
        return shown | {k: v for k, v in learned.items() if v not in ("", None)}

    def status(self) -> dict[str, object]:
        """What scripts see (api.status): plain values only, never a key."""
        return {
            "job_id": self.job_id,
            "provider": self.provider,
            "source": self.source,
            "prompt": self.prompt,
            "image_paths": list(self.image_paths),
            "state": self.state.value,
            "progress": self.progress,
            "message": self.message,
            "task_id": self.task_id,
            "objects": list(self.objects),
            "files": list(self.files),
            "warnings": list(self.warnings),
            "options": self._options_as_before(),
            "plan": self.plan.to_json(),
            "created": self.created,
            "updated": self.updated,
            "credits": self.credits,
            "credit_unit": self.credit_unit or None,
            "charges": [asdict(c) for c in self.charges],
        }
