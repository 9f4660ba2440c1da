"""Every assumption docs/versions.md makes about the running Blender, checked on each version."""

from __future__ import annotations

import pytest


def _operator_args(op) -> set[str]:
    return {p.identifier for p in op.get_rna_type().properties} - {"rna_type"}


def test_importer_arguments_the_code_passes_exist(addon) -> None:
    """Exactly the arguments importers/gltf.py and obj.py pass, on this version."""
    import importlib

    import bpy

    gltf = importlib.import_module(f"{addon.__name__}.importers.gltf")
    obj = importlib.import_module(f"{addon.__name__}.importers.obj")
    assert {"filepath", *gltf._OPTIONS} <= _operator_args(bpy.ops.import_scene.gltf)
    assert {"filepath", *obj._OPTIONS} <= _operator_args(bpy.ops.wm.obj_import)
    assert {"filepath", "export_format", "use_selection"} <= _operator_args(
        bpy.ops.export_scene.gltf
    )
    assert {"filepath", "export_selected_objects"} <= _operator_args(bpy.ops.wm.obj_export)


def test_ui_and_utility_apis_exist(addon) -> None:
    import bpy
    import bpy.utils.previews

    assert {"bl_import_operator", "bl_file_extensions"} <= set(
        bpy.types.FileHandler.bl_rna.properties.keys()
    )
    progress = bpy.types.UILayout.bl_rna.functions["progress"]
    assert {"text", "factor", "type"} <= set(progress.parameters.keys())
    assert callable(bpy.utils.register_cli_command)
    assert callable(bpy.utils.extension_path_user)
    previews = bpy.utils.previews.new()
    bpy.utils.previews.remove(previews)
    assert isinstance(bpy.app.online_access, bool)


@pytest.mark.parametrize("socket", ["Base Color", "Metallic", "Roughness", "IOR",
                                    "Emission Color", "Emission Strength", "Transmission Weight"])
def test_principled_sockets_used_by_vox_materials_exist(addon, socket: str) -> None:
    import bpy

    tree = bpy.data.node_groups.new("probe", "ShaderNodeTree")
    try:
        node = tree.nodes.new("ShaderNodeBsdfPrincipled")
        assert socket in node.inputs
    finally:
        bpy.data.node_groups.remove(tree)


def test_modifier_input_adapter_round_trips(addon) -> None:
    """compat.set/get work on this version, whichever API it has (5.2: typed RNA)."""
    import bpy

    compat = __import__(f"{addon.__name__}.importers.compat", fromlist=["compat"])
    group = bpy.data.node_groups.new("probe", "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = group.interface.new_socket("Size", in_out="INPUT", socket_type="NodeSocketFloat")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    obj = bpy.data.objects.new("probe", bpy.data.meshes.new("probe"))
    try:
        mod = obj.modifiers.new("probe", "NODES")
        mod.node_group = group
        compat.set_modifier_input(mod, size.identifier, 0.375)
        assert compat.get_modifier_input(mod, size.identifier) == pytest.approx(0.375)
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.node_groups.remove(group)
