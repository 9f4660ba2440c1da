"""The package's shape, read from its source: no module imports itself back through others
(lazy imports inside functions and imports for type checking count too: a circle is a
circle), and the pure layers import without Blender."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

NOT_SHIPPED = ("tests", "tools", "docs", ".ci")


def _modules() -> dict[str, Path]:
    """Every module of the add-on by dotted name ('' is the package itself)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] in NOT_SHIPPED or parts[0].startswith("."):
            continue
        found[".".join(parts).removesuffix("__init__").rstrip(".")] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The add-on's modules that `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue  # absolute imports are bpy, requests, the standard library
        base = package.split(".") if package else []
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        source = ".".join([*base, *(node.module.split(".") if node.module else [])])
        for alias in node.names:
            child = f"{source}.{alias.name}".lstrip(".")
            edges.add(child if child in modules else source)
    return edges - {name}


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle, as the modules along it, or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_module_imports_itself_back() -> None:
    modules = _modules()
    assert {"runtime", "jobs.session", "providers.http", "providers.base"} <= set(modules)
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "jobs.engine" in graph["jobs.session"]  # the reading works
    assert _circle(graph) == []


def test_the_circle_finder_finds_circles() -> None:
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) == []


def _pure_modules() -> list[str]:
    names = [n for n in _modules() if n.split(".")[0] in ("providers", "jobs")]
    parsers = ("voxfile", "voxparse", "voxscene", "voxmesh", "gltfcheck", "mtl", "archive")
    return [*names, *(f"importers.{n}" for n in parsers)]


def test_pure_layers_import_without_bpy() -> None:
    modules = _pure_modules()
    assert {"providers", "jobs.session", "importers.voxfile"} <= set(modules)
    code = (
        "import sys, types, importlib\n"
        "sys.modules['bpy'] = None; sys.modules['mathutils'] = None\n"
        "pkg = types.ModuleType('conjure_src'); pkg.__path__ = [sys.argv[1]]\n"
        "sys.modules['conjure_src'] = pkg\n"
        "for name in sys.argv[2:]:\n"
        "    importlib.import_module('conjure_src.' + name)\n"
        "print('ok', len(sys.argv) - 2)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), *modules],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ok {len(modules)}"


def test_manifest_passes_blenders_validator() -> None:
    import ext

    ext.run("validate", ROOT)  # raises CalledProcessError when Blender rejects it
