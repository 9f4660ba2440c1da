"""Confine a downloaded MTL's texture paths to the job folder before Blender reads it. No bpy.

Blender's OBJ importer opens whatever a texture statement names: the path joined to the MTL's
folder, then the path as given (so `/etc/passwd` or `C:\\Users\\x\\tex.png` is opened as is),
then variants of it. Services also write the path of the machine that made the file, or a
name that differs from the file they ship (`fuze uv.jpg` beside `fuze_uv.jpg`). So every
texture statement is rewritten to a file that really is in the job folder, found by its base
name (case and space/underscore differences forgiven), or removed with a warning.

Statements are read exactly as Blender's own parser reads them, or the confined path would
not be the one it opens: lines end at "\\n" alone, any byte up to the space separates words,
each texture option takes the words or numbers Blender gives it (`-o /abs/x.png` is a path
after an `-o` with no numbers), the path is what remains, ends trimmed and double quotes
dropped. A rewritten statement is read back the same way before it is written.

Only the path changes: the keyword, its `-option value` arguments, comments, other lines and
line endings stay byte for byte, whatever the file's encoding.

`prepare_obj` does the whole job folder of an OBJ (zips, which MTL, `mtllib`, confinement)
without bpy, so importers/obj.py only runs Blender's importer on the result.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from . import archive

MAX_MTL_BYTES = 16 * 1024 * 1024
# Statements whose last argument is an image file (lower-case; MTL keywords are not cased).
TEXTURE_KEYWORDS = frozenset(
    {
        "map_ka", "map_kd", "map_ks", "map_ke", "map_ns", "map_ni", "map_d", "map_tr",
        "map_bump", "bump", "map_disp", "disp", "decal", "refl", "map_refl", "norm",
        "map_norm", "map_pr", "map_pm", "map_ps", "map_pc", "map_pcr", "map_aniso",
        "map_anisor", "map_rma", "map_orm",
    }
)  # fmt: skip
DIFFUSE_KEYWORD = "map_kd"
# Texture options as Blender's MTL parser reads them (case matters; each ends at a byte <= ' '):
# -o/-s take up to three numbers and -bm one, each kept only when it parses as a number (so
# `-o /abs/x.png` leaves the path alone); the others drop that many words, whatever they are.
_NUMBER_ARGS = {"-o": 3, "-s": 3, "-bm": 1}
_WORD_ARGS = {
    "-type": 1, "-blendu": 1, "-blendv": 1, "-boost": 1, "-cc": 1, "-clamp": 1, "-imfchan": 1,
    "-mm": 2, "-t": 3, "-texres": 1,
}  # fmt: skip
# A number as fast_float (Blender's parser) reads one, after at most one "+" Blender drops.
_NUMBER = re.compile(
    r"-?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf(?:inity)?|nan(?:\(\w*\))?))",
    re.ASCII,
)
_FLOAT_MAX = 3.4028235677973366e38  # above this a float rounds to infinity: out of range
_FLOAT_TINY = 2.0**-150  # at or below this a non-zero float rounds to zero: out of range
_TRIM = " \t\r\n"  # what Blender trims off the ends of a texture path
_DRIVE = re.compile(r"^[A-Za-z]:")
# Downloads and our own outputs that are never a texture, whatever a statement names.
_NOT_TEXTURES = (".obj", ".mtl", ".zip", ".part", ".download", ".glb", ".gltf", ".json")
_SHOWN = 120  # characters of a path quoted in a warning
_CONFINED_DIR = ".confined"  # where a rewritten copy of the OBJ goes (keeps the file's name)
_MTLLIB = re.compile(rb"^[\x00-\x20]*mtllib(?:[\x00-\x20]|$)")  # as Blender's OBJ parser reads it
_CONTINUED = re.compile(rb"\\([\x00-\x09\x0b-\x20]*)\n")  # "\\" then a line break: one line


class MtlError(ValueError):
    """The MTL cannot be confined (outside the job folder, unreadable, too big). One line."""


@dataclass
class _Statement:
    """A texture statement split so the path alone can be replaced."""

    head: str  # indentation, keyword and options, up to where the path starts
    path: str  # as Blender reads it: ends trimmed, quotes removed
    keyword: str  # lower-case
    plain: bool  # the path is written exactly as Blender reads it


@dataclass
class _Index:
    """The files in the job folder a texture may be, by a forgiving key of their name."""

    root: str
    by_key: dict[str, list[str]] = field(default_factory=dict)

    def find(self, name: str) -> str | None:
        candidates = self.by_key.get(_name_key(name), [])
        if not candidates:
            return None

        # The exact name first, then the same name in another case, then the rest; among
        # equals the shallowest path, so the choice never depends on listing order.
        def rank(path: str) -> tuple[int, int, str]:
            base = os.path.basename(path)
            exact = 0 if base == name else 1 if base.lower() == name.lower() else 2
            return (exact, path.count(os.sep), path)

        return min(candidates, key=rank)


def confine_textures(mtl_path: str, job_dir: str, fallback: str | None = None) -> list[str]:
    """Rewrite `mtl_path` so every texture statement names a file inside `job_dir`.

    A path that is absolute (POSIX or Windows), climbs with `..`, or names no file inside
    `job_dir` is replaced by the relative path (from the MTL's folder) of a file found in
    `job_dir` by base name; failing that a diffuse map (`map_Kd`) takes `fallback` (the one
    texture the service sent, whatever the MTL calls it), and any other statement is removed.
    Returns one warning per path left out. Raises MtlError if the MTL itself is not allowed.
    """
    root = os.path.realpath(job_dir)
    real_mtl = os.path.realpath(mtl_path)
    if not _inside(real_mtl, root):
        raise MtlError(f"the material file {_show(mtl_path)} is outside the job folder")
    try:
        if os.path.getsize(real_mtl) > MAX_MTL_BYTES:
            raise MtlError(f"the material file {_show(mtl_path)} is over 16 MB")
        with open(real_mtl, "rb") as f:
            content = f.read()
    except OSError as exc:
        raise MtlError(f"cannot read {_show(mtl_path)}: {exc.strerror or exc}") from None
    if fallback is not None and not _is_file_inside(fallback, root):
        fallback = None
    base = os.path.dirname(real_mtl)
    index = _index(root)
    warnings: list[str] = []
    out: list[bytes] = []
    changed = False
    for line in _lines(content):
        ending = line[len(line.rstrip(b"\r\n")) :]
        statement = _parse(line.rstrip(b"\n").decode("utf-8", "surrogateescape"))
        if statement is None:
            out.append(line)
            continue
        target, as_written = _resolve(statement, base, root, index, fallback)
        if as_written:
            out.append(line)
            continue
        text = _rewritten(statement.head, target, base) if target else None
        changed = True
        if text is None:
            warnings.append(
                f"texture {_show(statement.path)} not found among the downloaded files; left out"
            )
            continue
        out.append(text.encode("utf-8", "surrogateescape") + ending)
    if changed:
        archive.write_atomically(real_mtl, b"".join(out))
    return list(dict.fromkeys(warnings))


# ------------------------------------------------------------------------------ parsing


def _parse(line: str) -> _Statement | None:
    """A texture statement read as Blender reads it, or None for any other line (comments,
    colours, newmtl...). `line` is one line without its "\\n" (Blender splits on nothing else)."""
    start = _skip_space(line, 0)
    if line.startswith("\ufeff", start):  # a UTF-8 BOM: Blender would not see a keyword,
        start = _skip_space(line, start + 1)  # but confining the path as well costs nothing
    end = _skip_word(line, start)
    keyword = line[start:end].lower()
    if keyword not in TEXTURE_KEYWORDS or end == len(line):
        return None
    pos = end + 1
    while True:  # options: "-bm 0.5", "-o 0 0 0", "-clamp on"; the rest is the path
        pos = _skip_space(line, pos)
        option = next((o for o in (*_NUMBER_ARGS, *_WORD_ARGS) if _word_at(line, pos, o)), "")
        if not option:
            break
        pos += len(option) + 1
        for _ in range(_NUMBER_ARGS.get(option, 0)):
            pos = _number_end(line, pos)
        for _ in range(_WORD_ARGS.get(option, 0)):
            pos = _skip_word(line, _skip_space(line, pos))
    written = line[pos:].strip(_TRIM)
    path = written.replace('"', "")  # Blender drops every double quote from the path
    if not path:
        return None  # "map_Kd" alone names nothing; Blender ignores it too
    return _Statement(line[:pos], path, keyword, _plain(written))


def _skip_space(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] <= " ":
        pos += 1
    return pos


def _skip_word(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] > " ":
        pos += 1
    return pos


def _word_at(line: str, pos: int, word: str) -> bool:
    end = pos + len(word)
    return line.startswith(word, pos) and end < len(line) and line[end] <= " "


def _number_end(line: str, pos: int) -> int:
    """Where Blender's parse_float stops: after the spaces and one "+" even when no number
    follows; after the number only when a space follows it or it is out of range."""
    pos = _skip_space(line, pos)
    if line.startswith("+", pos):
        pos += 1
    match = _NUMBER.match(line, pos)
    if match is None:
        return pos
    end = match.end()
    if end == len(line) or line[end] <= " " or _out_of_range(match.group()):
        return end
    return pos


def _out_of_range(number: str) -> bool:
    if number.lstrip("-")[:1] in ("i", "I", "n", "N"):
        return False  # inf and nan are numbers
    value = abs(float(number))
    nonzero = any(c in "123456789" for c in re.split("[eE]", number)[0])
    return value > _FLOAT_MAX or (nonzero and value <= _FLOAT_TINY)


def _plain(path: str) -> bool:
    """A path Blender reads exactly as written: no quotes, no control characters."""
    return not any(c < " " or c in '"\x7f' for c in path)


# ------------------------------------------------------------------------------ resolving


def _resolve(
    statement: _Statement, base: str, root: str, index: _Index, fallback: str | None
) -> tuple[str | None, bool]:
    """The file inside `root` the statement should name (None: leave it out), and whether
    the statement already names it as written."""
    path = statement.path
    parts = re.split(r"[\\/]", path)
    hostile = path.startswith(("/", "\\", "~")) or bool(_DRIVE.match(path)) or ".." in parts
    if not hostile:
        candidate = os.path.join(base, *[p for p in parts if p not in ("", ".")])
        if _is_file_inside(candidate, root) and not _excluded(candidate):
            plain = statement.plain and "\\" not in path and not path.startswith("-")
            return os.path.realpath(candidate), plain
    found = index.find(parts[-1]) if parts[-1] else None
    if found is not None:
        return found, False
    if statement.keyword == DIFFUSE_KEYWORD and fallback is not None:
        return os.path.realpath(fallback), False
    return None, False


def _index(root: str) -> _Index:
    """Every regular file under `root` that could be a texture; symlinks are not followed."""
    index = _Index(root)
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path) or _excluded(path) or name.startswith("."):
                continue
            if not _plain(name) or "\\" in name:  # a name no MTL line can spell
                continue
            index.by_key.setdefault(_name_key(name), []).append(path)
    return index


def _name_key(name: str) -> str:
    """Names that differ only in case or spaces vs underscores are the same texture."""
    return name.strip().lower().replace(" ", "_")


def _excluded(path: str) -> bool:
    return path.lower().endswith(_NOT_TEXTURES)


def _rewritten(head: str, target: str, base: str) -> str | None:
    """The statement naming `target` relative to the MTL's folder, in forward slashes, if
    Blender reads it back as exactly that path (a name like `-x.png` or `1 x.png` could be
    read as an option or a number: then `./` goes first); else None."""
    rel = os.path.relpath(target, base).replace(os.sep, "/")
    for path in ("./" + rel,) if rel.startswith("-") else (rel, "./" + rel):
        statement = _parse(head + path)
        if statement is not None and statement.plain and statement.path == path:
            return head + path
    return None


def _lines(content: bytes) -> list[bytes]:
    """The lines as Blender splits them: at "\\n" only (a lone "\\r" is inside a line)."""
    return re.findall(rb"[^\n]*\n|[^\n]+$", content)


def _is_file_inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return _inside(real, root) and os.path.isfile(real)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _show(path: str) -> str:
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join("\ufffd" if c < " " or c == "\x7f" else c for c in text)  # one line
    return "'" + (text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…") + "'"


# ------------------------------------------------------------------------------ job files


@dataclass(frozen=True)
class ObjParts:
    """What a job folder holds for an OBJ import, found by the engine's file names
    (`<role>.<ext>` or `<role>-<n>.<ext>`, extensions from the bytes)."""

    materials: tuple[str, ...]  # downloaded .mtl files
    textures: tuple[str, ...]  # downloaded texture images (not zips)
    archives: tuple[str, ...]  # downloaded .zip files (texture bundles, zipped models)


_ROLE_NAME = re.compile(r"^(?P<role>[a-z]+)(?:-\d+)?\.(?P<ext>[a-z0-9]+)$")
_IMAGE_EXTS = {"png", "jpg", "jpeg", "webp", "bmp", "tga", "tif", "tiff", "exr"}


def obj_parts(files: Iterable[str]) -> ObjParts:
    """Sort a job's downloaded files into the parts an OBJ import uses."""
    materials, textures, archives = [], [], []
    for path in sorted(files):
        match = _ROLE_NAME.match(os.path.basename(path).lower())
        ext = match.group("ext") if match else os.path.splitext(path)[1].lower().lstrip(".")
        role = match.group("role") if match else ""
        if ext == "mtl":
            materials.append(path)
        elif ext == "zip":
            archives.append(path)
        elif ext in _IMAGE_EXTS and role == "texture":
            textures.append(path)
    return ObjParts(tuple(materials), tuple(textures), tuple(archives))


# ------------------------------------------------------------------ the OBJ's job folder


def prepare_obj(path: str, allowed_root: str) -> tuple[str, list[str]]:
    """Make an OBJ's job folder safe for Blender's importer; the OBJ to import and warnings.

    `path` is the downloaded model (an .obj, or a zip holding one); its folder is the job
    folder. Every zip there is extracted (archive.extract_zip) into `<zip name>-files/`; the
    MTLs the OBJ should use are found (see `_materials`) and confined (`confine_textures`,
    the one downloaded texture image being the diffuse fallback); if the OBJ's `mtllib`
    lines do not name exactly those, a copy naming them is written under `.confined/`.
    Blender also reads `<obj name>.mtl` beside the OBJ it imports, named or not: confined too.
    `mtllib` lines are found as Blender finds them (a "\\" ending a line joins the next).
    File work only, no bpy: it may run on a worker thread before the import. Raises MtlError
    or archive.ArchiveError (one line); repeating it gives the same result.
    """
    root = os.path.realpath(allowed_root)
    real = os.path.realpath(path)
    if not _inside(real, root) or not os.path.isfile(real):
        raise MtlError(f"the model file {_show(os.path.basename(path))} is not in the job folder")
    job_dir = os.path.dirname(real)
    with open(real, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    top = [os.path.join(job_dir, n) for n in sorted(os.listdir(job_dir))]
    parts = obj_parts(p for p in top if os.path.isfile(p) and not os.path.islink(p))
    extracted: list[str] = []
    for zipped in parts.archives:
        if zipped != real:
            extracted += _extract(zipped, job_dir)
    obj_path = _obj_in(_extract(real, job_dir), real) if is_zip else real
    images = list(parts.textures) or [p for p in extracted if _is_image(p)]
    fallback = images[0] if len(images) == 1 else None
    materials = _materials(obj_path, job_dir, parts.materials)
    warnings: list[str] = []
    for material in materials:
        warnings += confine_textures(material, job_dir, fallback)
    model = _point_mtllib(obj_path, job_dir, materials)
    beside = os.path.splitext(model)[0] + ".mtl"  # Blender reads it too, named or not
    if os.path.isfile(beside) and os.path.realpath(beside) not in materials:
        warnings += confine_textures(beside, job_dir, fallback)
    return model, list(dict.fromkeys(warnings))


def _extract(zipped: str, job_dir: str) -> list[str]:
    """Into `<job>/<zip name>-files/`, afresh: a re-import after a failure starts clean."""
    dest = os.path.join(job_dir, os.path.splitext(os.path.basename(zipped))[0] + "-files")
    if os.path.islink(dest) or os.path.isfile(dest):
        os.remove(dest)
    elif os.path.isdir(dest):
        shutil.rmtree(dest)
    return archive.extract_zip(zipped, dest)


def _obj_in(files: list[str], zipped: str) -> str:
    objs = sorted(
        (p for p in files if p.lower().endswith(".obj")), key=lambda p: (p.count(os.sep), p)
    )
    if not objs:
        raise MtlError(f"{_show(os.path.basename(zipped))} holds no .obj file")
    return objs[0]


def _materials(obj_path: str, job_dir: str, downloaded: Sequence[str]) -> list[str]:
    """The MTLs to use. Those the OBJ names where it names them, if all are there; else the
    downloaded ones (the service made them for this OBJ, whatever the OBJ calls them); else
    files of the named names anywhere in the job folder (e.g. inside an extracted zip)."""
    names = [_mtllib_name(line) for line in _obj_lines(obj_path) if _MTLLIB.match(line)]
    obj_dir = os.path.dirname(obj_path)
    available = _mtl_files(job_dir)
    exact = [_plain_target(obj_dir, name) for name in names]
    if names and all(path in available for path in exact):
        return list(dict.fromkeys(p for p in exact if p is not None))
    if downloaded:
        return [os.path.realpath(m) for m in downloaded]
    found = (_find_mtl(name, available) for name in names)
    return list(dict.fromkeys(p for p in found if p is not None))


def _obj_lines(obj_path: str) -> list[bytes]:
    """The OBJ's lines as Blender's parser sees them: a "\\" ending a line joins the next."""
    with open(obj_path, "rb") as f:
        content = _CONTINUED.sub(lambda m: b" " + m.group(1) + b" ", f.read())
    return _lines(content)


def _mtllib_name(line: bytes) -> str:
    start = line.index(b"mtllib") + len(b"mtllib") + 1  # the keyword, then one separator
    name = line[start:].strip(b" \t\r\n").decode("utf-8", "surrogateescape")
    return name[1:-1] if len(name) > 2 and name[0] == name[-1] == '"' else name


def _mtl_files(job_dir: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(job_dir):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        found += [
            os.path.join(folder, n)
            for n in files
            if n.lower().endswith(".mtl") and not os.path.islink(os.path.join(folder, n))
        ]
    return sorted(found, key=lambda p: (p.count(os.sep), p))


def _find_mtl(name: str, available: list[str]) -> str | None:
    """A material file by base name, forgiving case and spaces vs underscores."""
    key = re.split(r"[\\/]", name)[-1].lower().replace(" ", "_")
    return next(
        (p for p in available if os.path.basename(p).lower().replace(" ", "_") == key), None
    )


def _point_mtllib(obj_path: str, job_dir: str, materials: list[str]) -> str:
    """The OBJ with its `mtllib` lines naming `materials`: itself when they already do,
    else a copy under `<job>/.confined/` (same file name, so the same object names)."""
    lines = _obj_lines(obj_path)
    obj_dir = os.path.dirname(obj_path)
    named = [_mtllib_name(line) for line in lines if _MTLLIB.match(line)]
    if [_plain_target(obj_dir, name) for name in named] == materials:
        return obj_path
    copy_dir = os.path.join(job_dir, _CONFINED_DIR)
    wanted = [
        b"mtllib " + os.fsencode(os.path.relpath(m, copy_dir).replace(os.sep, "/")) + b"\n"
        for m in materials
    ]
    first = next((i for i, line in enumerate(lines) if _MTLLIB.match(line)), 0)
    body = [line for line in lines if not _MTLLIB.match(line)]
    body[first:first] = wanted
    os.makedirs(copy_dir, exist_ok=True)
    copy = os.path.join(copy_dir, os.path.basename(obj_path))
    with open(copy, "wb") as f:
        f.writelines(body)
    return copy


def _plain_target(obj_dir: str, name: str) -> str | None:
    """Where Blender would look for an `mtllib` name that needs no rewriting, else None."""
    if not name or "\\" in name or name.startswith(("/", "~")) or _DRIVE.match(name):
        return None
    if not _plain(name):  # quotes or control characters: Blender may read another name
        return None
    if ".." in name.split("/"):
        return None
    return os.path.realpath(os.path.join(obj_dir, name))


def _is_image(path: str) -> bool:
    return os.path.splitext(path)[1].lower().lstrip(".") in _IMAGE_EXTS
