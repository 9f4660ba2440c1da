"""Property groups: the user's inputs live on the Scene, the live job mirror on the WindowManager.

The WindowManager is not saved with the .blend, so job state (and anything derived from the
network) never ends up in a user's file; the journal is the durable record.
"""

from __future__ import annotations

import math

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

from .jobs.model import MESH_LIMITS, ImportPlan, VoxMesh
from .providers import PROVIDER_IDS, SERVICES
from .providers.base import OptionSpec, chosen_options

PROVIDER_ITEMS = [(pid, SERVICES[pid].name, SERVICES[pid].description) for pid in PROVIDER_IDS]
SOURCE_ITEMS = [
    ("TEXT", "Text", "Generate from a text prompt"),
    ("IMAGE", "Image", "Generate from one image"),
    ("MULTIVIEW", "Multiview", "Generate from two or more views of one object"),
]


class ConjurePathItem(PropertyGroup):
    """One image path; `name` holds the path so operators can take {"name": path} items."""

    name: StringProperty(name="Path", subtype="FILE_PATH")


DEFAULT_CHOICE = "DEFAULT"  # an enum item needs a name: this one stands for "not sent"
MESH_ITEMS = [
    ("INSTANCES", "Instanced Cubes", "One cube per voxel, instanced (fast, light)"),
    ("MERGE", "Mesh", "One real mesh of the exposed faces"),
    ("GREEDY", "Greedy Mesh", "Exposed faces merged into large rectangles (for export)"),
    ("WATERTIGHT", "Watertight Mesh", "Greedy, without T-junctions (for 3D printing)"),
]


def _option_property(spec: OptionSpec):
    """The Blender property that shows one service option in the sidebar."""
    common = {"name": spec.label, "description": spec.description}
    if spec.choices:
        items = [(v or DEFAULT_CHOICE, label, "") for v, label in spec.choices]
        return EnumProperty(items=items, default=spec.default or DEFAULT_CHOICE, **common)
    if isinstance(spec.default, bool):
        return BoolProperty(default=spec.default, **common)
    if isinstance(spec.default, int):
        low = 0 if spec.default == 0 else spec.lo
        return IntProperty(default=spec.default, min=low, max=spec.hi, **common)
    return StringProperty(default=str(spec.default), **common)


def _options_group(pid: str) -> type:
    annotations = {spec.name: _option_property(spec) for spec in SERVICES[pid].options}
    if SERVICES[pid].voxel_output:
        annotations["import_as"] = EnumProperty(
            name="Import As", description="How the .vox arrives", items=MESH_ITEMS
        )
    return type(f"ConjureOptions_{pid}", (PropertyGroup,), {"__annotations__": annotations})


OPTION_GROUPS = {pid: _options_group(pid) for pid in PROVIDER_IDS}


def service_options(
    settings, provider: str, source: str, changed_only: bool = True
) -> dict[str, object]:
    """What the sidebar's options box asks of `provider` (by default only values changed
    from the defaults: the service decides the rest)."""
    group = getattr(settings, f"options_{provider}")
    specs = SERVICES[provider].options
    values = {s.name: getattr(group, s.name) for s in specs}
    values = {k: ("" if v == DEFAULT_CHOICE else v) for k, v in values.items()}
    return chosen_options(specs, values, source, changed_only)


def import_plan(settings, provider: str) -> ImportPlan:
    """How the sidebar wants `provider`'s result placed and built, kept with the job."""
    group = getattr(settings, f"options_{provider}")
    return ImportPlan(
        origin_bottom=settings.origin_bottom,
        target_height=settings.target_height,
        mark_asset=settings.mark_asset,
        vox_mesh=VoxMesh(getattr(group, "import_as", "INSTANCES").lower()),
        max_faces=settings.max_faces if settings.use_max_faces else 0,
        lods=settings.lods if settings.use_lods else 0,
        merge_distance=settings.merge_distance if settings.use_merge else 0.0,
        smooth_angle=math.degrees(settings.smooth_angle) if settings.use_smooth else 0.0,
        apply_transforms=settings.apply_transforms,
    )


class ConjureSceneSettings(PropertyGroup):
    provider: EnumProperty(name="Service", items=PROVIDER_ITEMS, default="trify3d")
    source: EnumProperty(name="Source", items=SOURCE_ITEMS, default="TEXT")
    prompt: StringProperty(name="Prompt", description="What to generate")
    image_path: StringProperty(name="Image", subtype="FILE_PATH")
    image_paths: CollectionProperty(type=ConjurePathItem)
    image_paths_index: IntProperty()
    show_options: BoolProperty(name="Service Options", default=False)
    show_placement: BoolProperty(name="Placement", default=False)
    compare_services: EnumProperty(
        name="Compare",
        description="Services that each get the same prompt or image",
        items=PROVIDER_ITEMS,
        options={"ENUM_FLAG"},
        default={"trify3d", "siray", "triverse"},
    )
    compare_spacing: FloatProperty(
        name="Spacing",
        description="Distance between compared results, side by side along X",
        default=2.0,
        min=0.1,
        unit="LENGTH",
    )
    origin_bottom: BoolProperty(
        name="Origin at Bottom Centre",
        description="Put the result's origin at the centre of its base, on the 3D cursor",
        default=True,
    )
    target_height: FloatProperty(
        name="Height",
        description="Scale results to this height (0: keep the service's size)",
        default=0.0,
        min=0.0,
        unit="LENGTH",
    )
    show_mesh: BoolProperty(name="Mesh", default=False)
    use_max_faces: BoolProperty(
        name="Face Budget", description="Decimate results to at most this many faces", default=False
    )
    max_faces: IntProperty(
        name="Max Faces",
        description="Most faces a result may keep (Blender's Decimate, applied, keeping UVs and "
        "materials; a service that can limit faces itself is asked to)",
        default=20_000,
        min=int(MESH_LIMITS["max_faces"][0]),
        max=int(MESH_LIMITS["max_faces"][1]),
    )
    use_lods: BoolProperty(
        name="Levels of Detail",
        description="Also make lower-detail copies <name>_LOD1.. beside <name>_LOD0",
        default=False,
    )
    lods: IntProperty(
        name="Levels", description="Levels of detail, each about half the faces", default=3,
        min=int(MESH_LIMITS["lods"][0]), max=int(MESH_LIMITS["lods"][1]),
    )  # fmt: skip
    use_merge: BoolProperty(
        name="Merge by Distance", description="Merge vertices closer than the distance",
        default=False,
    )  # fmt: skip
    merge_distance: FloatProperty(
        name="Distance", default=0.0001, min=1e-7, max=1.0, precision=5, unit="LENGTH"
    )
    use_smooth: BoolProperty(
        name="Smooth by Angle",
        description="Shade smooth, edges sharper than the angle kept sharp",
        default=False,
    )
    smooth_angle: FloatProperty(
        name="Angle", default=math.radians(30.0), min=math.radians(0.01), max=math.pi,
        subtype="ANGLE",
    )  # fmt: skip
    apply_transforms: BoolProperty(
        name="Apply Rotation & Scale",
        description="Bake the importer's rotation and scale into the mesh data",
        default=False,
    )
    mark_asset: BoolProperty(
        name="Mark as Asset",
        description="Make results assets (preview, a catalog per service, the prompt as "
        "description) so they show in the Asset Browser",
        default=False,
    )


for _pid, _group in OPTION_GROUPS.items():
    ConjureSceneSettings.__annotations__[f"options_{_pid}"] = PointerProperty(type=_group)


class ConjureCandidateItem(PropertyGroup):
    """A candidate image of a job awaiting a pick: its preview icon."""

    icon: IntProperty()


class ConjureJobItem(PropertyGroup):
    """Main-thread mirror of one engine job, for the UI only (never saved)."""

    job_id: StringProperty()
    provider: StringProperty()
    label: StringProperty()
    prompt: StringProperty()
    state: StringProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty()
    warnings: StringProperty(description="What was left out, one line each")
    candidates: CollectionProperty(type=ConjureCandidateItem)
    # Whole wall-clock seconds: a FloatProperty is single precision (128 s steps today).
    created: IntProperty()
    updated: IntProperty()
    next_try: IntProperty()  # when a stalled job tries again
    thumbnail: IntProperty()  # preview icon id, 0 when the service sent none
    held: BoolProperty()  # unfinished in the journal, not running in this Blender
    can_refine: BoolProperty()
    cost: StringProperty()  # what the service said it cost, in words ("" when it said nothing)
    compare: StringProperty()  # the comparison it belongs to ("" when none)
    compare_slot: IntProperty()


class ConjureWindowState(PropertyGroup):
    jobs: CollectionProperty(type=ConjureJobItem)
    jobs_index: IntProperty()


CLASSES: tuple[type, ...] = (
    ConjurePathItem,
    *OPTION_GROUPS.values(),
    ConjureSceneSettings,
    ConjureCandidateItem,
    ConjureJobItem,
    ConjureWindowState,
)


def attach() -> None:
    bpy.types.Scene.conjure = PointerProperty(type=ConjureSceneSettings)
    bpy.types.WindowManager.conjure = PointerProperty(type=ConjureWindowState)


def detach() -> None:
    del bpy.types.WindowManager.conjure
    del bpy.types.Scene.conjure
