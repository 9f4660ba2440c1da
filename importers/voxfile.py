"""MagicaVoxel .vox reader: bytes in, numpy arrays out. No bpy, so it runs on any thread.

`read` parses the chunks (`voxparse.py`: format, hostile-input checks, limits), then places
the scene graph's shapes (`voxscene.py`: placement and animation rules). Conventions are
tested in tests/pure/test_voxfile.py. Palette: with an RGBA chunk, palette[i] = rgba[i - 1]
(file colour k is index k + 1; the last file colour is unused); without one, DEFAULT_PALETTE.
palette[0] is unused.
"""

from __future__ import annotations

import os

import numpy as np

from .voxparse import (
    DEFAULT_PALETTE,
    MATERIAL_KINDS,
    MAX_DEPTH,
    MAX_VOXELS,
    VoxFile,
    VoxFormatError,
    VoxInstance,
    VoxLayer,
    VoxMaterial,
    VoxModel,
    parse,
    rotation_from_byte,
)
from .voxscene import frame_count, instances

__all__ = [
    "DEFAULT_PALETTE", "MATERIAL_KINDS", "MAX_DEPTH", "MAX_VOXELS", "VoxFile", "VoxFormatError",
    "VoxInstance", "VoxLayer", "VoxMaterial", "VoxModel", "read", "read_file",
    "rotation_from_byte",
]  # fmt: skip


def read(data: bytes, *, frame: int = 0, max_voxels: int = MAX_VOXELS) -> VoxFile:
    """Parse a whole .vox file; `frame` picks the animation frame (0 = first, clamped)."""
    parsed = parse(bytes(data))
    if not parsed.models:
        raise VoxFormatError("the file contains no models")
    frames = frame_count(parsed)
    frame = min(max(int(frame), 0), frames - 1)  # later frames hold the last state
    placed = instances(parsed, frame, max_voxels)
    if parsed.rgba is not None:
        palette = np.zeros((256, 4), dtype=np.uint8)
        palette[1:] = parsed.rgba[:255]
    else:
        palette = DEFAULT_PALETTE.copy()
    return VoxFile(
        version=parsed.version,
        models=parsed.models,
        instances=placed,
        palette=palette,
        materials={**parsed.matt, **parsed.matl},
        layers=sorted(parsed.layers.values(), key=lambda layer: layer.layer_id),
        has_palette_chunk=parsed.rgba is not None,
        frame_count=frames,
        frame=frame,
        pack_count=parsed.pack,
    )


def read_file(
    path: str | os.PathLike[str], *, frame: int = 0, max_voxels: int = MAX_VOXELS
) -> VoxFile:
    """Read and parse a file; OSError propagates, bad contents raise VoxFormatError."""
    with open(path, "rb") as f:
        return read(f.read(), frame=frame, max_voxels=max_voxels)
