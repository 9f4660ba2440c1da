"""MTL and OBJ files read as Blender reads them (issue #20, finding 12): texture options take
the arguments Blender's own parser gives them, so the path that remains is the one Blender
opens and is confined to the job folder; the `<obj name>.mtl` Blender loads beside an OBJ,
named or not, is confined too; `mtllib` lines are found as Blender finds them. Nothing outside
the job folder is named by what Blender will read."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from conjure_src.importers import mtl
from emulators.ravenra import cube_mtl, cube_obj
from emulators.trify3d import tiny_png

# What Blender 4.2 and 5.2 open for these lines (observed with their OBJ importer: the path
# it tries first, relative to the MTL's folder); None: no texture at all.
BLENDER_READS = [
    ("map_Kd -o /abs/x.png", "/abs/x.png"),
    ("map_Kd -o 1 /abs/x.png", "/abs/x.png"),
    ("map_Kd -s 1 1 1 C:\\Users\\x\\tex.png", "C:\\Users\\x\\tex.png"),
    ("map_Kd -O 1 x.png", "-O 1 x.png"),  # options are cased
    ("map_Kd -t 1 /abs/x.png", None),  # -t drops three words, whatever they are
    ("map_Kd -mm 1 /abs/x.png", None),  # -mm drops two
    ("map_Kd -bm 1x /abs/x.png", "1x /abs/x.png"),  # not a number: nothing taken
    ("map_Kd -o +/abs/x.png", "/abs/x.png"),  # one "+" goes even when no number follows
    ("map_Kd -o +1 ++2 r.png", "r.png"),
    ("map_Kd -o 1e39x /abs/m.png", "x /abs/m.png"),  # out of range: taken, whatever follows
    ("map_Kd -o 3.4e38x f.png", "3.4e38x f.png"),
    ("map_Kd -o 1e-999x d.png", "x d.png"),
    ("map_Kd -o 0x10 i.png", "0x10 i.png"),
    ("map_Kd -o infinity NaN -inf l.png", "l.png"),
    ("map_Kd -o nan(abc) m.png", "m.png"),
    ("map_Kd -o 1.5e x.png", "1.5e x.png"),
    ("map_Kd -bm -s 1 n.png", "n.png"),
    ("map_Kd -type\u00e9sphere /abs/q.png", "-type\u00e9sphere /abs/q.png"),
    ('map_Kd "/abs/j.png"', "/abs/j.png"),
    ('map_Kd a"b.png', "ab.png"),  # every double quote goes
    ("map_Kd g.png\x0c", "g.png\x0c"),  # only spaces, tabs, CR and LF are trimmed
    ("map_Kd h.png\t \r", "h.png"),
    ("map_Kd\x01/abs/o.png", "/abs/o.png"),  # any byte up to the space separates
    ("\x0bmap_Kd /abs/p.png", "/abs/p.png"),
    ("\u00e9map_Kd /abs/g.png", None),  # a non-ASCII byte is not a space
    ("map_Kd -o 1\x01 s.png", "s.png"),
    ("map_Kd -clamp\ton /abs/s.png \\", "/abs/s.png \\"),
    ("refl -type sphere -mm 0 1 tex.png", "tex.png"),
]


@pytest.mark.parametrize(("line", "path"), BLENDER_READS, ids=[r[0] for r in BLENDER_READS])
def test_texture_statements_are_read_as_blender_reads_them(line: str, path: str | None) -> None:
    statement = mtl._parse(line)
    assert (statement.path if statement else None) == path


@pytest.fixture
def job(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs" / "job1"
    folder.mkdir(parents=True)
    (folder / "tex.png").write_bytes(tiny_png())
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A canary beside the job folder that nothing may name."""
    canary = tmp_path / "jobs" / "secret.png"
    canary.write_bytes(tiny_png())
    return canary


def _texture_paths(content: bytes) -> list[str]:
    lines = content.decode("utf-8", "surrogateescape").split("\n")
    return [s.path for s in map(mtl._parse, lines) if s is not None]


def test_options_never_hide_a_path_outside_the_job_folder(job: Path, outside: Path) -> None:
    lines = [
        f"map_Kd -o {outside}",
        f"map_Ks -o 1 {outside}",
        f"map_Bump -bm +{outside}",
        f"map_d -s 1 -o {outside}",
        f"\x0bmap_Ns {outside}",
        f"map_Ke\x01{outside}",
        f'map_Pr "{outside}"',
        f"map_Pm -type\u00e9sphere {outside}",
    ]
    path = job / "material.mtl"
    path.write_bytes(("newmtl A\n" + "\n".join(lines) + "\n").encode())
    warnings = mtl.confine_textures(str(path), str(job))
    content = path.read_bytes()
    assert str(outside).encode() not in content
    assert all((job / p).resolve().is_relative_to(job) for p in _texture_paths(content))
    assert warnings and all(
        w.endswith("not found among the downloaded files; left out") for w in warnings
    )


def test_options_blender_understands_are_kept_as_written(job: Path) -> None:
    line = (
        b"map_Kd -o 1 2 3 -s 2 2 2 -bm 0.5 -clamp on -mm 0 1 -t 1 1 1 -texres 512"
        b" -imfchan r -type sphere -blendu on -blendv off -boost 2 -cc on tex.png\r\n"
    )
    path = job / "material.mtl"
    path.write_bytes(b"newmtl A\r\n" + line)
    assert mtl.confine_textures(str(path), str(job)) == []
    assert path.read_bytes() == b"newmtl A\r\n" + line


def test_a_name_blender_would_take_for_an_option_value_gets_a_dot_slash(job: Path) -> None:
    """`-o 1 x.png` would give `-o` the 1 and leave `x.png`; `-o +x.png` would drop the "+"."""
    (job / "1 x.png").write_bytes(tiny_png())
    (job / "+x.png").write_bytes(tiny_png())
    path = job / "material.mtl"
    path.write_bytes(b"map_Kd -o C:\\maps\\1 x.png\nmap_Bump -o C:\\maps\\+x.png\n")
    assert mtl.confine_textures(str(path), str(job)) == []
    assert path.read_bytes() == b"map_Kd -o ./1 x.png\nmap_Bump -o ./+x.png\n"
    assert _texture_paths(path.read_bytes()) == ["./1 x.png", "./+x.png"]


def test_quotes_inside_a_path_are_read_as_blender_reads_them(job: Path) -> None:
    (job / 'a"b.png').write_bytes(tiny_png())  # Blender would open "ab.png", then "ab.png" in
    path = job / "material.mtl"  # the working folder: this line cannot stay as it is
    path.write_bytes(b'map_Kd a"b.png\n')
    warnings = mtl.confine_textures(str(path), str(job))
    assert b'"' not in path.read_bytes() and warnings == [
        "texture 'ab.png' not found among the downloaded files; left out"
    ]


def test_a_lone_carriage_return_does_not_split_a_statement(job: Path, outside: Path) -> None:
    path = job / "material.mtl"
    path.write_bytes(f"map_Kd tex.png\rmap_Ks {outside}\n".encode())  # one line to Blender
    mtl.confine_textures(str(path), str(job))
    assert str(outside).encode() not in path.read_bytes()


# ------------------------------------------------------------------- the OBJ's job folder


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _blender_sees(obj: Path) -> str:
    """The OBJ's text as Blender's parser reads it: a backslash ending a line joins the next."""
    return re.sub(r"\\[\x00-\x09\x0b-\x20]*\n", "  ", obj.read_text(errors="surrogateescape"))


@pytest.mark.parametrize("mtllib", ["mtllib other.mtl\n", ""], ids=["named-other", "no-mtllib"])
def test_the_mtl_named_like_the_obj_is_confined_too(job: Path, outside: Path, mtllib: str):
    """Blender loads `<obj name>.mtl` beside the OBJ even when no `mtllib` names it."""
    hostile = f"newmtl CubeSkin\nmap_Kd {outside}\nmap_Bump -o {outside}\n".encode()
    obj = cube_obj().replace(b"mtllib cube.mtl\n", mtllib.encode())
    zipped = {"cube.obj": obj, "other.mtl": cube_mtl("tex.png"), "cube.mtl": hostile}
    (job / "model.zip").write_bytes(_zip(zipped))
    model, warnings = mtl.prepare_obj(str(job / "model.zip"), str(job))
    beside = Path(model).with_suffix(".mtl")
    if beside.exists():
        assert str(outside).encode() not in beside.read_bytes()
    assert str(outside).encode() not in b"".join(p.read_bytes() for p in job.rglob("*.mtl"))
    assert any(str(outside) in w for w in warnings)


@pytest.mark.parametrize(
    "line",
    ["mtllib\\\n {mtl}\n", "\x0bmtllib {mtl}\n", "mtllib\x01{mtl}\n"],
    ids=["continued", "vertical-tab", "control-separator"],
)
def test_mtllib_lines_are_found_as_blender_finds_them(job: Path, tmp_path: Path, line: str):
    evil = tmp_path / "evil.mtl"
    evil.write_text("newmtl CubeSkin\nmap_Kd /etc/passwd\n")
    obj = cube_obj().replace(b"mtllib cube.mtl\n", line.format(mtl=evil).encode())
    (job / "model.obj").write_bytes(obj)
    (job / "material.mtl").write_bytes(cube_mtl("tex.png"))
    model, warnings = mtl.prepare_obj(str(job / "model.obj"), str(job))
    assert str(evil) not in _blender_sees(Path(model)) and warnings == []
    assert evil.read_text() == "newmtl CubeSkin\nmap_Kd /etc/passwd\n"  # never written either
