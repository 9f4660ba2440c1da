"""A parsed .vox's scene graph → placed instances (the second half of `voxfile.read`). No bpy.

Walked without recursion, with cycle, depth, visit, instance and voxel caps.

- Placement (what MagicaVoxel draws): a model turns about the voxel corner at size // 2;
  voxel centres are transformed and floored:
      world = floor(R @ (v + 0.5 - size // 2)) + T
  with R, T the nTRN transforms composed from the root (parent @ child). Unrotated, that is
  v - size // 2 + T; on an axis that R negates it is one less than R @ (v - size // 2) + T,
  so a mirrored even-sized model keeps its cells and an odd-sized one moves by one. It is the
  rule the voxel-io and vengi readers settled on after comparing with MagicaVoxel; the plain
  R @ (v - size // 2) + T differs by one on every negated axis. Output: int32 voxels, Z up.
- Without a scene graph there is one instance: the only model, or for an animation (PACK or
  several models) the model selected by `frame`, clamped to the last one. It keeps its raw
  coordinates (standing on the ground at the origin); its `translation` is reported as
  size // 2 with identity rotation so that the placement formula above still holds.
- Animation: `frame` picks, per nTRN, the keyframe with the greatest `_f` <= frame (the
  earliest one if all are later) and, per nSHP, the model with the greatest `_f` <= frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .voxparse import (
    MAX_DEPTH,
    MAX_INSTANCES,
    MAX_VISITS,
    ROTATIONS,
    Node,
    Parsed,
    VoxFormatError,
    VoxInstance,
)


def _pick(frames: list[int], frame: int) -> int:
    """Index of the entry in effect at `frame`: greatest _f <= frame, else the earliest."""
    shown = [i for i, f in enumerate(frames) if f <= frame]
    if shown:
        return max(shown, key=lambda i: (frames[i], -i))
    return min(range(len(frames)), key=lambda i: (frames[i], i))


def place(
    xyz: np.ndarray, size: tuple[int, int, int], rotation: np.ndarray, translation: np.ndarray
) -> np.ndarray:
    """World voxels floor(R @ (v + 0.5 - size // 2)) + T, as int32, with no per-voxel Python.

    R is a signed permutation, so each output axis is one input column times +-1 plus a
    constant: a gather and one fused add instead of a matrix product (~20x faster).
    """
    cols = np.abs(rotation).argmax(axis=1)
    signs = rotation[np.arange(3), cols]
    pivot = (np.asarray(size, dtype=np.int64) // 2)[cols]
    offset = np.asarray(translation, dtype=np.int64) - signs * pivot - (signs < 0)
    out = xyz[:, cols].astype(np.int32)
    out *= signs.astype(np.int32)
    out += offset.astype(np.int32)
    return out


class _State(NamedTuple):
    """What a node inherits from the path above it."""

    rotation: np.ndarray
    translation: np.ndarray
    hidden: bool
    layer: int
    name: str
    depth: int

    @staticmethod
    def root() -> _State:
        return _State(np.eye(3, dtype=np.int64), np.zeros(3, np.int64), False, -1, "", 0)


@dataclass
class _Walk:
    """Expands the scene graph into instances: iterative DFS, so no recursion limit applies."""

    parsed: Parsed
    frame: int
    max_voxels: int
    instances: list[VoxInstance] = field(default_factory=list)
    voxels: int = 0

    def run(self) -> None:
        nodes = self.parsed.nodes
        if 0 not in nodes:
            raise VoxFormatError("scene graph has no root node 0")
        stack: list[tuple[int, _State] | int] = [(0, _State.root())]
        on_path: set[int] = set()
        visits = 0
        while stack:
            item = stack.pop()
            if isinstance(item, int):  # all of this node's descendants are done
                on_path.discard(item)
                continue
            node_id, state = item
            node = nodes.get(node_id)
            if node is None:
                raise VoxFormatError(f"scene graph refers to missing node {node_id}")
            if node_id in on_path:
                raise VoxFormatError(f"scene graph loops back to node {node_id}")
            if state.depth >= MAX_DEPTH:
                raise VoxFormatError(f"scene graph nests deeper than {MAX_DEPTH} nodes")
            visits += 1
            if visits > MAX_VISITS:
                raise VoxFormatError(f"scene graph expands to more than {MAX_VISITS} nodes")
            on_path.add(node_id)
            stack.append(node_id)
            self.visit(node, state, stack)

    def visit(self, node: Node, state: _State, stack: list[tuple[int, _State] | int]) -> None:
        hidden = state.hidden or node.attrs.get("_hidden", "0").strip() == "1"
        state = state._replace(hidden=hidden, depth=state.depth + 1)
        if node.kind == b"nTRN":
            key = node.keys[_pick([k.frame for k in node.keys], self.frame)]
            layer = self.parsed.layers.get(node.layer)
            stack.append(
                (
                    node.children[0],
                    state._replace(
                        rotation=state.rotation @ ROTATIONS[key.rotation],
                        translation=state.rotation @ np.array(key.translation) + state.translation,
                        hidden=hidden or bool(layer and layer.hidden),
                        layer=node.layer if node.layer >= 0 else state.layer,
                        name=node.attrs.get("_name", state.name),
                    ),
                )
            )
        elif node.kind == b"nGRP":
            stack.extend((child, state) for child in reversed(node.children))
        else:
            _frame, model_id = node.models[_pick([f for f, _ in node.models], self.frame)]
            self.add(model_id, state)

    def add(self, model_id: int, state: _State, *, raw: bool = False) -> None:
        models = self.parsed.models
        if not 0 <= model_id < len(models):
            raise VoxFormatError(f"scene graph uses model {model_id}, file has {len(models)}")
        if len(self.instances) >= MAX_INSTANCES:
            raise VoxFormatError(f"scene graph places more than {MAX_INSTANCES} models")
        model = models[model_id]
        self.voxels += len(model.xyzi)
        if self.voxels > self.max_voxels:
            raise VoxFormatError(f"scene has more than {self.max_voxels} voxels to import")
        translation = state.translation
        if raw:  # no scene graph: raw coordinates, reported as a pivot-centred placement
            translation = np.asarray(model.size, dtype=np.int64) // 2
        xyz = place(model.xyzi[:, :3], model.size, state.rotation, translation)
        self.instances.append(
            VoxInstance(
                name=state.name,
                model_index=model_id,
                xyz=xyz,
                color_index=model.xyzi[:, 3].copy(),
                hidden=state.hidden,
                layer=state.layer,
                rotation=np.array(state.rotation),
                translation=np.array(translation),
            )
        )


def frame_count(parsed: Parsed) -> int:
    if not parsed.nodes:
        return max(len(parsed.models), 1)
    last = 0
    for node in parsed.nodes.values():
        last = max([last, *(k.frame for k in node.keys), *(f for f, _ in node.models)])
    return last + 1


def instances(parsed: Parsed, frame: int, max_voxels: int) -> list[VoxInstance]:
    """Every shape the scene shows at `frame`, placed; the single model when there is no
    scene graph."""
    walk = _Walk(parsed, frame, max_voxels)
    if parsed.nodes:
        walk.run()
    else:
        walk.add(frame, _State.root(), raw=True)
    return walk.instances
