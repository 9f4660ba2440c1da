"""One tiny binary glTF (GLB 2.0) built in code for the emulators and tests: a single triangle
in a BIN chunk, one node, one scene, with the few options they need."""

from __future__ import annotations

import json
import struct
from typing import Any

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
FLOAT, UNSIGNED_SHORT = 5126, 5123


def pack_glb(document: dict[str, Any], binary: bytes) -> bytes:
    """The GLB container: header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\x00" * (-len(binary) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text
    chunks += struct.pack("<I4s", len(binary), b"BIN\x00") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def triangle_glb(
    node_name: str = "Tri",
    *,
    generator: str = "",
    mesh_name: str = "",
    indexed: bool = False,
    material: dict[str, Any] | None = None,
    image_uri: str | None = None,
) -> bytes:
    """One triangle (POSITION, plus 16-bit indices when `indexed`) on a node `node_name`;
    `material` becomes the primitive's material, `image_uri` its one texture's image."""
    positions = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    binary = positions
    primitive: dict[str, Any] = {"attributes": {"POSITION": 0}}
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": ARRAY_BUFFER}]
    accessors: list[dict[str, Any]] = [
        {
            "bufferView": 0,
            "componentType": FLOAT,
            "count": 3,
            "type": "VEC3",
            "min": [0, 0, 0],
            "max": [1, 1, 0],
        }
    ]
    if indexed:
        indices = struct.pack("<3H", 0, 1, 2)
        views.append(
            {
                "buffer": 0,
                "byteOffset": len(binary),
                "byteLength": len(indices),
                "target": ELEMENT_ARRAY_BUFFER,
            }
        )
        accessors.append(
            {"bufferView": 1, "componentType": UNSIGNED_SHORT, "count": 3, "type": "SCALAR"}
        )
        primitive["indices"] = 1
        binary += indices
    binary += b"\x00" * (-len(binary) % 4)
    mesh: dict[str, Any] = {"primitives": [primitive]}
    if mesh_name:
        mesh["name"] = mesh_name
    asset = {"version": "2.0", **({"generator": generator} if generator else {})}
    document: dict[str, Any] = {
        "asset": asset,
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": node_name, "mesh": 0}],
        "meshes": [mesh],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    if material is not None:
        document["materials"] = [material]
        primitive["material"] = 0
    if image_uri is not None:
        document["textures"] = [{"source": 0}]
        document["images"] = [{"uri": image_uri}]
    return pack_glb(document, binary)
