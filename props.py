"""Property groups: the user's inputs live on the Scene, the live job mirror on the WindowManager.

The WindowManager is not saved with the .blend, so job state (and anything derived from the
network) never ends up in a user's file; the journal is the durable record.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

from .providers import PROVIDER_IDS, SERVICES

PROVIDER_ITEMS = [(pid, SERVICES[pid].name, SERVICES[pid].description) for pid in PROVIDER_IDS]
SOURCE_ITEMS = [
    ("TEXT", "Text", "Generate from a text prompt"),
    ("IMAGE", "Image", "Generate from one image"),
    ("MULTIVIEW", "Multiview", "Generate from two or more views of one object"),
]


class ConjurePathItem(PropertyGroup):
    """One image path; `name` holds the path so operators can take {"name": path} items."""

    name: StringProperty(name="Path", subtype="FILE_PATH")


class ConjureSceneSettings(PropertyGroup):
    provider: EnumProperty(name="Service", items=PROVIDER_ITEMS, default="trify3d")
    source: EnumProperty(name="Source", items=SOURCE_ITEMS, default="TEXT")
    prompt: StringProperty(name="Prompt", description="What to generate")
    image_path: StringProperty(name="Image", subtype="FILE_PATH")
    image_paths: CollectionProperty(type=ConjurePathItem)
    image_paths_index: IntProperty()


class ConjureCandidateItem(PropertyGroup):
    """A candidate image of a job awaiting a pick: its preview icon."""

    icon: IntProperty()


class ConjureJobItem(PropertyGroup):
    """Main-thread mirror of one engine job, for the UI only (never saved)."""

    job_id: StringProperty()
    provider: StringProperty()
    label: StringProperty()
    state: StringProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty()
    warnings: StringProperty(description="What was left out, one line each")
    candidates: CollectionProperty(type=ConjureCandidateItem)


class ConjureWindowState(PropertyGroup):
    jobs: CollectionProperty(type=ConjureJobItem)
    jobs_index: IntProperty()


CLASSES: tuple[type, ...] = (
    ConjurePathItem,
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
