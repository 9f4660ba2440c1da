"""File > Import > MagicaVoxel (.vox), drag-and-drop onto the viewport, and scripts."""

from __future__ import annotations

import os

from bpy.props import BoolProperty, CollectionProperty, FloatProperty, IntProperty, StringProperty
from bpy.types import FileHandler, Operator, OperatorFileListElement
from bpy_extras.io_utils import ImportHelper

from ..importers import scene, vox, voxfile


class CONJURE_OT_import_vox(Operator, ImportHelper):
    """Import MagicaVoxel files as instanced cubes (or one mesh of exposed or greedy faces)"""

    bl_idname = "conjure.import_vox"
    bl_label = "Import MagicaVoxel (.vox)"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".vox"
    filter_glob: StringProperty(default="*.vox", options={"HIDDEN"})
    files: CollectionProperty(type=OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    voxel_size: FloatProperty(
        name="Voxel Size",
        description="Edge length of one voxel",
        default=0.1,
        min=0.0001,
        soft_max=10.0,
        unit="LENGTH",
    )
    cull_interior: BoolProperty(
        name="Cull Interior",
        description="Skip voxels hidden on all six sides (glass does not hide)",
        default=True,
    )
    merge: BoolProperty(
        name="Merge to Mesh",
        description="One real mesh of the exposed faces, for export, instead of instances",
        default=False,
    )
    greedy: BoolProperty(
        name="Greedy Faces",
        description=(
            "Merge to Mesh with far fewer faces: coplanar faces of one colour become "
            "rectangles. Colours and materials stay exact"
        ),
        default=False,
    )
    watertight: BoolProperty(
        name="Watertight",
        description=(
            "Greedy Faces without T-junctions (extra vertices along shared edges), so the "
            "mesh is closed and manifold where the voxels are, for 3D printing"
        ),
        default=False,
    )
    frame: IntProperty(name="Frame", description="Animation frame to import", default=0, min=0)

    def paths(self) -> list[str]:
        if self.files and self.directory:
            return [os.path.join(self.directory, f.name) for f in self.files if f.name]
        return [self.filepath] if self.filepath else []

    def invoke(self, context, event):
        if self.paths():  # dropped onto the viewport: options in a popup, no file browser
            return self.invoke_popup(context)
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        paths = self.paths()
        if not paths:
            self.report({"ERROR"}, "No .vox file given")
            return {"CANCELLED"}
        parsed = []
        for path in paths:  # parse everything first: a bad file leaves the scene untouched
            try:
                parsed.append((path, voxfile.read_file(path, frame=self.frame)))
            except (OSError, voxfile.VoxFormatError) as exc:
                self.report({"ERROR"}, f"Cannot import {os.path.basename(path)}: {exc}")
                return {"CANCELLED"}
        greedy = self.greedy or self.watertight
        options = vox.VoxOptions(
            self.voxel_size,
            self.cull_interior,
            merge=self.merge or greedy,
            greedy=greedy,
            watertight=self.watertight,
        )
        roots, count = [], 0
        wm = context.window_manager
        wm.progress_begin(0, len(parsed))
        try:
            for i, (path, data) in enumerate(parsed):
                name = os.path.splitext(os.path.basename(path))[0]
                result = vox.build(
                    data, name, context.collection, options, context.scene.cursor.location
                )
                roots.append(result)
                count += result.voxel_count
                wm.progress_update(i + 1)
        finally:
            wm.progress_end()
        scene.select_only(context, [o for r in roots for o in (r.root, *r.objects)], roots[-1].root)
        self.report({"INFO"}, f"Imported {count:,} voxels from {len(roots)} file(s)")
        return {"FINISHED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "voxel_size")
        row = layout.row()
        row.active = not (self.merge or self.greedy or self.watertight)  # instances only
        row.prop(self, "cull_interior")
        for name in ("merge", "greedy", "watertight", "frame"):
            layout.prop(self, name)


class CONJURE_FH_vox(FileHandler):
    bl_idname = "CONJURE_FH_vox"
    bl_label = "MagicaVoxel"
    bl_import_operator = "conjure.import_vox"
    bl_file_extensions = ".vox"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


def menu_import(self, context):
    self.layout.operator(CONJURE_OT_import_vox.bl_idname, text="MagicaVoxel (.vox)")


CLASSES: tuple[type, ...] = (CONJURE_OT_import_vox, CONJURE_FH_vox)
