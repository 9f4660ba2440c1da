"""The sidebar's inputs: the image open in an Image Editor, and multiview images."""

from __future__ import annotations

import os
import re
import uuid

import bpy
from bpy.props import BoolProperty, CollectionProperty, StringProperty
from bpy.types import Operator, OperatorFileListElement

from .. import runtime


def editor_image(context) -> bpy.types.Image | None:
    """The image shown in an Image Editor of any open window (the active one first)."""
    windows = [context.window] if context.window else []
    windows += [w for w in context.window_manager.windows if w not in windows]
    for window in windows:
        for area in window.screen.areas if window.screen else ():
            if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None:
                return area.spaces.active.image
    return None


def image_file(image: bpy.types.Image, folder: str) -> str:
    """A file holding `image` as it looks now: its own file when saved and unchanged, else
    a PNG copy written into `folder` (generated, packed or painted images)."""
    path = bpy.path.abspath(image.filepath) if image.filepath else ""
    if path and os.path.isfile(path) and not image.is_dirty and not image.packed_file:
        return path
    os.makedirs(folder, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", image.name).strip("._") or "image"
    copy = os.path.join(folder, f"{safe}-{uuid.uuid4().hex[:6]}.png")
    image.save_render(copy)
    return copy


class CONJURE_OT_use_editor_image(Operator):
    """Generate from the image open in an Image Editor (unsaved images are saved as a copy)"""

    bl_idname = "conjure.use_editor_image"
    bl_label = "Use Image Editor's Image"
    bl_options = {"REGISTER", "UNDO"}

    image_name: StringProperty(name="Image", description="This image (empty: the editor's)")

    @classmethod
    def poll(cls, context):  # headless, scripts name the image
        if not bpy.app.background and editor_image(context) is None:
            cls.poll_message_set("Open an image in an Image Editor first")
            return False
        return True

    def execute(self, context):
        image = bpy.data.images.get(self.image_name) if self.image_name else None
        image = image or editor_image(context)
        if image is None:
            self.report({"ERROR"}, "No image: open one in an Image Editor")
            return {"CANCELLED"}
        settings = context.scene.conjure
        try:
            path = image_file(image, str(runtime.get().root / "inputs"))
        except (RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"Cannot use {image.name}: {exc}")
            return {"CANCELLED"}
        if settings.source == "MULTIVIEW":
            settings.image_paths.add().name = path
        else:
            settings.source, settings.image_path = "IMAGE", path
        return {"FINISHED"}


class CONJURE_OT_add_view(Operator):
    """Add images of the same object seen from other sides (Multiview)"""

    bl_idname = "conjure.add_view"
    bl_label = "Add Views"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    files: CollectionProperty(type=OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        paths = [os.path.join(self.directory, f.name) for f in self.files if f.name]
        paths = paths or ([self.filepath] if self.filepath else [])
        views = context.scene.conjure.image_paths
        for path in paths:
            views.add().name = path
        context.scene.conjure.image_paths_index = len(views) - 1
        return {"FINISHED"}


class CONJURE_OT_remove_view(Operator):
    """Remove the selected view image"""

    bl_idname = "conjure.remove_view"
    bl_label = "Remove View"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    def execute(self, context):
        settings = context.scene.conjure
        if 0 <= settings.image_paths_index < len(settings.image_paths):
            settings.image_paths.remove(settings.image_paths_index)
            settings.image_paths_index = max(settings.image_paths_index - 1, 0)
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    CONJURE_OT_use_editor_image,
    CONJURE_OT_add_view,
    CONJURE_OT_remove_view,
)
