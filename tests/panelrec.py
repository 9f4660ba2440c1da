"""A stand-in for UILayout that checks what a draw() asks for and writes it down as text.

Every prop() must name a real property (and prop_enum() a real item), every operator() a
registered operator whose properties exist, every menu() a registered menu. Each call
becomes one indented line, so a panel's state can be read (and compared) as plain text:
the snapshots in docs/panels/. Conjure's operators are polled the way Blender would, and a
greyed-out button is written with the message its poll left.
"""

from __future__ import annotations

from pathlib import Path

import bpy

CONTAINERS = {"row", "column", "box", "split", "column_flow", "grid_flow"}
LAYOUT_FLAGS = {"use_property_split", "use_property_decorate", "enabled", "active", "alert"}
SNAPSHOTS = Path(__file__).resolve().parents[1] / "docs" / "panels"


class Recorder:
    def __init__(self, lines: list[str], problems: list[str], depth: int = 0) -> None:
        self._lines, self._problems, self._depth = lines, problems, depth

    def _add(self, text: str) -> None:
        self._lines.append("  " * self._depth + text)

    def _child(self, kind: str) -> Recorder:
        self._add(f"{kind}:")
        return Recorder(self._lines, self._problems, self._depth + 1)

    def __getattr__(self, name: str):
        if name in CONTAINERS:
            return lambda *a, **k: self._child(name)
        raise AttributeError(f"UILayout.{name} is not recorded: teach tests/panelrec.py")

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_") or name in LAYOUT_FLAGS:
            object.__setattr__(self, name, value)
        else:
            self._problems.append(f"layout has no attribute {name!r}")

    # -- what panels draw ------------------------------------------------------------------

    def label(self, text: str = "", icon: str = "NONE", icon_value: int = 0, **_kw) -> None:
        self._add(f'label "{text}"' + _icon(icon, icon_value, self._problems))

    def separator(self, **_kw) -> None:
        self._add("---")

    def prop(self, data, name: str, text: str | None = None, icon: str = "NONE", **_kw) -> None:
        _icon(icon, 0, self._problems)
        if name not in data.bl_rna.properties:
            self._problems.append(f"prop {name!r} not on {data.bl_rna.identifier}")
            return
        shown = getattr(data, name)
        if data.bl_rna.properties[name].subtype == "PASSWORD":
            shown = "<password>"  # a snapshot never holds a secret
        elif isinstance(shown, float):
            shown = round(shown, 3)
        label = f' "{text}"' if text is not None else ""
        self._add(f"prop {data.bl_rna.identifier}.{name}{label} = {shown!r}")

    def prop_enum(self, data, name: str, value: str, **_kw) -> None:
        prop = data.bl_rna.properties.get(name)
        if prop is None or value not in prop.enum_items:
            self._problems.append(f"prop_enum {name!r}={value!r} not on {data.bl_rna.identifier}")
            return
        current = getattr(data, name)
        chosen = value in current if isinstance(current, set) else value == current
        self._add(f"toggle {name}={value}" + (" [on]" if chosen else ""))

    def operator(self, idname: str, text: str | None = None, icon: str = "NONE", **_kw):
        cat, _, name = idname.partition(".")
        try:
            rna = getattr(getattr(bpy.ops, cat), name).get_rna_type()
        except (AttributeError, KeyError):
            self._problems.append(f"operator {idname!r} not registered")
            return _Ignored()
        label = text if text is not None else rna.name
        self._add(f'operator {idname} "{label}"' + _icon(icon, 0, self._problems) + _greyed(idname))
        return _OperatorProperties(idname, set(rna.properties.keys()), self)

    def menu(self, name: str, icon: str = "NONE", **_kw) -> None:
        _icon(icon, 0, self._problems)
        if not hasattr(bpy.types, name):
            self._problems.append(f"menu {name!r} not registered")
        self._add(f"menu {name}")

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:
        self._add(f'progress {type.lower()} {factor:.0%} "{text}"')

    def template_icon(self, icon_value: int = 0, scale: float = 1.0) -> None:
        self._add(f"picture x{scale:g}" + (" [preview]" if icon_value else " [none]"))

    def template_list(self, list_type, _list_id, data, prop, active_data, active_prop, **_kw):
        for owner, name in ((data, prop), (active_data, active_prop)):
            if name not in owner.bl_rna.properties:
                self._problems.append(f"template_list: {name!r} not on {owner.bl_rna.identifier}")
                return
        ui_list = getattr(bpy.types, list_type, None)
        if ui_list is None:
            self._problems.append(f"UIList {list_type!r} not registered")
            return
        self._add(f"list {list_type} ({data.bl_rna.identifier}.{prop}):")
        active = getattr(active_data, active_prop)
        for index, item in enumerate(getattr(data, prop)):
            row = Recorder(self._lines, self._problems, self._depth + 1)
            row._add("> item" if index == active else "- item")
            if list_type == "UI_UL_list":
                Recorder(self._lines, self._problems, self._depth + 2).label(text=item.name)
                continue
            inner = Recorder(self._lines, self._problems, self._depth + 2)
            # Every argument Blender passes, flt_flag included.
            ui_list.draw_item(ui_list, bpy.context, inner, data, item, 0, active_data, "", index, 0)


class _OperatorProperties:
    """What operator() returns: each property set is checked and written down."""

    def __init__(self, idname: str, names: set[str], recorder: Recorder) -> None:
        object.__setattr__(self, "_check", (idname, names, recorder))

    def __setattr__(self, name: str, value) -> None:
        idname, names, recorder = self._check
        if name not in names:
            recorder._problems.append(f"operator {idname!r} has no property {name!r}")
        recorder._add(f"  .{name} = {value!r}")


class _Ignored:
    def __setattr__(self, name, value) -> None:
        pass


def _icons() -> set[str]:
    """The icon names this Blender knows (a wrong one is a TypeError in a real draw)."""
    fn = bpy.types.UILayout.bl_rna.functions["label"]
    return set(fn.parameters["icon"].enum_items.keys())


def _icon(icon: str, icon_value: int, problems: list[str]) -> str:
    if icon_value:
        return " [preview]"
    if icon not in _icons():
        problems.append(f"icon {icon!r} does not exist in Blender {bpy.app.version_string}")
    return f" [{icon}]" if icon != "NONE" else ""


def _greyed(idname: str) -> str:
    """' [greyed: why]' when a Conjure operator's poll refuses now, as the button would be."""
    cat, _, name = idname.partition(".")
    cls = getattr(bpy.types, f"{cat.upper()}_OT_{name}", None)
    poll = getattr(cls, "poll", None)
    if cat != "conjure" or poll is None:
        return ""
    messages: list[str] = []

    class Probe(cls):  # type: ignore[misc, valid-type]
        @classmethod
        def poll_message_set(cls, message, *_args) -> None:
            messages.append(message)

    if Probe.poll.__func__(Probe, bpy.context):
        return ""
    if not messages:
        return " [greyed: NO MESSAGE]"
    return f" [greyed: {messages[-1]}]"


def record(draw, target=None) -> tuple[list[str], list[str]]:
    """Run a draw(self, context) function against a Recorder: (lines, problems)."""
    lines: list[str] = []
    problems: list[str] = []
    draw(_Shim(Recorder(lines, problems), target), bpy.context)
    return lines, problems


class _Shim:
    """`self` for a draw() call: the recorder as `layout`, other attributes from `target`."""

    def __init__(self, layout: Recorder, target=None) -> None:
        self.layout = layout
        self._target = target

    def __getattr__(self, name):
        return getattr(self._target, name)
