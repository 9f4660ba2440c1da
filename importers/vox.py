"""Build a parsed MagicaVoxel file in the scene as instanced cubes (or one real mesh).

Instanced (the default): each visible model instance becomes one object holding a mesh of
loose points (one per shown voxel) with a `vox_color_index` point attribute; a Geometry
Nodes modifier puts a cube on every point without realizing them, and one material per file
looks the colour (and MATL properties) up in 256x1 palette images.

Merged (for export): all visible instances become one real mesh of exposed faces: one quad
per voxel face (`merge`), rectangles of one colour (`greedy`), or those without T-junctions
(`watertight`). Every face carries its palette index as the integer face attribute
`vox_color_index` and UVs at its texel of the 256x1 palette image; MATL materials get their
own slots with constant Principled values, which glTF/FBX exporters understand. All arrays
are filled with foreach_set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import bpy
import numpy as np

from . import compat, voxmesh
from .voxfile import VoxFile, VoxMaterial

NODE_GROUP = "Conjure Voxel Cubes"
_NODE_GROUP_VERSION = 1
GLASS_KINDS = {"glass", "media", "cloud"}
# MATL kinds whose faces get a material slot of their own in merged meshes.
SPECIAL_KINDS = {"metal", "emit", *GLASS_KINDS}


@dataclass(frozen=True)
class VoxOptions:
    """How to build: instanced cubes, or one mesh (`merge`, `greedy`, `watertight`).

    `watertight` implies `greedy`, and both imply `merge`. `cull_interior` only applies to
    instanced cubes: merged meshes never hold hidden faces.
    """

    voxel_size: float = 0.1
    cull_interior: bool = True
    merge: bool = False
    greedy: bool = False  # coplanar faces of one colour merged into rectangles
    watertight: bool = False  # greedy, with no T-junctions (manifold, for printing)

    @property
    def mode(self) -> str:
        """What to build: "instanced", "quads" (merge), "greedy" or "watertight"."""
        if self.watertight:
            return "watertight"
        if self.greedy:
            return "greedy"
        return "quads" if self.merge else "instanced"


@dataclass
class VoxBuildResult:
    root: bpy.types.Object
    objects: list[bpy.types.Object]
    voxel_count: int  # voxels turned into cubes or faces (after culling)


# ----------------------------------------------------------------------------- materials


def _material_table(vox: VoxFile) -> tuple[np.ndarray, float]:
    """Per palette index: (metallic, roughness, emission strength, transmission), and an IOR."""
    table = np.zeros((256, 4), dtype=np.float32)
    table[:, 1] = 0.5
    ior = 1.45
    for index, mat in vox.materials.items():
        if not 0 < index < 256:
            continue
        table[index] = _principled_values(mat)
        if mat.kind in GLASS_KINDS and mat.ior:
            ior = mat.ior
    return table, ior


def _principled_values(mat: VoxMaterial) -> tuple[float, float, float, float]:
    metal = mat.metal if mat.kind == "metal" else 0.0
    emit = mat.emit * (1.0 + mat.flux) if mat.kind == "emit" else 0.0
    trans = (mat.trans or 1.0) if mat.kind in GLASS_KINDS else 0.0
    return (float(metal), float(mat.rough), float(emit), float(trans))


def _palette_image(name: str, pixels: np.ndarray, *, is_data: bool) -> bpy.types.Image:
    image = bpy.data.images.new(name, width=256, height=1, alpha=True, float_buffer=is_data)
    if is_data:
        image.colorspace_settings.name = "Non-Color"
    image.pixels.foreach_set(pixels.astype(np.float32).ravel())
    image.pack()
    return image


def _socket(sockets, *names: str):
    for name in names:
        if name in sockets:
            return sockets[name]
    raise KeyError(names)


def build_material(name: str, vox: VoxFile) -> bpy.types.Material:
    """The instanced cubes' material: colour and MATL values looked up by the palette index
    each cube's point carries (an INSTANCER attribute). Merged meshes use `face_materials`."""
    colors = vox.palette.astype(np.float32) / 255.0
    colors[:, 3] = 1.0
    props, ior = _material_table(vox)
    color_img = _palette_image(f"{name} Palette", colors, is_data=False)
    props_img = _palette_image(f"{name} Properties", props, is_data=True)

    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    tree = mat.node_tree
    nodes, links = tree.nodes, tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")

    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "INSTANCER"
    attr.attribute_name = "vox_color_index"
    to_u = nodes.new("ShaderNodeMath")
    to_u.operation = "MULTIPLY_ADD"
    to_u.inputs[1].default_value = 1.0 / 256.0
    to_u.inputs[2].default_value = 0.5 / 256.0
    links.new(attr.outputs[2], to_u.inputs[0])
    uv = nodes.new("ShaderNodeCombineXYZ")
    uv.inputs[1].default_value = 0.5
    links.new(to_u.outputs[0], uv.inputs[0])

    textures = []
    for image in (color_img, props_img):
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Closest"
        tex.extension = "EXTEND"
        links.new(uv.outputs[0], tex.inputs["Vector"])
        textures.append(tex)
    color_tex, props_tex = textures
    links.new(color_tex.outputs["Color"], bsdf.inputs["Base Color"])

    split = nodes.new("ShaderNodeSeparateColor")
    links.new(props_tex.outputs["Color"], split.inputs[0])
    links.new(split.outputs[0], bsdf.inputs["Metallic"])
    links.new(split.outputs[1], bsdf.inputs["Roughness"])
    links.new(split.outputs[2], _socket(bsdf.inputs, "Emission Strength"))
    links.new(props_tex.outputs["Alpha"], _socket(bsdf.inputs, "Transmission Weight"))
    links.new(color_tex.outputs["Color"], _socket(bsdf.inputs, "Emission Color"))
    bsdf.inputs["IOR"].default_value = ior
    _layout_left_of(bsdf, [color_tex, props_tex, split])
    return mat


def face_materials(
    name: str, vox: VoxFile, colors: np.ndarray
) -> tuple[list[bpy.types.Material], np.ndarray]:
    """Material slots for a merged mesh whose faces use the palette indices `colors`.

    Slot 0 is `name`: the palette texture as base colour, read at each face's UV. Then one
    slot per palette index in `colors` whose MATL kind is metal, emit, glass, media or cloud,
    in increasing index order: the same texture, with that entry's metallic, roughness,
    emission, transmission and IOR as constants. One slot per index rather than per kind,
    because two metal entries may differ in metallic or roughness and a constant holds one
    value. Returns the materials and, per palette index, its slot.
    """
    colors01 = vox.palette.astype(np.float32) / 255.0
    colors01[:, 3] = 1.0
    image = _palette_image(f"{name} Palette", colors01, is_data=False)
    slots = [_face_material(name, image, None)]
    slot_of = np.zeros(256, dtype=np.int32)
    # Counted, not np.unique: the indices are bytes, and sorting 175k faces took 24 ms.
    for index in np.flatnonzero(np.bincount(colors, minlength=256)).tolist():
        mat = vox.materials.get(index)
        if mat is None or mat.kind not in SPECIAL_KINDS or not 0 < index < 256:
            continue
        slot_of[index] = len(slots)
        slots.append(_face_material(f"{name} {mat.kind.title()} {index}", image, mat))
    return slots, slot_of


def _face_material(
    name: str, palette: bpy.types.Image, special: VoxMaterial | None
) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = palette
    tex.interpolation = "Closest"
    tex.extension = "EXTEND"
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    _layout_left_of(bsdf, [tex])
    if special is None:
        return mat
    metallic, roughness, emission, transmission = _principled_values(special)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    if special.kind == "emit":
        links.new(tex.outputs["Color"], _socket(bsdf.inputs, "Emission Color"))
        _socket(bsdf.inputs, "Emission Strength").default_value = emission
    if special.kind in GLASS_KINDS:
        _socket(bsdf.inputs, "Transmission Weight").default_value = transmission
        bsdf.inputs["IOR"].default_value = special.ior
    return mat


def _layout_left_of(anchor: bpy.types.Node, nodes: Sequence[bpy.types.Node]) -> None:
    for i, node in enumerate(nodes):
        node.location = (anchor.location.x - 400, anchor.location.y - 300 * i)


# ------------------------------------------------------------------------- geometry nodes


def _cube_node_group() -> bpy.types.NodeTree:
    """Shared GN group: Instance on Points with a cube of the given size and material."""
    group = bpy.data.node_groups.get(NODE_GROUP)
    if group is not None and group.get("conjure_version") == _NODE_GROUP_VERSION:
        return group
    group = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    group["conjure_version"] = _NODE_GROUP_VERSION
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = iface.new_socket("Voxel Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value = 0.1, 0.0
    iface.new_socket("Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")

    nodes, links = group.nodes, group.links
    inp = nodes.new("NodeGroupInput")
    out = nodes.new("NodeGroupOutput")
    cube = nodes.new("GeometryNodeMeshCube")
    set_mat = nodes.new("GeometryNodeSetMaterial")
    inst = nodes.new("GeometryNodeInstanceOnPoints")
    scale = nodes.new("ShaderNodeVectorMath")
    scale.operation = "SCALE"
    links.new(inp.outputs["Voxel Size"], scale.inputs["Scale"])
    scale.inputs[0].default_value = (1.0, 1.0, 1.0)
    links.new(scale.outputs[0], cube.inputs["Size"])
    links.new(cube.outputs["Mesh"], set_mat.inputs["Geometry"])
    links.new(inp.outputs["Material"], set_mat.inputs["Material"])
    links.new(inp.outputs["Geometry"], inst.inputs["Points"])
    links.new(set_mat.outputs["Geometry"], inst.inputs["Instance"])
    links.new(inst.outputs["Instances"], out.inputs["Geometry"])
    for x, node in enumerate((inp, scale, cube, set_mat, inst, out)):
        node.location = (x * 200 - 600, 0)
    return group


def _add_cube_modifier(obj: bpy.types.Object, material: bpy.types.Material, size: float) -> None:
    group = _cube_node_group()
    mod = obj.modifiers.new("Voxel Cubes", "NODES")
    mod.node_group = group
    for item in group.interface.items_tree:
        if item.item_type != "SOCKET" or item.in_out != "INPUT":
            continue
        if item.name == "Voxel Size":
            compat.set_modifier_input(mod, item.identifier, size)
        elif item.name == "Material":
            compat.set_modifier_input(mod, item.identifier, material)


# ---------------------------------------------------------------------------------- meshes


def _opaque(vox: VoxFile, color_index: np.ndarray) -> np.ndarray:
    glass = np.zeros(256, dtype=bool)
    for index, mat in vox.materials.items():
        if 0 < index < 256 and mat.kind in GLASS_KINDS:
            glass[index] = True
    return ~glass[color_index]


def _point_mesh(name: str, points: np.ndarray, color_index: np.ndarray, linear: np.ndarray):
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.astype(np.float32).ravel())
    idx = mesh.attributes.new("vox_color_index", "INT", "POINT")
    idx.data.foreach_set("value", color_index.astype(np.int32))
    col = mesh.attributes.new("vox_color", "FLOAT_COLOR", "POINT")
    col.data.foreach_set("color", linear[color_index].ravel())
    mesh.update()
    return mesh


def _surface(xyz: np.ndarray, color: np.ndarray, opaque: np.ndarray, mode: str) -> voxmesh.Polygons:
    if mode == "quads":
        rects = voxmesh.unit_faces(xyz, color, opaque)
    else:
        rects = voxmesh.greedy_faces(xyz, color, opaque)
    if mode == "watertight":
        return voxmesh.watertight_polygons(rects)
    return voxmesh.shared_polygons(rects)


def _polygon_mesh(name: str, polys: voxmesh.Polygons, size: float, slot_of: np.ndarray):
    """A real mesh of `polys` (flat shaded), with `vox_color_index` per face, palette UVs and
    material indices from `slot_of` (per palette index).

    The arrays go in through the attributes Blender keeps them in (position, .corner_vert,
    sharp_face, material_index, the UV map): their foreach_set copies a whole buffer, where
    the MeshVertex, MeshLoop and MeshPolygon properties go item by item (four times slower
    in all on 175k faces). The faces are valid by construction (tests check that validate()
    finds nothing), so validate(), a third of the time, is not called. Blender searches for
    the edges unless the mesher gives them (watertight meshes).
    """
    count = len(polys.starts)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(polys.vertices))
    mesh.loops.add(len(polys.loops))
    mesh.polygons.add(count)
    attributes = mesh.attributes
    co = (polys.vertices * size).astype(np.float32).ravel()
    attributes["position"].data.foreach_set("vector", co)
    corner_vert = attributes.get(".corner_vert")
    if corner_vert is not None:
        corner_vert.data.foreach_set("value", polys.loops)
    else:  # should a Blender not expose it, the slow way still works
        mesh.loops.foreach_set("vertex_index", polys.loops)
    mesh.polygons.foreach_set("loop_start", polys.starts.astype(np.int32))
    face_index = polys.color.astype(np.int32)
    attributes.new("sharp_face", "BOOLEAN", "FACE").data.foreach_set(
        "value", np.ones(count, dtype=bool)
    )
    attributes.new("material_index", "INT", "FACE").data.foreach_set(
        "value", slot_of[face_index].astype(np.int32)
    )
    attributes.new("vox_color_index", "INT", "FACE").data.foreach_set("value", face_index)
    uv = np.full((len(polys.loops), 2), 0.5, dtype=np.float32)
    uv[:, 0] = np.repeat(((face_index + 0.5) / 256.0).astype(np.float32), polys.sizes)
    # A 2D corner attribute is a UV map (the mesh's only one, so active and rendered);
    # uv_layers.new() makes the same, filled in first.
    attributes.new("Palette", "FLOAT2", "CORNER").data.foreach_set("vector", uv.ravel())
    if polys.edges is None:
        mesh.update(calc_edges=True)
    else:
        mesh.edges.add(len(polys.edges))
        attributes[".edge_verts"].data.foreach_set("value", polys.edges.ravel())
        attributes[".corner_edge"].data.foreach_set("value", polys.corner_edges)
        mesh.update()
    return mesh


# ----------------------------------------------------------------------------------- build


def build(
    vox: VoxFile,
    name: str,
    collection: bpy.types.Collection,
    options: VoxOptions,
    location: Sequence[float] = (0.0, 0.0, 0.0),
) -> VoxBuildResult:
    """Create the objects for `vox` in `collection`, parented under an empty called `name`."""
    root = bpy.data.objects.new(name, None)
    root.empty_display_type = "CUBE"
    root.empty_display_size = max(options.voxel_size, 0.01)
    root.location = location
    collection.objects.link(root)

    objects: list[bpy.types.Object] = []
    total = 0
    instances = [inst for inst in vox.instances if len(inst.xyz)]
    if options.mode != "instanced":
        shown = [inst for inst in instances if not inst.hidden]
        xyz = np.concatenate([i.xyz for i in shown]) if shown else np.zeros((0, 3), np.int32)
        ci = np.concatenate([i.color_index for i in shown]) if shown else np.zeros(0, np.uint8)
        polys = _surface(xyz, ci.astype(np.int64), _opaque(vox, ci), options.mode)
        materials, slot_of = face_materials(f"{name} Voxels", vox, polys.color)
        mesh = _polygon_mesh(name, polys, options.voxel_size, slot_of)
        for material in materials:
            mesh.materials.append(material)
        objects.append(_link(mesh.name, mesh, collection, root))
        total = polys.voxel_count
    else:
        material = build_material(f"{name} Voxels", vox)
        linear = np.ones((256, 4), dtype=np.float32)
        linear[:, :3] = voxmesh.srgb_to_linear(vox.palette[:, :3])
        for inst in instances:
            xyz, ci = inst.xyz, inst.color_index
            if options.cull_interior:
                keep = voxmesh.visible_mask(xyz, _opaque(vox, ci))
                xyz, ci = xyz[keep], ci[keep]
            points = (xyz.astype(np.float32) + 0.5) * options.voxel_size
            mesh = _point_mesh(inst.name or name, points, ci, linear)
            obj = _link(inst.name or name, mesh, collection, root)
            _add_cube_modifier(obj, material, options.voxel_size)
            obj.hide_viewport = obj.hide_render = inst.hidden
            objects.append(obj)
            total += 0 if inst.hidden else len(xyz)
    return VoxBuildResult(root, objects, total)


def _link(name: str, data, collection: bpy.types.Collection, parent: bpy.types.Object):
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    obj.parent = parent
    return obj
